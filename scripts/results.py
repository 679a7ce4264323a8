"""Build the results tables and curves from the committed records (``results/*.jsonl``).

    python -m scripts.results --write      # rewrite every results block in README.md and docs/results.md
    python -m scripts.results --check      # exit 1 if any block differs from what the records give (the tests run it)
    python -m scripts.results --figures    # docs/figures/<study>.png: each study's metric against training minutes
    python -m scripts.results --show qm9-map validity,vun,nll     # print one table

A results block in a markdown page is the table between ``<!-- results: study=NAME metrics=a,b,c -->`` and
``<!-- /results -->``; an answers block (``<!-- answers: study=NAME metrics=a -->`` ... ``<!-- /answers -->``)
holds the study's answers in sentences, judged on each metric named in turn; `` arms=a,b`` after the metrics keeps
those arms' records only (a page's short table of a study with more arms); `` brief`` last leaves the family and
order columns out of a table. Nothing between two markers is written by hand.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ip_pyro.result_tables import curve_points, render_answers, render_table
from ip_pyro.results import read_records

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/results.md")
BLOCK = re.compile(r"(<!-- (?P<kind>results|answers): study=(?P<study>[\w.-]+) metrics=(?P<metrics>[\w,]+)"
                   r"(?: arms=(?P<arms>[\w,.-]+))?(?P<brief> brief)? -->\n)"
                   r"(?P<body>.*?)(?P<end><!-- /(?P=kind) -->)", re.DOTALL)
# the metric each study's figure shows, and whether lower is better
FIGURE_METRICS = {"qm9": "validity", "moses": "validity", "star-easy": "exact_match", "star-medium": "exact_match",
                  "star-hard": "exact_match", "maze-braided-easy": "success"}


def block_body(match, records: list) -> str:
    """What a block holds: a study's table (``results``) or its answers in sentences (``answers``: judged on each
    metric named)."""
    metrics = match["metrics"].split(",")
    if match["arms"]:
        records = chosen_arms(records, match["study"], match["arms"].split(","))
    if match["kind"] == "answers":
        return render_answers(records, match["study"], metrics) + "\n"
    return render_table(records, match["study"], metrics, brief=bool(match["brief"])) + "\n"


def chosen_arms(records: list, study: str, arms: list) -> list:
    """The records of ``study`` whose label is one of ``arms`` (a one-line error for an arm it has no record of)."""
    mine = [record for record in records if record["study"] == study]
    missing = sorted(set(arms) - {record["label"] for record in mine})
    if missing:
        raise ValueError(f"no records of arm {missing[0]!r} in study {study!r}; fix the block's arms= list")
    return [record for record in mine if record["label"] in arms]


def rebuilt(text: str, records: list) -> str:
    """``text`` with every block's body replaced by what its records give."""
    return BLOCK.sub(lambda match: match.group(1) + block_body(match, records) + match["end"], text)


def stale_blocks(root: Path, records: list) -> list:
    """``[(page, study)]`` for every block whose body is not what the records give."""
    stale = []
    for page in PAGES:
        path = root / page
        if not path.is_file():
            continue
        text = path.read_text()
        for match in BLOCK.finditer(text):
            if match["body"] != block_body(match, records):
                stale.append((page, match["study"]))
    return stale


def draw(records: list, study: str, path: Path) -> Path:
    """One figure per study: its headline metric (validation, EMA weights) against training minutes and against
    steps, and the guide's order entropy against minutes; the mean over seeds as a line and their range as a band,
    one colour per arm in every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [record for record in records if record["study"] == study]
    metric = FIGURE_METRICS.get(chosen[0]["task"], next(iter(chosen[0]["curve"]), "validity"))
    labels = list(dict.fromkeys(record["label"] for record in chosen))
    colours = {label: plt.get_cmap("tab10")(index % 10) for index, label in enumerate(labels)}
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    panels = ((metric, 1, "training minutes (one torch thread, validation excluded)"),
              (metric, 0, "optimiser steps"), ("order_entropy", 1, "training minutes"))
    for axis, (key, x_index, x_label) in zip(axes, panels):
        for label, points in curve_points(chosen, key, along="steps" if x_index == 0 else "minutes").items():
            x, (mean, low, high, seeds) = points[x_index], points[2:]
            full = max(index for index, count in enumerate(seeds) if count == max(seeds)) + 1  # all seeds
            axis.plot(x[:full], mean[:full], marker="o", markersize=3, color=colours[label], label=label)
            if full < len(x):  # past the point where a seed stopped: dashed, over the seeds that went on
                axis.plot(x[full - 1:], mean[full - 1:], linestyle="--", marker="o", markersize=3,
                          color=colours[label])
            if low != high:
                axis.fill_between(x, low, high, color=colours[label], alpha=0.2)
        axis.set_xlabel(x_label)
        axis.set_ylabel("guide entropy over orders (1 = uniform)" if key == "order_entropy" else
                        "validation " + key.replace("_", " "))
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[label], marker="o", markersize=3) for label in labels]
    figure.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8, frameon=False,
                  bbox_to_anchor=(0.5, -0.04))
    seeds = sorted({record["seed"] for record in chosen})
    legend = " (line: mean; band: range; dashed: past a seed's last point)" if len(seeds) > 1 else ""
    figure.suptitle(f"{study} ({chosen[0]['task']}): validation curves, seed{'s' if len(seeds) > 1 else ''} "
                    f"{', '.join(map(str, seeds))}" + legend)
    figure.subplots_adjust(bottom=0.2, wspace=0.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default=str(ROOT / "results"), help="folder or JSONL file of records")
    parser.add_argument("--write", action="store_true", help="rewrite the blocks in README.md and docs/results.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when a block differs from the records")
    parser.add_argument("--figures", action="store_true", help="draw docs/figures/<study>.png for every study")
    parser.add_argument("--show", nargs=2, metavar=("STUDY", "METRICS"), help="print one study's table")
    args = parser.parse_args(argv)
    try:
        records = read_records([args.records])
        if args.show:
            print(render_table(records, args.show[0], args.show[1].split(",")))
        if args.write:
            for page in PAGES:
                path = ROOT / page
                if path.is_file():
                    path.write_text(rebuilt(path.read_text(), records))
        if args.figures:
            for study in sorted({record["study"] for record in records}):
                print(f"wrote {draw(records, study, ROOT / 'docs' / 'figures' / f'{study}.png')}")
        if args.check:
            stale = stale_blocks(ROOT, records)
            for page, study in stale:
                print(f"{page}: the {study} table is not what results/ gives; run python -m scripts.results --write")
            return 1 if stale else 0
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
