"""Amortised Plackett–Luce guide: a Transformer over ``[prompt ; x]`` scores every position; orders are drawn
by Gumbel-top-k (higher score = inserted earlier)."""
from __future__ import annotations

from pyro.nn import pyro_method

from ip_pyro.guides.base import ScorerGuide
from ip_pyro.batch import Batch
from ip_pyro.distributions import PlackettLuce

__all__ = ["PlackettLuceGuide"]


class PlackettLuceGuide(ScorerGuide):
    """q(sigma | x) = PlackettLuce(f_phi(x, prompt)). Starts at the uniform order (zero-initialised scores).

    Arguments as :class:`ip_pyro.guides.base.ScorerGuide`: ``vocab_size``, then ``d_model=64``, ``n_layers=3``,
    ``n_heads=4``, ``max_length=64``, ``dropout=0.0``.
    """

    @pyro_method
    def order_distribution(self, batch: Batch) -> PlackettLuce:
        self._check(batch)
        scores = self.scorer(batch.tokens, batch.lengths, batch.prompt, batch.prompt_lengths)
        return PlackettLuce(scores, batch.lengths)
