"""Read ``ip-pyro train`` run folders: the one parser behind collect_runs, smiles_table and order_learning_figure.

A run folder holds ``metrics.jsonl`` (``ip-pyro train``: one record per training step with ``loss``,
``elapsed_s`` — training seconds so far, validation excluded — and ``objective``; validation records
``valid_*`` and ``order_entropy`` at the step they follow), optionally ``eval_test.json`` (``ip-pyro eval``) and
``diagnose/summary.txt`` (``ip-pyro diagnose``). Folders named ``ARM-sSEED`` are seeds of one arm.
"""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Optional


def read_run(folder) -> dict:
    """Everything a table or figure needs from one run folder.

    :returns: ``name``; ``steps`` (last training step); ``rws_steps`` (steps trained under RWS); ``minutes``
        (training minutes at the last step); ``time_limited``; ``valid`` ``{key: [(step, minutes, value)]}`` for
        every validation key (``valid_*`` and ``order_entropy``), minutes being the training time at that step;
        ``test`` (eval_test.json or None); ``order`` (diagnose's ``entropy``, ``rank_corr``, ``words``, each None
        when absent).
    """
    folder = Path(folder)
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    training = [record for record in records if "loss" in record]
    minutes = {record["step"]: record.get("elapsed_s", 0.0) / 60 for record in training}
    valid = {}
    for record in records:
        if "loss" in record:
            continue
        for key, value in record.items():
            if (key.startswith("valid_") or key == "order_entropy") and isinstance(value, (int, float)):
                valid.setdefault(key, []).append((record["step"], minutes.get(record["step"], 0.0), value))
    evaluation = folder / "eval_test.json"
    return {"name": folder.name, "steps": training[-1]["step"] if training else 0,
            "rws_steps": sum(1 for record in training if record.get("objective") == "rws"),
            "minutes": minutes[training[-1]["step"]] if training else 0.0,
            "time_limited": any(record.get("stopped") == "time limit" for record in records),
            "valid": valid, "test": json.loads(evaluation.read_text()) if evaluation.is_file() else None,
            "order": read_diagnose(folder)}


def read_diagnose(folder) -> dict:
    """The guide's relative order entropy, rank correlation of position and insertion step, and the order in
    words from ``diagnose/summary.txt`` (None for each where the folder has no report)."""
    summary = Path(folder) / "diagnose" / "summary.txt"
    text = summary.read_text() if summary.is_file() else ""
    entropy = re.search(r"guide entropy over orders: ([\d.]+)", text)
    correlation = re.search(r"rank correlation of position and insertion step ([+-]?[\d.]+)", text)
    words = re.search(r"preferred order: ([^:]+):", text)
    return {"entropy": float(entropy.group(1)) if entropy else None,
            "rank_corr": float(correlation.group(1)) if correlation else None,
            "words": words.group(1).strip() if words else None}


def last_valid(run: dict, key: str) -> Optional[float]:
    """The last validation value of ``key`` (None if never logged)."""
    points = run["valid"].get(key)
    return points[-1][2] if points else None


def valid_at_step(run: dict, key: str, step: int) -> Optional[float]:
    """The validation value of ``key`` logged at ``step`` exactly (None if there was none)."""
    return next((value for at, _, value in run["valid"].get(key, []) if at == step), None)


def order_entropy(run: dict) -> Optional[float]:
    """The diagnose report's entropy (test sequences) where there is one, else the last validation's."""
    return run["order"]["entropy"] if run["order"]["entropy"] is not None else last_valid(run, "order_entropy")


def arm_name(name: str) -> str:
    """``ao-ip-s1`` -> ``ao-ip``: the run's arm without its seed suffix."""
    return re.sub(r"-s\d+$", "", name)


def group_by_arm(runs) -> dict:
    """``{arm: [run, ...]}`` in the order the arms first appear."""
    arms = {}
    for run in runs:
        arms.setdefault(arm_name(run["name"]), []).append(run)
    return arms


def spread(values, digits=3) -> str:
    """``mean [min, max]`` of the values that are not None; the value alone for one, ``–`` for none."""
    values = [value for value in values if value is not None]

    def text(value):  # -0.001 prints as 0.00, not -0.00
        return f"{round(value, digits) + 0.0:.{digits}f}"
    if not values:
        return "–"
    if len(values) == 1:
        return text(values[0])
    return f"{text(statistics.mean(values))} [{text(min(values))}, {text(max(values))}]"


def steps_per_seed(members) -> str:
    """``1200 (200 RWS) / 1100``: each seed's training steps, with the RWS share."""
    return " / ".join(f"{run['steps']}" + (f" ({run['rws_steps']} RWS)" if run["rws_steps"] else "")
                      for run in members)


def read_runs(folders) -> list:
    """:func:`read_run` of every folder that holds a ``metrics.jsonl``; a one-line error if none does."""
    runs = [read_run(Path(folder)) for folder in folders if (Path(folder) / "metrics.jsonl").is_file()]
    if not runs:
        raise SystemExit("no run folders with metrics.jsonl given")
    return runs
