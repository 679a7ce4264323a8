"""From decoder outputs to the Insertion Process's step factors, for every decoder.

* :func:`finish_output`: the termination rule (stop head, or EOS at the last slot rewritten as stop / slot /
  token factors) and the certain stop at ``max_length``, applied to any :class:`DecoderOutput`;
* :func:`step_scores`: :class:`StepLogProbs` of a step from its (finished) output, every candidate position at once;
* :func:`chosen_step_terms`: only the chosen (slot, token) of each step, from the chosen gap's token logits (the
  insertion-causal decoder's ``log_joint``, where all gaps' token logits would cost ``O(L^2)``);

Each decoder (:mod:`ip_pyro.models.decoder_canvas`, :mod:`ip_pyro.models.decoder_causal`) builds its scores from
these, so the step factors are written once.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ip_pyro.networks import DecoderOutput
from ip_pyro.orders import slots_of_positions

__all__ = ["StepLogProbs", "finish_output", "step_scores", "chosen_step_terms"]


class StepLogProbs(NamedTuple):
    """Scores of ``N`` canvases (histories) from one decoder pass: ``stop`` ``[N]`` (``log p(stop | canvas)``),
    ``insert`` ``[N, L]`` (``log p(slot(j), token = x_j | canvas, go on)`` for every position ``j`` not yet
    inserted, ``-inf`` elsewhere) and ``go`` ``[N]`` (``log(1 - p(stop | canvas))``). Unpacks as
    ``stop, insert, go``. :meth:`InsertionProcess.all_step_log_probs` gives the same fields with a step axis
    after the row axis."""

    stop: torch.Tensor
    insert: torch.Tensor
    go: torch.Tensor

    def of_orders(self, orders: torch.Tensor, steps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[N]``: the log-probability of the decision each row's order takes at its step: go on and insert
        ``orders[n, steps[n]]`` while ``steps < lengths``, else stop (``orders`` ``[N, L]``, ``steps`` and
        ``lengths`` ``[N]``)."""
        width = orders.shape[1]
        if not width:  # every sequence is empty and only stops
            return self.stop
        next_position = orders.gather(1, steps.clamp(max=width - 1).unsqueeze(-1))
        inserting = self.go + self.insert.gather(1, next_position).squeeze(-1)
        return torch.where(steps < lengths, inserting, self.stop)


def _log1mexp(log_p: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(log_p))`` for ``log_p <= 0``, accurate at both ends, with finite values and gradients
    everywhere: each branch only sees inputs where it is used (``torch.where`` differentiates both), and
    ``log_p`` is capped just below 0, so a certain event gives a very negative number instead of ``-inf``."""
    cap = -torch.finfo(log_p.dtype).tiny if log_p.dtype.is_floating_point else 0.0
    log_p = log_p.clamp(max=cap)
    near_zero = log_p > -math.log(2)
    near = torch.where(near_zero, log_p, torch.full_like(log_p, -1.0))
    far = torch.where(near_zero, torch.full_like(log_p, -1.0), log_p)
    return torch.where(near_zero, torch.log(-torch.expm1(near)), torch.log1p(-torch.exp(far)))


def _eos_as_stop(output: DecoderOutput, canvas_lengths: torch.Tensor, vocab_size: int) -> DecoderOutput:
    """Rewrite (slot, token) scores over ``V + 1`` tokens, with ``EOS`` (id ``V``) allowed only at the last slot,
    as the equivalent stop / slot-given-go-on / token-given-slot-and-go-on logits."""
    slot_log_probs = output.slot_logits.log_softmax(-1)  # [N, T+1]
    token_log_probs = output.token_logits.log_softmax(-1)  # [N, T+1, V+1]
    last = canvas_lengths.unsqueeze(-1)
    eos_at_last = token_log_probs[..., vocab_size].gather(1, last).squeeze(-1)  # [N]
    log_stop = slot_log_probs.gather(1, last).squeeze(-1) + eos_at_last
    stop_logits = log_stop - _log1mexp(log_stop)
    keep_last = slot_log_probs.gather(1, last) + _log1mexp(eos_at_last).unsqueeze(-1)
    keep_last = keep_last.clamp(min=torch.finfo(keep_last.dtype).min)  # finite even when EOS is certain
    slot_logits = slot_log_probs.scatter(1, last, keep_last)  # unnormalised: p(slot, go on)
    return DecoderOutput(stop_logits, slot_logits, output.token_logits[..., :vocab_size])


def _forced(stop_logits: torch.Tensor, canvas_lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """Stop logits with stopping certain at ``max_length`` (an exact 0 / -inf through a finite logit)."""
    return stop_logits.masked_fill(canvas_lengths >= max_length, torch.finfo(stop_logits.dtype).max)


def finish_output(output: DecoderOutput, canvas_lengths: torch.Tensor, model) -> DecoderOutput:
    """Apply ``model``'s termination rule and its certain stop at ``max_length`` to raw decoder scores."""
    if model.termination == "eos":
        output = _eos_as_stop(output, canvas_lengths, model.vocab_size)
    return DecoderOutput(_forced(output.stop_logits, canvas_lengths, model.max_length), output.slot_logits,
                         output.token_logits)


def step_scores(output: DecoderOutput, tokens, lengths, inserted, canvas_lengths, max_length: int) -> StepLogProbs:
    """:class:`StepLogProbs` of ``N`` steps from their finished outputs (slot logits ``[N, T+1]``, token logits
    ``[N, T+1, V]``): every position not yet ``inserted`` ``[N, L]`` of ``tokens`` ``[N, L]`` scored at once."""
    rows, size = tokens.shape
    vocab_size = output.token_logits.shape[-1]
    slots_count = output.slot_logits.shape[1]
    slot_log_probs = output.slot_logits.log_softmax(-1)  # [N, T+1]
    token_log_probs = output.token_logits.log_softmax(-1).reshape(rows, slots_count * vocab_size)
    slots = slots_of_positions(inserted)  # [N, L]
    joint = slot_log_probs.gather(1, slots) + token_log_probs.gather(1, slots * vocab_size + tokens)
    remaining = (torch.arange(size, device=tokens.device) < lengths.unsqueeze(-1)) & ~inserted
    insert = joint.masked_fill(~remaining, -math.inf)
    stop = F.logsigmoid(output.stop_logits)
    go = F.logsigmoid(-output.stop_logits).masked_fill(canvas_lengths >= max_length, -math.inf)
    return StepLogProbs(stop, insert, go)


def chosen_step_terms(stop_logits, slot_logits, chosen_slots, chosen_token_logits, chosen_tokens, last_token_logits,
                      canvas_lengths, model):
    """``(log p(stop), log p(go on), log p(chosen slot, chosen token | go on))`` ``[...]`` of steps whose raw stop
    logits ``[...]``, slot logits ``[..., T+1]`` and the token logits of the chosen gap ``[..., V']`` (and, for
    ``termination="eos"``, of the last gap) are given: the same factors :func:`finish_output` and
    :func:`step_scores` give, without token logits at the other gaps."""
    log_slot = slot_logits.log_softmax(-1)
    chosen_slot_log_prob = log_slot.gather(-1, chosen_slots.unsqueeze(-1)).squeeze(-1)
    full = chosen_token_logits.log_softmax(-1)
    if model.termination == "eos":
        vocab_size = model.vocab_size
        eos_at_last = last_token_logits.log_softmax(-1)[..., vocab_size]
        log_stop = log_slot.gather(-1, canvas_lengths.unsqueeze(-1)).squeeze(-1) + eos_at_last
        stop_logits = log_stop - _log1mexp(log_stop)
        # EOS may only take the last slot: elsewhere the content tokens are renormalised (see _eos_as_stop)
        content = chosen_token_logits[..., :vocab_size].log_softmax(-1)
        chosen = chosen_tokens.unsqueeze(-1)
        token_log_prob = torch.where(chosen_slots == canvas_lengths, full.gather(-1, chosen).squeeze(-1),
                                     content.gather(-1, chosen).squeeze(-1))
        insert = chosen_slot_log_prob + token_log_prob - _log1mexp(log_stop)
    else:
        insert = chosen_slot_log_prob + full.gather(-1, chosen_tokens.unsqueeze(-1)).squeeze(-1)
    stop_logits = _forced(stop_logits, canvas_lengths, model.max_length)
    go = F.logsigmoid(-stop_logits).masked_fill(canvas_lengths >= model.max_length, -math.inf)
    return F.logsigmoid(stop_logits), go, insert
