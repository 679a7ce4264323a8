r"""The Insertion Process ELBO with the next inserted index in closed form and RLOO across particles.

For one sequence ``x`` of length ``L`` and an order ``sigma ~ q(sigma | x)``::

    ELBO = E_q[ sum_{t<L} F_t(sigma_<t) ] + log p_stop(x)
    F_t  = log(1 - p_stop(c_t)) + sum_{j not in sigma_<t} q(j | sigma_<t) [log p(z(j), x_j | c_t) - log q(j | sigma_<t)]

(``F_L := log p_stop(x)``). One decoder pass on ``c_t`` scores every candidate ``j``. Estimator, per sequence:
``t ~ Uniform{0..L}`` shared by the ``M`` particles, ``R_m = (L + 1) F_t(sigma^m_<t)`` and

    surrogate = mean_m [ R_m + stopgrad(R_m - b_m) * (log q(sigma^m_<t) - stopgrad(log q(sigma^m_<t))) ]

with the leave-one-out baseline ``b_m = mean_{k != m} R_k`` (``b = 0`` when ``M = 1``). With ``num_steps = K > 1``
each sequence scores ``K`` distinct steps drawn uniformly without replacement (all ``L + 1`` when ``L + 1 <= K``),
each weighted ``(L + 1) / min(K, L + 1)``: every step is included with probability ``min(K, L + 1) / (L + 1)``, so
the sum stays unbiased; the particles share the steps and each step has its own leave-one-out baseline. The score-function term
has value 0, so the surrogate's value is the ELBO estimate and its gradient is an unbiased ELBO gradient for the
model (through ``R``) and the guide (through the closed-form weights and the score-function term).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from pyro.infer import ELBO

from ip_pyro.batch import Batch, check_model_and_guide
from ip_pyro.orders import inserted_before
from ip_pyro.utils import is_count

__all__ = ["InsertionELBO", "ELBOEstimate", "SurrogateObjective", "draw_steps", "check_steps", "live_steps"]


def draw_steps(lengths: torch.Tensor, width: int, count: int) -> torch.Tensor:
    """``count`` distinct steps per row, uniform without replacement from ``0..L``: ``[count, N]`` for lengths
    ``[N]``; where ``L + 1 < count`` the entries after the first ``L + 1`` are padding (not live)."""
    if count == 1:
        return (torch.rand(lengths.shape, device=lengths.device) * (lengths + 1)).long().clamp(max=lengths)[None]
    keys = torch.rand(lengths.shape[0], width + 1, device=lengths.device)
    keys = keys.masked_fill(torch.arange(width + 1, device=lengths.device) > lengths.unsqueeze(-1), 2.0)
    return keys.argsort(-1)[:, :count].T  # steps beyond L sort last and are not live


class ELBOEstimate(NamedTuple):
    """Per-sequence results ``[B]``: ``elbo`` (unbiased ELBO estimate, no gradient path needed) and ``surrogate``
    (same value; differentiate it for the gradient estimate)."""

    elbo: torch.Tensor
    surrogate: torch.Tensor


class SurrogateObjective(ELBO):
    """Pyro's ``ELBO`` interface for an objective whose ``estimate(model, guide, batch, ...)`` returns per-sequence
    values with a differentiable ``surrogate`` and the bound itself in the field named by ``bound``: ``loss`` and
    ``loss_and_grads`` (hence ``svi.step``) return minus the bound summed over the batch, as one float."""

    bound = "elbo"

    def estimate(self, model, guide, batch, **kwargs):
        raise NotImplementedError

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError(f"{type(self).__name__} scores the model through step_log_probs and log_joint, "
                                  "not through traces")

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """``-sum_b surrogate_b``: differentiable; its value is minus the bound's estimate."""
        return -self.estimate(model, guide, *args, **kwargs).surrogate.sum()

    def loss(self, model, guide, *args, **kwargs) -> float:
        """Minus the bound's estimate, summed over the batch (no gradients)."""
        with torch.no_grad():
            return -float(getattr(self.estimate(model, guide, *args, **kwargs), self.bound).sum())

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """Backpropagate the surrogate into model and guide parameters; return minus the bound's estimate."""
        surrogate_loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if surrogate_loss.requires_grad:
            surrogate_loss.backward(retain_graph=self.retain_graph)
        return float(surrogate_loss.detach())


class InsertionELBO(SurrogateObjective):
    """ELBO for :class:`ip_pyro.models.InsertionProcess` with any guide of the :class:`ip_pyro.guides.base.OrderGuide` interface.

    :param num_particles: ``M`` posterior orders per sequence (RLOO needs ``M >= 2``; ``M = 1`` uses no baseline).
    :param step_sampling: ``"uniform"`` scores one step ``t ~ U{0..L}`` per sequence, scaled by ``L + 1`` (all
        particles share it); ``"all"`` sums every step exactly (``model.all_step_log_probs``: ``L + 1`` canvases per
        particle with the canvas decoder, one pass per particle with the causal decoder).
    :param num_steps: with ``step_sampling="uniform"``, how many distinct steps ``K`` to score per sequence and
        order (one batched decoder pass for all of them); ``1`` is the paper's estimator.
    :param entropy_weight: ``beta`` multiplying the guide's ``-log q`` terms (1 = the ELBO). ``beta < 1`` rewards
        a sharper order distribution, a way out of the uniform-order fixed point (anneal it to 1: the value is an
        ELBO only at 1). Settable between steps (``elbo.entropy_weight = ...``).
    :param closed_form: take the expectation over the next inserted index in closed form (default). With
        ``False`` the sampled next index ``sigma_t`` is scored instead (the plain score-function estimator).

    ``loss`` and ``loss_and_grads`` return ``-ELBO`` summed over the batch, as Pyro's ELBOs do.
    """

    def __init__(self, num_particles: int = 2, step_sampling: str = "uniform", closed_form: bool = True,
                 num_steps: int = 1, entropy_weight: float = 1.0):
        if not is_count(num_particles):
            raise ValueError(f"num_particles={num_particles!r} must be a positive integer (2 is the paper's choice)")
        if step_sampling not in ("uniform", "all"):
            raise ValueError(f"step_sampling={step_sampling!r} must be 'uniform' (one step per sequence) or 'all'")
        if not is_count(num_steps):
            raise ValueError(f"num_steps={num_steps!r} must be a positive integer (steps scored per order)")
        super().__init__(num_particles=num_particles)
        self.step_sampling = step_sampling
        self.num_steps = num_steps
        if not 0.0 <= float(entropy_weight) <= 1.0:
            raise ValueError(f"entropy_weight={entropy_weight} must lie in [0, 1] (1 = the ELBO)")
        self.entropy_weight = float(entropy_weight)
        self.closed_form = bool(closed_form)

    # ------------------------------------------------------------------------------------------ estimator
    def estimate(self, model, guide, batch: Batch, orders: Optional[torch.Tensor] = None,
                 steps: Optional[torch.Tensor] = None) -> ELBOEstimate:
        """Per-sequence ELBO estimate and surrogate ``[B]``.

        :param orders: optional orders ``[M, B, L_max]`` (default: drawn from the guide).
        :param steps: optional steps for ``step_sampling="uniform"``: ``[B]`` or ``[K, B]``; per sequence the first
            ``min(K, L + 1)`` must be distinct steps in ``0..L`` (the rest are ignored); anything else is a one-line
            ``ValueError``, never a clamp. Default: drawn as described above.
        """
        if not isinstance(batch, Batch) or batch.tokens is None:
            raise ValueError("InsertionELBO needs a batch with tokens; build one with ip_pyro.collate")
        check_model_and_guide(model, guide, batch)
        particles = self.num_particles
        size, width = batch.tokens.shape
        lengths = batch.lengths
        q = guide.order_distribution(batch)
        if orders is None:
            orders = q.sample((particles,))
        if orders.shape != (particles, size, width):
            raise ValueError(f"orders must have shape {(particles, size, width)}, got {tuple(orders.shape)}")
        if self.closed_form:  # every step's next-index distribution, from the same pass where the guide allows
            step_log_q, all_next = q.log_prob_steps_and_next(orders)  # [M, B, L], [M, B, L, L]
        else:
            step_log_q, all_next = q.log_prob_steps(orders), None
        if self.step_sampling == "all":
            steps = torch.arange(width + 1, device=batch.device).unsqueeze(-1).expand(width + 1, size)
            live = steps <= lengths
            weight = torch.ones_like(lengths, dtype=step_log_q.dtype)
        else:
            given = steps is not None
            steps = steps.reshape(-1, size) if given else self._draw_steps(lengths, width)
            counted, live = live_steps(lengths, steps.shape[0])
            if given:
                check_steps(steps, live, lengths)
            steps = torch.where(live, steps, torch.zeros_like(steps))  # entries past L + 1 are not scored
            weight = (lengths + 1).to(step_log_q.dtype) / counted
        horizon = steps.shape[0]
        count = particles * horizon * size
        rows = orders.unsqueeze(1).expand(particles, horizon, size, width).reshape(count, width)
        rows_log_q = step_log_q.unsqueeze(1).expand(particles, horizon, size, width).reshape(count, width)
        scores = self._all_scores(model, batch, orders) if self.step_sampling == "all" else None
        row_steps = steps.expand(particles, horizon, size).reshape(-1)
        shape = (particles, horizon, size)
        next_log_q = None
        if all_next is not None:  # row (m, h, b): sequence b's next-index distribution after order m's prefix
            particle = torch.arange(particles, device=batch.device).view(-1, 1, 1).expand(shape).reshape(-1)
            sequence = torch.arange(size, device=batch.device).expand(shape).reshape(-1)
            last = row_steps.clamp(max=width - 1)  # the stop step t = L reads no next index
            next_log_q = all_next[particle, sequence, last] if width else all_next.new_zeros(count, 0)
        rewards, prefix = self._step_terms(model, batch, rows, row_steps, rows_log_q, scores, next_log_q)
        rewards = rewards.view(shape).masked_fill(~live, 0.0) * weight
        prefix = prefix.view(shape)
        # the stop term at t = L is a function of x alone for a canvas-Markov model; a history-dependent model
        # (the causal decoder) stops from the whole order written, so that term needs its score-function term too
        scored = ((steps < lengths) | (not getattr(model, "canvas_markov", True))) & live
        baseline = self._leave_one_out(rewards)
        score = (rewards - baseline).detach() * (prefix - prefix.detach())
        surrogate = rewards + torch.where(scored, score, torch.zeros_like(score))
        return ELBOEstimate(rewards.sum(1).mean(0), surrogate.sum(1).mean(0))

    def _draw_steps(self, lengths: torch.Tensor, width: int) -> torch.Tensor:
        """``K`` distinct steps per sequence, uniform without replacement from ``0..L``: ``[K, B]``."""
        return draw_steps(lengths, width, self.num_steps)

    @staticmethod
    def _all_scores(model, batch: Batch, orders: torch.Tensor):
        """Every step of the ``M`` orders ``[M, B, L]`` (one pass per order with the causal decoder), as rows
        ``(m, t, b)`` of the model's ``StepLogProbs``."""
        particles, size, width = orders.shape
        scores = model.all_step_log_probs(batch, orders.reshape(particles * size, width))

        def rows(field):
            field = field.view(particles, size, width + 1, *field.shape[2:]).transpose(1, 2)
            return field.reshape(particles * (width + 1) * size, *field.shape[3:])
        return type(scores)(*(rows(field) for field in scores))

    def _step_terms(self, model, batch, orders, steps, step_log_q, scores=None, next_log_q=None):
        """``F_t`` and ``log q(prefix)`` for rows ``orders`` ``[N, L]`` at ``steps`` ``[N]`` (rows aligned with
        ``batch.repeat``); ``scores``: the steps' ``StepLogProbs`` when already computed; ``next_log_q``: the
        guide's next-index distribution after each row's prefix ``[N, L]`` (needed in closed form)."""
        lengths = batch.lengths.repeat(orders.shape[0] // batch.batch_size)
        inserted = inserted_before(orders, lengths, steps)
        if scores is None:
            scores = model.step_log_probs(batch, inserted, orders)
        width = orders.shape[1]
        before = torch.arange(width, device=orders.device) < steps.unsqueeze(-1)
        growing = steps < lengths
        if self.closed_form:
            candidate = torch.isfinite(next_log_q) & growing.unsqueeze(-1)  # the stop step reads no next index
            safe_log_q = next_log_q.masked_fill(~candidate, 0.0)
            safe_insert = scores.insert.masked_fill(~candidate, 0.0)
            weights = safe_log_q.exp().masked_fill(~candidate, 0.0)
            expected = (weights * (safe_insert - self.entropy_weight * safe_log_q)).sum(-1)
            prefix_steps = before
        else:
            index = steps.clamp(max=max(width - 1, 0)).unsqueeze(-1)
            if width:
                chosen = orders.gather(1, index)
                expected = (scores.insert.gather(1, chosen)
                            - self.entropy_weight * step_log_q.gather(1, index)).squeeze(-1)
                expected = expected.masked_fill(~growing, 0.0)
            else:
                expected = torch.zeros_like(scores.go)
            prefix_steps = before | (torch.arange(width, device=orders.device) == steps.unsqueeze(-1))
        rewards = torch.where(growing, scores.go + expected, scores.stop)
        prefix = step_log_q.masked_fill(~prefix_steps, 0.0).sum(-1)
        return rewards, prefix

    def _leave_one_out(self, rewards: torch.Tensor) -> torch.Tensor:
        particles = rewards.shape[0]
        if particles == 1:
            return torch.zeros_like(rewards)
        return (rewards.sum(0, keepdim=True) - rewards) / (particles - 1)



def live_steps(lengths: torch.Tensor, count: int) -> tuple:
    """``(counted [N], live [count, N])`` for ``count`` sampled steps per order of sequences of ``lengths``: how
    many of them are scored (at most the ``L + 1`` steps there are) and which entries those are (the first)."""
    counted = (lengths + 1).clamp(max=count)
    return counted, torch.arange(count, device=lengths.device).unsqueeze(-1) < counted


def check_steps(steps: torch.Tensor, live: torch.Tensor, lengths: torch.Tensor) -> None:
    """Steps given by a caller must be integers, distinct and in ``0..L`` on their live entries ``[K, N]`` (the
    first ``min(K, L + 1)`` per row): a one-line ``ValueError`` otherwise, never a silent clamp."""
    if steps.dtype.is_floating_point:
        raise ValueError(f"steps must be integers, got {steps.dtype}")
    outside = live & ((steps < 0) | (steps > lengths))
    if bool(outside.any()):
        raise ValueError("steps must lie in 0..L for each sequence (L + 1 is the number of steps); got "
                         f"{int(steps[outside][0])} for a sequence of length {int(lengths.expand_as(steps)[outside][0])}")
    if steps.shape[0] > 1:
        keyed = torch.where(live, steps, -1 - torch.arange(steps.shape[0], device=steps.device).unsqueeze(-1))
        ordered = keyed.sort(0).values
        if bool((ordered[1:] == ordered[:-1]).any()):
            raise ValueError("steps must be distinct within each order (each step is scored once)")
