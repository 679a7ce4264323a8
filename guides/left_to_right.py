"""Left-to-right insertion order: sigma = identity, so the IP becomes an autoregressive model that always
inserts at the end."""
from __future__ import annotations

import torch

from ip_pyro.guides.base import FixedOrderGuide

__all__ = ["LeftToRightGuide"]


class LeftToRightGuide(FixedOrderGuide):
    """A point mass on the left-to-right order. No parameters."""

    def positions(self, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return steps
