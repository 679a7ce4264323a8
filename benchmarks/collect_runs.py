"""Collect training runs into a results table (markdown) and one learning-curve figure.

    python benchmarks/collect_runs.py runs/star-easy-* --plot star_easy.png

Each run folder holds ``metrics.jsonl`` (from ``ip-pyro train``), ``checkpoint.pt`` and, if evaluated,
``eval_test.json`` (from ``ip-pyro eval``). The figure plots validation exact match against the training step and
against training minutes, and the share of predicted edges that exist against the step, for every run.
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
    curve, elapsed = [], 0.0
    for record in records:  # training records carry the training time so far; evaluations follow their step
        elapsed = record.get("elapsed_s", elapsed)
        if "valid_exact_match" in record:
            curve.append({"step": record["step"], "minutes": elapsed / 60, "exact_match": record["valid_exact_match"],
                          "edges_in_graph": record.get("valid_edges_in_graph", float("nan"))})
    steps = max((r["step"] for r in records), default=0)
    evaluation = folder / "eval_test.json"
    return {"name": folder.name, "curve": curve, "steps": steps, "minutes": elapsed / 60,
            "time_limited": any(r.get("stopped") == "time limit" for r in records),
            "test": json.loads(evaluation.read_text()) if evaluation.is_file() else None}


def main(args):
    runs = [read_run(Path(folder)) for folder in args.runs if (Path(folder) / "metrics.jsonl").is_file()]
    if not runs:
        raise SystemExit("no run folders with metrics.jsonl given")
    print("| run | steps | train min | test exact match | token accuracy | edges in graph | terminated | "
          "test NLL (nats/path) |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        test = run["test"] or {}
        steps = f"{run['steps']}{' (time limit)' if run['time_limited'] else ''}"
        print(f"| {run['name']} | {steps} | {run['minutes']:.1f} | "
              f"{test.get('exact_match', float('nan')):.3f} | {test.get('token_accuracy', float('nan')):.3f} | "
              f"{test.get('edges_in_graph', float('nan')):.3f} | {test.get('termination_rate', float('nan')):.3f} | "
              f"{test.get('nll', float('nan')):.2f} |")
    if args.plot:
        panels = [("step", "exact_match", "training step", "validation exact match (greedy)"),
                  ("minutes", "exact_match", "training minutes", "validation exact match (greedy)"),
                  ("step", "edges_in_graph", "training step", "predicted edges that exist")]
        figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
        for axis, (x_key, y_key, x_label, y_label) in zip(axes, panels):
            for run in runs:
                if run["curve"]:
                    axis.plot([point[x_key] for point in run["curve"]], [point[y_key] for point in run["curve"]],
                              marker="o", markersize=3, label=run["name"])
            axis.set_xlabel(x_label)
            axis.set_ylabel(y_label)
            axis.set_ylim(-0.02, 1.02)
        axes[0].legend(fontsize=7)
        figure.suptitle(args.title)
        figure.savefig(args.plot, dpi=110, bbox_inches="tight")
        print(f"wrote {args.plot}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--plot", default=None)
    parser.add_argument("--title", default="planning runs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
