"""Right-to-left insertion order: sigma = (L-1, ..., 1, 0), so the IP always inserts at the front. On goal-
conditioned paths it writes the path backwards from the goal, which turns every step into a lookup."""
from __future__ import annotations

import torch
from pyro.nn import pyro_method

from guides.base import OrderGuide
from ip_pyro.batch import Batch
from ip_pyro.distributions import FixedOrder
from ip_pyro.orders import pad_orders

__all__ = ["RightToLeftGuide"]


class RightToLeftGuide(OrderGuide):
    """A point mass on the right-to-left order of each sequence. No parameters."""

    @pyro_method
    def order_distribution(self, batch: Batch) -> FixedOrder:
        self._check(batch)
        steps = torch.arange(batch.max_length, device=batch.device).expand(batch.batch_size, batch.max_length)
        orders = pad_orders(batch.lengths.unsqueeze(-1) - 1 - steps, batch.lengths)
        return FixedOrder(orders, batch.lengths)
