"""Collect SMILES training runs into a markdown table and a validity-vs-time figure.

    python benchmarks/smiles_table.py runs/qm9/* --plot docs/qm9_validity.png
    python benchmarks/smiles_table.py runs/moses/* --moses --plot docs/moses_validity.png

Each run folder holds ``metrics.jsonl`` (``ip-pyro train``, with ``elapsed_s`` and periodic ``valid_validity``)
and ``eval_test.json`` (``ip-pyro eval``: 10,000 samples, MOSES/GuacaMol metrics, test NLL).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = [("validity", "valid"), ("unique@10k", "unique@10k"), ("novelty", "novel"), ("vun", "V×U×N"),
           ("fcd_test", "FCD/Test"), ("kl_score", "KL score"), ("snn", "SNN"), ("nll", "test NLL"),
           ("nll_per_token", "NLL/token")]
MOSES_COLUMNS = [("validity", "valid"), ("unique@10k", "unique@10k"), ("novelty", "novel"), ("fcd_test", "FCD/Test"),
                 ("fcd_testsf", "FCD/TestSF"), ("snn", "SNN"), ("frag", "Frag"), ("scaf", "Scaf"),
                 ("intdiv1", "IntDiv1"), ("intdiv2", "IntDiv2"), ("kl_score", "KL score"), ("nll", "test NLL")]


def read_run(folder: Path) -> dict:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    steps = [r for r in records if "loss" in r]
    curve = [(r["step"], r["valid_validity"]) for r in records if "valid_validity" in r]
    elapsed = {r["step"]: r.get("elapsed_s", 0.0) for r in steps}
    evaluation = folder / "eval_test.json"
    test = json.loads(evaluation.read_text()) if evaluation.is_file() else None
    if test is not None:  # share of samples that are valid, unique (among valid) and novel (among unique)
        test["vun"] = test["validity"] * test["unique@10k"] * test.get("novelty", 0.0)
    return {"name": folder.name, "steps": steps[-1]["step"] if steps else 0,
            "minutes": (steps[-1].get("elapsed_s", 0.0) / 60) if steps else 0.0,
            "curve": [(elapsed.get(step, 0.0) / 60, value) for step, value in curve], "test": test}


def main(args):
    runs = [read_run(Path(folder)) for folder in args.runs if (Path(folder) / "metrics.jsonl").is_file()]
    if not runs:
        raise SystemExit("no run folders with metrics.jsonl given")
    columns = MOSES_COLUMNS if args.moses else COLUMNS
    print("| arm | steps | train min | " + " | ".join(title for _, title in columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for run in runs:
        test = run["test"] or {}
        cells = [f"{test[key]:.3f}" if key in test else "–" for key, _ in columns]
        print(f"| {run['name']} | {run['steps']} | {run['minutes']:.1f} | " + " | ".join(cells) + " |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 4))
        for run in runs:
            if run["curve"]:
                axis.plot(*zip(*run["curve"]), marker="o", label=run["name"])
        axis.set_xlabel("training minutes (2-core CPU, evaluation excluded)")
        axis.set_ylabel("validity of 500 samples (EMA weights)")
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--plot", default=None)
    parser.add_argument("--moses", action="store_true", help="MOSES's columns (FCD/TestSF, Frag, Scaf, IntDiv)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
