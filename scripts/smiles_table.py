"""Collect SMILES training runs into a markdown table and a validity-vs-time figure.

    python -m scripts.smiles_table runs/qm9/* --plot docs/qm9_validity.png
    python -m scripts.smiles_table runs/moses/* --moses --plot docs/moses_validity.png
    python -m scripts.smiles_table runs/qm9/*-s[0-9]* --seeds     # one row per arm: mean [min, max] over seeds

Each run folder holds ``metrics.jsonl`` (``ip-pyro train``, with ``elapsed_s`` and periodic ``valid_validity``)
and ``eval_test.json`` (``ip-pyro eval``: 10,000 samples, MOSES/GuacaMol metrics, test NLL); optionally
``diagnose/summary.txt`` (``ip-pyro diagnose``), whose guide entropy and rank correlation go into the order columns.
With ``--seeds`` the folders named ``ARM-sSEED`` are grouped by ``ARM``.
"""
from __future__ import annotations

import argparse

from scripts import run_folders
from scripts.run_folders import group_by_arm, order_entropy, spread, steps_per_seed

COLUMNS = [("validity", "valid"), ("unique@10k", "unique@10k"), ("novelty", "novel"), ("vun", "V×U×N"),
           ("fcd_test", "FCD/Test"), ("kl_score", "KL score"), ("snn", "SNN"), ("nll", "test NLL"),
           ("nll_per_token", "NLL/token")]
MOSES_COLUMNS = [("validity", "valid"), ("unique@10k", "unique@10k"), ("novelty", "novel"), ("fcd_test", "FCD/Test"),
                 ("fcd_testsf", "FCD/TestSF"), ("snn", "SNN"), ("frag", "Frag"), ("scaf", "Scaf"),
                 ("intdiv1", "IntDiv1"), ("intdiv2", "IntDiv2"), ("kl_score", "KL score"), ("nll", "test NLL")]


def with_vun(run: dict) -> dict:
    """Add ``vun`` to a run's test metrics (in place; returns the run)."""
    if run["test"] is not None:  # share of samples that are valid, unique (among valid) and novel (among unique)
        test = run["test"]
        test["vun"] = test["validity"] * test["unique@10k"] * test.get("novelty", 0.0)
    return run


def seed_rows(runs, columns) -> list:
    """One markdown row per arm: every column as mean [min, max] over the arm's seeds, steps per seed."""
    rows = []
    for arm, members in group_by_arm(runs).items():
        tests = [run["test"] or {} for run in members]
        cells = [spread([test.get(key) for test in tests]) for key, _ in columns]
        entropy = spread([order_entropy(run) for run in members], 2)
        correlation = spread([run["order"]["rank_corr"] for run in members], 2)
        words = " / ".join(run["order"]["words"] or "–" for run in members)
        rows.append(f"| {arm} | {len(members)} | {steps_per_seed(members)} | " + " | ".join(cells)
                    + f" | {entropy} | {correlation} | {words} |")
    return rows


def main(args):
    runs = [with_vun(run) for run in run_folders.read_runs(args.runs)]
    columns = MOSES_COLUMNS if args.moses else COLUMNS
    if args.seeds:
        print("| arm | seeds | steps per seed | " + " | ".join(title for _, title in columns)
              + " | guide entropy | rank corr. (position, step) | order (diagnose) |")
        print("|---|---|---|" + "---|" * (len(columns) + 3))
        for row in seed_rows(runs, columns):
            print(row)
    else:
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
            curve = [(minutes, value) for _, minutes, value in run["valid"].get("valid_validity", [])]
            if curve:
                axis.plot(*zip(*curve), marker="o", label=run["name"])
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
    parser.add_argument("--seeds", action="store_true",
                        help="one row per arm (folders ARM-sSEED): mean [min, max] over seeds, with order columns")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
