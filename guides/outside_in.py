"""Outside-in insertion order: sigma = (0, L-1, 1, L-2, ...), alternating between the two ends and meeting in the
middle. On a path whose two ends are given (source and goal in the prompt) each step extends one end by a lookup
until a front reaches a branch point; a one-sided order (l2r, r2l) must choose there with only one end in view."""
from __future__ import annotations

import torch
from pyro.nn import pyro_method

from guides.base import OrderGuide
from ip_pyro.batch import Batch
from ip_pyro.distributions import FixedOrder
from ip_pyro.orders import pad_orders

__all__ = ["OutsideInGuide"]


class OutsideInGuide(OrderGuide):
    """A point mass on the outside-in order of each sequence (left end first). No parameters."""

    @pyro_method
    def order_distribution(self, batch: Batch) -> FixedOrder:
        self._check(batch)
        steps = torch.arange(batch.max_length, device=batch.device).expand(batch.batch_size, batch.max_length)
        from_right = batch.lengths.unsqueeze(-1) - 1 - steps // 2
        orders = pad_orders(torch.where(steps % 2 == 0, steps // 2, from_right), batch.lengths)
        return FixedOrder(orders, batch.lengths)
