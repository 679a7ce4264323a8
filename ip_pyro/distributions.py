"""Distributions over insertion orders (permutations), as Pyro ``TorchDistribution`` s.

Every order distribution here (and every object a guide's ``order_distribution`` returns) offers:

* ``sample(sample_shape)`` -> orders ``[*sample_shape, *batch_shape, L]`` (padding convention of
  :mod:`ip_pyro.orders`: entries ``t >= length`` equal ``t``);
* ``log_prob(orders)`` -> ``[*sample_shape, *batch_shape]``;
* ``log_prob_steps(orders)`` -> ``[..., L]``: ``log q(orders[t] | orders[:t])`` per step, 0 on padding steps;
* ``next_index_log_probs(inserted)`` -> ``[..., L]``: ``log q(next = j | inserted)``, ``-inf`` on inserted
  and padding positions. ``inserted`` is a bool mask ``[..., L]``; its rows may also be ``k * B`` rows of a
  batch repeated particle-major (row ``m * B + b`` belongs to sequence ``b``). A history-dependent distribution
  (the pointer guide's), whose next position depends on the order written and not only on the set, refuses it;
* ``all_next_index_log_probs(orders)`` -> ``[..., L, L]``: every step's ``log q(sigma_t = j | sigma_<t)`` (step,
  position) for orders ``[..., B, L]``, which every distribution answers (the ELBO's closed form reads it);
* ``log_prob_steps_and_next(orders)``: both of the above, from one pass where a distribution can.
"""
from __future__ import annotations

import itertools
import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

__all__ = ["OrderDistribution", "PlackettLuce", "FixedOrder", "MAX_ENUMERATE_LENGTH", "masked_log_softmax",
           "particle_copies"]

MAX_ENUMERATE_LENGTH = 8


class _Permutation(constraints.Constraint):
    """Rows that are permutations of ``0..L-1``."""

    event_dim = 1
    is_discrete = True

    def check(self, value):
        if value.dtype.is_floating_point:
            return torch.zeros(value.shape[:-1], dtype=torch.bool, device=value.device)
        expected = torch.arange(value.shape[-1], device=value.device)
        return (value.sort(-1).values == expected).all(-1)


permutation = _Permutation()


def _very_negative(dtype: torch.dtype) -> float:
    """Far below any usable logit (the documented range is +-1e4), yet finite so that reversed logcumsumexp never
    meets ``-inf - (-inf)``: ``finfo.min / 8`` (-4e37 in float32), and half the range in 16-bit types, where /8
    would be -8188 in float16, inside that range."""
    info = torch.finfo(dtype)
    return info.min / 2 if info.bits == 16 else info.min / 8


def masked_log_softmax(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the ``allowed`` entries of the last dim; ``-inf`` elsewhere (and on rows with none
    allowed), with finite gradients everywhere."""
    log_probs = scores.masked_fill(~allowed, _very_negative(scores.dtype)).log_softmax(-1)
    return log_probs.masked_fill(~allowed, -math.inf)


def _valid_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    return torch.arange(size, device=lengths.device) < lengths.unsqueeze(-1)


def particle_copies(rows: int, batch_size: int) -> int:
    """``k`` for ``rows = k * B`` rows in the particle-major convention (row ``m * B + b`` is sequence ``b``, as
    :meth:`ip_pyro.Batch.repeat` lays them out); a one-line error when ``rows`` is not a multiple of ``B``."""
    if batch_size == 0:
        return 0
    if rows % batch_size:
        raise ValueError(f"{rows} rows are not a multiple of the batch size {batch_size}; repeat the batch "
                         "particle-major (Batch.repeat)")
    return rows // batch_size


class OrderDistribution(TorchDistribution):
    """Base of the distributions over orders (event shape ``[L]``, batch shape ``[B]``): the permutation support,
    ``log_prob`` as the sum of ``log_prob_steps``, and the particle-major row convention of ``inserted`` masks."""

    arg_constraints = {}
    support = permutation

    def log_prob(self, orders: torch.Tensor) -> torch.Tensor:
        return self.log_prob_steps(orders).sum(-1)

    def _particle_view(self, inserted: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        """View ``[k * B, L]`` masks as ``[k, B, L]`` so that they broadcast against a ``[B]`` batch (other shapes
        pass unchanged); returns the view and the shape to restore (``None``: nothing to restore)."""
        rows = inserted.shape[:-1]
        size = self.batch_shape[0] if len(self.batch_shape) == 1 else None
        if size and len(rows) == 1 and rows[0] != size:
            copies = particle_copies(rows[0], size)
            return inserted.reshape(copies, size, inserted.shape[-1]), inserted.shape
        return inserted, None

    def all_next_index_log_probs(self, orders: torch.Tensor) -> torch.Tensor:
        """``[..., B, L, L]``: ``log q(sigma_t = j | sigma_<t)`` at every step ``t`` of the orders ``[..., B, L]``
        (``-inf`` on written and padding positions; rows of padding steps are not used). This default asks
        ``next_index_log_probs`` for the ``L`` prefix sets of every order in one call, step-major (row
        ``t * R + r``, still particle-major aligned with the batch)."""
        shape, width = orders.shape, orders.shape[-1]
        flat = orders.reshape(-1, width)
        steps = torch.arange(width, device=flat.device)
        ranks = torch.empty_like(flat).scatter_(1, flat, steps.expand_as(flat))
        inserted = (ranks.unsqueeze(0) < steps.view(-1, 1, 1)).reshape(-1, width)  # [t * R + r, L]
        log_probs = self.next_index_log_probs(inserted).view(width, flat.shape[0], width).transpose(0, 1)
        return log_probs.reshape(shape + (width,))

    def log_prob_steps_and_next(self, orders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log_prob_steps(orders), all_next_index_log_probs(orders))``; a distribution whose steps come from
        the same pass overrides it with :meth:`_chosen_steps` (one pass for both)."""
        return self.log_prob_steps(orders), self.all_next_index_log_probs(orders)

    def _chosen_steps(self, all_next: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
        """``log q(sigma_t | sigma_<t)`` ``[..., B, L]`` read from every step's distribution ``[..., B, L, L]``; 0 on
        padding steps (``lengths`` is the distribution's ``[B]`` lengths)."""
        chosen = all_next.gather(-1, orders.unsqueeze(-1)).squeeze(-1)
        valid = _valid_mask(self.lengths, orders.shape[-1]).expand(orders.shape)
        return torch.where(valid, chosen, torch.zeros_like(chosen))

    def _row_sequences(self, rows: int, device, begin: int = 0) -> torch.Tensor:
        """The sequence of each of rows ``begin .. begin + rows - 1`` of a ``k * B`` particle-major stack."""
        return torch.arange(begin, begin + rows, device=device) % self.batch_shape[0]


def _check_padding_convention(orders: torch.Tensor, lengths: torch.Tensor) -> None:
    """One-line error unless every order puts its valid positions ``0..L-1`` first and step ``t >= L`` at ``t``."""
    steps = torch.arange(orders.shape[-1], device=orders.device)
    lengths = lengths.expand(orders.shape[:-1]).unsqueeze(-1)
    valid_step = steps < lengths
    if bool((valid_step & (orders >= lengths)).any() | (~valid_step & (orders != steps)).any()):
        raise ValueError("orders must list the valid positions 0..L-1 first and keep padding step t >= L at "
                         "position t (ip_pyro.orders.pad_orders makes them so)")


def _restore_rows(value: torch.Tensor, shape) -> torch.Tensor:
    return value if shape is None else value.reshape(shape)


class PlackettLuce(OrderDistribution):
    r"""Plackett–Luce distribution over orders:
    :math:`q(\sigma) = \prod_t \exp(w_{\sigma_t}) / \sum_{j \notin \sigma_{<t}} \exp(w_j)`.

    :param logits: scores ``w`` ``[*batch_shape, L]``. Entries at padding positions are ignored.
    :param lengths: optional LongTensor ``batch_shape`` of valid lengths (default: all ``L``). Padding positions
        come after the valid ones and are always placed last, in order; they add nothing to ``log_prob``.

    Sampling is Gumbel-top-k; ``log_prob`` is exact (reversed ``logcumsumexp``), stable for ``|logits|`` up to
    ``1e4``. Equal logits give ``log_prob = -log L!``.
    """

    has_enumerate_support = True

    def __init__(self, logits: torch.Tensor, lengths: torch.Tensor | None = None, validate_args=None):
        if logits.dim() < 1:
            raise ValueError("logits must have at least one dimension [..., L]")
        size = logits.shape[-1]
        batch_shape = logits.shape[:-1]
        if lengths is None:
            lengths = torch.full(batch_shape, size, dtype=torch.long, device=logits.device)
        self.logits = logits
        self.lengths = torch.as_tensor(lengths, device=logits.device).expand(batch_shape)
        self._valid = _valid_mask(self.lengths, size)
        super().__init__(batch_shape, torch.Size([size]), validate_args=validate_args)
        if self._validate_args:
            if self.lengths.dtype.is_floating_point or bool(((self.lengths < 0) | (self.lengths > size)).any()):
                raise ValueError(f"lengths must be integers in 0..{size} (the last dim of logits)")
            if not bool(torch.isfinite(logits[self._valid]).all()):
                raise ValueError("PlackettLuce logits must be finite at valid positions; mask positions with "
                                 "lengths instead of -inf")

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        logits = self.logits.expand(batch_shape + self.event_shape)
        return PlackettLuce(logits, self.lengths.expand(batch_shape), validate_args=False)

    def _masked_logits(self) -> torch.Tensor:
        return torch.where(self._valid, self.logits, torch.full_like(self.logits, _very_negative(self.logits.dtype)))

    def sample(self, sample_shape=torch.Size()):
        """Gumbel-top-k: ``argsort(w + G)`` descending; padding last. Returns ``[*sample_shape, *batch_shape, L]``."""
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            gumbel = -torch.empty(shape, dtype=self.logits.dtype, device=self.logits.device).exponential_().log()
            keys = torch.where(self._valid, self.logits.detach() + gumbel, torch.full_like(gumbel, -math.inf))
            return torch.sort(keys, dim=-1, descending=True, stable=True).indices

    def log_prob_steps(self, orders: torch.Tensor) -> torch.Tensor:
        """``log q(orders[t] | orders[:t])`` per step ``[..., L]``; 0 on padding steps."""
        if self._validate_args:
            self._validate_sample(orders)
            _check_padding_convention(orders, self.lengths)
        logits = self._masked_logits().expand(orders.shape)
        chosen = logits.gather(-1, orders)
        remaining = chosen.flip(-1).logcumsumexp(-1).flip(-1)  # log sum over steps >= t
        return torch.where(self._valid, chosen - remaining, torch.zeros_like(chosen))

    def next_index_log_probs(self, inserted: torch.Tensor) -> torch.Tensor:
        """``log q(next = j | inserted)`` ``[..., L]``; ``-inf`` where inserted or padding."""
        aligned, shape = self._particle_view(inserted)
        return _restore_rows(masked_log_softmax(self.logits.expand_as(aligned), self._valid & ~aligned), shape)

    def mode_order(self) -> torch.Tensor:
        """The most probable order (positions by decreasing score), ``[*batch_shape, L]``."""
        keys = torch.where(self._valid, self.logits, torch.full_like(self.logits, -math.inf))
        return torch.sort(keys, dim=-1, descending=True, stable=True).indices

    def enumerate_support(self, expand=True):
        """All ``L!`` orders ``[L!, *batch_shape, L]`` (``L <= 8``; every row must have the full length ``L``)."""
        size = self.event_shape[0]
        if size > MAX_ENUMERATE_LENGTH:
            raise ValueError(f"cannot enumerate {size}! orders; enumeration is limited to length "
                             f"<= {MAX_ENUMERATE_LENGTH} (use sampling for longer sequences)")
        if bool((self.lengths != size).any()):
            raise ValueError("enumerate_support needs every row at the full length L; group sequences by length "
                             "(or slice logits to [..., length]) before enumerating")
        orders = torch.tensor(list(itertools.permutations(range(size))), dtype=torch.long,
                              device=self.logits.device).reshape(math.factorial(size), size)
        count = orders.shape[0]
        orders = orders.reshape((count,) + (1,) * len(self.batch_shape) + (size,))
        return orders.expand((count,) + self.batch_shape + (size,)) if expand else orders


class FixedOrder(OrderDistribution):
    """A point mass on one order per sequence (e.g. left-to-right or middle-out).

    :param orders: LongTensor ``[*batch_shape, L]`` in the padding convention of :mod:`ip_pyro.orders`.
    :param lengths: LongTensor ``batch_shape``.

    ``next_index_log_probs(inserted)`` puts all mass on the remaining position that comes earliest in the fixed
    order (for an ``inserted`` set that is a prefix of the order this is the exact conditional).
    """

    has_enumerate_support = False

    def __init__(self, orders: torch.Tensor, lengths: torch.Tensor, validate_args=None):
        self.orders = orders
        self.lengths = lengths.expand(orders.shape[:-1])
        self._valid = _valid_mask(self.lengths, orders.shape[-1])
        super().__init__(orders.shape[:-1], orders.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return FixedOrder(self.orders.expand(batch_shape + self.event_shape), self.lengths.expand(batch_shape),
                          validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        return self.orders.expand(self._extended_shape(sample_shape)).clone()

    def log_prob_steps(self, orders: torch.Tensor) -> torch.Tensor:
        mismatch = self._valid & (orders != self.orders)
        return torch.zeros(orders.shape, device=orders.device).masked_fill(mismatch, -math.inf)

    def next_index_log_probs(self, inserted: torch.Tensor) -> torch.Tensor:
        aligned, shape = self._particle_view(inserted)
        size = self.orders.shape[-1]
        ranks = torch.empty_like(self.orders).scatter_(
            -1, self.orders, torch.arange(size, device=self.orders.device).expand_as(self.orders))
        remaining = self._valid & ~aligned
        keyed = torch.where(remaining, ranks, torch.full_like(ranks, size))
        first = keyed.argmin(-1, keepdim=True)
        chosen = torch.zeros_like(remaining).scatter_(-1, first, True) & remaining
        log_probs = torch.zeros(chosen.shape, device=inserted.device).masked_fill(~chosen, -math.inf)
        return _restore_rows(log_probs, shape)
