"""Outside-in insertion order: sigma = (0, L-1, 1, L-2, ...), alternating between the two ends and meeting in the
middle. On a path whose two ends are given (source and goal in the prompt) each step extends one end by a lookup
until a front reaches a branch point; a one-sided order (l2r, r2l) must choose there with only one end in view."""
from __future__ import annotations

import torch

from ip_pyro.guides.base import FixedOrderGuide

__all__ = ["OutsideInGuide"]


class OutsideInGuide(FixedOrderGuide):
    """A point mass on the outside-in order of each sequence (left end first). No parameters."""

    def positions(self, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.where(steps % 2 == 0, steps // 2, lengths - 1 - steps // 2)
