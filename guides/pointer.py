"""The pointer guide: a history-dependent order posterior q(sigma | x) = prod_t q(sigma_t | sigma_<t, x) at about
Plackett–Luce's cost.

``x`` (and the prompt) is encoded once, bidirectionally, by the same encoder as the Plackett–Luce guide; a small
causal stream over the order (:class:`ip_pyro.networks.OrderPointer`) then scores the unwritten positions at every
step from what is written and how (neighbours written, share of the canvas to the left). One pass gives ``log q``
and every step's next-position distribution for ``K`` orders; sampling runs ``L`` KV-cached stream steps.

    q(sigma_t = j | sigma_<t, x) = softmax over unwritten j of [ w_j(x) + pointer_t(j) ]

``w`` is a Plackett–Luce score per position and ``pointer_t`` starts at zero, so a fresh guide is the uniform order
and the Plackett–Luce family is the special case ``pointer = 0``.
"""
from __future__ import annotations

import math

import torch
from pyro.nn import pyro_method

from ip_pyro.batch import Batch
from ip_pyro.distributions import OrderDistribution, masked_log_softmax, particle_copies
from ip_pyro.guides.base import ScorerGuide
from ip_pyro.networks import OrderPointer, OrderScorer, check_network_sizes

__all__ = ["PointerGuide", "PointerOrders"]


class PointerOrders(OrderDistribution):
    """The order distribution of a :class:`PointerGuide` for one batch (``B`` sequences of padded length ``L``): a
    Pyro distribution with batch shape ``[B]`` and event shape ``[L]``. The encoder runs once, here; every method
    reuses its states for any number of orders (rows particle-major, as :meth:`ip_pyro.Batch.repeat`; the
    encoder's outputs are not copied per order)."""

    def __init__(self, scorer: OrderScorer, pointer: OrderPointer, batch: Batch):
        self.pointer, self.width, self.lengths = pointer, batch.max_length, batch.lengths
        encoded = scorer.encode(batch.tokens, batch.lengths, batch.prompt, batch.prompt_lengths)  # [B, L+1, D]
        self.start, self.states = encoded[:, 0], encoded[:, 1:]
        self.static = scorer.score(self.states).squeeze(-1)  # the Plackett-Luce part w [B, L]
        self.keys = pointer.keys(self.states)  # [B, L, F, r]
        self.valid = torch.arange(self.width, device=batch.device) < batch.lengths.unsqueeze(-1)
        super().__init__(batch.lengths.shape, torch.Size([self.width]), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != self.batch_shape:
            raise ValueError("PointerOrders cannot be expanded to another batch shape; build it for the batch")
        return self

    def all_next_index_log_probs(self, orders: torch.Tensor) -> torch.Tensor:
        """Every step's ``log q(sigma_t = j | sigma_<t, x)`` ``[..., B, L, L]`` for orders ``[..., B, L]``, one pass."""
        shape = orders.shape
        flat = orders.reshape(-1, self.width)
        copies = particle_copies(flat.shape[0], self.batch_shape[0])
        static, valid = self.static.repeat(copies, 1), self.valid.repeat(copies, 1)
        pointer, written = self.pointer(self.states, self.start, self.keys, flat)  # [R, L, L] each
        log_probs = masked_log_softmax(static.unsqueeze(1) + pointer, valid.unsqueeze(1) & ~written)
        return log_probs.reshape(shape + (self.width,))

    def log_prob_steps(self, orders: torch.Tensor) -> torch.Tensor:
        """``log q(sigma_t | sigma_<t, x)`` per step ``[..., B, L]``; 0 on padding steps."""
        return self.log_prob_steps_and_next(orders)[0]

    def log_prob_steps_and_next(self, orders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        all_next = self.all_next_index_log_probs(orders)
        return self._chosen_steps(all_next, orders), all_next

    def next_index_log_probs(self, inserted: torch.Tensor) -> torch.Tensor:
        raise ValueError("the pointer guide's next position depends on the order written so far, not only on the "
                         "set inserted: use all_next_index_log_probs(orders) (every step of given orders)")

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Orders ``[*sample_shape, B, L]``: ``L`` KV-cached stream steps, each a categorical (Gumbel-max) over the
        unwritten positions (padding steps keep the padding convention, step ``t`` at position ``t``)."""
        shape = torch.Size(sample_shape) + self.batch_shape
        copies = shape.numel() // self.batch_shape[0] if self.batch_shape[0] else 0
        rows = copies * self.batch_shape[0]
        with torch.no_grad():
            gumbel = -torch.empty(rows, self.width, self.width, device=self.valid.device).exponential_().log()
            orders, _ = self._decode(copies, lambda scores, step: (scores + gumbel[:, step]).argmax(-1))
        return orders.reshape(shape + (self.width,))

    def greedy_order(self) -> torch.Tensor:
        """The order that takes the most probable position at every step ``[B, L]`` (a cheap stand-in for the
        mode of a history-dependent distribution)."""
        with torch.no_grad():
            return self._decode(1, lambda scores, step: scores.argmax(-1))[0]

    def log_prob_stepwise(self, orders: torch.Tensor) -> torch.Tensor:
        """``log q(orders)`` ``[..., B]`` accumulated step by step through the KV-cached stream the sampler uses
        (``L`` stream steps; a check of the one-pass ``log_prob``, which equals it)."""
        shape = orders.shape
        flat = orders.reshape(-1, self.width)
        copies = particle_copies(flat.shape[0], self.batch_shape[0])
        return self._decode(copies, lambda scores, step: flat[:, step], score=True)[1].reshape(shape[:-1])

    def _decode(self, copies: int, choose, score: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Orders ``[copies * B, L]`` built step by step with ``choose(scores [R, L], step) -> positions [R]`` (scores
        ``-inf`` where not allowed), and with ``score`` their ``log q`` ``[copies * B]`` (else zeros). ``closed``
        carries the static scores with ``-inf`` on padding and on written positions, one scatter a step."""
        start, static, valid = self.start.repeat(copies, 1), self.static.repeat(copies, 1), self.valid.repeat(copies, 1)
        orders = torch.arange(self.width, device=valid.device).repeat(valid.shape[0], 1)
        log_q = static.new_zeros(valid.shape[0])
        closed = static.masked_fill(~valid, -math.inf)
        state = self.pointer.begin(start, self.width)
        for step in range(self.width):
            live = valid[:, step]
            if not bool(live.any()):
                break
            pointer = self.pointer.scores(state, self.keys)
            position = torch.where(live, choose(closed + pointer, step), step)
            orders[:, step] = position
            if score:
                allowed = closed > -math.inf
                chosen = masked_log_softmax(static + pointer, allowed).gather(1, position.unsqueeze(-1)).squeeze(-1)
                log_q = log_q + torch.where(live, chosen, 0.0)
            if step + 1 < self.width:
                closed = closed.scatter(1, position.unsqueeze(-1), -math.inf)
                state = self.pointer.write(state, self.states, position)
        return orders, log_q


class PointerGuide(ScorerGuide):
    """q(sigma | x) = prod_t q(sigma_t | sigma_<t, x): a Plackett–Luce score per position plus a pointer stream's
    score of each unwritten position given the order so far (:mod:`guides.pointer`).

    Arguments as :class:`ip_pyro.guides.base.ScorerGuide`, and
    :param stream_width, stream_heads, stream_layers: the causal stream over the order (narrower than the encoder:
        it runs once per order, the encoder once per string).
    :param rank: width of each feature's query-key product.
    Starts at the uniform order. ``log_prob`` and every step's next-position distribution take one encoder pass
    and one stream pass; sampling takes one encoder pass and ``L`` cached stream steps.
    """

    def __init__(self, vocab_size: int, *, stream_width: int = 32, stream_heads: int = 2, stream_layers: int = 1,
                 rank: int = 16, **sizes):
        check_network_sizes(d_model=stream_width, n_heads=stream_heads, n_layers=stream_layers, rank=rank)
        super().__init__(vocab_size, **sizes)
        self.config.update(stream_width=stream_width, stream_heads=stream_heads, stream_layers=stream_layers,
                           rank=rank)
        self.pointer = OrderPointer(self.config["d_model"], stream_width, stream_heads, stream_layers, rank,
                                    self.config["dropout"])

    @pyro_method
    def order_distribution(self, batch: Batch) -> PointerOrders:
        self._check(batch)
        return PointerOrders(self.scorer, self.pointer, batch)
