"""A state-dependent order policy: q(sigma_t | sigma_<t, x) rescores the remaining positions given which ones are
already inserted (one network pass per step). The closed-form next-index expectation of the ELBO still applies:
one pass on the current canvas state gives q(next = j | inserted) for every j."""
from __future__ import annotations


import torch
from pyro.nn import pyro_method

from ip_pyro.guides.base import ScorerGuide
from ip_pyro.batch import Batch
from ip_pyro.distributions import OrderDistribution, masked_log_softmax, particle_copies
from ip_pyro.networks import OrderScorer

__all__ = ["SequentialGuide", "SequentialOrders"]


class SequentialOrders(OrderDistribution):
    """The order distribution of a :class:`SequentialGuide` for one batch (``B`` sequences of padded length
    ``L``), a Pyro distribution with batch shape ``[B]`` and event shape ``[L]``. Every method batches the network
    passes it needs; ``chunk_size`` bounds rows per pass."""

    def __init__(self, scorer: OrderScorer, batch: Batch, chunk_size: int = 4096):
        self.scorer, self.batch, self.chunk_size = scorer, batch, chunk_size
        self.width, self.lengths = batch.max_length, batch.lengths
        self.valid = torch.arange(self.width, device=batch.device) < batch.lengths.unsqueeze(-1)
        super().__init__(batch.lengths.shape, torch.Size([self.width]), validate_args=False)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != self.batch_shape:
            raise ValueError("SequentialOrders cannot be expanded to another batch shape; build it for the batch")
        return self

    def _log_probs(self, inserted: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` next-index log-probabilities for inserted masks ``[N, L]`` aligned with ``batch.repeat``."""
        rows = inserted.shape[0]
        particle_copies(rows, self.batch_shape[0])
        parts = []
        for begin in range(0, rows, self.chunk_size):
            chunk = inserted[begin:begin + self.chunk_size]
            index = self._row_sequences(chunk.shape[0], inserted.device, begin)
            part = self.batch[index]
            scores = self.scorer(part.tokens, part.lengths, part.prompt, part.prompt_lengths, inserted=chunk)
            parts.append(masked_log_softmax(scores, self.valid[index] & ~chunk))
        return torch.cat(parts) if parts else torch.zeros(0, self.width, device=inserted.device)

    def next_index_log_probs(self, inserted: torch.Tensor) -> torch.Tensor:
        return self._log_probs(inserted)

    def log_prob_steps(self, orders: torch.Tensor) -> torch.Tensor:
        """``[..., B, L]`` per-step log-probabilities, all prefixes scored in one batched pass."""
        return self.log_prob_steps_and_next(orders)[0]

    def log_prob_steps_and_next(self, orders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        all_next = self.all_next_index_log_probs(orders)  # the L prefix sets of every order, one batched pass
        return self._chosen_steps(all_next, orders), all_next

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        copies = shape.numel() // self.batch_shape[0] if self.batch_shape[0] else 0
        rows = copies * self.batch_shape[0]
        orders = torch.arange(self.width, device=self.valid.device).repeat(rows, 1)
        inserted = torch.zeros(rows, self.width, dtype=torch.bool, device=self.valid.device)
        live_rows = self.valid.repeat(copies, 1)
        with torch.no_grad():
            for step in range(self.width):
                live = live_rows[:, step]
                if not bool(live.any()):
                    break
                log_probs = self._log_probs(inserted)
                safe = torch.where(live.unsqueeze(-1), log_probs, torch.zeros_like(log_probs))
                position = torch.distributions.Categorical(logits=safe).sample()
                position = torch.where(live, position, torch.full_like(position, step))
                orders[:, step] = position
                inserted = inserted | (torch.nn.functional.one_hot(position, self.width).bool() & live.unsqueeze(-1))
        return orders.reshape(shape + (self.width,))


class SequentialGuide(ScorerGuide):
    """q(sigma | x) = prod_t softmax_j f_phi(x, prompt, inserted_t)_j over the remaining positions j.

    Arguments as :class:`ip_pyro.guides.base.ScorerGuide`; starts at the uniform order (zero-initialised scores).
    Sampling takes ``L`` network passes; ``log_prob`` scores all ``L`` prefixes in one batched pass.
    """

    @pyro_method
    def order_distribution(self, batch: Batch) -> SequentialOrders:
        self._check(batch)
        return SequentialOrders(self.scorer, batch)
