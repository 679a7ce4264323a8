"""The ``ip-pyro`` command line.

    ip-pyro diagnose CHECKPOINT [--data FILE] [--out DIR] [--domain path|smiles|generic] ...

Errors are one line on stderr with a non-zero exit status; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main"]


class CommandError(ValueError):
    """A user-facing error: printed as one line."""


def _read_sequences(path: Path) -> tuple[list, list | None]:
    """Targets (and prompts) from a JSONL file with ``target``/``prompt`` fields, or a JSON list of id lists."""
    if not path.is_file():
        raise CommandError(f"no data file at {path}; pass a JSONL file with a 'target' list per line")
    text = path.read_text()
    if not text.strip():
        raise CommandError(f"{path} is empty; it needs one example per line")
    if path.suffix == ".json":
        sequences = json.loads(text)
        return sequences, None
    targets, prompts = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CommandError(f"{path}:{number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or "target" not in record:
            raise CommandError(f"{path}:{number} has no 'target' field; each line needs {{\"target\": [ids]}}")
        targets.append(record["target"])
        prompts.append(record.get("prompt", []))
    return targets, prompts if any(prompts) else None


def _diagnose(args) -> int:
    import torch

    from ip_pyro.batch import collate
    from ip_pyro.checkpoint import load_checkpoint
    from ip_pyro.diagnose import diagnose

    model, guide, extra = load_checkpoint(args.checkpoint, map_location=args.device)
    if guide is None:
        raise CommandError(f"checkpoint {args.checkpoint} holds no guide; diagnose needs an IP model with a guide")
    if args.data:
        sequences, prompts = _read_sequences(Path(args.data))
        sequences = sequences[: args.num_sequences]
        prompts = None if prompts is None else prompts[: args.num_sequences]
    else:
        torch.manual_seed(args.seed)
        sequences, prompts = [s for s in model.sample(args.num_sequences) if s], None
        if not sequences:
            raise CommandError("the model only sampled empty sequences; pass --data with sequences to diagnose")
    batch = collate(sequences, prompts, vocab_size=model.vocab_size).to(args.device)
    token_names = extra.get("token_names")
    report = diagnose(model, guide, batch, args.out, token_names=token_names, domain=args.domain,
                      num_chains=args.chains, num_draws=args.draws, mcmc_samples=args.mcmc_samples,
                      mcmc_warmup=args.mcmc_warmup, seed=args.seed)
    print(report["summary"])
    print(f"wrote {len(report['files'])} files to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ip-pyro", description="The Insertion Process in Pyro.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    diagnose = commands.add_parser("diagnose", help="insertion-order diagnostics of a trained checkpoint")
    diagnose.add_argument("checkpoint")
    diagnose.add_argument("--data", help="JSONL with a 'target' per line (default: sequences sampled from the model)")
    diagnose.add_argument("--out", default="diagnostics")
    diagnose.add_argument("--domain", default="generic", choices=["generic", "path", "smiles"])
    diagnose.add_argument("--num-sequences", type=int, default=64)
    diagnose.add_argument("--chains", type=int, default=4)
    diagnose.add_argument("--draws", type=int, default=250)
    diagnose.add_argument("--mcmc-samples", type=int, default=400)
    diagnose.add_argument("--mcmc-warmup", type=int, default=200)
    diagnose.add_argument("--seed", type=int, default=0)
    diagnose.add_argument("--device", default="cpu")
    diagnose.set_defaults(run=_diagnose)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as error:
        if args.debug:
            raise
        print(f"ip-pyro {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
