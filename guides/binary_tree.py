"""Balanced binary-tree (middle-out) insertion order, as in the Insertion Transformer: insert the middle token,
then the middles of the two halves, level by level."""
from __future__ import annotations

import functools

import torch

from ip_pyro.guides.base import FixedOrderGuide

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


class BinaryTreeGuide(FixedOrderGuide):
    """A point mass on the middle-out order of each sequence. No parameters."""

    def positions(self, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        width = steps.shape[1]
        table = torch.tensor([list(middle_out_order(length)) + list(range(length, width)) for length in range(width + 1)],
                             dtype=torch.long, device=steps.device).reshape(width + 1, width)  # one row per length
        return table[lengths.squeeze(-1)]
