"""Insertion orders and slot sequences: the exact bijection, batched and ragged.

Conventions (``B`` sequences, padded length ``L``):

* ``orders[b, t]`` is the final position inserted at step ``t``. For ``t >= lengths[b]`` the entry is ``t``
  itself, so every row is a permutation of ``0..L-1`` whose padding positions come last in their own order.
* ``slots[b, t] = #{s < t : orders[b, s] < orders[b, t]}``: the slot of the canvas of ``t`` tokens that step
  ``t`` inserts into (slot ``k`` = before current token ``k``; slot ``t`` = the end). Padding entries are 0.
* ``ranks`` (``insertion_step[b, j]``) is the inverse permutation: the step at which position ``j`` is inserted.

Example: order ``(2, 0, 1)`` <-> slots ``(0, 0, 1)``.
"""
from __future__ import annotations

import torch

__all__ = ["orders_to_slots", "slots_to_orders", "orders_to_ranks", "inserted_before", "slots_of_positions",
           "identity_orders", "pad_orders"]


def _lengths_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device) < lengths.unsqueeze(-1)


def identity_orders(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """Left-to-right orders ``[B, size]`` (row ``b`` = ``0, 1, ..., size-1``)."""
    return torch.arange(size, device=lengths.device).expand(lengths.shape[0], size).clone()


def pad_orders(orders: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Overwrite entries ``t >= lengths`` with ``t`` (the padding convention). Shape ``[..., L]``."""
    size = orders.shape[-1]
    steps = torch.arange(size, device=orders.device).expand_as(orders)
    return torch.where(_lengths_mask(lengths, size).expand_as(orders), orders, steps)


def orders_to_ranks(orders: torch.Tensor) -> torch.Tensor:
    """Inverse permutation: ``ranks[..., orders[..., t]] = t``. Shape ``[..., L]``."""
    steps = torch.arange(orders.shape[-1], device=orders.device).expand_as(orders)
    return torch.empty_like(orders).scatter_(-1, orders, steps)


def orders_to_slots(orders: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Slot sequence of each order. ``orders`` ``[B, L]`` long, ``lengths`` ``[B]`` -> ``slots`` ``[B, L]``."""
    size = orders.shape[-1]
    earlier = torch.ones(size, size, dtype=torch.bool, device=orders.device).tril(-1)  # [t, s]: s < t
    left_of = orders.unsqueeze(-1) > orders.unsqueeze(-2)  # [B, t, s]: orders[s] < orders[t]
    slots = (left_of & earlier).sum(-1)
    return torch.where(_lengths_mask(lengths, size), slots, torch.zeros_like(slots))


def slots_to_orders(slots: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`orders_to_slots`. ``slots`` ``[B, L]`` long, ``lengths`` ``[B]`` -> ``orders`` ``[B, L]``.

    Walks the steps backwards: the token inserted at step ``t`` is the ``slots[t]``-th smallest of the
    positions not taken by later steps, since later insertions never change relative order.

    :raises ValueError: if some ``slots[b, t]`` with ``t < lengths[b]`` lies outside ``0..t``.
    """
    batch_size, size = slots.shape
    valid = _lengths_mask(lengths, size)
    steps = torch.arange(size, device=slots.device)
    bad = valid & ((slots < 0) | (slots > steps))
    if bool(bad.any()):
        row, step = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"slots[{row}, {step}] = {int(slots[row, step])} is invalid: step t may only insert "
                         f"into slots 0..t; pass slots produced by orders_to_slots")
    orders = torch.empty_like(slots)
    free = torch.ones(batch_size, size, dtype=torch.bool, device=slots.device)
    for step in range(size - 1, -1, -1):
        # rank among the free positions; a padding step takes its own position (rank `step`)
        target = torch.where(valid[:, step], slots[:, step], steps[step])
        hit = free & (free.cumsum(-1) - 1 == target.unsqueeze(-1))
        position = hit.int().argmax(-1)
        orders[:, step] = position
        free[torch.arange(batch_size, device=slots.device), position] = False
    return orders


def inserted_before(orders: torch.Tensor, lengths: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Bool ``[..., L]``: position ``j`` is on the canvas after ``steps`` insertions (``ranks[j] < steps``)."""
    ranks = orders_to_ranks(orders)
    return (ranks < steps.unsqueeze(-1)) & _lengths_mask(lengths, orders.shape[-1]).expand_as(orders)


def slots_of_positions(inserted: torch.Tensor) -> torch.Tensor:
    """``z(j)`` = number of inserted positions left of ``j``: the slot that position ``j`` goes into. ``[..., L]``."""
    counts = inserted.long().cumsum(-1)
    return counts - inserted.long()
