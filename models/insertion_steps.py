"""From decoder outputs to the Insertion Process's step factors, for both decoders.

* :func:`finish_output`: the termination rule (stop head, or EOS at the last slot rewritten as stop / slot /
  token factors) and the certain stop at ``max_length``, applied to any :class:`DecoderOutput`;
* :func:`step_scores`: :class:`StepLogProbs` of a step from its (finished) output, every candidate position at once;
* :func:`chosen_step_terms`: only the chosen (slot, token) of each step, from the chosen gap's token logits (the
  insertion-causal decoder's ``log_joint``, where all gaps' token logits would cost ``O(L^2)``);
* :func:`history_steps` / :func:`history_log_joint`: the insertion-causal decoder's one pass over whole orders;
* :class:`CanvasSession` / :class:`HistorySession`: step-by-step decoding for the Pyro program and the sampler,
  re-encoding the canvas or advancing a KV cache.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ip_pyro.canvas import insert_tokens
from ip_pyro.networks import DecoderOutput
from ip_pyro.orders import orders_to_ranks, orders_to_slots, slots_of_positions

__all__ = ["StepLogProbs", "finish_output", "step_scores", "chosen_step_terms", "canvas_passes",
           "MIN_CANVASES_PER_PASS", "history_steps", "history_log_joint", "CanvasSession", "HistorySession"]

MIN_CANVASES_PER_PASS = 256


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


def _encode_history(model, batch, rows, orders: torch.Tensor, first_row: int):
    """The causal decoder's one pass over orders ``[n, L]`` aligned with ``rows`` (global rows ``first_row..`` of
    ``batch.repeat``, for the prompt cache)."""
    cache = model._prompt_cache(model.network, batch)
    index = (torch.arange(orders.shape[0], device=orders.device) + first_row) % batch.batch_size
    return model.network.encode(rows.tokens.gather(1, orders), orders, cache.rows(index))


def history_steps(model, batch, rows, orders: torch.Tensor, steps: torch.Tensor) -> StepLogProbs:
    """Causal decoder: :class:`StepLogProbs` ``[N, Q(, L)]`` of the steps ``[N, Q]`` of the orders ``[N, L]``
    (rows aligned with ``rows = batch.repeat(N // B)``), every candidate position in closed form, from one pass."""
    network = model.network
    history = _encode_history(model, batch, rows, orders, 0)
    stop_logits, slot_logits = network.step_logits(history)  # [N, L+1], [N, L+1, L+1]
    count, queries = steps.shape
    gaps = slot_logits.shape[-1]
    # token logits only at the gaps of each queried step (k <= t: about half of the square for all steps)
    widths = steps.max(0).values + 1 if count else torch.ones(queries, dtype=torch.long, device=steps.device)
    pair_query = torch.repeat_interleave(torch.arange(queries, device=steps.device), widths)
    pair_slot = torch.arange(len(pair_query), device=steps.device) - torch.repeat_interleave(
        widths.cumsum(0) - widths, widths)
    pair_steps = steps[:, pair_query]  # [N, P]
    token_logits = network.token_logits(history, pair_steps, torch.minimum(pair_slot, pair_steps))
    dense = token_logits.new_zeros(count, queries, gaps, token_logits.shape[-1])  # other gaps: never read
    dense[:, pair_query, pair_slot] = token_logits
    flat = count * queries
    output = DecoderOutput(stop_logits.gather(1, steps).reshape(flat),
                           slot_logits.gather(1, steps.unsqueeze(-1).expand(-1, -1, gaps)).reshape(flat, gaps),
                           dense.reshape(flat, gaps, -1))
    width = orders.shape[1]
    canvas_lengths = steps.reshape(flat)
    ranks = orders_to_ranks(orders).repeat_interleave(queries, 0)
    row_lengths = rows.lengths.repeat_interleave(queries)
    inserted = (ranks < canvas_lengths.unsqueeze(-1)) & (torch.arange(width, device=orders.device)
                                                         < row_lengths.unsqueeze(-1))
    scores = step_scores(finish_output(output, canvas_lengths, model), rows.tokens.repeat_interleave(queries, 0),
                         row_lengths, inserted, canvas_lengths, model.max_length)
    return StepLogProbs(scores.stop.view(count, queries), scores.insert.view(count, queries, width),
                        scores.go.view(count, queries))


def history_log_joint(model, batch, rows, orders: torch.Tensor, first_row: int) -> torch.Tensor:
    """Causal decoder: ``log p(x, sigma)`` ``[n]`` of orders ``[n, L]`` (global rows ``first_row..``) from one pass,
    with token logits only at each step's chosen gap (and the last gap for ``termination="eos"``)."""
    network = model.network
    count, width = orders.shape
    history = _encode_history(model, batch, rows, orders, first_row)
    stop_logits, slot_logits = network.step_logits(history)  # [n, L+1], [n, L+1, L+1]
    steps = torch.arange(width + 1, device=orders.device).expand(count, width + 1)
    slots = F.pad(orders_to_slots(orders, rows.lengths), (0, 1))  # step L inserts nothing (masked below)
    tokens = F.pad(rows.tokens.gather(1, orders), (0, 1))
    chosen_logits = network.token_logits(history, steps, slots)
    last_logits = network.token_logits(history, steps, steps) if model.termination == "eos" else None
    stop, go, insert = chosen_step_terms(stop_logits, slot_logits, slots, chosen_logits, tokens, last_logits, steps,
                                         model)
    terms = torch.where(steps < rows.lengths.unsqueeze(-1), go + insert, stop)
    return terms.masked_fill(steps > rows.lengths.unsqueeze(-1), 0.0).sum(-1)


def canvas_passes(sizes: torch.Tensor, chunk_size: int, min_canvases: int = MIN_CANVASES_PER_PASS) -> list:
    """Split canvases sorted by size ``[N]`` into decoder passes ``[(begin, end), ...]``: at most ``chunk_size``
    canvases each, and a new pass where the size changes once the current one holds ``min_canvases`` (few, large
    passes, each padded to little more than its own canvases)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be a positive number of canvases per decoder pass")
    _, counts = torch.unique_consecutive(sizes, return_counts=True)
    passes, begin, end = [], 0, 0
    for count in counts.tolist():
        if end - begin >= min_canvases:
            passes.append((begin, end))
            begin = end
        end += count
        while end - begin > chunk_size:
            passes.append((begin, begin + chunk_size))
            begin += chunk_size
    if end > begin:
        passes.append((begin, end))
    return passes


# ------------------------------------------------------------------------------------------ step by step
class CanvasSession:
    """Step-by-step decoding that re-encodes the canvas ``[n, t]`` at every step (``decoder="canvas"``)."""

    def __init__(self, model, rows: int, prompt, prompt_lengths, prompt_cache, device):
        self.model, self.network = model, model.network
        self.prompt, self.prompt_lengths, self.cache = prompt, prompt_lengths, prompt_cache
        self.canvas = torch.zeros(rows, 0, dtype=torch.long, device=device)
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)

    def output(self) -> DecoderOutput:
        """The finished scores of the current step: stop ``[n]``, slots ``[n, T+1]``, tokens ``[n, T+1, V]``."""
        return self.model._decode(self.network, self.canvas, self.lengths, self.prompt, self.prompt_lengths,
                                  self.cache)

    def insert(self, slots, tokens, growing) -> None:
        self.canvas, self.lengths = insert_tokens(self.canvas, self.lengths, slots, tokens, growing)

    def keep(self, rows) -> None:
        """Only ``rows`` (bool mask) go on."""
        self.canvas, self.lengths = self.canvas[rows], self.lengths[rows]
        if self.cache is not None:
            self.cache = self.cache.rows(rows.nonzero()[:, 0])
        elif self.prompt is not None:
            self.prompt, self.prompt_lengths = self.prompt[rows], self.prompt_lengths[rows]


class HistorySession:
    """Step-by-step decoding with the insertion-causal decoder's KV cache (``decoder="causal"``): one cached item
    per insertion. Rows that do not grow still write an item (their scores are masked by the caller) so that all
    rows keep one history length; their canvas and ``lengths`` do not change."""

    def __init__(self, model, prompt_cache):
        self.model, self.network = model, model.network  # (a PyroModule attribute costs a lookup per access)
        self.state = self.network.start(prompt_cache)
        self.canvas = torch.zeros(prompt_cache.lengths.shape[0], 0, dtype=torch.long,
                                  device=prompt_cache.lengths.device)
        self.lengths = torch.zeros_like(prompt_cache.lengths)

    def output(self) -> DecoderOutput:
        return finish_output(self.network.scores(self.state), self.lengths, self.model)

    def output_without_tokens(self) -> DecoderOutput:
        """Stop and slot scores of the current step with token logits only where the termination rule needs them
        (the last gap, for ``"eos"``); ``token_logits`` is then a broadcast view, not to be read. Pair it with
        :meth:`token_logits` to draw a slot and then its token (the sampler at temperature 1)."""
        last = self.lengths.unsqueeze(-1)
        raw = self.network.scores(self.state, last)
        raw.token_logits = raw.token_logits.expand(-1, raw.slot_logits.shape[1], -1)
        return finish_output(raw, self.lengths, self.model)

    def token_logits(self, slots: torch.Tensor) -> torch.Tensor:
        """``log p(token | slot, go on)`` up to a constant ``[n, V]`` at the gaps ``slots`` ``[n]``."""
        logits = self.network.gap_token_logits(self.state, slots.unsqueeze(-1))[:, 0]
        return logits[..., :self.model.vocab_size]  # EOS only ever takes the stop decision

    def insert(self, slots, tokens, growing) -> None:
        self.state = self.network.write(self.state, slots, tokens)
        self.canvas, self.lengths = insert_tokens(self.canvas, self.lengths, slots, tokens, growing)

    def keep(self, rows) -> None:
        self.state = self.state.rows(rows)
        self.canvas, self.lengths = self.canvas[rows], self.lengths[rows]
