"""Balanced binary-tree (middle-out) insertion order, as in the Insertion Transformer: insert the middle token,
then the middles of the two halves, level by level."""
from __future__ import annotations

import functools

import torch
from pyro.nn import pyro_method

from guides.base import OrderGuide
from ip_pyro.batch import Batch
from ip_pyro.distributions import FixedOrder

__all__ = ["BinaryTreeGuide", "middle_out_order"]


@functools.lru_cache(maxsize=None)
def middle_out_order(length: int) -> tuple:
    """Level order of the balanced binary tree over positions ``0..length-1`` (left middle for even spans)."""
    order, frontier = [], [(0, length)]
    while frontier:
        spans = []
        for low, high in frontier:
            if low < high:
                middle = (low + high - 1) // 2
                order.append(middle)
                spans += [(low, middle), (middle + 1, high)]
        frontier = spans
    return tuple(order)


class BinaryTreeGuide(OrderGuide):
    """A point mass on the middle-out order of each sequence. No parameters."""

    @pyro_method
    def order_distribution(self, batch: Batch) -> FixedOrder:
        self._check(batch)
        width = batch.max_length
        rows = [list(middle_out_order(length)) + list(range(length, width)) for length in batch.lengths.tolist()]
        orders = torch.tensor(rows, dtype=torch.long, device=batch.device).reshape(len(rows), width)
        return FixedOrder(orders, batch.lengths)
