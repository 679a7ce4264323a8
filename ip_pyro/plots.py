"""Figures of insertion orders: dataset-level views of guide draws (rank heatmap, token-class timing, path
growth) and the ArviZ views of one sequence (guide against MCMC forest, MCMC trace, per-chain step distributions).
Each writes one PNG. The statistics behind them are :mod:`ip_pyro.order_statistics`.

Dataset views take draws ``(chain, draw, sequence, position)`` of insertion steps (``nan`` at padding, as
:func:`ip_pyro.diagnostics.order_draws` returns them); the ArviZ views take ``InferenceData``.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import arviz as az
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# the statistics lived here first; they stay importable from this module
from ip_pyro.order_statistics import (class_timing, describe_order, first_landmarks, landmark_timing,  # noqa: E402,F401
                                      modal_order_share, order_statistics, rank_spread, relative_ranks,
                                      smiles_token_class)

__all__ = ["plot_rank_heatmap", "rank_heatmap_figure", "plot_token_class_timing", "plot_path_growth",
           "plot_insertion_forest", "plot_mcmc_trace", "plot_mcmc_rank"]


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


def plot_insertion_forest(guide_idata, mcmc_idata, path, *, sequence: int = 0) -> str:
    """Forest plot of the insertion step of each position of one sequence: guide and MCMC (if given) side by side."""
    length = int(guide_idata.observed_data["lengths"].values[sequence])
    guide_part = guide_idata.posterior[["insertion_step"]].sel(sequence=sequence).isel(position=slice(0, length))
    parts = [guide_part] + ([] if mcmc_idata is None else [mcmc_idata.posterior[["insertion_step"]]])
    axes = az.plot_forest(parts, model_names=["guide", "MCMC"][: len(parts)],
                          var_names=["insertion_step"], combined=True, hdi_prob=0.9,
                          figsize=(6, 1.2 + 0.45 * length))
    axes[0].set_title(f"insertion step per position (0 = inserted first), sequence {sequence}")
    axes[0].set_xlabel("insertion step")
    legend = axes[0].get_legend()
    if legend is not None:  # below the axes, where it covers no row
        handles, labels = list(legend.legend_handles), [text.get_text() for text in legend.get_texts()]
        legend.remove()
        axes[0].legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(labels),
                       frameon=False)
    return _save(axes[0].figure, path)


def plot_mcmc_trace(mcmc_idata, path) -> str:
    """What the MCMC chains over one sequence's orders visited: left, the share of draws inserting each position at
    each step (all chains); right, per chain, the rank correlation of position and insertion step of every draw
    (+1 left to right, -1 right to left) — a trace that moves when the chain moves between kinds of order."""
    steps = np.asarray(mcmc_idata.posterior["insertion_step"].values, dtype=float)  # (chain, draw, position)
    length = steps.shape[-1]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    shares = np.stack([(steps == step).mean(axis=(0, 1)) for step in range(length)], axis=-1)  # [position, step]
    image = left.imshow(shares, aspect="auto", cmap="viridis", vmin=0, vmax=max(float(shares.max()), 1e-9),
                        origin="lower")
    left.set_xlabel("insertion step")
    left.set_ylabel("position")
    left.set_title("share of draws (all chains)")
    figure.colorbar(image, ax=left)
    positions = np.arange(length) - (length - 1) / 2
    centred = steps - steps.mean(-1, keepdims=True)
    scale = np.sqrt((centred ** 2).sum(-1) * (positions ** 2).sum())
    direction = np.where(scale > 0, (centred * positions).sum(-1) / np.maximum(scale, 1e-12), 0.0)
    for chain, values in enumerate(direction):
        right.plot(values, linewidth=0.8, label=f"chain {chain}")
    right.set_ylim(-1.05, 1.05)
    right.set_xlabel("draw")
    right.set_ylabel("rank corr. (position, step)")
    right.set_title("trace: direction of each drawn order")
    right.legend(fontsize=8, loc="upper right", ncol=min(4, len(direction)))
    figure.subplots_adjust(wspace=0.35)
    return _save(figure, path)


def plot_mcmc_rank(mcmc_idata, path) -> str:
    """Per chain, the distribution of ``insertion_step`` of the first positions (bars of equal height across
    chains = well-mixed chains); a plain rank plot reads poorly for integer steps, which tie everywhere."""
    length = mcmc_idata.posterior.sizes["position"]
    values = np.asarray(mcmc_idata.posterior["insertion_step"].values)
    if values.size and bool((values == values.reshape(-1, values.shape[-1])[0]).all()):
        figure, axis = plt.subplots(figsize=(7, 1.6))  # ranks of identical draws are all ties: nothing to read
        axis.axis("off")
        axis.text(0.5, 0.5, "every MCMC draw is the same order (the chains never moved):\nno rank plot to read; "
                  "see the trace and forest plots", ha="center", va="center", fontsize=11)
        return _save(figure, path)
    # an integer step has ties everywhere, so ranks say little: show each chain's distribution of the step instead
    shown, chains = min(length, 4), values.shape[0]
    figure, axes = plt.subplots(1, shown, figsize=(3.5 * shown, 3.2), squeeze=False, sharey=True)
    width = 0.8 / chains
    for position, axis in enumerate(axes[0]):
        for chain in range(chains):
            shares = np.bincount(values[chain, :, position].astype(int), minlength=length)[:length] / values.shape[1]
            axis.bar(np.arange(length) + (chain - (chains - 1) / 2) * width, shares, width=width,
                     label=f"chain {chain}")
        axis.set_title(f"position {position}")
        axis.set_xlabel("insertion step (0 = first)")
        axis.set_xticks(range(length))
    axes[0][0].set_ylabel("share of the chain's draws")
    axes[0][0].legend(fontsize=7)
    figure.suptitle("per chain, when each of the first positions is inserted: bars of equal height across chains = "
                    "chains agree (mixed)", y=1.04)
    return _save(figure, path)
