r"""An importance-weighted objective for the Insertion Process: IWAE for the model, reweighted wake-sleep for the guide.

For one sequence ``x`` of length ``L`` and ``K`` orders ``sigma_k ~ q(. | x)``, with log weights
``log w_k = log p(x, sigma_k) - log q(sigma_k | x)`` and self-normalised weights ``w~_k = softmax_k(log w_k)``::

    IWAE_K = log (1/K) sum_k w_k                          (a lower bound on log p(x), tighter as K grows)
    model:  grad_theta IWAE_K = sum_k w~_k grad_theta log p(x, sigma_k)
    guide:  wake-phi        sum_k w~_k grad_phi log q(sigma_k | x)      (towards p(sigma | x), mass-covering)

The model gradient comes in two forms, equal in expectation given the orders:

* ``model_gradient="full"``: backpropagate through all ``L + 1`` canvases of every order (``log_joint``).
* ``model_gradient="steps"``: score the ``K (L + 1)`` canvases without autograd (the weights need only their values)
  and backpropagate through ``S`` distinct steps per order drawn uniformly from ``0..L``, each scaled by
  ``(L + 1) / min(S, L + 1)``: ``sum_k w~_k (L + 1)/S sum_{t in T_k} grad_theta log p(step_t | c_t^(k))``.
  Forward passes without a graph are about a third of a forward+backward pass and keep no activations.

The guide's gradient (``guide_update``): ``"wake"`` as above (Pyro's ``ReweightedWakeSleep`` with ``insomnia=1``);
``"elbo"``: the ELBO gradient of :class:`~ip_pyro.infer.InsertionELBO` (closed-form next index, one uniform step,
leave-one-out baseline over the same ``K`` orders; the model's scores enter it as constants); ``"none"``: the guide
is not trained (model-only IWAE with a fixed proposal).

The surrogate's value is the IWAE estimate; its gradient is the sum of the model and guide gradients above.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from ip_pyro.batch import Batch, check_model_and_guide
from ip_pyro.infer.elbo import InsertionELBO, SurrogateObjective, check_steps, draw_steps, live_steps
from ip_pyro.orders import inserted_before
from ip_pyro.utils import is_count

__all__ = ["InsertionRWS", "RWSEstimate", "GUIDE_UPDATES", "MODEL_GRADIENTS"]

GUIDE_UPDATES = ("wake", "elbo", "none")
MODEL_GRADIENTS = ("full", "steps")


class RWSEstimate(NamedTuple):
    """Per-sequence results: ``iwae`` ``[B]`` (the IWAE_K estimate), ``surrogate`` ``[B]`` (same value; differentiate
    it), ``elbo`` ``[B]`` (``mean_k log w_k``, an unbiased ELBO estimate from the same orders) and ``log_weights``
    ``[K, B]`` (detached)."""

    iwae: torch.Tensor
    surrogate: torch.Tensor
    elbo: torch.Tensor
    log_weights: torch.Tensor


class _ConstantScores:
    """A model whose ``step_log_probs`` are computed without autograd (the ELBO's guide gradient only)."""

    def __init__(self, model):
        self.model = model
        self.canvas_markov = getattr(model, "canvas_markov", True)

    def step_log_probs(self, batch, inserted, orders=None):
        with torch.no_grad():
            return self.model.step_log_probs(batch, inserted, orders)

    def all_step_log_probs(self, batch, orders):
        with torch.no_grad():
            return self.model.all_step_log_probs(batch, orders)


def _has_trainable_parameters(module) -> bool:
    parameters = getattr(module, "parameters", None)
    return parameters is not None and any(p.requires_grad for p in parameters())


class InsertionRWS(SurrogateObjective):
    """IWAE for :class:`ip_pyro.models.InsertionProcess`, reweighted wake-sleep for any :class:`ip_pyro.guides.base.OrderGuide`.

    :param num_particles: ``K >= 2`` orders per sequence.
    :param guide_update: ``"wake"`` (wake-phi, default), ``"elbo"`` (the paper's ELBO gradient) or ``"none"``.
    :param model_gradient: ``"full"`` (default: through every canvas of every order; on mirror strings and star-easy
        it reached lower NLL at equal wall time, see ``docs``/README) or ``"steps"`` (no-grad weights, gradient
        through ``num_steps`` uniformly drawn steps per order).
    :param num_steps: with ``model_gradient="steps"``: distinct steps per order that carry the gradient.
    :param chunk_size: canvases per decoder pass when scoring whole orders.

    ``svi.step(batch)`` (via ``loss_and_grads``) and ``loss`` return one float, ``-IWAE_K`` summed over the batch.
    Parameter-free guides (uniform, l2r, ...) give model-only IWAE training with that proposal.
    """

    bound = "iwae"

    def __init__(self, num_particles: int = 4, guide_update: str = "wake", model_gradient: str = "full",
                 num_steps: int = 1, chunk_size: int = 8192):
        if not is_count(num_particles, 2):
            raise ValueError(f"num_particles={num_particles!r}: InsertionRWS needs at least 2 orders per sequence "
                             "(use num_particles=4, or InsertionELBO for a single order)")
        if guide_update not in GUIDE_UPDATES:
            raise ValueError(f"guide_update={guide_update!r}; choose from {', '.join(GUIDE_UPDATES)}")
        if model_gradient not in MODEL_GRADIENTS:
            raise ValueError(f"model_gradient={model_gradient!r}; choose from {', '.join(MODEL_GRADIENTS)}")
        if not is_count(num_steps):
            raise ValueError(f"num_steps={num_steps!r} must be a positive integer (steps per order with a gradient)")
        if not is_count(chunk_size):
            raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer (canvases per decoder pass)")
        super().__init__(num_particles=num_particles)
        self.guide_update, self.model_gradient = guide_update, model_gradient
        self.num_steps, self.chunk_size = num_steps, chunk_size

    # ------------------------------------------------------------------------------------------ estimator
    def estimate(self, model, guide, batch: Batch, orders: Optional[torch.Tensor] = None,
                 steps: Optional[torch.Tensor] = None, guide_steps: Optional[torch.Tensor] = None) -> RWSEstimate:
        """Per-sequence IWAE estimate and surrogate.

        :param orders: optional orders ``[K, B, L_max]`` (default: drawn from the guide).
        :param steps: optional, ``model_gradient="steps"`` only: the steps ``[S, K, B]`` that carry the gradient;
            per row the first ``min(S, L + 1)`` must be distinct steps in ``0..L`` (the rest are ignored).
        :param guide_steps: optional, ``guide_update="elbo"`` only: the ELBO's step per sequence ``[B]``.
        """
        if not isinstance(batch, Batch) or batch.tokens is None:
            raise ValueError("InsertionRWS needs a batch with tokens; build one with ip_pyro.collate")
        check_model_and_guide(model, guide, batch)
        particles = self.num_particles
        size, width = batch.tokens.shape
        q = guide.order_distribution(batch)
        if orders is None:
            orders = q.sample((particles,))
        if orders.shape != (particles, size, width):
            raise ValueError(f"orders must have shape {(particles, size, width)}, got {tuple(orders.shape)}")
        if steps is not None and self.model_gradient != "steps":
            raise ValueError("steps= is only used with model_gradient='steps'")
        log_q = q.log_prob(orders)  # [K, B], differentiable in the guide
        rows = orders.reshape(particles * size, width)
        if self.model_gradient == "full":
            log_p = model.log_joint(batch, rows, chunk_size=self.chunk_size).view(particles, size)
            carrier = log_p  # its gradient is grad_theta log p(x, sigma_k)
            log_p = log_p.detach()
        else:
            with torch.no_grad():
                log_p = model.log_joint(batch, rows, chunk_size=self.chunk_size).view(particles, size)
            carrier = self._step_sum(model, batch, rows, steps).view(particles, size)
        log_weights = log_p - log_q.detach()
        log_total = log_weights.logsumexp(0)
        iwae = log_total - math.log(particles)
        normalised = (log_weights - log_total).exp()  # detached: log_weights carries no graph
        normalised = torch.nan_to_num(normalised, nan=0.0)  # a sequence whose weights are all -inf
        surrogate = iwae + (normalised * (carrier - carrier.detach())).sum(0)
        if self.guide_update == "wake":
            surrogate = surrogate + (normalised * (log_q - log_q.detach())).sum(0)
        elif self.guide_update == "elbo" and _has_trainable_parameters(guide):
            guide_elbo = InsertionELBO(num_particles=particles).estimate(_ConstantScores(model), guide, batch,
                                                                         orders=orders, steps=guide_steps).surrogate
            surrogate = surrogate + guide_elbo - guide_elbo.detach()
        return RWSEstimate(iwae, surrogate, log_weights.mean(0), log_weights)

    def _step_sum(self, model, batch: Batch, rows: torch.Tensor, steps: Optional[torch.Tensor]) -> torch.Tensor:
        """``(L + 1)/S sum_{t in T} log p(step_t | c_t)`` per order row ``[K B]``, with a gradient."""
        count, width = rows.shape
        lengths = batch.lengths.repeat(count // batch.batch_size)
        if steps is None:
            steps = draw_steps(lengths, width, self.num_steps)  # [S, K B]
        else:
            steps = steps.reshape(steps.shape[0], count) if steps.dim() > 1 else steps.reshape(1, count)
        counted, live = live_steps(lengths, steps.shape[0])
        check_steps(steps, live, lengths)
        horizon = steps.shape[0]
        safe_steps = torch.where(live, steps, torch.zeros_like(steps))
        stacked = rows.repeat(horizon, 1)
        flat_steps = safe_steps.reshape(-1)
        flat_lengths = lengths.repeat(horizon)
        inserted = inserted_before(stacked, flat_lengths, flat_steps)
        term = model.step_log_probs(batch, inserted, stacked).of_orders(stacked, flat_steps, flat_lengths)
        term = term.view(horizon, count).masked_fill(~live, 0.0)
        return term.sum(0) * (lengths + 1).to(term.dtype) / counted
