"""Uniform insertion order: every order equally likely (the random-order Insertion Process, AO-IP)."""
from __future__ import annotations

import torch
from pyro.nn import pyro_method

from ip_pyro.guides.base import OrderGuide
from ip_pyro.batch import Batch
from ip_pyro.distributions import PlackettLuce

__all__ = ["UniformOrderGuide"]


class UniformOrderGuide(OrderGuide):
    """q(sigma | x) = 1 / L!. No parameters."""

    @pyro_method
    def order_distribution(self, batch: Batch) -> PlackettLuce:
        self._check(batch)
        logits = torch.zeros(batch.tokens.shape, dtype=torch.get_default_dtype(), device=batch.device)
        return PlackettLuce(logits, batch.lengths)
