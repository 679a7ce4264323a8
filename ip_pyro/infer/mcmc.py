"""Metropolis–Hastings over insertion orders as a Pyro MCMC kernel.

    kernel = OrderMH(model, guide)
    mcmc = pyro.infer.MCMC(kernel, num_samples=500, warmup_steps=200, num_chains=4,
                           disable_progbar=True)  # Pyro's bar writes a line per update into logs
    mcmc.run(batch)                      # batch holds ONE sequence
    mcmc.get_samples()["insertion_step"]  # [draws, L]: the step at which each position was inserted
    az.from_pyro(mcmc)                   # R-hat and ESS for insertion_step

The target is the exact posterior ``p(sigma | x) ∝ p(x, sigma)`` (``model.log_joint``). Proposals, mixed:
independence draws from the guide (if given), swapping two adjacent steps, and moving one position to another step.
The last two are symmetric; the first is corrected by ``q``.
"""
from __future__ import annotations

import math
from collections import Counter

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ip_pyro.batch import Batch
from ip_pyro.orders import orders_to_ranks
from ip_pyro.utils import evaluating

__all__ = ["OrderMH"]

MOVES = ("independence", "swap", "move")


def _as_params(order: torch.Tensor) -> dict:
    # floating point (whole numbers): Pyro's R-hat / ESS diagnostics need a floating dtype
    return {"insertion_step": orders_to_ranks(order).to(torch.get_default_dtype())}


class OrderMH(MCMCKernel):
    """MH kernel over the insertion order of one sequence; its sample site is ``insertion_step`` ``[L]``.

    :param model: an :class:`ip_pyro.models.InsertionProcess` (scored through ``log_joint``).
    :param guide: optional guide; its ``order_distribution`` provides independence proposals and initial states.
    :param independence_prob: share of independence proposals (0 without a guide); the rest is split evenly
        between adjacent swaps and single moves.
    """

    def __init__(self, model, guide=None, *, independence_prob: float = 0.5):
        if not 0.0 <= independence_prob <= 1.0:
            raise ValueError(f"independence_prob={independence_prob} must lie in [0, 1]")
        self.insertion_process = model
        self.guide = guide
        self.model = None  # no Pyro model to trace: ArviZ's from_pyro then reads the samples alone
        self.transforms = {}  # insertion_step lives in its own (discrete) space
        self.independence_prob = independence_prob if guide is not None else 0.0
        self._initial_params = None
        self._batch = None
        self._cache = None
        self._proposed, self._accepted = Counter(), Counter()

    # ------------------------------------------------------------------------------------------------- setup
    def setup(self, warmup_steps, batch: Batch, *args, **kwargs):
        if not isinstance(batch, Batch) or batch.tokens is None or batch.batch_size != 1:
            raise ValueError("OrderMH targets one sequence: run MCMC on a Batch with tokens and batch_size 1 "
                             "(e.g. batch[i])")
        self._batch = batch
        self._length = int(batch.lengths[0])
        self._cache = None
        self._proposed, self._accepted = Counter(), Counter()

    @property
    def initial_params(self):
        if self._initial_params is not None:
            return self._initial_params
        return _as_params(self._draw_initial_order())

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    def _draw_initial_order(self) -> torch.Tensor:
        width = self._batch.max_length
        if self.guide is not None:
            with torch.no_grad(), evaluating(self.guide):
                return self.guide.order_distribution(self._batch).sample()[0]
        order = torch.arange(width, device=self._batch.device)
        order[: self._length] = torch.randperm(self._length, device=self._batch.device)
        return order

    # ---------------------------------------------------------------------------------------------- scoring
    def _scores(self, order: torch.Tensor) -> tuple[float, float]:
        """``(log p(x, sigma), log q(sigma | x))`` for one order ``[L]``."""
        with torch.no_grad(), evaluating(self.insertion_process):
            log_joint = float(self.insertion_process.log_joint(self._batch, order.unsqueeze(0))[0])
            log_q = 0.0
            if self.guide is not None and self.independence_prob > 0:
                with evaluating(self.guide):
                    log_q = float(self.guide.order_distribution(self._batch).log_prob(order.unsqueeze(0))[0])
        return log_joint, log_q

    def _propose(self, order: torch.Tensor):
        length = self._length
        choice = float(torch.rand(()))
        if choice < self.independence_prob:
            with torch.no_grad(), evaluating(self.guide):
                return "independence", self.guide.order_distribution(self._batch).sample()[0]
        proposal = order.clone()
        if choice < self.independence_prob + (1 - self.independence_prob) / 2:
            step = int(torch.randint(length - 1, ()))
            proposal[step], proposal[step + 1] = order[step + 1], order[step]
            return "swap", proposal
        source, target = (int(v) for v in torch.randperm(length)[:2])
        moved = order[source]
        rest = torch.cat([order[:source], order[source + 1: length]])
        proposal[:length] = torch.cat([rest[:target], moved.view(1), rest[target:]])
        return "move", proposal

    # ----------------------------------------------------------------------------------------------- sample
    def sample(self, params):
        ranks = params["insertion_step"]
        if self._length < 2:
            return {"insertion_step": ranks}
        order = torch.argsort(ranks.long())
        if self._cache is None or not torch.equal(self._cache[0], order):
            self._cache = (order, *self._scores(order))
        _, log_joint, log_q = self._cache
        move, proposal = self._propose(order)
        proposal_joint, proposal_q = self._scores(proposal)
        log_ratio = proposal_joint - log_joint
        if move == "independence":
            log_ratio += log_q - proposal_q
        self._proposed[move] += 1
        if math.log(max(float(torch.rand(())), 1e-300)) < log_ratio:
            self._accepted[move] += 1
            self._cache = (proposal, proposal_joint, proposal_q)
            return _as_params(proposal)
        return {"insertion_step": ranks}

    def acceptance_rates(self) -> dict:
        return {move: self._accepted[move] / self._proposed[move] for move in MOVES if self._proposed[move]}

    def logging(self):
        return {f"accept {move}": f"{rate:.2f}" for move, rate in self.acceptance_rates().items()}

    def diagnostics(self):
        rates = self.acceptance_rates()
        return {"divergences": [], "acceptance rate": sum(self._accepted.values()) /
                max(1, sum(self._proposed.values())), **{f"acceptance {k}": v for k, v in rates.items()}}
