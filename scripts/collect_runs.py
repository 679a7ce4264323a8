"""Collect planning runs (star graphs, mazes) into a results table (markdown) and one learning-curve figure.

    python -m scripts.collect_runs runs/star-easy-* --plot star_easy.png
    python -m scripts.collect_runs runs/star-medium/*-s[0-9]* --seeds      # one row per arm, mean [min, max]
    python -m scripts.collect_runs runs/star-medium/*-s[0-9]* --seeds --at-step 1000   # + equal-steps column

Each run folder holds ``metrics.jsonl`` (from ``ip-pyro train``), ``checkpoint.pt`` and, if evaluated,
``eval_test.json`` (from ``ip-pyro eval``) and ``diagnose/summary.txt`` (``ip-pyro diagnose``: the guide's
entropy, rank correlation and order in words). Maze runs (their evaluation has ``success``) get success and valid
moves; star graphs exact match and predicted edges in the graph. The figure plots the validation score
against the training step and against training minutes, and edges in graph (star) or valid moves (maze).
"""
from __future__ import annotations

import argparse
import math

from scripts.run_folders import group_by_arm, order_entropy, read_runs, spread, steps_per_seed, valid_at_step

STAR_COLUMNS = [("exact_match", "test exact match"), ("token_accuracy", "token accuracy"),
                ("edges_in_graph", "edges in graph"), ("termination_rate", "terminated"), ("nll", "test NLL")]
MAZE_COLUMNS = [("success", "test success"), ("exact_match", "exact match (shortest path)"),
                ("valid_moves", "valid moves"), ("termination_rate", "terminated"), ("nll", "test NLL")]


def columns_for(runs) -> list:
    """Maze columns if any run was evaluated on a maze (its test metrics hold ``success``), else star columns."""
    return MAZE_COLUMNS if any("success" in (run["test"] or {}) for run in runs) else STAR_COLUMNS


def score_key(runs) -> str:
    return "valid_success" if any("valid_success" in run["valid"] for run in runs) else "valid_exact_match"


def _cell(test: dict, key: str) -> str:
    value = test.get(key)
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        f"{value:.{2 if key == 'nll' else 3}f}"


def run_rows(runs, columns) -> list:
    rows = []
    for run in runs:
        test = run["test"] or {}
        steps = f"{run['steps']}{' (time limit)' if run['time_limited'] else ''}"
        rows.append(f"| {run['name']} | {steps} | {run['minutes']:.1f} | "
                    + " | ".join(_cell(test, key) for key, _ in columns) + " |")
    return rows


def seed_rows(runs, columns, at_step=None) -> list:
    """One row per arm (folders ``ARM-sSEED``): test columns as mean [min, max] over seeds, steps per seed,
    training minutes, the validation score at ``at_step`` (equal optimiser steps), and the order columns."""
    score = score_key(runs)
    rows = []
    for arm, members in group_by_arm(runs).items():
        tests = [run["test"] or {} for run in members]
        cells = [spread([test.get(key) for test in tests], 2 if key == "nll" else 3) for key, _ in columns]
        if at_step is not None:
            cells.append(spread([valid_at_step(run, score, at_step) for run in members]))
        order = [spread([order_entropy(run) for run in members], 2),
                 spread([run["order"]["rank_corr"] for run in members], 2),
                 " / ".join(run["order"]["words"] or "–" for run in members)]
        rows.append(f"| {arm} | {len(members)} | {steps_per_seed(members)} | "
                    f"{spread([run['minutes'] for run in members], 1)} | " + " | ".join(cells + order) + " |")
    return rows


def main(args):
    runs = read_runs(args.runs)
    columns = columns_for(runs)
    titles = [title for _, title in columns]
    if args.seeds:
        if args.at_step is not None:
            titles.append(f"validation {score_key(runs).replace('valid_', '').replace('_', ' ')} at step {args.at_step}")
        titles += ["guide entropy", "rank corr. (position, step)", "order (diagnose)"]
        print("| arm | seeds | steps per seed | train min | " + " | ".join(titles) + " |")
        print("|---|---|---|---|" + "---|" * len(titles))
        rows = seed_rows(runs, columns, args.at_step)
    else:
        print("| run | steps | train min | " + " | ".join(titles) + " |")
        print("|---|---|---|" + "---|" * len(titles))
        rows = run_rows(runs, columns)
    for row in rows:
        print(row)
    if args.plot:
        plot(runs, args.plot, args.title)


def plot(runs, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    score = score_key(runs)
    second = "valid_valid_moves" if score == "valid_success" else "valid_edges_in_graph"
    panels = [(score, 0, "training step"), (score, 1, "training minutes"), (second, 0, "training step")]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for axis, (key, x_index, x_label) in zip(axes, panels):
        for run in runs:
            points = run["valid"].get(key, [])
            if points:
                axis.plot([point[x_index] for point in points], [point[2] for point in points], marker="o",
                          markersize=3, label=run["name"])
        axis.set_xlabel(x_label)
        axis.set_ylabel(key.replace("valid_", "validation ").replace("_", " "))
        axis.set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=7)
    figure.suptitle(title)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    print(f"wrote {path}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--plot", default=None)
    parser.add_argument("--title", default="planning runs")
    parser.add_argument("--seeds", action="store_true",
                        help="one row per arm (folders ARM-sSEED): mean [min, max] over seeds, with order columns")
    parser.add_argument("--at-step", type=int, default=None,
                        help="with --seeds: add the validation score logged at this step (equal optimiser steps)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
