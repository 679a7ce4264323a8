"""``ip-pyro data TASK --out DIR``: write a planning dataset, or fetch MOSES / QM9 from their wheels."""
from __future__ import annotations

from ip_pyro.cli.common import CommandError

__all__ = ["run", "add_parser"]


def run(args) -> int:
    from ip_pyro.data.planning import make_dataset, write_dataset

    if args.task in ("moses", "qm9"):
        from ip_pyro.data.smiles import fetch_moses, fetch_qm9

        folder = (fetch_moses if args.task == "moses" else fetch_qm9)(args.out)
        print(f"{args.task} files in {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
        return 0

    if args.out is None:
        raise CommandError(f"pass --out DIR for the {args.task} data")
    splits = make_dataset(args.task, seed=args.seed, sizes={"train": args.train, "valid": args.valid,
                                                            "test": args.test})
    out = write_dataset(splits, args.out, args.task, seed=args.seed)
    print(f"wrote {', '.join(f'{len(v)} {k}' for k, v in splits.items())} examples of {args.task} to {out}")
    return 0


def add_parser(commands) -> None:
    """Add this verb's sub-parser to ``commands``."""
    data = commands.add_parser("data", help="generate a planning dataset as JSONL with a checksummed manifest, or "
                                             "fetch MOSES or QM9 (`ip-pyro data moses|qm9`)")
    data.add_argument("task", help="a planning task (star-*, maze-*) or qm9 / moses")
    data.add_argument("--out", default=None, help="output folder (moses/qm9: default $IP_PYRO_CACHE/<name>)")
    data.add_argument("--seed", type=int, default=0, help="planning data: the generator's seed")
    data.add_argument("--train", type=int, default=50_000, help="planning data: training examples")
    data.add_argument("--valid", type=int, default=500, help="planning data: validation examples")
    data.add_argument("--test", type=int, default=5_000, help="planning data: test examples")
    data.set_defaults(run=run)
