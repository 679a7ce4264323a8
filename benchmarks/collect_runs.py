"""Collect training runs into a results table (markdown) and one learning-curve figure.

    python benchmarks/collect_runs.py runs/star-easy-* --plot star_easy.png

Each run folder holds ``metrics.jsonl`` (from ``ip-pyro train``), ``checkpoint.pt`` and, if evaluated,
``eval_test.json`` (from ``ip-pyro eval``). The figure plots validation exact match against the training step for
every run on one axis.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_run(folder: Path) -> dict:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    curve = [(r["step"], r["valid_exact_match"]) for r in records if "valid_exact_match" in r]
    steps = max((r["step"] for r in records), default=0)
    evaluation = folder / "eval_test.json"
    return {"name": folder.name, "curve": curve, "steps": steps,
            "test": json.loads(evaluation.read_text()) if evaluation.is_file() else None}


def main(args):
    runs = [read_run(Path(folder)) for folder in args.runs if (Path(folder) / "metrics.jsonl").is_file()]
    if not runs:
        raise SystemExit("no run folders with metrics.jsonl given")
    times = {}
    if args.times and Path(args.times).is_file():
        for line in Path(args.times).read_text().splitlines():
            parts = dict(item.split("=") for item in line.split()[1:] if "=" in item)
            if "train_seconds" in parts:
                times[line.split()[0]] = int(parts["train_seconds"])
    print("| run | steps | train time | test exact match | token accuracy | edges in graph | terminated | "
          "test NLL (nats/path) |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        test = run["test"] or {}
        short = run["name"].split("-", 2)[-1]
        seconds = times.get(short)
        print(f"| {run['name']} | {run['steps']} | {'' if seconds is None else f'{seconds / 60:.1f} min'} | "
              f"{test.get('exact_match', float('nan')):.3f} | {test.get('token_accuracy', float('nan')):.3f} | "
              f"{test.get('edges_in_graph', float('nan')):.3f} | {test.get('termination_rate', float('nan')):.3f} | "
              f"{test.get('nll', float('nan')):.2f} |")
    if args.plot:
        figure, axis = plt.subplots(figsize=(7, 4))
        for run in runs:
            if run["curve"]:
                steps, values = zip(*run["curve"])
                axis.plot(steps, values, marker="o", label=run["name"])
        axis.set_xlabel("training step")
        axis.set_ylabel("validation exact match (greedy)")
        axis.set_ylim(-0.02, 1.02)
        axis.legend(fontsize=8)
        axis.set_title(args.title)
        figure.savefig(args.plot, dpi=110, bbox_inches="tight")
        print(f"wrote {args.plot}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--plot", default=None)
    parser.add_argument("--times", default=None, help="a times.txt with 'NAME steps=S train_seconds=T' lines")
    parser.add_argument("--title", default="exact match vs training step")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
