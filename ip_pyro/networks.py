"""Transformer networks: a shared pre-norm RoPE/SwiGLU stack, the insertion decoder, the order scorer and a
causal left-to-right decoder.

Token ids: content ``0 .. V-1``; ``BOS = V`` and ``END = V + 1`` are internal sentinels. A learned segment
embedding separates the prompt from the sequence, since both use the same ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TransformerStack", "InsertionDecoder", "DecoderOutput", "OrderScorer", "CausalDecoder",
           "check_network_sizes"]


def check_network_sizes(**sizes) -> None:
    """Raise a one-line ``ValueError`` for non-positive sizes or a width not divisible into even heads."""
    for name, value in sizes.items():
        if name == "dropout":
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(f"dropout={value} must lie in [0, 1)")
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if "d_model" in sizes and "n_heads" in sizes:
        d_model, n_heads = sizes["d_model"], sizes["n_heads"]
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise ValueError(f"d_model={d_model} must split into n_heads={n_heads} heads of even width "
                             f"(e.g. d_model={n_heads * 2 * max(1, round(d_model / n_heads / 2))})")


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.dropout = dropout

    def forward(self, x, cos, sin, attn_mask: Optional[torch.Tensor], causal: bool):
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, width // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal and attn_mask is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


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

    def forward(self, x, cos, sin, attn_mask, causal):
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, attn_mask, causal))
        return x + self.drop(self.mlp(self.mlp_norm(x)))


class TransformerStack(nn.Module):
    """Embeddings + ``n_layers`` pre-norm blocks with rotary positions given per token.

    ``forward(ids [N, S], positions [N, S], segments [N, S], key_mask [N, S] or None, causal)`` -> ``[N, S, D]``.
    """

    def __init__(self, num_embeddings: int, d_model: int, n_layers: int, n_heads: int, dropout: float,
                 num_segments: int = 2):
        super().__init__()
        self.embed = nn.Embedding(num_embeddings, d_model)
        self.segment = nn.Embedding(num_segments, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = RMSNorm(d_model)
        self.drop = nn.Dropout(dropout)
        head_dim = d_model // n_heads
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)),
                             persistent=False)
        self.apply(_init_weights)
        for block in self.blocks:  # scaled residual projections (GPT-2)
            for projection in (block.attn.out, block.mlp.out):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * n_layers))

    def forward(self, ids, positions, segments, key_mask=None, causal=False):
        x = self.drop(self.embed(ids) + self.segment(segments))
        angles = positions.unsqueeze(-1).to(self.inv_freq.dtype) * self.inv_freq  # [N, S, hd/2]
        cos, sin = angles.cos().unsqueeze(1).to(x.dtype), angles.sin().unsqueeze(1).to(x.dtype)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        if attn_mask is not None and causal:
            # a padded query may see no valid key under the causal mask: letting every position see itself keeps
            # its (unused) state finite, so no NaN leaks into real positions through 0 * NaN
            size = ids.shape[1]
            eye = torch.eye(size, dtype=torch.bool, device=ids.device)
            attn_mask = (attn_mask | eye) & torch.ones(size, size, dtype=torch.bool, device=ids.device).tril()
        for block in self.blocks:
            x = block(x, cos, sin, attn_mask, causal)
        return self.norm(x)


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


@dataclass
class DecoderOutput:
    """Raw scores of one decoder pass over ``N`` canvases of padded width ``T``.

    ``stop_logits`` ``[N]``; ``slot_logits`` ``[N, T+1]`` (``-inf`` beyond each canvas's ``t+1`` slots);
    ``token_logits`` ``[N, T+1, V]``.
    """

    stop_logits: torch.Tensor
    slot_logits: torch.Tensor
    token_logits: torch.Tensor


class InsertionDecoder(nn.Module):
    """Bidirectional Transformer over ``[prompt ; BOS ; canvas ; END]``.

    Rotary positions are ``0..P-1`` for the prompt, then ``P`` for BOS and ``P + 1 + i`` for canvas token ``i``
    (its rank on the canvas, never its final position in the sequence) and ``P + 1 + t`` for END. Slot ``k`` is
    represented from the states of its left and right neighbours (BOS/END at the edges).
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, dropout: float):
        super().__init__()
        self.vocab_size = vocab_size
        self.bos, self.end = vocab_size, vocab_size + 1
        self.stack = TransformerStack(vocab_size + 2, d_model, n_layers, n_heads, dropout)
        self.gap = nn.Sequential(nn.Linear(2 * d_model, 2 * d_model), nn.SiLU(), nn.Linear(2 * d_model, d_model),
                                 RMSNorm(d_model))
        self.slot_head = nn.Linear(d_model, 1)
        self.token_head = nn.Linear(d_model, vocab_size)
        self.stop_head = nn.Linear(d_model, 1)
        for module in (self.gap, self.slot_head, self.token_head, self.stop_head):
            module.apply(_init_weights)

    def forward(self, canvas, canvas_lengths, prompt=None, prompt_lengths=None) -> DecoderOutput:
        """``canvas`` ``[N, T]`` long (right-padded), ``canvas_lengths`` ``[N]``; optional prompt ``[N, P]``."""
        rows, width = canvas.shape
        device = canvas.device
        prompt, prompt_lengths, prompt_valid = _layout_prompt(prompt, prompt_lengths, rows, device)
        offset = prompt.shape[1]
        region = torch.arange(width + 2, device=device)  # BOS, canvas 0..T-1, one spare column for END
        body = torch.cat([torch.full((rows, 1), self.bos, dtype=torch.long, device=device), canvas,
                          torch.zeros(rows, 1, dtype=torch.long, device=device)], dim=1)
        end_index = (canvas_lengths + 1).unsqueeze(-1)
        body = body.scatter(1, end_index, self.end)
        body_valid = region <= end_index
        ids = torch.cat([prompt, body], dim=1)
        positions = torch.cat([torch.arange(offset, device=device).expand(rows, offset),
                               prompt_lengths.unsqueeze(-1) + region], dim=1)
        segments = torch.cat([torch.zeros_like(prompt), torch.ones_like(body)], dim=1)
        key_mask = torch.cat([prompt_valid, body_valid], dim=1)
        states = self.stack(ids, positions, segments, key_mask)[:, offset:]  # [N, T+2, D]
        gaps = self.gap(torch.cat([states[:, :-1], states[:, 1:]], dim=-1))  # [N, T+1, D]
        slot_valid = region[: width + 1] <= canvas_lengths.unsqueeze(-1)
        slot_logits = self.slot_head(gaps).squeeze(-1).masked_fill(~slot_valid, -math.inf)
        return DecoderOutput(self.stop_head(states[:, 0]).squeeze(-1), slot_logits, self.token_head(gaps))


class OrderScorer(nn.Module):
    """Transformer encoder over ``[prompt ; BOS ; x]`` giving one score per position of ``x``: ``[B, L]``.

    BOS is always a valid key (an empty ``x`` with no prompt stays finite). The score head starts at zero, so a
    fresh Plackett–Luce guide is the uniform order.
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, dropout: float):
        super().__init__()
        self.bos = vocab_size
        self.stack = TransformerStack(vocab_size + 1, d_model, n_layers, n_heads, dropout)
        self.score = nn.Linear(d_model, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, tokens, lengths, prompt=None, prompt_lengths=None):
        rows, width = tokens.shape
        device = tokens.device
        prompt, prompt_lengths, prompt_valid = _layout_prompt(prompt, prompt_lengths, rows, device)
        offset = prompt.shape[1]
        region = torch.arange(width + 1, device=device)  # BOS, x
        ids = torch.cat([prompt, torch.full((rows, 1), self.bos, dtype=torch.long, device=device), tokens], dim=1)
        positions = torch.cat([torch.arange(offset, device=device).expand(rows, offset),
                               prompt_lengths.unsqueeze(-1) + region], dim=1)
        segments = torch.cat([torch.zeros_like(prompt), torch.ones(rows, width + 1, dtype=torch.long,
                                                                   device=device)], dim=1)
        key_mask = torch.cat([prompt_valid, region <= lengths.unsqueeze(-1)], dim=1)
        states = self.stack(ids, positions, segments, key_mask)[:, offset + 1:]
        return self.score(states).squeeze(-1)


class CausalDecoder(nn.Module):
    """Left-to-right Transformer over ``[prompt ; BOS ; x]``; logits ``[N, L+1, V+1]`` predict ``x`` then EOS
    (id ``V``) at each position of ``[BOS ; x]``."""

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, dropout: float):
        super().__init__()
        self.bos = vocab_size + 1
        self.stack = TransformerStack(vocab_size + 2, d_model, n_layers, n_heads, dropout)
        self.head = nn.Linear(d_model, vocab_size + 1)
        self.head.apply(_init_weights)

    def forward(self, tokens, prompt=None, prompt_lengths=None):
        rows, width = tokens.shape
        device = tokens.device
        prompt, prompt_lengths, prompt_valid = _layout_prompt(prompt, prompt_lengths, rows, device)
        offset = prompt.shape[1]
        ids = torch.cat([prompt, torch.full((rows, 1), self.bos, dtype=torch.long, device=device), tokens], dim=1)
        region = torch.arange(width + 1, device=device)
        positions = torch.cat([torch.arange(offset, device=device).expand(rows, offset),
                               prompt_lengths.unsqueeze(-1) + region], dim=1)
        segments = torch.cat([torch.zeros_like(prompt), torch.ones(rows, width + 1, dtype=torch.long,
                                                                   device=device)], dim=1)
        if offset == 0:  # right padding only: the causal mask alone hides it from every real position
            states = self.stack(ids, positions, segments, None, causal=True)
        else:
            key_mask = torch.cat([prompt_valid, torch.ones(rows, width + 1, dtype=torch.bool, device=device)], 1)
            states = self.stack(ids, positions, segments, key_mask, causal=True)
        return self.head(states[:, offset:])
