"""The exact posterior over insertion orders, p(sigma | x), by dynamic programming on the lattice of inserted
sets (sequences of length <= 8). A reference for diagnostics: importance weights under it are constant."""
from __future__ import annotations

import math

import torch
from pyro.nn import pyro_method

from ip_pyro.guides.base import OrderGuide
from ip_pyro.batch import Batch
from ip_pyro.distributions import OrderDistribution
from ip_pyro.infer.likelihood import MAX_EXACT_LENGTH, SubsetMessages, subset_messages

__all__ = ["ExactPosteriorGuide", "ExactPosterior"]


class ExactPosterior(OrderDistribution):
    """p(sigma | x) for a batch, from the model's subset messages (see :func:`ip_pyro.infer.subset_messages`).

    ``log q(sigma_t | sigma_<t) = log p(go, insert sigma_t | S_t) + beta(S_t + sigma_t) - beta(S_t)`` with ``S_t``
    the set inserted before step ``t`` and ``beta`` the backward message, so every method is exact.
    """

    def __init__(self, messages: SubsetMessages, lengths: torch.Tensor, width: int):
        self.messages, self.lengths, self.width = messages, lengths, width
        self.bits = 1 << torch.arange(width, device=lengths.device)
        super().__init__(lengths.shape, torch.Size([width]), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != self.batch_shape:
            raise ValueError("ExactPosterior cannot be expanded to another batch shape; build it for the batch")
        return self

    def _next_log_probs(self, codes: torch.Tensor) -> torch.Tensor:
        """``[..., B, L]`` conditionals for inserted-set codes ``[..., B]``."""
        rows = torch.arange(self.lengths.shape[0], device=codes.device).expand(codes.shape)
        targets = codes.unsqueeze(-1) | self.bits  # [..., B, L]
        beta = self.messages.backward
        flows = self.messages.go[rows, codes].unsqueeze(-1) + self.messages.insert[rows, codes]
        log_probs = flows + beta[rows.unsqueeze(-1), targets] - beta[rows, codes].unsqueeze(-1)
        inserted = (codes.unsqueeze(-1) & self.bits) != 0
        valid = torch.arange(self.width, device=codes.device) < self.lengths.unsqueeze(-1)
        return log_probs.masked_fill(inserted | ~valid, -math.inf)

    def next_index_log_probs(self, inserted: torch.Tensor) -> torch.Tensor:
        aligned, shape = self._particle_view(inserted)
        codes = (aligned.long() * self.bits).sum(-1)
        log_probs = self._next_log_probs(codes)
        return log_probs if shape is None else log_probs.reshape(shape)

    def log_prob_steps(self, orders: torch.Tensor) -> torch.Tensor:
        steps = []
        codes = torch.zeros(orders.shape[:-1], dtype=torch.long, device=orders.device)
        valid = torch.arange(self.width, device=orders.device) < self.lengths.unsqueeze(-1)
        for step in range(self.width):
            position = orders[..., step]
            steps.append(self._next_log_probs(codes).gather(-1, position.unsqueeze(-1)).squeeze(-1))
            codes = codes | (1 << position)
        if not steps:
            return torch.zeros(orders.shape, device=orders.device)
        terms = torch.stack(steps, dim=-1)
        return torch.where(valid.expand_as(terms), terms, torch.zeros_like(terms))


    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        codes = torch.zeros(shape, dtype=torch.long, device=self.lengths.device)
        orders = torch.arange(self.width, device=self.lengths.device).expand(shape + (self.width,)).clone()
        with torch.no_grad():
            for step in range(self.width):
                live = step < self.lengths.expand(shape)
                log_probs = self._next_log_probs(codes)
                safe = torch.where(live.unsqueeze(-1), log_probs, torch.zeros_like(log_probs))
                position = torch.distributions.Categorical(logits=safe).sample()
                position = torch.where(live, position, torch.full_like(position, step))
                orders[..., step] = position
                codes = torch.where(live, codes | (1 << position), codes)
        return orders


class ExactPosteriorGuide(OrderGuide):
    """q(sigma | x) = p(sigma | x) under ``model``, exactly (``2^L`` canvases per sequence, ``L <= 8``).

    It has no parameters of its own and is not trained; use it as the reference a trained guide is compared with.
    Its Pyro program samples the site ``order`` like every guide, so it also works under ``TraceGraph_ELBO``.
    """

    def __init__(self, model, *, max_length: int = MAX_EXACT_LENGTH):
        super().__init__()
        self._model = (model,)  # a tuple: the model's weights must not become this guide's parameters
        self.max_length = max_length

    @pyro_method
    def order_distribution(self, batch: Batch) -> ExactPosterior:
        self._check(batch)
        with torch.no_grad():
            messages = subset_messages(self._model[0], batch, max_length=self.max_length)
        return ExactPosterior(messages, batch.lengths, batch.max_length)
