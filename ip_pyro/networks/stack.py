"""The shared Transformer stack (pre-norm, rotary positions, SwiGLU) and the size checks of every network."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from ip_pyro.utils import is_count
from torch import nn

__all__ = ["TransformerStack", "RMSNorm", "check_network_sizes", "check_max_positions", "positions_needed"]


def gather_rows(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``source[n, index[n, m]]`` ``[N, M, D]`` for ``source`` ``[N, I, D]`` and ``index`` ``[N, M]``: the same
    values as ``source.gather(1, index[..., None].expand(-1, -1, D))``, as one row-wise ``index_select`` on the
    flattened rows (whose backward adds whole rows), about twice as fast forward and backward on CPU."""
    rows, items, depth = source.shape
    offsets = torch.arange(rows, device=index.device).unsqueeze(-1) * items
    flat = source.reshape(rows * items, depth).index_select(0, (index + offsets).reshape(-1))
    return flat.view(rows, index.shape[1], depth)


def check_network_sizes(**sizes) -> None:
    """Raise a one-line ``ValueError`` for non-positive sizes or a width not divisible into even heads."""
    for name, value in sizes.items():
        if name == "dropout":
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"dropout={value} must lie in [0, 1)")
            continue
        if name == "embed_std":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < math.inf:
                raise ValueError(f"embed_std={value!r} must be a positive number (0.02: GPT-2 init; 1.0: PyTorch's)")
            continue
        if not is_count(value):
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if "d_model" in sizes and "n_heads" in sizes:
        d_model, n_heads = sizes["d_model"], sizes["n_heads"]
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model={d_model} must split into n_heads={n_heads} heads of even width "
                             f"(e.g. d_model={n_heads * 2 * max(1, round(d_model / n_heads / 2))})")


def positions_needed(max_prompt_length: int, max_length: int) -> int:
    """Absolute positions a row ``[prompt ; BOS ; sequence ; END]`` can occupy (the ``max_positions`` to build with)."""
    return max_prompt_length + max_length + 2


def check_max_positions(max_positions: int, max_length: int) -> None:
    """One-line ``ValueError`` unless ``max_positions`` is 0 (rotary only) or holds a row without a prompt."""
    if not is_count(max_positions, 0):
        raise ValueError(f"max_positions={max_positions!r} must be a non-negative integer (0 = rotary positions only)")
    if 0 < max_positions < positions_needed(0, max_length):
        raise ValueError(f"max_positions={max_positions} cannot hold a sequence of max_length={max_length} (needs "
                         f"at least prompt length + {positions_needed(0, max_length)})")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        if hasattr(F, "rms_norm"):  # fused where torch has it (>= 2.4)
            return F.rms_norm(x, self.weight.shape, self.weight.to(x.dtype), self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding with full-width tables: ``x * cos + rotate_half(x) * sin``."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.dropout = dropout

    def forward(self, x, cos, sin, attn_mask: Optional[torch.Tensor], causal: bool, cache: Optional[dict] = None):
        """``cache`` (incremental decoding): a dict holding this layer's keys and values so far (``"k"``, ``"v"``
        ``[N, H, S, hd]``); the new ones are appended and attention runs over all of them. A cache made as
        ``{"capacity": S_max}`` keeps them in buffers of ``S_max`` steps written in place (no copy of the past
        per step) while no gradient is recorded, and by concatenation otherwise."""
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = _rotate(qkv[:2], cos, sin).unbind(0)  # queries and keys rotated in one call
        v = qkv[2]
        if cache is not None:
            k, v = _cache_append(cache, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal and attn_mask is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


def _cache_append(cache: dict, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``keys`` and ``values`` ``[N, H, S, hd]`` to a layer's cache; the keys and values so far."""
    if "capacity" in cache and not (torch.is_grad_enabled() and (keys.requires_grad or values.requires_grad)):
        if "k" not in cache:  # buffers for every step; "k" and "v" are views of the steps written
            shape = (*keys.shape[:2], cache["capacity"], keys.shape[-1])
            cache["k_buffer"], cache["v_buffer"] = keys.new_empty(shape), values.new_empty(shape)
            cache["k"] = keys[:, :, :0]
        used = cache["k"].shape[2]
        end = used + keys.shape[2]
        if end > cache["capacity"]:
            raise ValueError(f"the KV cache holds {cache['capacity']} steps; appending would make {end}")
        cache["k_buffer"][:, :, used:end] = keys
        cache["v_buffer"][:, :, used:end] = values
        cache["k"], cache["v"] = cache["k_buffer"][:, :, :end], cache["v_buffer"][:, :, :end]
        return cache["k"], cache["v"]
    if "k" in cache:
        keys, values = torch.cat([cache["k"], keys], dim=2), torch.cat([cache["v"], values], dim=2)
    cache["k"], cache["v"] = keys, values
    return keys, values


def rotated_qkv(attention: "Attention", cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``[P, D, 3D]``: ``attention``'s ``qkv`` projection with the rotary rotation of each of ``P`` positions
    (tables ``cos``, ``sin`` ``[P, hd]``) folded into its query and key columns, so ``x @ out[p]`` is the rotated
    queries and keys and the values of one token at position ``p`` (rotation is linear in the projection)."""
    width, heads = attention.qkv.in_features, attention.n_heads
    weight = attention.qkv.weight.t().reshape(1, width, 3, heads, width // heads)
    query_key = _rotate(weight[:, :, :2], cos[:, None, None, None], sin[:, None, None, None])  # [P, D, 2, H, hd]
    value = weight[:, :, 2:].expand(len(cos), -1, -1, -1, -1)
    return torch.cat([query_key, value], dim=2).reshape(len(cos), width, 3 * width)


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate_and_value = nn.Linear(d_model, 2 * hidden, bias=False)
        self.out = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x):
        gate, value = self.gate_and_value(x).chunk(2, dim=-1)
        return self.out(F.silu(gate) * value)


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.attn_norm = RMSNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.mlp_norm = RMSNorm(d_model)
        self.mlp = SwiGLU(d_model, 4 * d_model * 2 // 3)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, cos, sin, attn_mask, causal, cache=None):
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, attn_mask, causal, cache))
        return x + self.drop(self.mlp(self.mlp_norm(x)))

    def step(self, x: torch.Tensor, qkv_weight: torch.Tensor, cache: dict) -> torch.Tensor:
        """One new token per row, KV-cached, without dropout: ``x`` ``[N, D]`` -> ``[N, D]``, with ``qkv_weight``
        ``[D, 3D]`` from :func:`rotated_qkv` at the token's position; appends to ``cache``. The values of
        ``forward(x[:, None], cos, sin, None, False, cache)[:, 0]`` in about half its kernels (the rotation
        folded into the projection, the residual adds into the output products)."""
        rows, width = x.shape
        heads = self.attn.n_heads
        qkv = (self.attn_norm(x) @ qkv_weight).view(rows, 3, heads, 1, width // heads)
        keys, values = _cache_append(cache, qkv[:, 1], qkv[:, 2])
        attended = F.scaled_dot_product_attention(qkv[:, 0], keys, values).reshape(rows, width)
        x = torch.addmm(x, attended, self.attn.out.weight.t())
        gate, value = self.mlp.gate_and_value(self.mlp_norm(x)).chunk(2, dim=-1)
        return torch.addmm(x, F.silu(gate) * value, self.mlp.out.weight.t())


class TransformerStack(nn.Module):
    """Embeddings + ``n_layers`` pre-norm blocks with rotary positions given per token (plus learned absolute
    position embeddings for positions ``0 .. max_positions-1`` when ``max_positions > 0``).

    ``prompt_group = k > 1``: the prompt is read as consecutive groups of ``k`` tokens (an edge list: ``k = 2``);
    each prompt token's embedding also gets a learned projection of the sum of the other members' token embeddings
    (found through segment 0 and the prompt positions ``0 .. P-1``; a trailing incomplete group sums what it has).
    ``embed_std``: the standard deviation of the initial token embeddings (0.02 as GPT-2; lookups in a prompt start
    learning far sooner from 1.0: docs/planning.md).

    ``forward(ids [N, S], positions [N, S], segments [N, S], key_mask [N, S] or None, causal)`` -> ``[N, S, D]``.
    """

    def __init__(self, num_embeddings: int, d_model: int, n_layers: int, n_heads: int, dropout: float,
                 num_segments: int = 2, max_positions: int = 0, prompt_group: int = 1, embed_std: float = 0.02):
        super().__init__()
        self.embed = nn.Embedding(num_embeddings, d_model)
        self.prompt_group = prompt_group
        self.group_mix = nn.Linear(d_model, d_model, bias=False) if prompt_group > 1 else None
        self.segment = nn.Embedding(num_segments, d_model)
        # optional learned absolute positions on top of the rotary ones: rotary attention only sees offsets, so
        # "first or second node of its edge" in a flat edge list is invisible to it without them
        self.position = nn.Embedding(max_positions, d_model) if max_positions > 0 else None
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = RMSNorm(d_model)
        self.drop = nn.Dropout(dropout)
        head_dim = d_model // n_heads
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)),
                             persistent=False)
        self.apply(_init_weights)
        if embed_std != 0.02:  # (no extra draw at the default: seeded runs keep their weights)
            nn.init.normal_(self.embed.weight, std=embed_std)
        if self.group_mix is not None:  # a rotation: the members stay as loud as the token, yet distinguishable
            nn.init.orthogonal_(self.group_mix.weight)
        for block in self.blocks:  # scaled residual projections (GPT-2)
            for projection in (block.attn.out, block.mlp.out):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, ids, positions, segments, key_mask=None, causal=False, caches=None):
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        if attn_mask is not None and causal:
            # a padded query may see no valid key under the causal mask: letting every position see itself keeps
            # its (unused) state finite, so no NaN leaks into real positions through 0 * NaN
            size = ids.shape[1]
            eye = torch.eye(size, dtype=torch.bool, device=ids.device)
            attn_mask = (attn_mask | eye) & torch.ones(size, size, dtype=torch.bool, device=ids.device).tril()
        return self.forward_masked(ids, positions, segments, attn_mask, causal, caches, valid=key_mask)

    def forward_masked(self, ids, positions, segments, attn_mask, causal=False, caches=None, valid=None):
        """Like ``forward`` with a ready attention mask broadcastable to ``[N, 1, S, S_keys]`` (True = attend).

        ``caches``: one dict per block for incremental decoding (see :class:`Attention`). ``valid`` ``[N, S]``
        (optional): which entries are real tokens, so that prompt padding never joins a prompt group."""
        x = self.embed(ids) + self.segment(segments)
        if self.group_mix is not None:
            x = x + self.group_mix(self._group_members(ids, positions, segments, valid))
        if self.position is not None:
            furthest = int(positions.max()) if positions.numel() else 0
            if furthest >= self.position.num_embeddings:
                raise ValueError(f"position {furthest} is beyond the {self.position.num_embeddings} absolute positions "
                                 "this network was built with; use a shorter prompt/sequence or a larger max_positions")
            x = x + self.position(positions)
        x = self.drop(x)
        angles = positions.unsqueeze(-1).to(self.inv_freq.dtype) * self.inv_freq  # [N, S, hd/2]
        angles = torch.cat([angles, angles], dim=-1).unsqueeze(1)  # [N, 1, S, hd], shared by every layer
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        for index, block in enumerate(self.blocks):
            x = block(x, cos, sin, attn_mask, causal, None if caches is None else caches[index])
        return self.norm(x)

    def _group_members(self, ids, positions, segments, valid=None):
        """``[N, S, D]``: for each prompt token, the summed embeddings of the other tokens of its group (zero
        elsewhere). A member sits ``r - position % k`` entries away in the row; it counts when it is a real (``valid``)
        prompt token at the expected prompt position (rows may be packed, so neighbours can belong to another
        segment, or padded, so the entries after a short prompt are padding)."""
        group = self.prompt_group
        span = ids.shape[1]
        index = torch.arange(span, device=ids.device)
        is_prompt = segments == 0
        within = positions % group
        members = torch.zeros(*ids.shape, self.embed.embedding_dim, dtype=self.embed.weight.dtype, device=ids.device)
        for rank in range(group):
            shift = rank - within  # [N, S]
            source = index + shift
            inside = (source >= 0) & (source < span)
            source = source.clamp(0, span - 1)
            found = (inside & is_prompt & (shift != 0) & segments.gather(1, source).eq(0)
                     & positions.gather(1, source).eq(positions + shift))
            if valid is not None:
                found = found & valid.gather(1, source)
            members = members + self.embed(ids.gather(1, source)) * found.unsqueeze(-1)
        return members


def _init_weights(module):
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def _layout_prompt(prompt, prompt_lengths, rows: int, device):
    """Prompt ids ``[N, P]`` (empty when absent), their lengths ``[N]`` and validity mask ``[N, P]``."""
    if prompt is None:
        empty = torch.zeros(rows, 0, dtype=torch.long, device=device)
        return empty, torch.zeros(rows, dtype=torch.long, device=device), empty.bool()
    width = prompt.shape[1]
    return prompt, prompt_lengths, torch.arange(width, device=device) < prompt_lengths.unsqueeze(-1)
