"""Likelihood estimators in nats: exact (dynamic programming over inserted sets) and importance-weighted."""
from __future__ import annotations

import math

import torch

from ip_pyro.batch import Batch
from ip_pyro.utils import evaluating

__all__ = ["exact_log_likelihood", "importance_log_likelihood", "log_importance_weights", "MAX_EXACT_LENGTH"]

MAX_EXACT_LENGTH = 8


def _subset_masks(length: int, device) -> torch.Tensor:
    """Bool ``[2^L, L]``: row ``s`` marks the positions in bit set ``s``."""
    codes = torch.arange(2 ** length, device=device)
    return (codes.unsqueeze(-1) >> torch.arange(length, device=device)) & 1 == 1


def _logsumexp_scatter(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """``out[.., k] = logsumexp(values[.., i] for index[i] == k)`` along the last dim (``-inf`` if none)."""
    shape = values.shape[:-1] + (size,)
    index = index.expand(values.shape)
    peak = torch.full(shape, -math.inf, dtype=values.dtype, device=values.device)
    peak = peak.scatter_reduce(-1, index, values, reduce="amax")
    safe_peak = peak.masked_fill(~torch.isfinite(peak), 0.0)
    total = torch.zeros(shape, dtype=values.dtype, device=values.device)
    total = total.scatter_add(-1, index, (values - safe_peak.gather(-1, index)).exp())
    return total.log() + safe_peak


def exact_log_likelihood(model, batch: Batch, *, max_length: int = MAX_EXACT_LENGTH,
                         chunk_size: int = 8192) -> torch.Tensor:
    """Exact ``log p(x) = log sum_sigma p(x, sigma)`` ``[B]``.

    Sums all ``L!`` orders through the ``2^L`` sets of inserted positions they pass (a forward recursion on the
    subset lattice), one decoder pass per set; equal to brute-force enumeration.

    :param max_length: refuse sequences longer than this (the cost is ``2^L`` canvases per sequence).
    :raises ValueError: for a sequence longer than ``max_length``.
    """
    longest = int(batch.lengths.max()) if batch.batch_size else 0
    if longest > max_length:
        raise ValueError(f"exact_log_likelihood enumerates 2^L canvases per sequence and refuses length "
                         f"{longest} > {max_length}; use importance_log_likelihood for long sequences")
    parts, positions = [], []
    with evaluating(model):
        for length in batch.lengths.unique().tolist():
            rows = (batch.lengths == length).nonzero().squeeze(-1)
            parts.append(_exact_same_length(model, batch[rows], length, chunk_size))
            positions.append(rows)
    order = torch.cat(positions).argsort()
    return torch.cat(parts)[order]


def _exact_same_length(model, batch: Batch, length: int, chunk_size: int) -> torch.Tensor:
    size = batch.batch_size
    batch = Batch(tokens=batch.tokens[:, :length], lengths=batch.lengths, prompt=batch.prompt,
                  prompt_lengths=batch.prompt_lengths)
    subsets = _subset_masks(length, batch.device)  # [S, L]
    count = subsets.shape[0]
    stop, go, insert = [], [], []
    for begin in range(0, count, max(1, chunk_size // max(size, 1))):
        part = subsets[begin:begin + max(1, chunk_size // max(size, 1))]
        inserted = part.unsqueeze(1).expand(-1, size, length).reshape(len(part) * size, length)  # row k*B + b
        scores = model.step_log_probs(batch, inserted)
        stop.append(scores.stop.view(len(part), size))
        go.append(scores.go.view(len(part), size))
        insert.append(scores.insert.view(len(part), size, length))
    stop, go, insert = torch.cat(stop).T, torch.cat(go).T, torch.cat(insert).permute(1, 0, 2)  # [B, S(, L)]
    log_alpha = torch.full((size, count), -math.inf, dtype=stop.dtype, device=batch.device)
    log_alpha[:, 0] = 0.0
    popcount = subsets.sum(-1)
    bits = 1 << torch.arange(length, device=batch.device)
    for filled in range(length):
        sources = (popcount == filled).nonzero().squeeze(-1)  # [n]
        targets = sources.unsqueeze(-1) | bits  # [n, L]; rows with the bit already set carry -inf
        flows = log_alpha[:, sources].unsqueeze(-1) + go[:, sources].unsqueeze(-1) + insert[:, sources]
        reached = _logsumexp_scatter(flows.reshape(size, -1), targets.reshape(1, -1), count)
        grow = (popcount == filled + 1)
        log_alpha = torch.where(grow, reached, log_alpha)
    return log_alpha[:, count - 1] + stop[:, count - 1]


def log_importance_weights(model, guide, batch: Batch, num_samples: int = 1000, *,
                           chunk_size: int = 64) -> torch.Tensor:
    """``log p(x, sigma_k) - log q(sigma_k | x)`` ``[K, B]`` for ``K = num_samples`` orders from the guide."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples={num_samples!r} must be a positive integer")
    weights = []
    with evaluating(model, guide), torch.no_grad():
        q = guide.order_distribution(batch)
        for begin in range(0, num_samples, chunk_size):
            draws = min(chunk_size, num_samples - begin)
            orders = q.sample((draws,))  # [k, B, L]
            joint = model.log_joint(batch, orders.reshape(draws * batch.batch_size, batch.max_length))
            joint = joint.view(draws, batch.batch_size)
            weights.append(joint - q.log_prob(orders))
    return torch.cat(weights)


def importance_log_likelihood(model, guide, batch: Batch, num_samples: int = 1000, *,
                              chunk_size: int = 64) -> torch.Tensor:
    """IWAE bound ``log (1/K) sum_k p(x, sigma_k) / q(sigma_k | x)`` ``[B]`` (a lower bound on ``log p(x)`` that
    tightens as ``K`` grows), computed in chunks of ``chunk_size`` orders and ``logsumexp``-stable."""
    weights = log_importance_weights(model, guide, batch, num_samples, chunk_size=chunk_size)
    return weights.logsumexp(0) - math.log(num_samples)
