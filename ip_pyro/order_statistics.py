"""Statistics of insertion orders drawn from a guide or MCMC: each position's relative insertion time, how far
that is from a random order, direction and distance correlations, the modal order's share, per token class and per
named cell timings, and :func:`describe_order`, the order in words (what ``diagnose`` prints).

Orders come as insertion steps ``steps`` ``(..., sequences, positions)`` (``NaN`` past each sequence's length), as
:func:`ip_pyro.diagnostics.order_draws` gives them.
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

__all__ = ["relative_ranks", "smiles_token_class", "order_statistics", "first_landmarks", "landmark_timing",
           "modal_order_share", "rank_spread", "class_timing", "describe_order"]


_SMILES_CLASSES = (("ring closure", re.compile(r"^(%\d\d|\d)$")), ("branch", re.compile(r"^[()]$")),
                   ("bond", re.compile(r"^[-=#$:/\\.]$")), ("atom", re.compile(r"^(\[.*\]|Br|Cl|[A-Za-z*])$")))


def relative_ranks(steps: np.ndarray) -> np.ndarray:
    """Insertion steps scaled to ``[0, 1]`` per sequence (0 = inserted first, 1 = last); ``(draws, B, L)``."""
    flat = steps.reshape(-1, *steps.shape[-2:])
    lengths = np.sum(np.isfinite(flat[0]), axis=-1)  # [B]
    scale = np.maximum(lengths - 1, 1)[None, :, None]
    return flat / scale


def smiles_token_class(token: str) -> str:
    """``ring closure`` (``1``, ``%12``), ``branch`` (``(``, ``)``), ``bond``, ``atom`` or ``other``."""
    for name, pattern in _SMILES_CLASSES:
        if pattern.match(token):
            return name
    return "other"


def order_statistics(steps: np.ndarray) -> dict:
    """Per-draw summaries of the order of path-like sequences ``(draws, B, L)`` -> arrays over draws x sequences:
    ``start`` (relative position of the first inserted token, 0 = left/source end), ``direction`` (Spearman
    correlation of position and insertion step: +1 left to right, -1 right to left) and ``outward`` (correlation
    of distance from the centre and insertion step: +1 middle-out, -1 outside-in)."""
    flat = steps.reshape(-1, *steps.shape[-2:])
    starts, directions, outwards = [], [], []
    for sequence in range(flat.shape[1]):
        length = int(np.sum(np.isfinite(flat[0, sequence])))
        if length < 2:
            continue
        chosen = flat[:, sequence, :length]
        positions = np.arange(length)
        starts.append(np.argmin(chosen, axis=-1) / (length - 1))
        directions.append(_correlation(chosen, positions))
        outwards.append(_correlation(chosen, np.abs(positions - (length - 1) / 2)))
    if not starts:
        empty = np.zeros(0)
        return {"start": empty, "direction": empty, "outward": empty}
    return {"start": np.concatenate(starts), "direction": np.concatenate(directions),
            "outward": np.concatenate(outwards)}


def _correlation(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``steps`` (ranks already) with ``values`` (ranked)."""
    ranked = np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(float)
    centred_values = ranked - ranked.mean()
    centred = steps - steps.mean(-1, keepdims=True)
    denominator = np.sqrt((centred ** 2).sum(-1) * (centred_values ** 2).sum())
    return np.where(denominator > 0, (centred * centred_values).sum(-1) / np.maximum(denominator, 1e-12), 0.0)


def first_landmarks(steps: np.ndarray, landmarks: Sequence[dict]) -> list:
    """For each draw and sequence, the name of the landmark nearest the first inserted position.

    :param landmarks: one dict per sequence mapping a name (``"source"``, ``"centre"``, ``"goal"``) to a position.
    """
    flat = steps.reshape(-1, *steps.shape[-2:])
    names = []
    for sequence, marks in enumerate(landmarks):
        if not marks:
            continue
        length = int(np.sum(np.isfinite(flat[0, sequence])))
        if length == 0:
            continue
        first = np.argmin(flat[:, sequence, :length], axis=-1)
        labels, positions = list(marks), np.array([marks[name] for name in marks])
        nearest = np.abs(first[:, None] - positions[None, :]).argmin(-1)
        names.extend(labels[k] for k in nearest)
    return names


def landmark_timing(steps: np.ndarray, landmarks: Sequence[dict]) -> dict:
    """Mean relative insertion time (0 = inserted first, 1 = last; 0.5 under a random order) of each landmark and
    of the ``other positions``, over draws ``(..., B, L)`` and the sequences of two or more tokens.

    :param landmarks: one dict per sequence mapping a name to a position (as :func:`first_landmarks`).
    """
    flat = steps.reshape(-1, *steps.shape[-2:])
    times = {}
    for sequence, marks in enumerate(landmarks):
        length = int(np.sum(np.isfinite(flat[0, sequence])))
        if length < 2:
            continue
        relative = flat[:, sequence, :length] / (length - 1)  # [draws, L]
        inside = {name: position for name, position in marks.items() if position < length}
        for name, position in inside.items():
            times.setdefault(name, []).append(relative[:, position].mean())
        others = [position for position in range(length) if position not in inside.values()]
        if others:
            times.setdefault("other positions", []).append(relative[:, others].mean())
    return {name: float(np.mean(values)) for name, values in times.items()}


def modal_order_share(steps: np.ndarray) -> float:
    """Mean over the sequences with two or more tokens of the share of draws ``(..., draws, B, L)`` that equal the
    sequence's most frequent order: 1 when the guide writes each sequence one way, about ``1 / L!`` when random."""
    flat = steps.reshape(-1, *steps.shape[-2:])
    shares = []
    for sequence in range(flat.shape[1]):
        length = int(np.sum(np.isfinite(flat[0, sequence])))
        if length < 2:
            continue
        _, counts = np.unique(flat[:, sequence, :length], axis=0, return_counts=True)
        shares.append(counts.max() / flat.shape[0])
    return float(np.mean(shares)) if shares else float("nan")


def rank_spread(steps: np.ndarray) -> float:
    """How much each position's insertion time varies across draws ``(..., draws, B, L)``, against a random order:
    the mean over positions of the variance of the relative rank, over the uniform order's ``(L + 1) / (12 (L - 1))``
    (1 = as random as the uniform order, 0 = every position always at the same step)."""
    ranks = relative_ranks(steps)  # [D, B, L]
    lengths = np.sum(np.isfinite(ranks[0]), axis=-1)
    ratios = []
    for sequence, length in enumerate(lengths):
        if length >= 2:
            uniform = (length + 1) / (12 * (length - 1))
            ratios.append(float(np.mean(np.var(ranks[:, sequence, :length], axis=0))) / uniform)
    return float(np.mean(ratios)) if ratios else float("nan")


def class_timing(steps: np.ndarray, tokens: np.ndarray, class_of: Callable[[int], str], *,
                 limit: int = 8) -> dict:
    """Mean relative insertion time (0 = first, 1 = last) of each token class (``class_of(id) -> name``) over the
    draws ``(..., draws, B, L)``, earliest first; the ``limit`` most frequent classes."""
    ranks = relative_ranks(steps)
    valid = np.isfinite(ranks[0])
    names = np.array([[class_of(int(token)) for token in row] for row in tokens])
    counts = {}
    for name in names[valid]:
        counts[name] = counts.get(name, 0) + 1
    chosen = sorted(counts, key=counts.get, reverse=True)[:limit]
    timing = {name: float(np.nanmean(ranks[:, (names == name) & valid])) for name in chosen}
    return dict(sorted(timing.items(), key=lambda item: item[1]))


def describe_order(steps: np.ndarray) -> str:
    """One sentence, in words, of the order the draws ``(..., draws, B, L)`` prefer: a positional pattern when
    there is one; otherwise whether each sequence is still written one way, or how far each position's insertion
    time is from random (a concentrated guide is never called random)."""
    stats = order_statistics(steps)
    if not stats["direction"].size:
        return "no sequence has two or more tokens; there is no order to describe"
    direction, outward = float(stats["direction"].mean()), float(stats["outward"].mean())
    agreement = modal_order_share(steps)
    if direction > 0.6:
        words = "mostly left to right"
    elif direction < -0.6:
        words = "mostly right to left"
    elif outward > 0.6:
        words = "mostly from the middle outwards"
    elif outward < -0.6:
        words = "mostly from the ends inwards"
    elif agreement >= 0.5:
        words = (f"one order per sequence ({agreement:.0%} of draws are the sequence's most frequent order) "
                 "without a single positional pattern across sequences")
    else:
        spread = rank_spread(steps)
        words = (f"no single positional pattern; each position's insertion time varies {spread:.0%} as much as under "
                 "a random order" + (" (close to a random order)" if spread > 0.9 else
                                      " (a preference that is not positional: see the token classes)"))
    return (f"{words}: mean rank correlation of position and insertion step {direction:+.2f}, of distance from "
            f"the centre and insertion step {outward:+.2f}; the first token lands in the left third "
            f"{np.mean(stats['start'] < 1 / 3):.0%} of the time, the right third "
            f"{np.mean(stats['start'] > 2 / 3):.0%}")
