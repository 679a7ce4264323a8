"""Results as data: one record per training run that feeds a published number, and the tables built from them.

A record is one JSON line in ``results/<study>.jsonl`` (committed). Its keys:

* ``study`` (the comparison it belongs to, e.g. ``qm9-map``), ``task`` (``qm9``, ``star-easy``, ...), ``label``
  (the arm's name within the study, unique there, e.g. ``causal · pointer · RWS K=4``);
* ``arm``: the family, one of :data:`ARM_FAMILIES`' patterns — ``fo-arm`` (the left-to-right model), ``uniform``
  (AO-IP: the IP under the uniform order), ``fixed-<guide>`` (the IP under a fixed order: ``fixed-l2r``,
  ``fixed-r2l``, ...), ``learned-<guide>`` (the IP with a learned guide: ``learned-pl``, ``learned-pointer``, ...);
  derived from the run's config by :func:`arm_family`, never typed by hand;
* ``config``: the settings that tell arms apart (model, decoder, guide, objective, K, switches, sizes);
* ``seed``; the budget: ``wall_seconds`` (training time, validation excluded), ``steps``, ``threads``,
  ``machine`` (in words), ``load`` (what else ran on the machine);
* ``metrics``: a flat dict of numbers under names stable across tasks (:data:`METRIC_NAMES`), with ``nll_kind``
  beside it (``exact``, ``iwae-N`` for an importance-weighted bound from N orders, or ``none``);
* ``order_entropy`` (the guide's entropy over orders relative to the uniform order's ``log L!``; None for FO-ARM)
  and ``order`` (``diagnose``'s sentence on the learned order; None where not diagnosed);
* ``curve``: ``{metric: [[step, wall_seconds, value], ...]}`` from the run's validations;
* ``command`` (the shell commands that produced it, train first), ``commit`` (the code that trained; ``+dirty``
  when tracked files differed from it), ``date`` (ISO); records written by ``experiments/campaign.py`` also carry
  ``eval_commit`` (the code that evaluated and diagnosed), ``load`` and ``stopped`` (``steps`` or ``time limit``).

:func:`validate_record` checks a record and names the first problem in one line; :func:`render_table` turns a
study's records into the markdown table the README and ``docs/results.md`` carry (``scripts/results.py`` writes
and checks them).
"""
from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Iterable, Optional

__all__ = ["ARM_FAMILIES", "METRIC_NAMES", "REQUIRED_KEYS", "validate_record", "read_records", "write_record",
           "render_table", "render_answers", "short_order", "spread", "group_by_label", "curve_points",
           "record_from_run", "run_metrics", "run_curve", "diagnose_sentence", "arm_family"]

FIXED_GUIDES = ("l2r", "r2l", "ends", "tree")
LEARNED_GUIDES = ("pl", "sequential", "pointer")
ARM_FAMILIES = ("fo-arm", "uniform", "fixed-<guide>", "learned-<guide>")
ARM_PATTERN = re.compile(r"^(fo-arm|uniform|fixed-[a-z0-9]+|learned-[a-z0-9]+)$")
REQUIRED_KEYS = ("study", "task", "label", "arm", "config", "seed", "wall_seconds", "steps", "threads", "machine",
                 "metrics", "nll_kind", "order_entropy", "order", "curve", "command", "commit", "date")
# the metric names a record may carry, and what each is (higher is better unless the name says NLL or FCD)
METRIC_NAMES = {
    "exact_match": "share of test prompts whose greedy decode is the target (star graphs)",
    "success": "share of test prompts whose decode is a valid path through the subgoals (mazes)",
    "token_accuracy": "share of target positions decoded right (planning)",
    "edges_in_graph": "share of decoded edges present in the graph (star graphs)",
    "valid_moves": "share of decoded moves between adjacent cells (mazes)",
    "termination_rate": "share of decodes that stopped before the length limit (planning)",
    "validity": "share of valid SMILES among the samples",
    "unique": "share of unique molecules among the valid samples",
    "novelty": "share of unique valid molecules not in the training split",
    "vun": "validity x uniqueness x novelty",
    "fcd_test": "Frechet ChemNet distance to the test split (lower is better)",
    "kl_score": "GuacaMol's KL-divergence score against the training split",
    "snn": "mean Tanimoto similarity to the nearest test molecule",
    "nll": "test negative log-likelihood in nats per sequence (lower is better; see nll_kind)",
    "nll_per_token": "nll per token, the stop included",
}
NLL_KIND = re.compile(r"^(exact|iwae-\d+|none)$")


def arm_family(config: dict) -> str:
    """The record's ``arm`` from a run's config: ``fo-arm``, ``uniform``, ``fixed-<guide>`` or ``learned-<guide>``."""
    if config.get("model") == "fo-arm":
        return "fo-arm"
    guide = config.get("guide")
    if guide == "uniform":
        return "uniform"
    if guide in FIXED_GUIDES:
        return f"fixed-{guide}"
    if guide in LEARNED_GUIDES:
        return f"learned-{guide}"
    raise ValueError(f"no arm family for model {config.get('model')!r} with guide {guide!r}; add the guide to "
                     "ip_pyro.results.FIXED_GUIDES or LEARNED_GUIDES")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_record(record: dict, where: str = "record") -> dict:
    """``record`` unchanged if it has every key of :data:`REQUIRED_KEYS` with the right kind of value; else a
    one-line ``ValueError`` naming ``where`` and the first problem."""
    if not isinstance(record, dict):
        raise ValueError(f"{where} is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}; a record needs {', '.join(REQUIRED_KEYS)}")
    if not ARM_PATTERN.match(str(record["arm"])):
        raise ValueError(f"{where}: arm {record['arm']!r} is none of {', '.join(ARM_FAMILIES)}")
    if record["arm"] != arm_family(record["config"]):
        raise ValueError(f"{where}: arm {record['arm']!r} does not match its config ({arm_family(record['config'])})")
    for key in ("wall_seconds", "steps", "seed", "threads"):
        if not _number(record[key]) or record[key] < 0:
            raise ValueError(f"{where}: {key} must be a non-negative number, not {record[key]!r}")
    metrics = record["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError(f"{where}: metrics must be a non-empty flat dict of numbers")
    for name, value in metrics.items():
        if name not in METRIC_NAMES:
            raise ValueError(f"{where}: unknown metric {name!r}; use one of {', '.join(METRIC_NAMES)}")
        if not _number(value) or not math.isfinite(value):
            raise ValueError(f"{where}: metric {name} must be a finite number, not {value!r}")
    if not NLL_KIND.match(str(record["nll_kind"])) or (("nll" in metrics) == (record["nll_kind"] == "none")):
        raise ValueError(f"{where}: nll_kind {record['nll_kind']!r} must be exact or iwae-N with an nll metric, "
                         "none without one")
    if record["order_entropy"] is not None and not _number(record["order_entropy"]):
        raise ValueError(f"{where}: order_entropy must be a number or null")
    if not isinstance(record["command"], list) or not record["command"] or \
            not all(isinstance(line, str) and line for line in record["command"]):
        raise ValueError(f"{where}: command must be a non-empty list of the shell commands that made the record")
    if not re.fullmatch(r"[0-9a-f]{7,40}(\+dirty)?", str(record["commit"])):
        raise ValueError(f"{where}: commit {record['commit']!r} is not a git commit hash")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(record["date"])):
        raise ValueError(f"{where}: date {record['date']!r} is not YYYY-MM-DD")
    if not isinstance(record["curve"], dict):
        raise ValueError(f"{where}: curve must be a dict of metric -> [[step, wall_seconds, value], ...]")
    return record


def read_records(paths: Iterable) -> list:
    """Every record of the JSONL files ``paths`` (a folder means its ``*.jsonl``), validated; one-line errors
    naming file and line."""
    records = []
    for path in paths:
        path = Path(path)
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        for file in files:
            for number, line in enumerate(file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{file}:{number} is not valid JSON ({error.msg})") from None
                records.append(validate_record(record, f"{file}:{number}"))
    return records


def write_record(path, record: dict) -> None:
    """Add ``record`` to the JSONL file ``path``, replacing the record of the same study, label and seed (so a
    rerun updates its line); written atomically."""
    from ip_pyro.checkpoint import atomic_write

    validate_record(record)
    path = Path(path)
    key = (record["study"], record["label"], record["seed"])
    kept = [line for line in (path.read_text().splitlines() if path.is_file() else [])
            if line.strip() and tuple(json.loads(line)[k] for k in ("study", "label", "seed")) != key]
    text = "\n".join(kept + [json.dumps(record, sort_keys=True)]) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda stream: stream.write(text.encode()))


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


def curve_points(records: list, metric: str) -> dict:
    """``{label: (steps, wall_minutes, mean, low, high)}``: the validation curve of ``metric`` per label, mean and
    range over the seeds at each validation index (seeds cut to the shortest curve; steps and minutes the seeds'
    mean)."""
    out = {}
    for label, members in group_by_label(records).items():
        curves = [record["curve"].get(metric) or [] for record in members]
        length = min(len(curve) for curve in curves)
        if length == 0:
            continue
        steps, minutes, mean, low, high = [], [], [], [], []
        for index in range(length):
            points = [curve[index] for curve in curves]
            steps.append(statistics.mean(point[0] for point in points))
            minutes.append(statistics.mean(point[1] for point in points) / 60)
            values = [point[2] for point in points]
            mean.append(statistics.mean(values))
            low.append(min(values))
            high.append(max(values))
        out[label] = (steps, minutes, mean, low, high)
    return out


# eval's and validation's names -> the record's metric names (what is not listed is not recorded)
EVAL_NAMES = {"exact_match": "exact_match", "success": "success", "token_accuracy": "token_accuracy",
              "edges_in_graph": "edges_in_graph", "valid_moves": "valid_moves",
              "termination_rate": "termination_rate", "validity": "validity", "unique@10k": "unique",
              "unique": "unique", "novelty": "novelty", "fcd_test": "fcd_test", "kl_score": "kl_score",
              "snn": "snn", "nll": "nll", "nll_per_token": "nll_per_token"}
CONFIG_KEYS = ("model", "decoder", "guide", "objective", "particles", "objective_switch", "elbo_particles",
               "rws_gradient", "rws_guide_update", "step_sampling", "steps_per_order", "termination",
               "prompt_attention", "gap_context", "d_model", "layers", "heads", "guide_d_model", "guide_layers",
               "batch_size", "lr", "guide_lr", "steps", "time_limit", "ema_decay", "order_entropy_weight",
               "order_entropy_anneal", "absolute_positions", "prompt_group", "embed_std")


def run_metrics(evaluation: dict) -> dict:
    """The record's ``metrics`` from an ``eval_*.json`` (``vun`` added where validity, uniqueness and novelty are)."""
    metrics = {EVAL_NAMES[key]: float(value) for key, value in evaluation.items()
               if key in EVAL_NAMES and _number(value) and math.isfinite(value)}
    if {"validity", "unique", "novelty"} <= set(metrics):
        metrics["vun"] = metrics["validity"] * metrics["unique"] * metrics["novelty"]
    return metrics


def run_curve(log: list) -> dict:
    """``{metric: [[step, wall_seconds, value], ...]}`` of a ``metrics.jsonl``'s validations (``valid_X`` as
    ``X`` under the record's names, and ``order_entropy``), wall seconds being the training time at that step."""
    elapsed = {entry["step"]: entry["elapsed_s"] for entry in log if "loss" in entry}
    curve = {}
    for entry in log:
        if "loss" in entry:
            continue
        for key, value in entry.items():
            name = EVAL_NAMES.get(key[len("valid_"):]) if key.startswith("valid_") else \
                ("order_entropy" if key == "order_entropy" else None)
            if name is not None and _number(value) and math.isfinite(value):
                curve.setdefault(name, []).append([entry["step"], elapsed.get(entry["step"], 0.0), float(value)])
    return curve


def diagnose_sentence(summary: str) -> tuple:
    """``(entropy, words)`` from ``diagnose``'s ``summary.txt``: the guide's relative order entropy and the learned
    order in words (the preferred-order line, plus the token-class or named-cell timing line where there is one)."""
    entropy = re.search(r"guide entropy over orders: ([\d.]+)", summary)
    words = [match.group(1).strip() for match in
             re.finditer(r"^(?:preferred order: |insertion time (?:by token class|of named cells|of the most "
                         r"frequent tokens)[^:]*: )(.+)$", summary, re.MULTILINE)]
    return (float(entropy.group(1)) if entropy else None), ("; ".join(words) or None)


def record_from_run(folder, *, study: str, label: str, command: list, commit: str, date: str, machine: str,
                    threads: int, load: str = "", eval_file: str = "eval_test.json",
                    nll_kind: Optional[str] = None) -> dict:
    """The record of one run folder (``checkpoint.pt``, ``metrics.jsonl``, ``eval_file``, optionally
    ``diagnose/summary.txt``). ``nll_kind`` defaults to what the eval file says (``ip-pyro eval`` writes it), else
    ``exact`` for FO-ARM."""
    from ip_pyro.checkpoint import read_checkpoint

    folder = Path(folder)
    config = read_checkpoint(folder / "checkpoint.pt")["config"]
    log = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    training = [entry for entry in log if "loss" in entry]
    evaluation = json.loads((folder / eval_file).read_text())
    metrics = run_metrics(evaluation)
    if nll_kind is None:
        nll_kind = "none" if "nll" not in metrics else evaluation.get("nll_kind") or (
            "exact" if config["model"] == "fo-arm" else None)
    if nll_kind is None:
        raise ValueError(f"{folder / eval_file} does not say what its NLL is (no nll_kind); pass nll_kind='iwae-N'")
    summary = folder / "diagnose" / "summary.txt"
    entropy, words = diagnose_sentence(summary.read_text()) if summary.is_file() else (None, None)
    curve = run_curve(log)
    eval_commit = folder / "eval_commit.txt"  # written by experiments/campaign.py before it evaluates
    if entropy is None and config["model"] != "fo-arm" and curve.get("order_entropy"):
        entropy = curve["order_entropy"][-1][2]
    record = {"study": study, "task": config["task"], "label": label, "arm": arm_family(config),
              "config": {key: config.get(key) for key in CONFIG_KEYS}, "seed": config["seed"],
              "wall_seconds": round(training[-1]["elapsed_s"], 3) if training else 0.0,
              "steps": training[-1]["step"] if training else 0, "threads": threads, "machine": machine,
              "load": load, "metrics": metrics, "nll_kind": nll_kind,
              "order_entropy": None if config["model"] == "fo-arm" else entropy,
              "order": None if config["model"] == "fo-arm" else words, "curve": curve, "command": list(command),
              "commit": commit, "eval_commit": eval_commit.read_text().strip() if eval_commit.is_file() else commit,
              "date": date,
              "stopped": "time limit" if any(entry.get("stopped") == "time limit" for entry in log) else "steps"}
    return validate_record(record, f"the record of {folder}")


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
