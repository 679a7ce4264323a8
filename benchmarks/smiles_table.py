"""Collect SMILES training runs into a markdown table and a validity-vs-time figure.

    python benchmarks/smiles_table.py runs/qm9/* --plot docs/qm9_validity.png
    python benchmarks/smiles_table.py runs/moses/* --moses --plot docs/moses_validity.png
    python benchmarks/smiles_table.py runs/qm9/*-s[0-9]* --seeds     # one row per arm: mean [min, max] over seeds

Each run folder holds ``metrics.jsonl`` (``ip-pyro train``, with ``elapsed_s`` and periodic ``valid_validity``)
and ``eval_test.json`` (``ip-pyro eval``: 10,000 samples, MOSES/GuacaMol metrics, test NLL); optionally
``diagnose/summary.txt`` (``ip-pyro diagnose``), whose guide entropy and rank correlation go into the order columns.
With ``--seeds`` the folders named ``ARM-sSEED`` are grouped by ``ARM``.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
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
    entropies = [r["order_entropy"] for r in records if "order_entropy" in r]
    order = {}
    summary = folder / "diagnose" / "summary.txt"
    if summary.is_file():
        text = summary.read_text()
        entropy = re.search(r"guide entropy over orders: ([\d.]+)", text)
        correlation = re.search(r"rank correlation of position and insertion step ([+-]?[\d.]+)", text)
        words = re.search(r"preferred order: ([^:]+):", text)
        order = {"entropy": float(entropy.group(1)) if entropy else None,
                 "rank_corr": float(correlation.group(1)) if correlation else None,
                 "words": words.group(1).strip() if words else None}
    return {"name": folder.name, "steps": steps[-1]["step"] if steps else 0,
            "rws_steps": sum(1 for r in steps if r.get("objective") == "rws"),
            "minutes": (steps[-1].get("elapsed_s", 0.0) / 60) if steps else 0.0,
            "curve": [(elapsed.get(step, 0.0) / 60, value) for step, value in curve], "test": test,
            "order_entropy": entropies[-1] if entropies else None, "order": order}


def arm_name(name: str) -> str:
    """``ao-ip-s1`` -> ``ao-ip``: the run's arm without its seed suffix."""
    return re.sub(r"-s\d+$", "", name)


def _spread(values, digits=3) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def seed_rows(runs, columns) -> list:
    """One markdown row per arm: every column as mean [min, max] over the arm's seeds, steps per seed."""
    arms = {}
    for run in runs:
        arms.setdefault(arm_name(run["name"]), []).append(run)
    rows = []
    for arm, members in arms.items():
        tests = [run["test"] or {} for run in members]
        cells = [_spread([test.get(key) for test in tests]) for key, _ in columns]
        steps = " / ".join(f"{run['steps']}" + (f" ({run['rws_steps']} RWS)" if run["rws_steps"] else "")
                           for run in members)
        # the diagnose report's entropy (64 test molecules) where there is one, else the last validation's
        entropy = _spread([run["order_entropy"] if run["order"].get("entropy") is None else run["order"]["entropy"]
                           for run in members], 2)
        correlation = _spread([run["order"].get("rank_corr") for run in members], 2)
        words = " / ".join(run["order"].get("words") or "–" for run in members)
        rows.append(f"| {arm} | {len(members)} | {steps} | " + " | ".join(cells)
                    + f" | {entropy} | {correlation} | {words} |")
    return rows


def main(args):
    runs = [read_run(Path(folder)) for folder in args.runs if (Path(folder) / "metrics.jsonl").is_file()]
    if not runs:
        raise SystemExit("no run folders with metrics.jsonl given")
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
    parser.add_argument("--seeds", action="store_true",
                        help="one row per arm (folders ARM-sSEED): mean [min, max] over seeds, with order columns")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
