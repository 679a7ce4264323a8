"""Posterior insertion-order diagnostics: the ArviZ adapter (draws to ``InferenceData``, PSIS, R-hat).

Draws are numpy arrays shaped ``(chain, draw, ...)``:

* ``insertion_step`` ``(chain, draw, sequence, position)``: the step at which each final position was inserted
  (0 = first; ``nan`` at padding);
* ``slot`` ``(chain, draw, sequence, step)``: the slot each step inserted into (``nan`` at padding);
* ``log_weight`` ``(chain, draw, sequence)``: ``log p(x, sigma) - log q(sigma | x)``.

ArviZ's data functions (``from_dict``, ``from_pyro``, ``psislw``, ``rhat``/``ess``) are called here and its
figures (``plot_forest``, the trace and per-chain views of ``InferenceData``) in :mod:`ip_pyro.plots`, so moving to
ArviZ 1.x (DataTree) touches these two modules. The figures stay importable from here.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional

import arviz as az
import numpy as np
import torch

from ip_pyro.batch import Batch
from ip_pyro.orders import orders_to_ranks, orders_to_slots
from ip_pyro.plots import plot_insertion_forest, plot_mcmc_rank, plot_mcmc_trace  # noqa: F401 (they lived here)
from ip_pyro.utils import evaluating

__all__ = ["order_draws", "to_inference_data", "mcmc_to_inference_data", "psis_diagnostics", "compare_to_guide",
           "rhat_max", "save_inference_data", "relative_order_entropy", "guide_order_entropy", "describe_psis"]

KHAT_THRESHOLD = 0.7


def order_draws(model, guide, batch: Batch, num_chains: int = 4, num_draws: int = 250) -> dict:
    """Draw ``num_chains * num_draws`` orders per sequence from the guide; numpy arrays ``(chain, draw, ...)``."""
    if num_chains < 1 or num_draws < 1:
        raise ValueError(f"num_chains={num_chains} and num_draws={num_draws} must be positive")
    size, width = batch.tokens.shape
    total = num_chains * num_draws
    with torch.inference_mode(), evaluating(model, guide):
        q = guide.order_distribution(batch)
        orders = q.sample((total,))  # [S, B, L]
        log_joint = model.log_joint(batch, orders.reshape(total * size, width)).view(total, size)
        log_q = q.log_prob(orders)
        log_weight = log_joint - log_q
    lengths = batch.lengths.expand(total, size).reshape(total * size)
    flat = orders.reshape(total * size, width)
    padding = (torch.arange(width, device=flat.device) >= lengths.unsqueeze(-1)).cpu().numpy()
    steps = orders_to_ranks(flat).cpu().numpy().astype(float)
    slots = orders_to_slots(flat, lengths).cpu().numpy().astype(float)
    steps[padding], slots[padding] = np.nan, np.nan
    shape = (num_chains, num_draws, size, width)
    return {"insertion_step": steps.reshape(shape), "slot": slots.reshape(shape),
            "log_weight": log_weight.cpu().numpy().reshape(num_chains, num_draws, size),
            "log_q": log_q.cpu().numpy().reshape(num_chains, num_draws, size)}


def relative_order_entropy(log_q: np.ndarray, lengths) -> np.ndarray:
    """Per sequence, the guide's entropy ``H(q) = -E_q[log q]`` (estimated from draws ``(chain, draw, B)``) over the
    uniform order's ``log L!``: 1 for a random order, 0 for one fixed order; ``nan`` where ``L <= 1``."""
    lengths = np.asarray(lengths)
    log_factorial = np.array([math.lgamma(length + 1) for length in lengths])
    entropy = -log_q.reshape(-1, log_q.shape[-1]).mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(log_factorial > 0, entropy / np.where(log_factorial > 0, log_factorial, 1.0), np.nan)


def guide_order_entropy(guide, batch: Batch, num_draws: int = 16) -> float:
    """Mean over the sequences with ``L >= 2`` of the guide's relative order entropy ``H(q) / log L!``, from
    ``num_draws`` draws of the guide alone (no model passes); ``nan`` when no sequence has two positions."""
    with torch.inference_mode(), evaluating(guide):
        q = guide.order_distribution(batch)
        log_q = q.log_prob(q.sample((num_draws,)))  # [S, B]
    relative = relative_order_entropy(log_q.cpu().numpy(), batch.lengths.cpu().numpy())
    return float(np.nanmean(relative)) if np.isfinite(relative).any() else float("nan")


def _coords(batch: Batch) -> dict:
    size, width = batch.tokens.shape
    return {"sequence": np.arange(size), "position": np.arange(width), "step": np.arange(width)}


def to_inference_data(draws: dict, batch: Batch, *, token_names: Optional[list] = None) -> "az.InferenceData":
    """An ArviZ ``InferenceData`` with ``posterior`` (``insertion_step``, ``slot``), ``sample_stats``
    (``log_weight``) and ``observed_data`` (``tokens``, ``lengths``), dims ``sequence``/``position``/``step``."""
    tokens = batch.tokens.cpu().numpy()
    observed = {"tokens": tokens, "lengths": batch.lengths.cpu().numpy()}
    if token_names is not None:
        observed["token_text"] = np.array([[str(token_names[t]) for t in row] for row in tokens])
    dims = {"insertion_step": ["sequence", "position"], "slot": ["sequence", "step"], "log_weight": ["sequence"],
            "tokens": ["sequence", "position"], "lengths": ["sequence"], "token_text": ["sequence", "position"]}
    return az.from_dict(posterior={"insertion_step": draws["insertion_step"], "slot": draws["slot"]},
                        sample_stats={"log_weight": draws["log_weight"]}, observed_data=observed,
                        coords=_coords(batch), dims=dims)


def mcmc_to_inference_data(mcmc, batch: Batch) -> "az.InferenceData":
    """``az.from_pyro`` of an :class:`ip_pyro.infer.OrderMH` run with a ``position`` dim and the observed tokens."""
    length = int(batch.lengths[0])
    idata = az.from_pyro(mcmc, coords={"position": np.arange(batch.max_length)},
                         dims={"insertion_step": ["position"]})
    idata = idata.isel(position=slice(0, length))
    observed = az.from_dict(observed_data={"tokens": batch.tokens[0, :length].cpu().numpy()},
                            dims={"tokens": ["position"]}, coords={"position": np.arange(length)})
    idata.extend(observed)
    return idata


def save_inference_data(idata, path) -> str:
    """Write an ``InferenceData`` to netCDF (read it back with ``arviz.from_netcdf``)."""
    idata.to_netcdf(str(path))
    return str(path)


def _log_weights_and_steps(source, insertion_steps):
    """``(log weights (chain, draw, sequence), insertion steps or None)`` from an array, an :func:`order_draws`
    dict or a :func:`to_inference_data` ``InferenceData``; a one-line error for anything else."""
    if isinstance(source, dict):
        if "log_weight" not in source:
            raise ValueError("psis_diagnostics got a dict without 'log_weight'; pass order_draws(...)'s result, its "
                             "['log_weight'] array or to_inference_data(...)")
        return np.asarray(source["log_weight"], dtype=float), source.get("insertion_step", insertion_steps)
    if hasattr(source, "sample_stats") and hasattr(source, "posterior"):
        if "log_weight" not in source.sample_stats:
            raise ValueError("this InferenceData has no sample_stats.log_weight; build it with "
                             "ip_pyro.diagnostics.to_inference_data(order_draws(...), batch)")
        steps = source.posterior["insertion_step"].values if "insertion_step" in source.posterior else None
        return source.sample_stats["log_weight"].values.astype(float), steps if insertion_steps is None else \
            insertion_steps
    weights = np.asarray(source, dtype=float)
    if weights.ndim != 3:
        raise ValueError(f"psis_diagnostics needs log weights of shape (chain, draw, sequence), not {weights.shape}; "
                         "pass order_draws(...)['log_weight'] or to_inference_data(...)")
    return weights, insertion_steps


def psis_diagnostics(log_weights, insertion_steps: Optional[np.ndarray] = None) -> dict:
    """Pareto-smoothed importance sampling of guide log weights ``(chain, draw, sequence)``.

    :param log_weights: the array, the dict :func:`order_draws` returns or the ``InferenceData`` of
        :func:`to_inference_data` (the last two also give ``insertion_steps``).
    :param insertion_steps: optional draws ``(chain, draw, sequence, position)`` (as :func:`order_draws` gives
        them); with them, a sequence whose draws hit every one of its ``L!`` orders is known to have no tail.
    :returns: ``khat`` ``[sequence]`` (shape of the weights' tail; above 0.7 the guide cannot be trusted as a
        proposal; ``-inf`` when there is no tail: all weights equal, or every order drawn; ``inf`` when the tail
        fit fails: too few draws, or a concentrated guide whose draws hit only a few distinct orders — ``summary``
        says which), ``ess`` ``[sequence]`` (effective sample size of the smoothed normalised weights),
        ``share_khat_above_0_7``, ``num_draws``, ``distinct_weights``, ``weight_spread`` (nats between the largest
        and smallest log weight per sequence) and ``summary`` (:func:`describe_psis`: one line that explains them).
    """
    weights, insertion_steps = _log_weights_and_steps(log_weights, insertion_steps)
    flat = weights.reshape(-1, weights.shape[-1]).T  # [sequence, samples]
    # weights within 1e-4 nats of each other (float32 round-off when the guide is the posterior) have no tail
    no_tail = flat.max(-1) - flat.min(-1) < 1e-4
    if insertion_steps is not None:
        steps = np.asarray(insertion_steps).reshape(-1, *np.shape(insertion_steps)[-2:])  # [samples, B, L]
        for sequence in range(flat.shape[0]):
            length = int(np.isfinite(steps[0, sequence]).sum())
            orders = {tuple(row) for row in steps[:, sequence, :length].astype(int).tolist()}
            no_tail[sequence] |= len(orders) == math.factorial(length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smoothed, khat = az.psislw(np.where(no_tail[:, None], 0.0, flat), reff=1.0)
    khat = np.asarray(khat, dtype=float)
    khat = np.where(no_tail, -np.inf, np.where(np.isfinite(khat) | np.isneginf(khat), khat, np.inf))
    smoothed = np.where(no_tail[:, None], flat, smoothed)
    normalised = np.exp(smoothed - smoothed.max(-1, keepdims=True))
    normalised /= normalised.sum(-1, keepdims=True)
    ess = 1.0 / (normalised ** 2).sum(-1)
    distinct = np.array([len(np.unique(np.round(row, 6))) for row in flat])  # distinct weights ~ distinct orders
    result = {"khat": khat, "ess": ess, "share_khat_above_0_7": float(np.mean(khat > KHAT_THRESHOLD)),
              "num_draws": flat.shape[1], "distinct_weights": distinct, "weight_spread": flat.max(-1) - flat.min(-1)}
    result["summary"] = describe_psis(result)
    return result


# ArviZ fits the Pareto tail to the largest min(0.2 S, 3 sqrt(S)) of S weights and gives up below 5 of them
MIN_DRAWS_FOR_KHAT = 25


def describe_psis(psis: dict) -> str:
    """One line on :func:`psis_diagnostics`' result: the median k-hat over the sequences whose tail was fitted,
    and how many had no tail (k-hat ``-inf``) or no tail fit (``inf``, counted above 0.7), with the reason: too few
    draws, or a concentrated guide whose few distinct weights agree with the model (or do not)."""
    khat = np.asarray(psis["khat"], dtype=float)
    fitted = khat[np.isfinite(khat)]
    parts = [f"median k-hat {np.median(fitted):.2f} over {fitted.size} fitted" if fitted.size else "no tail fitted"]
    if np.isneginf(khat).any():
        parts.append(f"{int(np.isneginf(khat).sum())} with no tail (every order drawn or equal weights)")
    failed = np.isposinf(khat)
    if failed.any():
        if psis["num_draws"] < MIN_DRAWS_FOR_KHAT:
            reason = (f"{psis['num_draws']} draws per sequence, at least {MIN_DRAWS_FOR_KHAT} needed; raise --chains "
                      "x --draws")
        else:  # the draws repeat a few orders: no tail to fit, which says nothing against the guide by itself
            spread = float(np.median(np.asarray(psis["weight_spread"])[failed]))
            reason = (f"the draws hit only {int(np.median(np.asarray(psis['distinct_weights'])[failed]))} distinct "
                      f"weights (median), a concentrated guide; their log weights span {spread:.2f} nats, "
                      + ("so the model agrees with the guide on them" if spread < 0.1 else
                         "so the model weighs them differently and the guide may miss orders it prefers"))
        parts.append(f"{int(failed.sum())} without a tail fit: {reason}")
    return (f"PSIS: {psis['share_khat_above_0_7']:.0%} of sequences have k-hat > {KHAT_THRESHOLD} "
            f"({'; '.join(parts)}; median ESS of the importance weights {np.median(psis['ess']):.0f})")


def _step_histograms(steps: np.ndarray, length: int) -> np.ndarray:
    """``[position, step]`` frequencies of insertion steps from draws ``[..., position]``."""
    flat = steps.reshape(-1, steps.shape[-1])[:, :length].astype(int)
    counts = np.stack([np.bincount(flat[:, position], minlength=length) for position in range(length)])
    return counts / max(1, flat.shape[0])


def compare_to_guide(guide_steps: np.ndarray, mcmc_steps: np.ndarray) -> dict:
    """Per-position comparison of insertion steps for one sequence of length ``L``.

    :param guide_steps: guide draws ``(..., L)``; :param mcmc_steps: MCMC draws ``(..., L)``.
    :returns: ``guide_mean``, ``mcmc_mean`` ``[L]``, ``total_variation`` ``[L]`` between the two marginal
        distributions of the insertion step of each position, and its maximum ``max_total_variation``.
    """
    length = mcmc_steps.shape[-1]
    guide_hist = _step_histograms(np.asarray(guide_steps), length)
    mcmc_hist = _step_histograms(np.asarray(mcmc_steps), length)
    steps = np.arange(length)
    total_variation = 0.5 * np.abs(guide_hist - mcmc_hist).sum(-1)
    return {"position": steps, "guide_mean": guide_hist @ steps, "mcmc_mean": mcmc_hist @ steps,
            "total_variation": total_variation, "max_total_variation": float(total_variation.max(initial=0.0))}


def rhat_max(idata, var_name: str = "insertion_step") -> float:
    """Largest rank-normalised split R-hat over the elements of ``var_name`` (ignoring constant ones)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = np.asarray(az.rhat(idata, var_names=[var_name])[var_name]).ravel()
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size else 1.0


