"""Drawing sequences from an :class:`ip_pyro.models.InsertionProcess`, one decoder step for all unfinished rows
at a time (finished rows leave the batch): the canvas decoder re-encodes each canvas, the causal decoder advances
its KV cache by one item.

Each step is a stop decision, then one of three ways to insert:

* ``joint``: the (slot, token) pair drawn from their joint distribution (or its argmax when greedy);
* ``two-stage``: the slot drawn, then the token at that slot only (the causal decoder at temperature 1 scores one
  gap's tokens instead of every gap's; with ``top_k``/``top_p`` either decoder draws this way, each draw from its
  truncated distribution);
* ``parallel``: up to ``k`` distinct slots at once, each with its own token (canvas decoder, an approximation).

``track_log_probs`` sums, per row, the model's log-probability of the decisions taken (temperature 1, no
truncation): ``log p(x, sigma | prompt)`` of the drawn trajectory, what best-of-n decoding ranks by.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ip_pyro.canvas import insert_many
from ip_pyro.utils import is_count, progress_bar

__all__ = ["draw", "truncate_logits", "check_truncation"]


def check_truncation(top_k: Optional[int], top_p: Optional[float]) -> None:
    """One-line errors for a bad ``top_k`` (a positive integer) or ``top_p`` (in (0, 1])."""
    if top_k is not None and not is_count(top_k):
        raise ValueError(f"top_k={top_k!r} must be a positive integer (or None: no truncation)")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p={top_p!r} must lie in (0, 1] (or None: no truncation)")


def truncate_logits(logits: torch.Tensor, top_k: Optional[int], top_p: Optional[float]) -> torch.Tensor:
    """``logits`` ``[n, C]`` with every choice outside the ``top_k`` most probable, and outside the smallest set
    holding probability ``top_p`` (nucleus), set to ``-inf``; the most probable choice always stays."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -torch.inf)
    if top_p is not None and top_p < 1:
        ordered, index = logits.sort(-1, descending=True)
        before = ordered.softmax(-1).cumsum(-1) - ordered.softmax(-1)  # mass of the choices ranked above each
        dropped = (before >= top_p).scatter(-1, index, before >= top_p)
        logits = logits.masked_fill(dropped, -torch.inf)
    return logits


def _stop(output, length: int, limit: int, greedy: bool, temperature: float) -> torch.Tensor:
    rows = output.stop_logits.shape[0]
    if length >= limit:
        return torch.ones(rows, dtype=torch.bool, device=output.stop_logits.device)
    if greedy:
        return output.stop_logits > 0
    return torch.bernoulli(torch.sigmoid(output.stop_logits / temperature)).bool()


def _joint(model, session, output, keep, greedy: bool, temperature: float):
    """The (slot, token) pair from their joint; returns ``(slots, tokens, log p of the pair)``."""
    slot_log_probs = output.slot_logits[keep].log_softmax(-1)  # [n, t+1]
    token_log_probs = output.token_logits[keep].log_softmax(-1)  # [n, t+1, V]
    joint = (slot_log_probs.unsqueeze(-1) + token_log_probs).flatten(1)  # [n, (t+1) * V]
    choice = joint.argmax(-1) if greedy else torch.multinomial((joint / temperature).softmax(-1), 1)[:, 0]
    return choice // model.vocab_size, choice % model.vocab_size, joint.gather(1, choice.unsqueeze(-1))[:, 0]


def _two_stage(session, output, keep, temperature: float, top_k, top_p):
    """The slot drawn from its (truncated) distribution, then the token at that slot; ``(slots, tokens, log p)``
    with ``log p`` the model's (temperature 1, untruncated)."""
    slot_logits = output.slot_logits[keep]
    if temperature == 1.0 and top_k is None and top_p is None:
        slots = torch.multinomial(slot_logits.softmax(-1), 1)[:, 0]
    else:
        slots = torch.multinomial(truncate_logits(slot_logits / temperature, top_k, top_p).softmax(-1), 1)[:, 0]
    if hasattr(session, "token_logits"):  # the session scores the tokens of the drawn gap only
        token_logits = session.token_logits(slots)
    else:
        token_logits = output.token_logits[keep][torch.arange(len(slots), device=slots.device), slots]
    if temperature == 1.0 and top_k is None and top_p is None:
        tokens = torch.multinomial(token_logits.softmax(-1), 1)[:, 0]
    else:
        tokens = torch.multinomial(truncate_logits(token_logits / temperature, top_k, top_p).softmax(-1), 1)[:, 0]
    picked = (slot_logits.log_softmax(-1).gather(1, slots.unsqueeze(-1))
              + token_logits.log_softmax(-1).gather(1, tokens.unsqueeze(-1)))[:, 0]
    return slots, tokens, picked


def _parallel(model, session, output, keep, count: int, greedy: bool, temperature: float) -> None:
    """Insert into ``count`` distinct slots at once (canvas decoder), each with its own token."""
    slot_log_probs = output.slot_logits[keep].log_softmax(-1)
    token_log_probs = output.token_logits[keep].log_softmax(-1)
    if greedy:
        slots = slot_log_probs.topk(count, -1).indices
        token_scores = token_log_probs.gather(1, slots.unsqueeze(-1).expand(-1, -1, model.vocab_size))
        tokens = token_scores.argmax(-1)
    else:
        gumbel = -torch.log(-torch.log(torch.rand_like(slot_log_probs).clamp_min(1e-20)))
        slots = (slot_log_probs / temperature + gumbel).topk(count, -1).indices
        token_scores = token_log_probs.gather(1, slots.unsqueeze(-1).expand(-1, -1, model.vocab_size))
        tokens = torch.multinomial((token_scores / temperature).softmax(-1).flatten(0, 1), 1).view(slots.shape)
    session.canvas = insert_many(session.canvas, slots, tokens)
    session.lengths = session.lengths + count


def draw(model, session, total: int, limit: int, *, greedy: bool = False, temperature: float = 1.0,
         insertions_per_step: int = 1, top_k: Optional[int] = None, top_p: Optional[float] = None,
         track_log_probs: bool = False, progress=None):
    """Decode ``total`` rows with ``session`` (a canvas or KV-cache session of ``model``) until each stops or
    reaches ``limit`` tokens; ``progress``: a bar over finished rows (``None``: on a terminal, after two seconds).

    :returns: ``(sequences, log_probs)``: ``total`` id lists in row order, and ``[total]`` log-probabilities of
        the drawn trajectories (None unless ``track_log_probs``).
    """
    device = session.lengths.device
    results: list = [[] for _ in range(total)]
    alive = torch.arange(total, device=device)
    totals = torch.zeros(total, device=device) if track_log_probs else None
    truncated = top_k is not None or top_p is not None
    # a session that scores one gap's tokens at a time (the causal KV cache) draws the slot, then its token
    two_stage = not greedy and (truncated or (hasattr(session, "token_logits") and temperature == 1.0))
    with progress_bar(total, "sampling", "seq", progress) as bar:
        while True:
            output = session.output_without_tokens() if two_stage and hasattr(session, "token_logits") \
                else session.output()
            rows, length = session.canvas.shape
            stop = _stop(output, length, limit, greedy, temperature)
            if totals is not None:
                totals[alive] += torch.where(stop, F.logsigmoid(output.stop_logits), F.logsigmoid(-output.stop_logits))
            for row, sequence in zip(alive[stop].tolist(), session.canvas[stop].tolist()):
                results[row] = sequence
            bar.update(int(stop.sum()))
            keep = ~stop
            if not bool(keep.any()):
                return results, totals
            if bool(stop.any()):
                session.keep(keep)
                alive = alive[keep]
            count = min(insertions_per_step, length + 1, limit - length)
            if count > 1:
                _parallel(model, session, output, keep, count, greedy, temperature)
                continue
            if two_stage:
                slots, tokens, picked = _two_stage(session, output, keep, temperature, top_k, top_p)
            else:
                slots, tokens, picked = _joint(model, session, output, keep, greedy, temperature)
            if totals is not None:
                totals[alive] += picked
            session.insert(slots, tokens, torch.ones_like(slots, dtype=torch.bool))
