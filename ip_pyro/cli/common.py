"""What the verbs share: the one-line error type, data records, split loading and the results table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

__all__ = ["CommandError", "read_records", "landmarks", "load_splits", "checkpoint_splits", "print_table", "data_path",
           "write_results", "nll_words", "nll_error"]


class CommandError(ValueError):
    """A user-facing error: printed as one line."""


def landmarks(records: list) -> list | None:
    """Per-target positions of named cells: star-graph records (``source``, ``centre``, ``goal``) -> those nodes;
    maze records (``subgoals``: start, intermediate cells, goal) -> ``start``, ``subgoal 1``, ... (where the path
    first reaches each in turn) and ``goal``. None for other records."""
    if records and all({"source", "centre", "goal"} <= set(record) for record in records):
        return [{"source": 0, "centre": record["target"].index(record["centre"]) if record["centre"] in
                 record["target"] else 0, "goal": max(len(record["target"]) - 1, 0)} for record in records]
    if records and all("subgoals" in record for record in records):
        return [_subgoal_positions(record["target"], record["subgoals"]) for record in records]
    return None


def _subgoal_positions(target: list, subgoals: list) -> dict:
    marks, position = {"start": 0}, 0
    for number, cell in enumerate(subgoals[1:-1], 1):
        if cell in target[position:]:
            position = target.index(cell, position)
            marks[f"subgoal {number}"] = position
    marks["goal"] = max(len(target) - 1, 0)
    return marks


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


def load_splits(args, task: str, *, need_train: bool = True) -> dict:
    from ip_pyro.data.planning import SPLITS, load_dataset, make_dataset, task_config

    task_config(task)  # one-line error for an unknown task
    if getattr(args, "data", None):
        if Path(args.data).is_file():
            raise CommandError(f"--data {args.data} is a file, but --task {task} reads a folder written by "
                               f"`ip-pyro data {task}`; for your own sequences pass --task sequences (a SMILES file: "
                               "--task smiles)")
        splits, manifest = load_dataset(args.data)
        if manifest["task"] != task:
            raise CommandError(f"{args.data} holds {manifest['task']} data, not {task}; pass the matching --data")
        return splits
    sizes = dict(SPLITS) if need_train else {"train": 0, "valid": SPLITS["valid"], "test": SPLITS["test"]}
    return make_dataset(task, seed=args.data_seed, sizes=sizes)


def checkpoint_splits(args, task: str, extra: dict) -> tuple[dict, str]:
    """The splits a verb on a checkpoint reads, and words saying which: ``--data`` when given, else the data the
    checkpoint was trained on (its recorded ``--data`` folder, or the in-memory data of its recorded seed);
    ``--data-seed`` overrides the recorded seed."""
    import argparse

    data = getattr(args, "data", None)
    if not data and extra.get("data"):
        data = extra["data"]
        if not Path(data).exists():
            raise CommandError(f"the checkpoint was trained on {data}, which is gone; pass --data with the folder "
                               "(or regenerate it with `ip-pyro data`)")
    seed = args.data_seed if getattr(args, "data_seed", None) is not None else extra.get("data_seed", 0)
    splits = load_splits(argparse.Namespace(data=data, data_seed=seed), task, need_train=False)
    words = f"{data}" if data else f"{task} data generated in memory (seed {seed})"
    if data and data == extra.get("data") and not getattr(args, "data", None):
        words += " (the checkpoint's training data)"
    return splits, words


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
