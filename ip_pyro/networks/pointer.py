"""The pointer network of the pointer guide: a causal stream over an insertion order that scores, at every step,
the positions not yet written (see ``docs/method.md``, "The pointer guide").

Inputs come from a bidirectional encoder of ``[prompt ; BOS ; x]`` run once per sequence: ``states`` ``[B, L, D]``
(one per position of ``x``) and ``start`` ``[B, D]`` (BOS, which has read the prompt and ``x``). For an order
``sigma`` the stream's items are ``start, sigma_0, ..., sigma_{L-2}`` (item ``t + 1`` is the position written at
step ``t``, with how it was written: which canvas neighbours were already there, and the share of the canvas left
of it); attention is causal over the steps, so the stream's state ``s_t`` after item ``t`` has read exactly
``sigma_<t``. Step ``t`` scores a candidate position ``j`` as

    score_t(j) = sum_f phi_f(t, j) <Q_f s_t, K_f h_j> / sqrt(r)

over the features ``phi(t, j)`` of ``j``'s relation to what is written (1; left neighbour written; right neighbour
written; the share of the written positions left of ``j``), all computed for every step at once from the order's
ranks. The guide adds a static score per position (Plackett–Luce) and normalises over the unwritten positions.
The query projections start at zero, so a fresh pointer guide is its Plackett–Luce part.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ip_pyro.networks.stack import Block, RMSNorm, _init_weights, rotated_qkv

__all__ = ["OrderPointer", "PointerState", "candidate_features", "written_masks"]

NUM_FEATURES = 4  # 1, left neighbour written, right neighbour written, share of the written positions on the left


def written_masks(orders: torch.Tensor) -> torch.Tensor:
    """``[R, L, L]``: entry ``[r, t, j]`` says position ``j`` was written before step ``t`` of order ``r`` ``[R, L]``
    (padding positions ``j >= length`` sit at rank ``j`` and are never written before a valid step)."""
    width = orders.shape[-1]
    steps = torch.arange(width, device=orders.device)
    ranks = torch.empty_like(orders).scatter_(-1, orders, steps.expand_as(orders))
    return ranks.unsqueeze(-2) < steps.view(-1, 1)


def candidate_features(written: torch.Tensor) -> torch.Tensor:
    """``[..., F, L]`` features of each position's relation to a written set ``[..., L]`` (bool or 0/1 floats),
    feature-major (one plane per feature): 1, left neighbour written, right neighbour written, share of the written
    positions that lie to its left."""
    flags = written.to(torch.get_default_dtype()) if written.dtype == torch.bool else written
    share = (flags.cumsum(-1) - flags) / flags.sum(-1, keepdim=True).clamp(min=1.0)
    return torch.stack([torch.ones_like(flags), F.pad(flags[..., :-1], (1, 0)), F.pad(flags[..., 1:], (0, 1)),
                        share], dim=-2)


class PointerState:
    """KV-cached stream of ``R`` rows: the blocks' ``caches``, the positions ``written`` so far ``[R, L]`` (0/1 in
    the stream's dtype), the last stream state ``query`` ``[R, D]`` and the number of ``items`` read (the start
    item included)."""

    def __init__(self, caches: list, written: torch.Tensor, query: torch.Tensor, items: int):
        self.caches, self.written, self.query, self.items = caches, written, query, items
        self.features = None  # the candidates' features at the last scored step [R, F, L]
        self.rotary = None  # the stream's rotary tables (cos, sin) [L, head_dim]
        self.key_matrix = None  # the keys laid out for one batched product per step [R * F, r, L]
        self.item_table = None  # every (position, neighbours written) item less its share term [B * L * 4, W]
        self.item_rows = None  # where each row's sequence's items start in item_table [R]
        self.qkv_weights = None  # per block, the rotated qkv projections of every stream position [L, W, 3W]


class OrderPointer(nn.Module):
    """The causal stream and pointer scores (module docstring): ``n_layers`` stream blocks of ``width`` with
    ``n_heads`` heads over items projected from the encoder's ``d_model``; ``rank``: width ``r`` of each feature's
    query-key product."""

    def __init__(self, d_model: int, width: int = 32, n_heads: int = 2, n_layers: int = 1, rank: int = 16,
                 dropout: float = 0.0):
        super().__init__()
        self.rank, self.dropout = rank, dropout
        self.item_in = nn.Linear(d_model, width)
        self.first = nn.Parameter(torch.zeros(width))  # marks the start item
        self.written_as = nn.Embedding(4, width)  # neighbours already written: none, left, right, both
        self.share_in = nn.Linear(1, width, bias=False)  # share of the canvas left of the written position
        self.blocks = nn.ModuleList(Block(width, n_heads, dropout) for _ in range(n_layers))
        self.norm = RMSNorm(width)
        self.query = nn.Linear(width, NUM_FEATURES * rank, bias=False)
        self.key = nn.Linear(d_model, NUM_FEATURES * rank)
        head_dim = width // n_heads
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)),
                             persistent=False)
        self.apply(_init_weights)
        for block in self.blocks:
            for projection in (block.attn.out, block.mlp.out):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * n_layers))
        nn.init.zeros_(self.query.weight)  # a fresh guide is its static (Plackett-Luce) part

    def keys(self, states: torch.Tensor) -> torch.Tensor:
        """Per-feature keys ``[B, L, F, r]`` of the position states ``[B, L, D]``, scaled by ``1 / sqrt(r)`` here
        (once per string) rather than in every product."""
        return (self.key(states) / math.sqrt(self.rank)).unflatten(-1, (NUM_FEATURES, self.rank))

    def _rotary(self, count: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary tables ``[count, head_dim]`` for stream positions ``0 .. count - 1``."""
        angles = torch.arange(count, device=device, dtype=self.inv_freq.dtype).unsqueeze(-1) * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)  # shared by the rows and heads
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def _item(self, position_states: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Items ``[..., W]`` of written positions from their states ``[..., D]`` and their features when written
        ``[..., F]``."""
        code = (features[..., 1] + 2 * features[..., 2]).long()
        return self.item_in(position_states) + self.written_as(code) + self.share_in(features[..., 3:])

    def _scores(self, stream: torch.Tensor, keys: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Pointer scores ``[R, T, L]`` from stream states ``[R, T, W]`` (``R = K B`` rows, particle-major), the
        ``B`` sequences' keys ``[B, L, F, r]`` and candidate features ``[R, T, F, L]``: one product per sequence and
        feature over all ``K`` orders' steps (the keys are not copied per order)."""
        rows, steps = stream.shape[:2]
        batch, width = keys.shape[:2]
        copies = rows // batch
        queries = self.query(stream).view(copies, batch, steps, NUM_FEATURES, self.rank)
        queries = queries.permute(1, 3, 0, 2, 4).reshape(batch * NUM_FEATURES, copies * steps, self.rank)
        key_matrix = keys.permute(0, 2, 3, 1).reshape(batch * NUM_FEATURES, self.rank, width)
        products = torch.bmm(queries, key_matrix).view(batch, NUM_FEATURES, copies, steps, width)
        products = products.permute(2, 0, 3, 1, 4).reshape(rows, steps, NUM_FEATURES, width)
        return (products * features).sum(-2)

    def forward(self, states: torch.Tensor, start: torch.Tensor, keys: torch.Tensor,
                orders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every step of ``R = K B`` orders ``[R, L]`` (particle-major: row ``k B + b`` orders sequence ``b``) in
        one pass, from the ``B`` sequences' ``states`` ``[B, L, D]``, ``start`` ``[B, D]`` and ``keys``
        ``[B, L, F, r]``: pointer scores ``[R, L, L]`` (step, position) and the written masks ``[R, L, L]``."""
        rows, width = orders.shape
        batch = states.shape[0]
        written = written_masks(orders)
        features = candidate_features(written).to(states.dtype)  # [R, L, F, L]
        if width == 0:
            return states.new_zeros(rows, 0, 0), written
        index = orders[:, :-1]
        sequence = torch.arange(rows, device=orders.device) % batch
        written_states = states.reshape(batch * width, -1).index_select(
            0, (index + (sequence * width).unsqueeze(-1)).reshape(-1)).view(rows, width - 1, states.shape[-1])
        written_features = features[:, :-1].gather(3, index[:, :, None, None].expand(-1, -1, NUM_FEATURES, 1))
        first = (self.item_in(start) + self.first).repeat(rows // batch, 1)
        items = torch.cat([first.unsqueeze(1), self._item(written_states, written_features.squeeze(3))], dim=1)
        cos, sin = self._rotary(width, items.dtype, orders.device)
        for block in self.blocks:
            items = block(items, cos, sin, None, True)
        return self._scores(self.norm(items), keys, features), written

    # ------------------------------------------------------------------------ incremental sampling (KV cache)
    def begin(self, start: torch.Tensor, width: int) -> PointerState:
        """The stream after its start item, for rows ``start`` ``[R, D]`` over sequences of padded length ``width``."""
        item = (self.item_in(start) + self.first).unsqueeze(1)
        caches = [{"capacity": max(width, 1)} for _ in self.blocks]  # the start item and width - 1 written
        state = PointerState(caches, item.new_zeros(start.shape[0], width), start, 0)
        state.rotary = self._rotary(max(width, 1), item.dtype, item.device)
        if not (self.training and self.dropout > 0):  # Block.step: one position's rotation in its projection
            state.qkv_weights = [rotated_qkv(block.attn, *state.rotary) for block in self.blocks]
        return self._run(item.squeeze(1), state)

    def scores(self, state: PointerState, keys: torch.Tensor) -> torch.Tensor:
        """Pointer scores ``[R, L]`` of the state's next step (the candidates' features are kept for ``write``):
        ``_scores`` for one step, as one ``bmm`` against keys laid out once per decode (an einsum would copy the
        ``[R, L, F, r]`` keys into its own layout at every step)."""
        rows, width = state.written.shape
        if state.key_matrix is None:  # keys [B, L, F, r] of the B sequences, once per row (particle-major)
            keys = keys.repeat(rows // keys.shape[0], 1, 1, 1)
            state.key_matrix = keys.permute(0, 2, 3, 1).reshape(rows * NUM_FEATURES, self.rank, width)
        state.features = candidate_features(state.written)  # [R, F, L]
        queries = self.query(state.query).view(rows * NUM_FEATURES, 1, self.rank)
        products = torch.bmm(queries, state.key_matrix).view(rows, NUM_FEATURES, width)
        return (products * state.features).sum(1)

    def write(self, state: PointerState, states: torch.Tensor, positions: torch.Tensor) -> PointerState:
        """Write ``positions`` ``[R]`` (unwritten ones) chosen after ``scores``: the stream reads them next.
        ``states`` ``[B, L, D]`` are the ``B`` sequences' (row ``r`` writes sequence ``r % B``). The items' position
        and neighbour terms are tabled once per decode (one product for every position of every sequence), so a
        step's item is one row gather and its share term."""
        batch, width = states.shape[:2]
        if state.item_table is None:  # sequence b's (position j, code c) item at b * 4L + 4j + c
            table = self.item_in(states).unsqueeze(2) + self.written_as.weight  # [B, L, 4, W]
            state.item_table = table.reshape(batch * width * 4, -1)
            rows = torch.arange(positions.shape[0], device=positions.device)
            state.item_rows = (rows % batch) * (width * 4)
        index = positions.view(-1, 1, 1).expand(-1, NUM_FEATURES, 1)
        features = state.features.gather(2, index).squeeze(2)  # [R, F]
        code = state.item_rows + positions * 4 + (features[:, 1] + 2 * features[:, 2]).long()
        item = torch.addcmul(state.item_table.index_select(0, code), features[:, 3:], self.share_in.weight[:, 0])
        state.written = state.written.scatter(1, positions.unsqueeze(-1), 1.0)
        return self._run(item, state)

    def _run(self, item: torch.Tensor, state: PointerState) -> PointerState:
        """Read one item per row ``[R, W]`` into the stream."""
        if state.qkv_weights is not None:
            for block, cache, weight in zip(self.blocks, state.caches, state.qkv_weights):
                item = block.step(item, weight[state.items], cache)
        else:  # dropout in training: the blocks' own forward
            cos, sin = (table[state.items: state.items + 1] for table in state.rotary)
            item = item.unsqueeze(1)
            for block, cache in zip(self.blocks, state.caches):
                item = block(item, cos, sin, None, False, cache)
            item = item[:, 0]
        state.query = self.norm(item)
        state.items += 1
        return state
