"""Amortised Plackett–Luce guide: a Transformer over ``[prompt ; x]`` scores every position; orders are drawn
by Gumbel-top-k (higher score = inserted earlier)."""
from __future__ import annotations

from pyro.nn import pyro_method

from guides.base import OrderGuide
from ip_pyro.batch import Batch
from ip_pyro.distributions import PlackettLuce
from ip_pyro.networks import OrderScorer, check_network_sizes

__all__ = ["PlackettLuceGuide"]


class PlackettLuceGuide(OrderGuide):
    """q(sigma | x) = PlackettLuce(f_phi(x, prompt)). Starts at the uniform order (zero-initialised scores).

    :param vocab_size: content vocabulary size (same ids as the model).
    :param d_model, n_layers, n_heads, dropout: scorer size (:class:`ip_pyro.networks.OrderScorer`).
    :param max_length: longest sequence the guide accepts.
    """

    def __init__(self, vocab_size: int, *, d_model: int = 64, n_layers: int = 3, n_heads: int = 4,
                 max_length: int = 64, dropout: float = 0.0):
        check_network_sizes(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                            max_length=max_length, dropout=dropout)
        super().__init__()
        self.vocab_size, self.max_length = vocab_size, max_length
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                           max_length=max_length, dropout=dropout)
        self.scorer = OrderScorer(vocab_size, d_model, n_layers, n_heads, dropout)

    @pyro_method
    def order_distribution(self, batch: Batch) -> PlackettLuce:
        self._check(batch)
        if batch.max_length and int(batch.lengths.max()) > self.max_length:
            raise ValueError(f"a sequence has length {int(batch.lengths.max())} > the guide's "
                             f"max_length={self.max_length}; build the guide with a larger max_length")
        scores = self.scorer(batch.tokens, batch.lengths, batch.prompt, batch.prompt_lengths)
        return PlackettLuce(scores, batch.lengths)
