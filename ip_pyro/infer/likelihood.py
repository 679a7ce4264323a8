"""Likelihood estimators in nats: exact (dynamic programming over inserted sets for a canvas-Markov model, a sum
over all ``L!`` orders otherwise) and importance-weighted."""
from __future__ import annotations

import itertools
import math

import torch

from ip_pyro.batch import Batch, check_model_and_guide
from ip_pyro.infer.distinct import distinct_log_joint
from ip_pyro.utils import evaluating, is_count, progress_bar

__all__ = ["exact_log_likelihood", "importance_log_likelihood", "log_importance_weights", "subset_messages",
           "SubsetMessages", "MAX_EXACT_LENGTH", "MAX_ENUMERATED_LENGTH", "enumerated_log_likelihood"]

MAX_EXACT_LENGTH = 8
MAX_ENUMERATED_LENGTH = 7  # a history-dependent model sums L! orders: 5,040 per sequence at 7


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
                         chunk_size: int = 8192, progress=None) -> torch.Tensor:
    """Exact ``log p(x) = log sum_sigma p(x, sigma)`` ``[B]``.

    For a model whose steps depend on the canvas alone (``model.canvas_markov``, the canvas decoder) all ``L!``
    orders are summed through the ``2^L`` sets of inserted positions they pass (a forward recursion on the subset
    lattice), one decoder pass per set; equal to brute-force enumeration. A history-dependent model (the causal
    decoder) is summed over all ``L!`` orders (:func:`enumerated_log_likelihood`, ``L <= MAX_ENUMERATED_LENGTH``).

    :param max_length: refuse sequences longer than this (``2^L`` canvases, or ``L!`` orders, per sequence).
    :param progress: a progress bar (``None``: on a terminal, once the call has run two seconds).
    :raises ValueError: for a sequence longer than ``max_length``.
    """
    if not getattr(model, "canvas_markov", True):
        return enumerated_log_likelihood(model, batch, max_length=min(max_length, MAX_ENUMERATED_LENGTH),
                                         chunk_size=chunk_size, progress=progress)
    messages = subset_messages(model, batch, max_length=max_length, chunk_size=chunk_size, progress=progress)
    return messages.log_likelihood


def enumerated_log_likelihood(model, batch: Batch, *, max_length: int = MAX_ENUMERATED_LENGTH,
                              chunk_size: int = 8192, progress=None) -> torch.Tensor:
    """Exact ``log p(x) = log sum_sigma p(x, sigma)`` ``[B]`` by scoring every order with ``model.log_joint`` (any
    model, history-dependent ones included), at most ``chunk_size`` orders per call.

    :raises ValueError: for a sequence longer than ``max_length`` (``L!`` orders per sequence).
    """
    longest = int(batch.lengths.max()) if batch.batch_size else 0
    if longest > max_length:
        raise ValueError(f"exact computation sums all L! orders of this model and refuses length {longest} > "
                         f"{max_length}; use importance_log_likelihood for long sequences")
    total = torch.full((batch.batch_size,), -math.inf, dtype=torch.get_default_dtype(), device=batch.device)
    with evaluating(model), progress_bar(batch.batch_size, "exact log-likelihood", "seq", progress) as bar:
        for length in batch.lengths.unique().tolist():
            rows = (batch.lengths == length).nonzero().squeeze(-1)
            part = batch[rows]
            part = Batch(tokens=part.tokens[:, :length], lengths=part.lengths, prompt=part.prompt,
                         prompt_lengths=part.prompt_lengths)
            perms = torch.tensor(list(itertools.permutations(range(length))), dtype=torch.long,
                                 device=batch.device).reshape(math.factorial(length), length)
            per_call = max(1, chunk_size // max(len(rows), 1))
            joints = []
            for begin in range(0, len(perms), per_call):
                chosen = perms[begin:begin + per_call]
                orders = chosen.repeat_interleave(len(rows), 0)  # row k * n + b
                joints.append(model.log_joint(part, orders).view(len(chosen), len(rows)))
            log_p = torch.cat(joints).logsumexp(0)
            total = total.to(log_p.dtype).index_copy(0, rows, log_p)
            bar.update(len(rows))
    return total


class SubsetMessages:
    """Scores and messages on the lattice of inserted sets, one table per sequence (sets coded as bit masks over
    positions, ``S = 2^L_max`` codes; codes using padding positions are unused).

    ``go`` ``[B, S]``, ``insert`` ``[B, S, L]``: the model's scores of each canvas; ``forward`` ``[B, S]``:
    ``log`` of the total probability of reaching a set; ``backward`` ``[B, S]``: ``log`` of the total probability of
    completing ``x`` (and stopping) from a set. ``log_likelihood`` ``[B]``.
    """

    def __init__(self, go, insert, forward, backward, log_likelihood):
        self.go, self.insert, self.forward, self.backward = go, insert, forward, backward
        self.log_likelihood = log_likelihood


def subset_messages(model, batch: Batch, *, max_length: int = MAX_EXACT_LENGTH,
                    chunk_size: int = 8192, progress=False) -> SubsetMessages:
    """Forward and backward messages of every sequence on its subset lattice (``2^L`` canvases each). Only for a
    model whose steps depend on the canvas alone (``model.canvas_markov``)."""
    if not getattr(model, "canvas_markov", True):
        raise ValueError("the subset recursion needs steps that depend on the canvas alone; this model's steps depend "
                         "on the order written (decoder='causal'): use exact_log_likelihood (sums all L! orders) or "
                         "importance_log_likelihood")
    longest = int(batch.lengths.max()) if batch.batch_size else 0
    if longest > max_length:
        raise ValueError(f"exact computation enumerates 2^L canvases per sequence and refuses length "
                         f"{longest} > {max_length}; use importance_log_likelihood for long sequences")
    width = batch.max_length
    count = 2 ** longest  # sets over the real positions only: padding is never inserted, whatever the padded width
    dtype = torch.get_default_dtype()
    tables = {name: torch.full(shape, -math.inf, dtype=dtype, device=batch.device) for name, shape in (
        ("go", (batch.batch_size, count)), ("insert", (batch.batch_size, count, width)),
        ("forward", (batch.batch_size, count)), ("backward", (batch.batch_size, count)),
        ("log_likelihood", (batch.batch_size,)))}
    with evaluating(model), progress_bar(batch.batch_size, "exact log-likelihood", "seq", progress) as bar:
        for length in batch.lengths.unique().tolist():
            rows = (batch.lengths == length).nonzero().squeeze(-1)
            part = _same_length_messages(model, batch[rows], length, chunk_size)
            bar.update(len(rows))
            used = 2 ** length
            for name in ("go", "forward", "backward"):
                tables[name] = tables[name].to(part[name].dtype)
                tables[name][rows, :used] = part[name]
            tables["insert"] = tables["insert"].to(part["insert"].dtype)
            tables["insert"][rows, :used, :length] = part["insert"]
            tables["log_likelihood"] = tables["log_likelihood"].to(part["log_likelihood"].dtype)
            tables["log_likelihood"][rows] = part["log_likelihood"]
    return SubsetMessages(**tables)


def _same_length_messages(model, batch: Batch, length: int, chunk_size: int) -> dict:
    size = batch.batch_size
    batch = Batch(tokens=batch.tokens[:, :length], lengths=batch.lengths, prompt=batch.prompt,
                  prompt_lengths=batch.prompt_lengths)
    subsets = _subset_masks(length, batch.device)  # [S, L]
    count = subsets.shape[0]
    stop, go, insert = [], [], []
    per_pass = max(1, chunk_size // max(size, 1))
    for begin in range(0, count, per_pass):
        part = subsets[begin:begin + per_pass]
        inserted = part.unsqueeze(1).expand(-1, size, length).reshape(len(part) * size, length)  # row k*B + b
        scores = model.step_log_probs(batch, inserted)
        stop.append(scores.stop.view(len(part), size))
        go.append(scores.go.view(len(part), size))
        insert.append(scores.insert.view(len(part), size, length))
    stop, go, insert = torch.cat(stop).T, torch.cat(go).T, torch.cat(insert).permute(1, 0, 2)  # [B, S(, L)]
    popcount = subsets.sum(-1)
    bits = 1 << torch.arange(length, device=batch.device)
    flows = go.unsqueeze(-1) + insert  # [B, S, L]: log p(go, insert j | set)
    forward = torch.full((size, count), -math.inf, dtype=stop.dtype, device=batch.device)
    forward[:, 0] = 0.0
    for filled in range(length):
        sources = (popcount == filled).nonzero().squeeze(-1)  # [n]
        targets = sources.unsqueeze(-1) | bits  # [n, L]; rows with the bit already set carry -inf
        reached = _logsumexp_scatter((forward[:, sources].unsqueeze(-1) + flows[:, sources]).reshape(size, -1),
                                     targets.reshape(1, -1), count)
        forward = torch.where(popcount == filled + 1, reached, forward)
    backward = torch.where(popcount == length, stop, torch.full_like(stop, -math.inf))
    for filled in range(length - 1, -1, -1):
        sources = (popcount == filled).nonzero().squeeze(-1)
        targets = sources.unsqueeze(-1) | bits  # [n, L]
        onward = flows[:, sources] + backward[:, targets]  # [B, n, L]; -inf where j is already inserted
        backward = backward.index_copy(1, sources, onward.logsumexp(-1))
    return dict(go=go, insert=insert, forward=forward, backward=backward,
                log_likelihood=forward[:, count - 1] + stop[:, count - 1])


def log_importance_weights(model, guide, batch: Batch, num_samples: int = 1000, *,
                           chunk_size: int = 64, progress=None, canvas_budget: int = 1 << 20,
                           distinct: bool = True) -> torch.Tensor:
    """``log p(x, sigma_k) - log q(sigma_k | x)`` ``[K, B]`` for ``K = num_samples`` orders from the guide.

    The orders are drawn ``chunk_size`` at a time and scored in groups of up to ``canvas_budget`` canvases, each
    distinct canvas (or, for a history-dependent decoder, each distinct order) of a group once
    (:func:`ip_pyro.infer.distinct.distinct_log_joint`); ``distinct=False`` scores every order with
    ``model.log_joint`` instead (the same weights up to float rounding, for comparison).

    :param progress: a bar over the orders (``None``: on a terminal, once the call has run two seconds)."""
    if not is_count(num_samples):
        raise ValueError(f"num_samples={num_samples!r} must be a positive integer")
    check_model_and_guide(model, guide, batch)
    # whole chunks per group, so the guide's draws are those of a chunk-by-chunk loop
    per_group = chunk_size * max(1, canvas_budget // max(1, chunk_size * batch.batch_size * (batch.max_length + 1)))
    weights = []
    with evaluating(model, guide), torch.inference_mode(), \
            progress_bar(num_samples, "IWAE orders", "order", progress) as bar:
        q = guide.order_distribution(batch)
        for group in range(0, num_samples, per_group):
            orders, log_q = [], []
            for begin in range(group, min(group + per_group, num_samples), chunk_size):
                draws = min(chunk_size, num_samples - begin)
                orders.append(q.sample((draws,)))  # [k, B, L]
                log_q.append(q.log_prob(orders[-1]))
            orders = torch.cat(orders)
            if distinct:
                joint = distinct_log_joint(model, batch, orders)
            else:
                joint = model.log_joint(batch, orders.reshape(-1, batch.max_length))
            weights.append(joint.view(len(orders), batch.batch_size) - torch.cat(log_q))
            bar.update(len(orders))
    return torch.cat(weights)


def importance_log_likelihood(model, guide, batch: Batch, num_samples: int = 1000, *,
                              chunk_size: int = 64, progress=None, distinct: bool = True) -> torch.Tensor:
    """IWAE bound ``log (1/K) sum_k p(x, sigma_k) / q(sigma_k | x)`` ``[B]`` (a lower bound on ``log p(x)`` that
    tightens as ``K`` grows), computed in chunks of ``chunk_size`` orders and ``logsumexp``-stable; ``progress``
    and ``distinct`` as for :func:`log_importance_weights`."""
    weights = log_importance_weights(model, guide, batch, num_samples, chunk_size=chunk_size, progress=progress,
                                     distinct=distinct)
    return weights.logsumexp(0) - math.log(num_samples)
