"""Dataset-level views of insertion orders (matplotlib only; ArviZ plots live in :mod:`ip_pyro.diagnostics`).

Every function takes draws ``(chain, draw, sequence, position)`` of insertion steps (``nan`` at padding, as
:func:`ip_pyro.diagnostics.order_draws` returns them) and writes one PNG.
"""
from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["relative_ranks", "plot_rank_heatmap", "plot_token_class_timing", "plot_path_growth", "first_landmarks",
           "smiles_token_class", "order_statistics", "modal_order_share", "rank_spread", "class_timing", "describe_order",
           "rank_heatmap_figure"]


def relative_ranks(steps: np.ndarray) -> np.ndarray:
    """Insertion steps scaled to ``[0, 1]`` per sequence (0 = inserted first, 1 = last); ``(draws, B, L)``."""
    flat = steps.reshape(-1, *steps.shape[-2:])
    lengths = np.sum(np.isfinite(flat[0]), axis=-1)  # [B]
    scale = np.maximum(lengths - 1, 1)[None, :, None]
    return flat / scale


def _save(figure, path) -> str:
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return str(path)


def plot_rank_heatmap(steps: np.ndarray, tokens: np.ndarray, path, *,
                      token_class: Optional[Callable[[int], str]] = None) -> str:
    """Two heatmaps over a dataset: mean relative insertion rank by (sequence length, position), and the
    distribution of relative ranks by token class (``token_class(id) -> name``; default: the id itself)."""
    return _save(rank_heatmap_figure(steps, tokens, token_class=token_class), path)


def rank_heatmap_figure(steps: np.ndarray, tokens: np.ndarray, *,
                        token_class: Optional[Callable[[int], str]] = None):
    """The figure of :func:`plot_rank_heatmap` (a matplotlib figure, not saved; TensorBoard takes it as is)."""
    ranks = relative_ranks(steps)  # [D, B, L]
    lengths = np.sum(np.isfinite(ranks[0]), axis=-1)
    width = ranks.shape[-1]
    by_length = sorted(set(lengths.tolist()) - {0})
    grid = np.full((len(by_length), width), np.nan)
    for row, length in enumerate(by_length):
        chosen = ranks[:, lengths == length, :length]
        grid[row, :length] = np.nanmean(chosen.reshape(-1, length), axis=0)
    classify = token_class or (lambda token: str(token))
    names = np.array([[classify(int(t)) for t in row] for row in tokens])
    classes = sorted(set(names[np.isfinite(ranks[0])].tolist()))
    bins = np.linspace(0, 1, 11)
    class_grid = np.zeros((len(classes), len(bins) - 1))
    for row, name in enumerate(classes):
        values = ranks[:, names == name]
        values = values[np.isfinite(values)]
        if values.size:
            class_grid[row] = np.histogram(values, bins=bins)[0] / values.size
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 0.5 * max(len(by_length), len(classes)) + 2.5))
    image = left.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
    left.set_yticks(range(len(by_length)), [str(n) for n in by_length])
    left.xaxis.set_major_locator(plt.MaxNLocator(integer=True))  # positions are integers
    left.set_xlabel("position in the final sequence")
    left.set_ylabel("sequence length")
    left.set_title("mean insertion rank (0 = first, 1 = last)")
    figure.colorbar(image, ax=left)
    image = right.imshow(class_grid, aspect="auto", cmap="magma", origin="lower", extent=(0, 1, -0.5,
                                                                                          len(classes) - 0.5))
    right.set_yticks(range(len(classes)), classes)
    right.set_xlabel("insertion rank (0 = first, 1 = last)")
    right.set_title("when each token class is inserted")
    figure.colorbar(image, ax=right, label="share of the class")
    return figure


_SMILES_CLASSES = (("ring closure", re.compile(r"^(%\d\d|\d)$")), ("branch", re.compile(r"^[()]$")),
                   ("bond", re.compile(r"^[-=#$:/\\.]$")), ("atom", re.compile(r"^(\[.*\]|Br|Cl|[A-Za-z*])$")))


def smiles_token_class(token: str) -> str:
    """``ring closure`` (``1``, ``%12``), ``branch`` (``(``, ``)``), ``bond``, ``atom`` or ``other``."""
    for name, pattern in _SMILES_CLASSES:
        if pattern.match(token):
            return name
    return "other"


def plot_token_class_timing(steps: np.ndarray, tokens: np.ndarray, token_names: Sequence[str], path, *,
                            classify: Callable[[str], str] = smiles_token_class,
                            title: str = "insertion time by SMILES token class") -> str:
    """Distributions of relative insertion time per token class (SMILES by default: ring-closure digits,
    branches, bonds, atoms) — the paper's "scaffold first" claim, measured."""
    ranks = relative_ranks(steps)
    names = np.array([[classify(str(token_names[int(t)])) for t in row] for row in tokens])
    figure, axis = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 21)
    for name in sorted(set(names[np.isfinite(ranks[0])].tolist())):
        values = ranks[:, names == name]
        values = values[np.isfinite(values)]
        axis.hist(values, bins=bins, density=True, histtype="step", linewidth=2,
                  label=f"{name} (mean {values.mean():.2f})")
    axis.set_xlabel("insertion time (0 = first, 1 = last)")
    axis.set_ylabel("density")
    axis.set_title(title)
    axis.legend()
    return _save(figure, path)


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


def plot_path_growth(steps: np.ndarray, path, *, landmarks: Optional[Sequence[dict]] = None,
                     title: str = "where the path is started and how it grows") -> str:
    """For path-like targets (star-graph paths, maze paths): where the first token lands and the direction of
    growth (left to right, right to left, middle-out).

    :param landmarks: optional per-sequence ``{name: position}`` (e.g. source, centre node, goal); the first
        insertion is then attributed to the nearest landmark, else to the source side / centre / goal side third.
    """
    stats = order_statistics(steps)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if landmarks is not None:
        names = first_landmarks(steps, landmarks)
        labels = list(dict.fromkeys(name for marks in landmarks for name in marks))
        shares = [names.count(label) / max(1, len(names)) for label in labels]
        left.set_title("landmark nearest the first inserted token")
    else:
        thirds = np.digitize(stats["start"], [1 / 3, 2 / 3]) if stats["start"].size else np.zeros(0, int)
        labels = ["source side", "centre", "goal side"]
        shares = [np.mean(thirds == k) if thirds.size else 0.0 for k in range(3)]
        left.set_title("where the first token is inserted")
    left.bar(labels, shares, color=["tab:blue", "tab:gray", "tab:orange", "tab:green", "tab:red"][: len(labels)])
    left.set_ylabel("share of sampled orders")
    bins = np.linspace(-1, 1, 21)
    right.hist(stats["direction"], bins=bins, alpha=0.7, label="position vs step (+1: source to goal)")
    right.hist(stats["outward"], bins=bins, alpha=0.7, label="distance from centre vs step (+1: middle-out)")
    right.set_xlabel("rank correlation")
    right.set_title("direction of growth")
    right.legend(fontsize=8)
    figure.suptitle(title)
    return _save(figure, path)


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
