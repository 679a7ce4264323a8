"""Left-to-right insertion order: sigma = identity, so the IP becomes an autoregressive model that always
inserts at the end."""
from __future__ import annotations

from pyro.nn import pyro_method

from guides.base import OrderGuide
from ip_pyro.batch import Batch
from ip_pyro.distributions import FixedOrder
from ip_pyro.orders import identity_orders

__all__ = ["LeftToRightGuide"]


class LeftToRightGuide(OrderGuide):
    """A point mass on the left-to-right order. No parameters."""

    @pyro_method
    def order_distribution(self, batch: Batch) -> FixedOrder:
        self._check(batch)
        return FixedOrder(identity_orders(batch.lengths, batch.max_length), batch.lengths)
