"""The insertion-causal decoder: one pass scores every step of an insertion order; sampling keeps a KV cache.

Items are written one per step: item ``0`` is BOS and item ``t`` (``t >= 1``) the token written at step ``t - 1``.
Attention is causal in writing order, so the state ``h_t`` of item ``t`` has seen exactly the history after ``t``
insertions and scores step ``t`` (stop, gap, token). Positions enter only through the canvas at the query's own
step: ``R[t, j]`` is the rank of item ``j`` on the canvas after step ``t`` (BOS ``0``, tokens ``1..t``) and query
``t`` attends key ``j <= t`` with a learned per-head bias of the bucketed signed offset ``D[t, j] = R[t, t] - R[t, j]``
(shared by all layers, T5-style). ``R`` is a cumulative sum over the order of pairwise "left of" relations among
the *written* items, so nothing about tokens not yet written (how many will land between two items, the final
positions of ``x``) can reach a score. The prompt is encoded once (prefix attention) and attended by every item.

Heads from ``h_t`` (canvas of ``t`` tokens, gaps ``k = 0..t``; gap ``k`` lies right of the item of rank ``k``).
Each gap reads a window ``n_w(k)``, ``w = 0..2c-1``, of the current canvas: the items of ranks ``k - c + 1 .. k + c``
(``c = context``; a learned END vector beyond either edge):

* stop: ``a . h_t``;
* gap ``k``: ``sum_w q^w_t . key^w(n_w(k))`` (scaled) ``+ b(bucket(k - R[t, t]))`` -- each gap once;
* tokens at gap ``k``: ``W silu(U h_t + sum_w U_w s(n_w(k)) + u)`` over ``token_classes``.

Item states never change once written (a later neighbour acts only through the newest query): this is what the
model gives up against the re-encoding :class:`~ip_pyro.networks.InsertionDecoder`, measured in ``docs``.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import nn

from ip_pyro.canvas import insert_tokens
from ip_pyro.networks.decoder import DecoderOutput, PromptCache, encode_prompt
from ip_pyro.networks.stack import TransformerStack, _init_weights, gather_rows
from ip_pyro.utils import is_count

__all__ = ["InsertionCausalDecoder", "History", "DecodingState", "offset_buckets"]


def offset_buckets(offsets: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Signed offsets -> buckets ``0..num_buckets-1`` (T5-style): half for ``>= 0``, half for ``< 0``; within a
    half, offsets below a quarter of ``num_buckets`` are exact and larger ones share log-spaced buckets up to
    ``max_distance`` (beyond it, the last bucket)."""
    half = num_buckets // 2
    exact = half // 2
    magnitude = offsets.abs()
    scaled = torch.log(magnitude.clamp(min=1).float() / exact) / math.log(max_distance / exact) * (half - exact)
    far = (exact + scaled.long()).clamp(max=half - 1)
    return torch.where(magnitude < exact, magnitude, far) + (offsets < 0).long() * half


class History(NamedTuple):
    """One pass over written histories of ``S`` items after BOS: ``states`` ``[N, S+1, D]``, ``ranks``
    ``[N, S+1, S+1]`` (``ranks[t, j]`` = rank of item ``j`` after step ``t``, for ``j <= t``), ``item_at``
    ``[N, S+1, S+2]`` (``item_at[t, r]`` = the item of rank ``r`` after step ``t``; ``S + 1`` = END for ``r > t``)
    and ``sides`` ``[N, S+2, 2 W D]`` (every item's and END's gap keys and token sides, computed once per pass)."""

    states: torch.Tensor
    ranks: torch.Tensor
    item_at: torch.Tensor
    sides: torch.Tensor


class DecodingState:
    """KV-cached decoding of ``n`` rows after ``t`` insertions: per-layer ``caches`` (prompt and items), the
    additive mask of the prompt keys ``prompt_bias`` ``[n, H, 1, P]``, the rotary position of the items, the
    last item's state ``query`` ``[n, D]``, the gap-key and token-side projections of every item in ``sides``
    ``[n, >= t+1, 2 W D]`` (the first ``t + 1`` rows are written; without autograd it is a buffer that grows by
    doubling, with autograd it is rebuilt each step), ``ranks`` ``[n, t+1]`` and ``item_at`` ``[n, t+2]`` (BOS,
    items in canvas order, END = -1). Without autograd ``key_columns`` ``[n, W, D, >= t+1]`` holds the items' gap
    keys again, laid out for one batched product per step (a buffer that grows as ``sides`` does); else None."""

    def __init__(self, caches, prompt_bias, positions, query, sides, ranks, item_at, key_columns=None):
        self.caches, self.prompt_bias, self.positions = caches, prompt_bias, positions
        self.query, self.sides, self.ranks, self.item_at = query, sides, ranks, item_at
        self.key_columns = key_columns

    @property
    def steps(self) -> int:
        """Tokens written so far (the canvas length of every row)."""
        return self.ranks.shape[1] - 1

    def rows(self, index: torch.Tensor) -> "DecodingState":
        """The state of the rows ``index`` (an index or a bool mask): finished sequences leave the batch."""
        caches = [{name: tensor[index] for name, tensor in cache.items()} for cache in self.caches]
        return DecodingState(caches, self.prompt_bias[index], self.positions[index], self.query[index],
                             self.sides[index], self.ranks[index], self.item_at[index],
                             None if self.key_columns is None else self.key_columns[index])


def _with_room(buffer: torch.Tensor, used: int, dim: int) -> torch.Tensor:
    """``buffer`` with room for entry ``used`` along ``dim``: itself, or doubled when its ``used`` entries fill it."""
    if buffer.shape[dim] > used:
        return buffer
    return torch.cat([buffer, torch.empty_like(buffer)], dim=dim)


class InsertionCausalDecoder(nn.Module):
    """Insertion-causal Transformer (see the module docstring). Sizes as :class:`~ip_pyro.networks.InsertionDecoder`;
    ``num_buckets`` / ``max_distance`` size the canvas-offset buckets of the attention and gap biases."""

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, dropout: float,
                 token_classes: Optional[int] = None, max_positions: int = 0, prompt_group: int = 1,
                 embed_std: float = 0.02, num_buckets: int = 64, max_distance: int = 256, context: int = 2):
        super().__init__()
        if not is_count(context):
            raise ValueError(f"context={context!r} must be a positive number of canvas neighbours per side of a gap")
        self.context = context
        self.vocab_size, self.bos = vocab_size, vocab_size
        self.n_heads, self.d_model = n_heads, d_model
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.stack = TransformerStack(vocab_size + 1, d_model, n_layers, n_heads, dropout, max_positions=max_positions,
                                      prompt_group=prompt_group, embed_std=embed_std)
        self.offset_bias = nn.Embedding(num_buckets, n_heads)
        self.gap_offset_bias = nn.Embedding(num_buckets, 1)
        self.end = nn.Parameter(torch.empty(d_model))
        self.stop_head = nn.Linear(d_model, 1)
        window = 2 * context  # a gap's neighbours: ranks k - context + 1 .. k + context on the current canvas
        self.gap_query = nn.Linear(d_model, window * d_model, bias=False)  # one query per neighbour
        self.item_sides = nn.Linear(d_model, 2 * window * d_model, bias=False)  # its gap keys, then token sides
        self.token_query = nn.Linear(d_model, d_model)
        # one hidden layer per gap: the all-steps ELBO evaluates it at every gap of every step (O(L^2) gaps)
        self.token_out = nn.Sequential(nn.SiLU(), nn.Linear(d_model, token_classes or vocab_size))
        for module in (self.stop_head, self.gap_query, self.item_sides, self.token_query, self.token_out):
            module.apply(_init_weights)
        nn.init.zeros_(self.offset_bias.weight)
        nn.init.zeros_(self.gap_offset_bias.weight)
        nn.init.normal_(self.end, std=0.02)
        # buckets saturate at max_distance, so a table over -max_distance..max_distance serves every offset
        span = torch.arange(-max_distance, max_distance + 1)
        self.register_buffer("bucket_table", offset_buckets(span, num_buckets, max_distance), persistent=False)

    # ------------------------------------------------------------------------------------------- prompt
    def encode_prompt(self, prompt, prompt_lengths, rows: Optional[int] = None) -> PromptCache:
        """The prompt's per-layer keys and values, once per sequence (``prompt=None``: ``rows`` empty prompts)."""
        return encode_prompt(self.stack, prompt, prompt_lengths, rows)

    def _buckets(self, offsets: torch.Tensor) -> torch.Tensor:
        """:func:`offset_buckets` of ``offsets`` by table lookup."""
        return self.bucket_table[offsets.clamp(-self.max_distance, self.max_distance) + self.max_distance]

    def _prompt_mask(self, valid: torch.Tensor, queries: int, dtype) -> torch.Tensor:
        """Additive mask ``[n, H, queries, P]`` of the prompt keys (0 where valid, ``-inf`` on padding)."""
        mask = torch.zeros(valid.shape, dtype=dtype, device=valid.device).masked_fill(~valid, -math.inf)
        return mask[:, None, None, :].expand(-1, self.n_heads, queries, -1)

    # ------------------------------------------------------------------------------------- one pass
    def encode(self, tokens: torch.Tensor, keys: torch.Tensor, prompt_cache: PromptCache) -> History:
        """Every step of ``N`` written histories in one pass.

        :param tokens: ``[N, S]`` the tokens in the order written.
        :param keys: ``[N, S]`` non-negative and distinct per row; only their order among written items is used
            (item ``i`` lies left of item ``j`` on every canvas holding both iff ``keys[i] < keys[j]``): final
            positions or current canvas ranks give the same result.
        :param prompt_cache: the rows' prompt encoding (:meth:`encode_prompt`, one row per history).
        """
        rows, steps = tokens.shape
        device = tokens.device
        ids = torch.cat([torch.full((rows, 1), self.bos, dtype=tokens.dtype, device=device), tokens], dim=1)
        item_keys = torch.cat([torch.full((rows, 1), -1, dtype=keys.dtype, device=device), keys], dim=1)
        left_of = item_keys.unsqueeze(-1) < item_keys.unsqueeze(-2)  # [N, i, j]: item i lies left of item j
        ranks = left_of.long().cumsum(1)  # [N, t, j]: items i <= t left of j (BOS counts once: ranks from 1)
        offsets = ranks.diagonal(dim1=1, dim2=2).unsqueeze(-1) - ranks  # D[t, j] = R[t, t] - R[t, j]
        written = torch.ones(steps + 1, steps + 1, dtype=torch.bool, device=device).tril()  # key j <= query t
        dtype = self.offset_bias.weight.dtype
        bias = self.offset_bias(self._buckets(offsets)).permute(0, 3, 1, 2).masked_fill(~written, -math.inf)
        mask = torch.cat([self._prompt_mask(prompt_cache.valid, steps + 1, dtype), bias], dim=-1)
        positions = prompt_cache.lengths.unsqueeze(-1).expand(rows, steps + 1)  # rotary: the items share one
        caches = prompt_cache.layer_caches()
        states = self.stack.forward_masked(ids, positions, torch.ones_like(ids), mask, caches=caches)
        # item_at[t, R[t, j]] = j for j <= t; END (S + 1) at every rank not yet taken
        target = torch.where(written, ranks, torch.full_like(ranks, steps + 2))
        item_at = torch.full((rows, steps + 1, steps + 3), steps + 1, dtype=torch.long, device=device)
        item_at.scatter_(2, target, torch.arange(steps + 1, device=device).expand(rows, steps + 1, steps + 1))
        return History(states, ranks, item_at[..., :steps + 2], self._extended_sides(states))

    def _extended_sides(self, states: torch.Tensor) -> torch.Tensor:
        """Gap keys and token sides ``[N, S+2, 2 W D]`` of every item and of END (index ``S + 1``), ``W`` the
        window of neighbours of a gap."""
        end = self.end.to(states.dtype).expand(states.shape[0], 1, -1)
        return self.item_sides(torch.cat([states, end], dim=1))

    def _windows(self, item_at: torch.Tensor, edge: int) -> torch.Tensor:
        """The neighbours of every gap ``[..., G, W]`` from canvases in rank order ``item_at`` ``[..., G + 1]``
        (BOS first, END last): ranks ``k - context + 1 .. k + context`` of gap ``k``, ``edge`` (END's index)
        beyond either end of the canvas."""
        pad = self.context - 1
        padded = torch.nn.functional.pad(item_at, (pad, pad), value=edge)
        return padded.unfold(-1, 2 * self.context, 1)

    def _gap_scores(self, query, keys, windows) -> torch.Tensor:
        """``sum_w q_w . k_w[window w]`` ``[N, Q, G]`` for queries ``[N, Q, D]``, item gap keys ``[N, I, W D]``
        and neighbour windows ``[N, Q, G, W]``."""
        depth, count = self.d_model, windows.shape[-1]
        queries = self.gap_query(query).unflatten(-1, (count, depth))  # [N, Q, W, D]
        scores = torch.einsum("nqwd,niwd->nqwi", queries, keys.unflatten(-1, (count, depth)))  # [N, Q, W, I]
        picked = scores.gather(3, windows.transpose(2, 3))  # [N, Q, W, G]
        return picked.sum(2) / math.sqrt(depth)

    def step_logits(self, history: History):
        """Stop logits ``[N, S+1]`` and gap (slot) logits ``[N, S+1, S+1]`` of every step (``-inf`` for gaps
        ``k > t``); slot ``k`` of step ``t`` is the gap right of the item of rank ``k``."""
        states, ranks, item_at, sides = history
        steps = states.shape[1] - 1
        window = 2 * self.context
        gaps = torch.arange(steps + 1, device=states.device)
        gap_offsets = gaps - ranks.diagonal(dim1=1, dim2=2).unsqueeze(-1)  # k - R[t, t]
        scores = self._gap_scores(states, sides[..., :window * self.d_model], self._windows(item_at, steps + 1))
        slot_logits = scores + self.gap_offset_bias(self._buckets(gap_offsets)).squeeze(-1)
        slot_logits = slot_logits.masked_fill(gaps > gaps.unsqueeze(-1), -math.inf)
        return self.stop_head(states).squeeze(-1), slot_logits

    def _token_hidden(self, query_part, sides, windows, end=None) -> torch.Tensor:
        """``U h_t + sum_w U_w s[window w]`` ``[N, M, D]``: ``query_part`` ``[N, M, D]``, item token sides
        ``[N, I, W D]``, windows ``[N, M, W]``; with ``end`` (END's token sides ``[W D]``), index ``I`` is END.
        (One row gather per window slot: a single gather of all ``M W`` reads and a sum is slower on CPU.)"""
        depth, count = self.d_model, windows.shape[-1]
        items = sides.shape[1]
        sides = sides.unflatten(-1, (count, depth))  # [N, I, W, D]
        hidden = query_part
        for slot in range(count):
            index = windows[..., slot:slot + 1]
            taken = gather_rows(sides[:, :, slot], index.clamp(max=items - 1).squeeze(-1))
            if end is not None:
                taken = torch.where(index == items, end[slot * depth:(slot + 1) * depth], taken)
            hidden = hidden + taken
        return hidden

    def token_logits(self, history: History, steps: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Token logits ``[N, M, token_classes]`` at gap ``slots[n, m]`` of step ``steps[n, m]`` (``[N, M]``)."""
        states, _, item_at, sides = history
        window = 2 * self.context
        sides = sides[..., window * self.d_model:]
        windows = self._windows(item_at, states.shape[1]).flatten(1, 2)  # [N, (S+1) G, W]: step-major
        gaps = states.shape[1]
        picked = windows.gather(1, (steps * gaps + slots).unsqueeze(-1).expand(-1, -1, window))  # [N, M, W]
        query_part = gather_rows(self.token_query(states), steps)
        return self.token_out(self._token_hidden(query_part, sides, picked))

    # ------------------------------------------------------------------------ incremental (KV cache)
    def start(self, prompt_cache: PromptCache) -> DecodingState:
        """Write BOS after each row's cached prompt: the state before the first insertion (``n`` rows)."""
        rows = prompt_cache.lengths.shape[0]
        device = prompt_cache.lengths.device
        ids = torch.full((rows, 1), self.bos, dtype=torch.long, device=device)
        prompt_bias = self._prompt_mask(prompt_cache.valid, 1, self.offset_bias.weight.dtype)
        own = self.offset_bias(self._buckets(torch.zeros(rows, 1, 1, dtype=torch.long, device=device)))
        mask = torch.cat([prompt_bias, own.permute(0, 3, 1, 2)], dim=-1)
        caches = prompt_cache.layer_caches()
        positions = prompt_cache.lengths.unsqueeze(-1)
        states = self.stack.forward_masked(ids, positions, torch.ones_like(ids), mask, caches=caches)
        item_at = torch.tensor([0, -1], device=device).expand(rows, 2).clone()
        sides = self.item_sides(states)
        return DecodingState(caches, prompt_bias, positions, states[:, 0], sides,
                             torch.zeros(rows, 1, dtype=torch.long, device=device), item_at,
                             None if torch.is_grad_enabled() else self._key_columns(sides))

    def _key_columns(self, sides: torch.Tensor) -> torch.Tensor:
        """The gap keys of item sides ``[n, I, 2 W D]`` as columns ``[n, W, D, I]`` (a copy)."""
        window, depth = 2 * self.context, self.d_model
        return sides[..., :window * depth].unflatten(-1, (window, depth)).permute(0, 2, 3, 1).contiguous()

    def _end_sides(self, dtype) -> torch.Tensor:
        return self.item_sides(self.end.to(dtype))  # [2 W D]

    def _state_windows(self, state: DecodingState) -> torch.Tensor:
        """Neighbour windows ``[n, t+1, W]`` of the current canvas's gaps (END = the item count)."""
        count = state.ranks.shape[1]
        return self._windows(state.item_at.masked_fill(state.item_at < 0, count), count)

    def scores(self, state: DecodingState, gaps: Optional[torch.Tensor] = None) -> DecoderOutput:
        """The current step's ``stop_logits`` ``[n]``, ``slot_logits`` ``[n, t+1]`` and ``token_logits``
        ``[n, G, token_classes]`` at every gap (``G = t + 1``) or at the gaps ``gaps`` ``[n, G]``, from the cache."""
        window, depth = 2 * self.context, self.d_model
        count = state.ranks.shape[1]
        items, windows = state.sides[:, :count], self._state_windows(state)  # END: index `count` of the windows
        end = self._end_sides(items.dtype)
        queries = self.gap_query(state.query).unflatten(-1, (window, depth))  # [n, W, D]
        if state.key_columns is not None:  # [n, W, 1, D] x [n, W, D, t+1]: no per-step copy of the keys
            item_scores = torch.matmul(queries.unsqueeze(2), state.key_columns[..., :count]).squeeze(2)
        else:
            item_scores = torch.einsum("nwd,niwd->nwi", queries,
                                       items[..., :window * depth].unflatten(-1, (window, depth)))
        end_scores = torch.einsum("nwd,wd->nw", queries, end[:window * depth].unflatten(-1, (window, depth)))
        scores = torch.cat([item_scores, end_scores.unsqueeze(-1)], dim=-1)  # [n, W, t+2]
        picked = scores.gather(2, windows.transpose(1, 2)).sum(1) / math.sqrt(depth)  # [n, t+1]
        gap_offsets = torch.arange(count, device=state.ranks.device) - state.ranks[:, -1:]
        slot_logits = picked + self.gap_offset_bias(self._buckets(gap_offsets)).squeeze(-1)
        if gaps is None:
            gaps = torch.arange(count, device=state.ranks.device).expand(state.ranks.shape[0], count)
        return DecoderOutput(self.stop_head(state.query).squeeze(-1), slot_logits,
                             self._gap_tokens(state, gaps, items, windows, end))

    def gap_token_logits(self, state: DecodingState, gaps: torch.Tensor) -> torch.Tensor:
        """Token logits ``[n, G, token_classes]`` of the current step at the gaps ``gaps`` ``[n, G]``."""
        count = state.ranks.shape[1]
        items = state.sides[:, :count]
        return self._gap_tokens(state, gaps, items, self._state_windows(state), self._end_sides(items.dtype))

    def _gap_tokens(self, state, gaps, items, windows, end) -> torch.Tensor:
        window, depth = 2 * self.context, self.d_model
        picked = windows.gather(1, gaps.unsqueeze(-1).expand(-1, -1, window))  # [n, G, W]
        query_part = self.token_query(state.query).unsqueeze(1).expand(-1, gaps.shape[1], -1)
        return self.token_out(self._token_hidden(query_part, items[..., window * depth:], picked,
                                                 end[window * depth:]))

    def write(self, state: DecodingState, slots: torch.Tensor, tokens: torch.Tensor) -> DecodingState:
        """Insert ``tokens`` ``[n]`` into gap ``slots`` ``[n]`` of every row: ranks updated in place (items right of
        the gap move up one), one cached pass for the new item. Returns the updated state."""
        rows, count = state.ranks.shape
        new_rank = slots + 1
        ranks = state.ranks + (state.ranks >= new_rank.unsqueeze(-1)).long()
        ranks = torch.cat([ranks, new_rank.unsqueeze(-1)], dim=1)  # [n, t+2]
        item_at, _ = insert_tokens(state.item_at, torch.zeros_like(slots), new_rank,
                                   torch.full_like(slots, count), torch.ones_like(slots, dtype=torch.bool))
        bias = self.offset_bias(self._buckets(new_rank.unsqueeze(-1) - ranks)).permute(0, 2, 1).unsqueeze(2)
        mask = torch.cat([state.prompt_bias, bias], dim=-1)
        ids = tokens.unsqueeze(-1)
        states = self.stack.forward_masked(ids, state.positions, torch.ones_like(ids), mask, caches=state.caches)
        new_sides = self.item_sides(states)  # [n, 1, 2 W D]
        if torch.is_grad_enabled():  # no in-place writes into a tensor autograd may still need
            sides = torch.cat([state.sides[:, :count], new_sides], dim=1)
        else:  # a buffer that doubles when full: O(1) amortised per step instead of a copy of every item
            sides = _with_room(state.sides, count, 1)
            sides[:, count] = new_sides[:, 0]
        columns = None if torch.is_grad_enabled() else state.key_columns
        if columns is not None:  # the same for the key columns
            columns = _with_room(columns, count, -1)
            columns[..., count] = self._key_columns(new_sides)[..., 0]
        return DecodingState(state.caches, state.prompt_bias, state.positions, states[:, 0], sides, ranks, item_at,
                             columns)
