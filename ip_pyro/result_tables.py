"""The tables, curves and answers built from result records (:mod:`ip_pyro.results`): what the README and
``docs/results.md`` carry between their markers (``scripts/results.py`` writes and checks them).

:func:`render_table` turns a study's records into its markdown table (each metric as mean [min, max] over seeds),
:func:`curve_points` its validation curves, :func:`render_answers` its answers in sentences (does the learned order
beat the uniform one, does the IP beat FO-ARM, beyond the seed range or within it; what order was learned).
"""
from __future__ import annotations

import re
import statistics
from typing import Optional

from ip_pyro.results import METRIC_NAMES

__all__ = ["render_table", "render_answers", "short_order", "spread", "group_by_label", "curve_points",
           "LOWER_IS_BETTER"]


def spread(values, digits: int = 3) -> str:
    """``mean [min, max]`` of the values that are not None; the value alone for one; ``–`` for none."""
    values = [value for value in values if value is not None]

    def text(value):
        return f"{round(value, digits) + 0.0:.{digits}f}"  # -0.0001 prints as 0.000
    if not values:
        return "–"
    if len(values) == 1:
        return text(values[0])
    return f"{text(statistics.mean(values))} [{text(min(values))}, {text(max(values))}]"


def _family_rank(arm: str) -> int:
    return next(rank for rank, prefix in enumerate(("fo-arm", "uniform", "fixed-", "learned-"))
                if arm.startswith(prefix))


def group_by_label(records: list) -> dict:
    """``{label: [record, ...]}`` by family (FO-ARM, uniform, fixed, learned), then label; each list by seed."""
    groups = {}
    for record in records:
        groups.setdefault(record["label"], []).append(record)
    ordered = sorted(groups, key=lambda label: (_family_rank(groups[label][0]["arm"]), label))
    return {label: sorted(groups[label], key=lambda r: r["seed"]) for label in ordered}


def _digits(metric: str) -> int:
    return 2 if metric in ("nll", "fcd_test") else 3


TITLES = {"exact_match": "exact match", "token_accuracy": "token accuracy", "edges_in_graph": "edges in graph",
          "valid_moves": "valid moves", "termination_rate": "terminated", "validity": "valid", "unique": "unique",
          "novelty": "novel", "vun": "V×U×N", "fcd_test": "FCD/Test", "kl_score": "KL score", "snn": "SNN",
          "nll_per_token": "NLL/token"}


def _nll_title(members: list) -> str:
    bounds = sorted({record["nll_kind"] for record in members} - {"exact", "none"})
    return "test NLL" + (f" (≤: an {', '.join(kind.upper() for kind in bounds)} bound)" if bounds else "")


def _nll_cell(members: list) -> str:
    cell = spread([record["metrics"].get("nll") for record in members], _digits("nll"))
    return ("≤ " + cell) if cell != "–" and members[0]["nll_kind"].startswith("iwae") else cell


def short_order(words: Optional[str]) -> str:
    """A table cell for ``diagnose``'s order in words: its first clause, and the token-class or named-cell timing
    (``branch 0.09, atom 0.71``) where there is one."""
    if not words:
        return "–"
    parts = words.split("; ")
    timing = [part for part in parts if re.fullmatch(r"[\w ]+ \d\.\d\d(, [\w ]+ \d\.\d\d)*", part)]
    head = re.split(r"[:;(]", parts[0])[0].strip()
    return f"{head}; {timing[-1]}" if timing else head


def render_table(records: list, study: str, metrics: list, *, brief: bool = False) -> str:
    """The markdown table of ``study``: one row per label (seeds, steps and training minutes per seed, each
    metric as mean [min, max] over seeds, the guide's entropy and the order in words; ``brief`` leaves out the
    family and the order)."""
    chosen = [record for record in records if record["study"] == study]
    if not chosen:
        raise ValueError(f"no records of study {study!r}; run it (experiments/campaign.py) or fix the block's name")
    unknown = [metric for metric in metrics if metric not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r} in the {study} table; use one of {', '.join(METRIC_NAMES)}")
    titles = ["arm"] + ([] if brief else ["family"]) + ["seeds", "steps", "train min"] + [
        _nll_title(chosen) if metric == "nll" else TITLES.get(metric, metric) for metric in metrics] + [
        "guide entropy"] + ([] if brief else ["order (diagnose)"])
    lines = ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for label, members in group_by_label(chosen).items():
        cells = [label] + ([] if brief else [members[0]["arm"]]) + [" / ".join(str(r["seed"]) for r in members),
                 " / ".join(f"{r['steps']:,}" for r in members),
                 " / ".join(f"{r['wall_seconds'] / 60:.1f}" for r in members)]
        cells += [_nll_cell(members) if metric == "nll" else
                  spread([r["metrics"].get(metric) for r in members], _digits(metric)) for metric in metrics]
        cells.append(spread([r["order_entropy"] for r in members], 2))
        if not brief:
            cells.append(" / ".join(short_order(r["order"]) for r in members) if any(r["order"] for r in members)
                         else "–")
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def _at(curve: list, x: float, axis: int, slack: float = 0.0) -> Optional[tuple]:
    """``(step, seconds, value)`` of one seed's validation ``curve`` (``[[step, seconds, value], ...]``) where its
    ``axis`` (0: steps, 1: seconds) is ``x``, linear between the two validations around it; its last point up to
    ``slack`` past its end (time-limited seeds end a second apart); None outside the curve."""
    if curve and curve[-1][axis] < x <= curve[-1][axis] + slack:
        return tuple(curve[-1])
    if not curve or x < curve[0][axis] or x > curve[-1][axis]:
        return None
    for before, after in zip(curve, curve[1:]):
        if before[axis] <= x <= after[axis]:
            share = 0.0 if after[axis] == before[axis] else (x - before[axis]) / (after[axis] - before[axis])
            return tuple(a + share * (b - a) for a, b in zip(before, after))
    return tuple(curve[0])  # a one-point curve


def curve_points(records: list, metric: str, along: str = "steps") -> dict:
    """``{label: (steps, wall_minutes, mean, low, high, seeds)}``: the validation curve of ``metric`` per label,
    aligned ``along`` steps or training minutes: at every step (minute) some seed validated at, the mean and range
    over the seeds whose curve covers it (``seeds[i]`` of them), each seed's value linear between its own
    validations, the other axis their mean. A seed stopped early by its time limit drops out past its end (half a
    percent of the axis later) instead of cutting every seed's curve short, and seeds that validated at different
    steps (minutes) are not averaged as if they were one point."""
    if along not in ("steps", "minutes"):
        raise ValueError(f"along={along!r}: choose 'steps' or 'minutes'")
    axis = 0 if along == "steps" else 1
    out = {}
    for label, members in group_by_label(records).items():
        curves = [sorted(record["curve"].get(metric) or [], key=lambda point: point[axis]) for record in members]
        grid = sorted({point[axis] for curve in curves for point in curve})
        if not grid:
            continue
        slack = 0.005 * (grid[-1] - grid[0])
        steps, minutes, mean, low, high, seeds = [], [], [], [], [], []
        for x in grid:
            points = [point for point in (_at(curve, x, axis, slack) for curve in curves) if point is not None]
            values = [point[2] for point in points]
            steps.append(statistics.mean(point[0] for point in points))
            minutes.append(statistics.mean(point[1] for point in points) / 60)
            mean.append(statistics.mean(values))
            low.append(min(values))
            high.append(max(values))
            seeds.append(len(points))
        out[label] = (steps, minutes, mean, low, high, seeds)
    return out


LOWER_IS_BETTER = ("nll", "nll_per_token", "fcd_test")


def _compare(better: list, worse: list, metric: str) -> str:
    """How two groups of records compare on ``metric``: beyond the seed range, within it, or unknown (one seed)."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    good = [sign * r["metrics"][metric] for r in better]
    bad = [sign * r["metrics"][metric] for r in worse]
    if len(good) < 2 or len(bad) < 2:
        return "one seed on a side: no seed range to judge by"
    if min(good) > max(bad):
        return "beyond the seed range"
    return "within the seed range"


def _best(groups: dict, metric: str, families) -> Optional[tuple]:
    """``(label, members)`` of the group of ``families`` with the best mean ``metric``, or None."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    chosen = [(label, members) for label, members in groups.items()
              if any(members[0]["arm"].startswith(family) for family in families)
              and all(metric in r["metrics"] for r in members)]
    return max(chosen, key=lambda item: sign * statistics.mean(r["metrics"][metric] for r in item[1]),
               default=None)


def _said(label: str, members: list, metric: str) -> str:
    return f"{label}, {spread([r['metrics'][metric] for r in members], _digits(metric))}"


def render_answers(records: list, study: str, metrics) -> str:
    """The study's answers in sentences, from its records: for each metric of ``metrics`` (a name or a list of
    names), does the best learned order beat the best uniform-order arm (beyond the seed range?) and does the best
    IP arm beat FO-ARM; then what order each learned guide chose (``diagnose``)."""
    groups = group_by_label([record for record in records if record["study"] == study])
    if not groups:
        raise ValueError(f"no records of study {study!r}; run it (experiments/campaign.py) or fix the block's name")
    sentences = []
    for metric in [metrics] if isinstance(metrics, str) else list(metrics):
        sentences += _comparisons(groups, metric)
    orders = [f"{label}: {' / '.join(short_order(r['order']) for r in members)}" for label, members in groups.items()
              if members[0]["arm"].startswith("learned-") and any(r["order"] for r in members)]
    if orders:
        sentences.append("Orders learned (diagnose, per seed): " + "; ".join(orders) + ".")
    return " ".join(sentences)


def _comparisons(groups: dict, metric: str) -> list:
    """The learned order against the uniform one and the best IP arm against FO-ARM on ``metric``, a sentence
    each (none where a side has no record)."""
    title = {"validity": "validity", "nll": "test NLL", "fcd_test": "FCD/Test"}.get(metric, TITLES.get(metric, metric))
    learned, uniform = _best(groups, metric, ["learned-"]), _best(groups, metric, ["uniform"])
    ip, fo_arm = _best(groups, metric, ["uniform", "fixed-", "learned-"]), _best(groups, metric, ["fo-arm"])
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    sentences = []

    def mean(members):
        return sign * statistics.mean(r["metrics"][metric] for r in members)
    for question, (a, b) in (("the learned order", (learned, uniform)), ("the insertion process", (ip, fo_arm))):
        if a is None or b is None:
            continue
        wins = mean(a[1]) > mean(b[1])
        sentences.append(f"On {title}, {question} ({_said(a[0], a[1], metric)}) {'beats' if wins else 'trails'} "
                         f"{'the uniform order' if b is uniform else 'FO-ARM'} ({_said(b[0], b[1], metric)}) "
                         f"({_compare(a[1], b[1], metric) if wins else _compare(b[1], a[1], metric)}).")
    return sentences
