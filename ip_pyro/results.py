"""Results as data: one record per training run that feeds a published number (the tables built from them:
:mod:`ip_pyro.result_tables`).

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

:func:`validate_record` checks a record and names the first problem in one line; :func:`record_from_run` builds
one from a trained, evaluated and diagnosed run folder.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable, Optional

__all__ = ["ARM_FAMILIES", "METRIC_NAMES", "REQUIRED_KEYS", "validate_record", "read_records", "write_record",
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
