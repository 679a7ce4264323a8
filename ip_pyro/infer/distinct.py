"""``log p(x, sigma)`` of many orders at once, each distinct canvas (or order) scored once.

Importance weights draw many orders per sequence, and orders share most of what they score: with the canvas decoder
(steps that depend on the canvas alone, ``model.canvas_markov``) an order of a length-``L`` sequence passes ``L + 1``
canvases out of ``2^L``, so 1,000 orders of a string of length 6 pass 7,000 canvases but at most 64 distinct ones;
with a history-dependent decoder (the causal one) 1,000 draws of a length-4 string hold at most 24 distinct orders.
:func:`distinct_log_joint` scores each distinct canvas (or order) once through the model's own ``step_log_probs``
(or ``log_joint``) and sums each order's step factors from those scores: equal to ``model.log_joint`` up to float
rounding (``tests/test_likelihood.py``).
"""
from __future__ import annotations

import torch

from ip_pyro.batch import Batch

__all__ = ["distinct_log_joint", "BITS_PER_WORD"]

BITS_PER_WORD = 62  # positions packed into one int64 key word (a canvas is a set of positions)


def distinct_log_joint(model, batch: Batch, orders: torch.Tensor, *, chunk_size: int = 8192) -> torch.Tensor:
    """``log p(x_b, orders[k, b])`` ``[K, B]`` for orders ``[K, B, L_max]`` (each a permutation whose padding
    positions come last), at most ``chunk_size`` canvases (or orders) per model call. Batches with prompts are
    scored order by order with ``model.log_joint``, which encodes each prompt once for all orders."""
    if orders.dim() != 3 or orders.shape[1] != batch.batch_size or orders.shape[2] != batch.max_length:
        raise ValueError(f"orders must be [K, {batch.batch_size}, {batch.max_length}], got {tuple(orders.shape)}")
    if batch.prompt is not None:  # the model encodes each prompt once per call; sub-batches would repeat that
        draws = orders.shape[0]
        return model.log_joint(batch, orders.reshape(-1, batch.max_length), chunk_size=chunk_size).view(draws, -1)
    if getattr(model, "canvas_markov", False):
        return _by_canvas(model, batch, orders, chunk_size)
    return _by_order(model, batch, orders, chunk_size)


def _by_order(model, batch: Batch, orders: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """A history-dependent model: each distinct ``(sequence, order)`` pair through ``model.log_joint`` once."""
    draws, size, width = orders.shape
    sequence = torch.arange(size, device=orders.device).expand(draws, size).reshape(-1, 1)
    keys, inverse = torch.unique(torch.cat([sequence, orders.reshape(-1, width)], 1), dim=0, return_inverse=True)
    joints = [model.log_joint(batch[part[:, 0]], part[:, 1:], chunk_size=chunk_size)
              for part in keys.split(chunk_size)]
    return torch.cat(joints)[inverse].view(draws, size)


def _set_keys(orders: torch.Tensor) -> torch.Tensor:
    """``[K, B, L + 1, W]`` int64: the set of positions inserted after ``t = 0..L`` steps of each order, packed
    ``BITS_PER_WORD`` positions to a word (distinct positions, so the running sum is the running union)."""
    draws, size, width = orders.shape
    words = max(1, -(-width // BITS_PER_WORD))
    one_hot = torch.zeros(draws, size, width, words, dtype=torch.long, device=orders.device)
    one_hot.scatter_(-1, (orders // BITS_PER_WORD).unsqueeze(-1),
                     torch.ones_like(orders).unsqueeze(-1) << (orders % BITS_PER_WORD).unsqueeze(-1))
    empty = torch.zeros(draws, size, 1, words, dtype=torch.long, device=orders.device)
    return torch.cat([empty, one_hot.cumsum(2)], 2)


def _unpack(keys: torch.Tensor, width: int) -> torch.Tensor:
    """Bool ``[N, width]`` from packed set keys ``[N, W]``."""
    shifts = torch.arange(BITS_PER_WORD, device=keys.device)
    bits = (keys.unsqueeze(-1) >> shifts) & 1  # [N, W, BITS_PER_WORD]
    return bits.reshape(keys.shape[0], -1)[:, :width] == 1


def _by_canvas(model, batch: Batch, orders: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """A canvas-Markov model: each distinct ``(sequence, inserted set)`` through ``model.step_log_probs`` once,
    smallest canvases first (so a pass pads little); then each order's ``sum_t go + insert`` and final stop."""
    draws, size, width = orders.shape
    lengths = batch.lengths
    steps = torch.arange(width + 1, device=orders.device)
    live = (steps <= lengths.unsqueeze(-1)).expand(draws, size, width + 1)  # the canvases an order passes
    sequence = torch.arange(size, device=orders.device).view(1, size, 1).expand(draws, size, width + 1)
    keys = torch.cat([sequence[live].unsqueeze(-1), _set_keys(orders)[live]], 1)
    keys, inverse = torch.unique(keys, dim=0, return_inverse=True)
    inserted = _unpack(keys[:, 1:], width)
    by_size = torch.argsort(inserted.sum(-1), stable=True)
    stop, insert, go = (torch.empty(shape, dtype=torch.get_default_dtype(), device=orders.device)
                        for shape in ((len(keys),), (len(keys), width), (len(keys),)))
    for part in by_size.split(chunk_size):
        scores = model.step_log_probs(batch[keys[part, 0]], inserted[part])
        stop, insert, go = (field.to(score.dtype).index_copy(0, part, score)
                            for field, score in zip((stop, insert, go), scores))
    canvas = torch.zeros(draws, size, width + 1, dtype=torch.long, device=orders.device)
    canvas[live] = inverse  # canvas[k, b, t]: the distinct canvas after t steps (0 where t > L_b, unused)
    written = steps[:width] < lengths.unsqueeze(-1)  # [B, L]: the steps that insert
    inserting = torch.where(written, go[canvas[..., :width]] + insert[canvas[..., :width], orders],
                            torch.zeros((), dtype=go.dtype, device=go.device))
    final = canvas.gather(2, lengths.view(1, size, 1).expand(draws, size, 1)).squeeze(-1)
    return inserting.sum(-1) + stop[final]
