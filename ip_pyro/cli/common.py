"""What the verbs share: the one-line error type, data records, split loading and the results table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

__all__ = ["CommandError", "read_records", "print_table", "data_path",
           "write_results", "nll_words", "nll_error"]


class CommandError(ValueError):
    """A user-facing error: printed as one line."""


def read_records(path: Path) -> list:
    """Records with a ``target`` (and optional ``prompt``, star-graph fields, ...) from a JSONL file, or from a
    JSON file holding a list of id lists."""
    if not path.is_file():
        raise CommandError(f"no data file at {path}; pass a JSONL file with a 'target' list per line")
    text = path.read_text()
    if not text.strip():
        raise CommandError(f"{path} is empty; it needs one example per line")
    if path.suffix == ".json":
        return [{"target": sequence} for sequence in json.loads(text)]
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CommandError(f"{path}:{number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or "target" not in record:
            raise CommandError(f"{path}:{number} has no 'target' field; each line needs {{\"target\": [ids]}}")
        records.append(record)
    return records


def nll_words(args, guide, scored: int) -> str:
    """What eval's NLL is, in words: exact (FO-ARM, or ``--exact``) or an IWAE bound from ``--nll-samples``."""
    if not args.nll_samples and not getattr(args, "exact", False):
        return ""
    if guide is None:
        return f", the exact NLL of {scored} (left to right)"
    if getattr(args, "exact", False):
        return f", the exact NLL of {scored} (summed over all L! orders)"
    return (f", the NLL of {scored} as an IWAE bound from {args.nll_samples} orders each (at least the true NLL; "
            "--exact sums all orders where L <= 8)")


def nll_error(error: ValueError) -> "CommandError":
    """``eval``'s one-line error for an NLL it cannot compute (``--exact`` on sequences too long)."""
    return CommandError(str(error).replace("--exact / exact=True", "--exact"))


def print_table(results: dict) -> None:
    width = max(len(name) for name in results)
    for name, value in results.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown}")


def data_path(data: dict, base: Optional[Path] = None, override: Optional[str] = None) -> Optional[Path]:
    """The data file of a run (SMILES or sequences): ``override`` (``eval --data``) if given, else the saved path, which is relative
    to the run folder ``base`` (absolute in checkpoints written before that rule)."""
    if override:
        return Path(override)
    saved = data.get("path")
    if saved is None:
        return None
    saved = Path(saved)
    return saved if saved.is_absolute() or base is None else (base / saved)


def write_results(args, results: dict, *, announce: bool = True) -> Path:
    """Write ``eval``'s results to ``--json`` or ``eval_SPLIT.json`` beside the checkpoint; returns the path."""
    out = Path(args.json) if args.json else Path(args.checkpoint).with_name(f"eval_{args.split}.json")
    out.write_text(json.dumps(results, indent=2))
    if announce:
        print(f"wrote {out}")
    return out
