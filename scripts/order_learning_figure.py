"""The figures of docs/experiments/ (star-easy, QM9, maze): does the learned order leave the uniform one, and does it pay?

    python -m scripts.order_learning_figure --mirror runs/mirror_elbo.json runs/mirror_rws.json \
        --runs runs/star-easy/*-s[0-9] --out docs/order_learning.png

Left panel (``--mirror``, the JSON files written by ``experiments/guide_learning.py --json``): exact test NLL
against the guide's relative order entropy, one small marker per seed and a large one for the arm's mean.
Middle and right panels (``--runs``, ``ip-pyro train`` run folders named ``ARM-sSEED``): the guide's relative
order entropy and the validation score (``valid_success`` for mazes, ``valid_exact_match`` for star graphs,
``valid_validity`` for SMILES)
against training minutes, one line per run, one colour per arm. Either part may be left out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from scripts.run_folders import arm_name, read_run

SCORES = ("valid_success", "valid_exact_match", "valid_validity")  # the first one a run logs


def mirror_points(paths) -> dict:
    """``{arm: [(entropy, nll), ...]}`` over the seeds of every arm in guide_learning's JSON files."""
    arms = {}
    for path in paths:
        for arm, result in json.loads(Path(path).read_text()).items():
            arms.setdefault(arm, []).extend((run["relative_order_entropy"], run["exact_nll"]) for run in result["runs"])
    return arms


def run_curves(folder: Path) -> dict:
    """A run's ``(minutes, value)`` curves: ``entropy`` (order_entropy) and ``score`` (the validation score)."""
    valid = read_run(folder)["valid"]
    score_name = next((name for name in SCORES if name in valid), None)
    return {"entropy": [(minutes, value) for _, minutes, value in valid.get("order_entropy", [])],
            "score": [(minutes, value) for _, minutes, value in valid.get(score_name, [])], "score_name": score_name}


def main(args):
    if not args.mirror and not args.runs:
        raise SystemExit("give --mirror JSON files, --runs run folders, or both")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (1 if args.mirror else 0) + (2 if args.runs else 0)
    figure, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8), squeeze=False)
    axes = list(axes[0])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if args.mirror:
        axis = axes.pop(0)
        for index, (arm, points) in enumerate(mirror_points(args.mirror).items()):
            colour = colours[index % len(colours)]
            entropies, nlls = zip(*points)
            axis.scatter(entropies, nlls, s=14, color=colour, alpha=0.6)
            axis.scatter([sum(entropies) / len(entropies)], [sum(nlls) / len(nlls)], s=80, color=colour,
                         edgecolor="black", label=arm)
        axis.set_xlabel("guide entropy / log L!  (1 = uniform order)")
        axis.set_ylabel("exact test NLL (nats)")
        axis.set_title("mirror strings, equal wall time")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    if args.runs:
        entropy_axis, score_axis = axes
        arms = {}
        for folder in map(Path, args.runs):
            if (folder / "metrics.jsonl").is_file():
                arms.setdefault(arm_name(folder.name), []).append(run_curves(folder))
        score_name = None
        for index, (arm, runs) in enumerate(arms.items()):
            colour = colours[index % len(colours)]
            for number, curves in enumerate(runs):
                label = arm if number == 0 else None
                if curves["entropy"]:
                    entropy_axis.plot(*zip(*curves["entropy"]), color=colour, marker=".", label=label)
                if curves["score"]:
                    score_axis.plot(*zip(*curves["score"]), color=colour, marker=".", label=label)
                    score_name = score_name or curves["score_name"]
        title = args.title or "training runs"
        entropy_axis.set_xlabel("training minutes")
        entropy_axis.set_ylabel("guide entropy / log L!")
        entropy_axis.set_ylim(-0.02, 1.05)
        entropy_axis.set_title(title)
        score_axis.set_xlabel("training minutes")
        score_axis.set_ylabel((score_name or "validation score").replace("valid_", "validation ").replace("_", " "))
        score_axis.set_ylim(0, 1.02)
        score_axis.set_title(title)
        for axis in (entropy_axis, score_axis):
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", nargs="*", default=[], help="JSON files of experiments/guide_learning.py --json")
    parser.add_argument("--runs", nargs="*", default=[], help="ip-pyro train run folders named ARM-sSEED")
    parser.add_argument("--title", default=None, help="title of the two run panels (e.g. the task)")
    parser.add_argument("--out", default="order_learning.png")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
