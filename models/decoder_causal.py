"""The insertion-causal decoder (:class:`ip_pyro.networks.InsertionCausalDecoder`): item ``t`` is the token
written at step ``t``, attention is causal in writing order and positions come from canvas ranks at the query's
own step, so one pass scores every step of an order and sampling advances a KV cache. A step depends on the order
that wrote its canvas (not canvas-Markov): ``step_log_probs`` needs that order."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ip_pyro.canvas import insert_tokens
from ip_pyro.models.decoder_base import DecoderScoring, register_decoder
from ip_pyro.models.insertion_steps import StepLogProbs, chosen_step_terms, finish_output, step_scores
from ip_pyro.networks import DecoderOutput, InsertionCausalDecoder
from ip_pyro.orders import orders_to_ranks, orders_to_slots, slots_of_positions

__all__ = ["CausalScoring", "HistorySession", "history_steps", "history_log_joint", "needed_gaps"]


def encode_prompt(model, batch):
    """The batch's prompt encoded once (empty prompts included: the history attends to a cache always)."""
    return model.network.encode_prompt(batch.prompt, batch.prompt_lengths, rows=batch.batch_size)


class CausalScoring(DecoderScoring):
    name = "causal"
    canvas_markov = False
    needs_orders = True
    parallel_decoding = False  # one cached item per insertion already
    default_prompt_attention = "prefix"
    prompt_attentions = ("prefix",)  # the prompt is encoded once
    prompt_attention_error = ("the causal decoder encodes the prompt once (prompt_attention='prefix'); leave "
                              "prompt_attention unset or use decoder='canvas' for full attention")
    options = ("gap_context",)

    def build_network(self, vocab_size, d_model, n_layers, n_heads, dropout, *, prompt_attention, options, **sizes):
        return InsertionCausalDecoder(vocab_size, d_model, n_layers, n_heads, dropout,
                                      context=options.get("gap_context", 2), **sizes)

    def prompt_cache(self, model, batch):
        return encode_prompt(model, batch)

    def step_log_probs(self, model, batch, rows, inserted, orders):
        if orders is None or orders.shape != inserted.shape:
            raise ValueError("the causal decoder scores a step from the order that wrote its canvas: pass "
                             f"orders= [N, {batch.max_length}] aligned with inserted (or use decoder='canvas')")
        steps = inserted.sum(-1)
        if not bool((orders_to_ranks(orders) < steps.unsqueeze(-1)).eq(inserted).all()):
            raise ValueError("inserted must hold the first inserted.sum(-1) positions of each order "
                             "(inserted_before(orders, lengths, steps))")
        scores = history_steps(model, batch, rows, orders, steps.unsqueeze(-1))
        return StepLogProbs(scores.stop[:, 0], scores.insert[:, 0], scores.go[:, 0])

    def all_step_log_probs(self, model, batch, rows, orders, chunk_size: int):
        width = orders.shape[1]
        steps = torch.arange(width + 1, device=orders.device).expand(orders.shape[0], width + 1)
        return history_steps(model, batch, rows, orders, steps.clamp(max=rows.lengths.unsqueeze(-1)))

    def log_joint(self, model, batch, rows, orders, chunk_size: int, by_canvas_size: bool):
        spans = [(begin, min(begin + chunk_size, len(orders))) for begin in range(0, len(orders), chunk_size)]
        parts = [history_log_joint(model, batch, rows[begin:end], orders[begin:end], begin) for begin, end in spans]
        return torch.cat(parts) if parts else torch.zeros(0, device=orders.device)

    def session(self, model, prompt, prompt_lengths, rows: int, device, cache=None):
        return HistorySession(model, cache)


def _encode_history(model, batch, rows, orders: torch.Tensor, first_row: int):
    """The causal decoder's one pass over orders ``[n, L]`` aligned with ``rows`` (global rows ``first_row..`` of
    ``batch.repeat``, for the prompt cache)."""
    cache = encode_prompt(model, batch)
    index = (torch.arange(orders.shape[0], device=orders.device) + first_row) % batch.batch_size
    return model.network.encode(rows.tokens.gather(1, orders), orders, cache.rows(index))


def needed_gaps(orders: torch.Tensor, lengths: torch.Tensor, steps: torch.Tensor, eos: bool) -> torch.Tensor:
    """Flat ``(query, gap)`` indices ``[N, M]`` (``query * G + gap``, ``G = L + 1``) where the token logits of the
    steps ``[N, Q]`` of the orders ``[N, L]`` are read: the gaps that hold a position not yet inserted (and, with
    ``eos``, each step's last gap). They come first in each row; ``M`` is the largest count over the rows and the
    rest of a row is filled with distinct unread pairs. Under a uniform order about a third of the ``k <= t``
    gaps are read; under an order that writes left to right, one per step."""
    count, width = orders.shape
    gaps = width + 1
    ranks = orders_to_ranks(orders)
    inserted = ranks.unsqueeze(1) < steps.unsqueeze(-1)  # [N, Q, L]
    remaining = (torch.arange(width, device=orders.device) < lengths.unsqueeze(-1)).unsqueeze(1) & ~inserted
    slots = torch.where(remaining, slots_of_positions(inserted), gaps)  # unread positions to a spare column
    needed = torch.zeros(count, steps.shape[1], gaps + 1, dtype=torch.bool, device=orders.device)
    needed.scatter_(2, slots, True)
    if eos:
        needed.scatter_(2, steps.unsqueeze(-1), True)
    needed = needed[..., :gaps].flatten(1)
    size = max(int(needed.sum(-1).max()) if count else 0, 1)
    return needed.to(torch.uint8).argsort(dim=-1, descending=True, stable=True)[:, :size]


def history_steps(model, batch, rows, orders: torch.Tensor, steps: torch.Tensor) -> StepLogProbs:
    """Causal decoder: :class:`StepLogProbs` ``[N, Q(, L)]`` of the steps ``[N, Q]`` of the orders ``[N, L]``
    (rows aligned with ``rows = batch.repeat(N // B)``), every candidate position in closed form, from one pass;
    token logits only at the gaps a candidate goes into (:func:`needed_gaps`)."""
    network = model.network
    history = _encode_history(model, batch, rows, orders, 0)
    stop_logits, slot_logits = network.step_logits(history)  # [N, L+1], [N, L+1, L+1]
    count, queries = steps.shape
    gaps = slot_logits.shape[-1]
    pairs = needed_gaps(orders, rows.lengths, steps, model.termination == "eos")  # [N, M]
    pair_steps, pair_slots = steps.gather(1, pairs // gaps), pairs % gaps
    token_logits = network.token_logits(history, pair_steps, torch.minimum(pair_slots, pair_steps))
    classes = token_logits.shape[-1]
    dense = token_logits.new_zeros(count, queries * gaps, classes)  # other gaps: never read
    dense = dense.scatter(1, pairs.unsqueeze(-1).expand(-1, -1, classes), token_logits)
    flat = count * queries
    output = DecoderOutput(stop_logits.gather(1, steps).reshape(flat),
                           slot_logits.gather(1, steps.unsqueeze(-1).expand(-1, -1, gaps)).reshape(flat, gaps),
                           dense.reshape(flat, gaps, classes))
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


register_decoder("causal", CausalScoring)
