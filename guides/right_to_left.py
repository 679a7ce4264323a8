"""Right-to-left insertion order: sigma = (L-1, ..., 1, 0), so the IP always inserts at the front. On goal-
conditioned paths it writes the path backwards from the goal, which turns every step into a lookup."""
from __future__ import annotations

import torch

from ip_pyro.guides.base import FixedOrderGuide

__all__ = ["RightToLeftGuide"]


class RightToLeftGuide(FixedOrderGuide):
    """A point mass on the right-to-left order of each sequence. No parameters."""

    def positions(self, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return lengths - 1 - steps
