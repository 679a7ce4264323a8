"""The interface every guide family shares.

A guide is a :class:`~pyro.nn.PyroModule`; ``guide(batch)`` is a Pyro guide program for
:class:`ip_pyro.models.InsertionProcess`: it samples an order at site ``order`` (auxiliary: the model has no such site)
and then emits ``slot_{t}`` and ``token_{t}`` as ``Delta`` sites, so that the model builds exactly ``batch.tokens``.
Besides the program a guide offers:

* ``order_distribution(batch)`` -> an order distribution (see :mod:`ip_pyro.distributions`) with ``sample``,
  ``log_prob``, ``log_prob_steps`` and ``next_index_log_probs``;
* ``next_index_log_probs(batch, inserted)`` -> ``log q(next = j | inserted)`` ``[N, L_max]``, ``-inf`` on
  inserted and padding positions (rows aligned with ``batch.repeat(N // B)``).

A new family subclasses :class:`OrderGuide` and implements ``order_distribution``.
"""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule, pyro_method

from ip_pyro.batch import Batch, check_batch
from ip_pyro.distributions import FixedOrder
from ip_pyro.networks import OrderScorer, check_max_positions, check_network_sizes
from ip_pyro.orders import orders_to_slots, pad_orders
from ip_pyro.utils import unique_pyro_name

__all__ = ["OrderGuide", "FixedOrderGuide", "ScorerGuide"]


class OrderGuide(PyroModule):
    """Base class of the guide families: q(sigma | x) plus the deterministic slot/token sites it implies."""

    def __init__(self):
        super().__init__(unique_pyro_name(type(self).__name__))
        self.config = {}  # constructor arguments, for checkpoints

    def order_distribution(self, batch: Batch):
        """The order distribution q(sigma | x) for ``batch``: batch shape ``[B]``, event shape ``[L_max]``."""
        raise NotImplementedError

    @pyro_method
    def next_index_log_probs(self, batch: Batch, inserted: torch.Tensor) -> torch.Tensor:
        """``log q(next = j | inserted)`` ``[N, L_max]`` (``N = k * B`` rows aligned with ``batch.repeat(k)``)."""
        return self.order_distribution(batch).next_index_log_probs(inserted)

    @staticmethod
    def _check(batch: Batch) -> None:
        if not isinstance(batch, Batch) or batch.tokens is None:
            raise ValueError("a guide needs a batch with tokens (the sequences whose order it infers); "
                             "build one with ip_pyro.collate")

    def forward(self, batch: Batch) -> torch.Tensor:
        """The guide program. Returns the sampled orders ``[B, L_max]``."""
        self._check(batch)
        size, lengths = batch.batch_size, batch.lengths
        horizon = int(lengths.max()) if size else 0
        with pyro.plate("data", size):
            orders = pyro.sample("order", self.order_distribution(batch), infer={"is_auxiliary": True})
            slots = orders_to_slots(orders, lengths)
            tokens_in_order = batch.tokens.gather(1, orders)
            for t in pyro.markov(range(horizon)):
                with poutine.mask(mask=t < lengths):
                    pyro.sample(f"slot_{t}", dist.Delta(slots[:, t]))
                    pyro.sample(f"token_{t}", dist.Delta(tokens_in_order[:, t]))
        return orders


class FixedOrderGuide(OrderGuide):
    """Base of the fixed orders given in closed form: a point mass on one order per sequence. No parameters.

    A family implements ``positions(steps, lengths)``: the position inserted at each step, from the steps
    ``[B, L_max]`` and the lengths ``[B, 1]``; entries for steps ``t >= L`` are replaced by the padding convention.
    """

    def positions(self, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @pyro_method
    def order_distribution(self, batch: Batch) -> FixedOrder:
        self._check(batch)
        steps = torch.arange(batch.max_length, device=batch.device).expand(batch.batch_size, batch.max_length)
        return FixedOrder(pad_orders(self.positions(steps, batch.lengths.unsqueeze(-1)), batch.lengths), batch.lengths)


class ScorerGuide(OrderGuide):
    """Base of the amortised guides: a Transformer :class:`~ip_pyro.networks.OrderScorer` over ``[prompt ; x]``.

    :param vocab_size: content vocabulary size (same ids as the model).
    :param d_model, n_layers, n_heads, dropout: scorer size.
    :param max_length: longest sequence the guide accepts.
    :param max_positions: learned absolute position embeddings over ``[prompt ; BOS ; x]`` (``0``: rotary only).
    :param prompt_group: read the prompt as groups of this many tokens (see :class:`ip_pyro.models.InsertionProcess`).
    """

    def __init__(self, vocab_size: int, *, d_model: int = 64, n_layers: int = 3, n_heads: int = 4,
                 max_length: int = 64, dropout: float = 0.0, max_positions: int = 0,
                 prompt_group: int = 1, embed_std: float = 0.02):
        check_network_sizes(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                            max_length=max_length, dropout=dropout, prompt_group=prompt_group, embed_std=embed_std)
        check_max_positions(max_positions, max_length)
        super().__init__()
        self.vocab_size, self.max_length = vocab_size, max_length
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                           max_length=max_length, dropout=dropout, max_positions=max_positions,
                           prompt_group=prompt_group, embed_std=embed_std)
        self.scorer = OrderScorer(vocab_size, d_model, n_layers, n_heads, dropout, max_positions=max_positions,
                                  prompt_group=prompt_group, embed_std=embed_std)

    def _check(self, batch: Batch) -> None:
        super()._check(batch)
        check_batch(batch, self.vocab_size, self.max_length, module=self, component="guide")
