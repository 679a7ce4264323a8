"""The insertion decoder: a bidirectional Transformer over ``[prompt ; BOS ; canvas ; END]`` for each canvas.

Token ids: content ``0 .. V-1``; ``BOS = V`` and ``END = V + 1`` are internal sentinels. A learned segment
embedding separates the prompt from the sequence, since both use the same ids.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ip_pyro.networks.stack import RMSNorm, TransformerStack, _init_weights, _layout_prompt, gather_rows

__all__ = ["InsertionDecoder", "DecoderOutput", "PromptCache", "PROMPT_ATTENTION", "encode_prompt"]

PROMPT_ATTENTION = ("full", "prefix")


@dataclass
class PromptCache:
    """The prompt's per-layer keys and values under prefix attention, computed once per sequence and shared by all
    its canvases: ``keys[l]``, ``values[l]`` ``[B, H, P, hd]`` (rotary positions applied), ``valid`` ``[B, P]``
    and ``lengths`` ``[B]``."""

    keys: list
    values: list
    valid: torch.Tensor
    lengths: torch.Tensor

    def layer_caches(self) -> list:
        """``[{"k": keys, "v": values}]`` per layer: what :class:`TransformerStack` attends to before its own keys."""
        return [{"k": k, "v": v} for k, v in zip(self.keys, self.values)]

    def rows(self, index: Optional[torch.Tensor]) -> "PromptCache":
        """The cache of the rows ``index`` ``[N]`` (each canvas's sequence); all rows when ``None``."""
        if index is None:
            return self
        return PromptCache([k[index] for k in self.keys], [v[index] for v in self.values], self.valid[index],
                           self.lengths[index])


@dataclass
class DecoderOutput:
    """Raw scores of one decoder pass over ``N`` canvases of padded width ``T``.

    ``stop_logits`` ``[N]``; ``slot_logits`` ``[N, T+1]`` (``-inf`` beyond each canvas's ``t+1`` slots);
    ``token_logits`` ``[N, T+1, V]``.
    """

    stop_logits: torch.Tensor
    slot_logits: torch.Tensor
    token_logits: torch.Tensor


def encode_prompt(stack: TransformerStack, prompt, prompt_lengths, rows: Optional[int] = None) -> PromptCache:
    """The :class:`PromptCache` of ``B`` prompts ``[B, P]`` under prefix attention (prompt positions attend to the
    prompt alone, at rotary positions ``0..P-1``); ``prompt=None``: ``rows`` empty prompts."""
    heads = stack.blocks[0].attn.n_heads
    weight = stack.embed.weight
    if prompt is None or prompt.shape[1] == 0:
        count = rows if prompt is None else prompt.shape[0]
        empty = weight.new_zeros(count, heads, 0, weight.shape[1] // heads)
        lengths = torch.zeros(count, dtype=torch.long, device=weight.device)
        return PromptCache([empty] * len(stack.blocks), [empty] * len(stack.blocks),
                           torch.zeros(count, 0, dtype=torch.bool, device=weight.device), lengths)
    count, width = prompt.shape
    index = torch.arange(width, device=prompt.device)
    valid = index < prompt_lengths.unsqueeze(-1)
    # every prompt position sees the valid prompt and itself (a padded one then stays finite: its keys and
    # values are masked later, but a NaN there would still leak through 0 * NaN)
    attn_mask = (valid[:, None, :] | torch.eye(width, dtype=torch.bool, device=prompt.device))[:, None]
    caches = [{} for _ in stack.blocks]
    stack.forward_masked(prompt, index.expand(count, width), torch.zeros_like(prompt), attn_mask, caches=caches,
                         valid=valid)
    return PromptCache([c["k"] for c in caches], [c["v"] for c in caches], valid, prompt_lengths)


def _pack_pairs(sizes: torch.Tensor):
    """Pair the i-th shortest with the i-th longest of ``N`` segments: packed row and offset of each segment
    ``[N]``, the number of rows ``R = ceil(N / 2)`` and the packed width ``W``."""
    count = sizes.shape[0]
    order = sizes.argsort()
    rows = (count + 1) // 2
    first, second = order[:rows], order[rows:].flip(0)  # short ones open a row, long ones fill it
    row_of = torch.empty_like(order)
    offset = torch.zeros_like(order)
    row_of[first] = torch.arange(rows, device=sizes.device)
    row_of[second] = torch.arange(second.shape[0], device=sizes.device)
    offset[second] = sizes[first[: second.shape[0]]]
    width = int((offset + sizes).max())
    return row_of, offset, rows, width


class InsertionDecoder(nn.Module):
    """Bidirectional Transformer over ``[prompt ; BOS ; canvas ; END]`` for each canvas.

    Each canvas is laid out compactly (prompt tokens, BOS, canvas tokens, END), so its rotary positions are
    ``0..P-1`` for the prompt, ``P`` for BOS, ``P + 1 + i`` for canvas token ``i`` (its rank on the canvas, never
    its final position in the sequence) and ``P + 1 + t`` for END. Slot ``k`` is represented from the states of its
    left and right neighbours (BOS/END at the edges). ``token_classes`` (default ``vocab_size``) sizes the token head
    (``vocab_size + 1`` for an end-of-sequence token that is never on a canvas). When it saves work, pairs of
    canvases (a short one with a long one) share one row under a block-diagonal attention mask (``pack=True``); the
    outputs are the same.

    ``prompt_attention="prefix"``: prompt positions attend to the prompt only (a prefix-LM mask) and canvas
    positions to the prompt and the canvas, so the prompt's keys and values are the same for every canvas of a
    sequence: :meth:`encode_prompt` computes them once (:class:`PromptCache`) and ``forward`` reuses them. The
    default ``"full"`` lets the prompt read the canvas too (the behaviour of every earlier checkpoint).
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, dropout: float,
                 pack: bool = True, token_classes: Optional[int] = None, max_positions: int = 0,
                 prompt_group: int = 1, embed_std: float = 0.02, prompt_attention: str = "full"):
        super().__init__()
        if prompt_attention not in PROMPT_ATTENTION:
            raise ValueError(f"prompt_attention={prompt_attention!r}; choose from {', '.join(PROMPT_ATTENTION)}")
        self.prompt_attention = prompt_attention
        self.vocab_size = vocab_size
        self.bos, self.end = vocab_size, vocab_size + 1
        self.pack = pack
        self.stack = TransformerStack(vocab_size + 2, d_model, n_layers, n_heads, dropout, max_positions=max_positions,
                                      prompt_group=prompt_group, embed_std=embed_std)
        self.gap = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model),
                                 RMSNorm(d_model))
        self.slot_head = nn.Linear(d_model, 1)
        self.token_head = nn.Linear(d_model, token_classes or vocab_size)
        self.stop_head = nn.Linear(d_model, 1)
        for module in (self.gap, self.slot_head, self.token_head, self.stop_head):
            module.apply(_init_weights)

    def _body(self, canvas, canvas_lengths):
        """``[BOS ; canvas ; END]`` ``[N, T + 2]`` (END right after each canvas, padding after it)."""
        rows = canvas.shape[0]
        body = torch.cat([torch.full((rows, 1), self.bos, dtype=torch.long, device=canvas.device), canvas,
                          torch.zeros(rows, 1, dtype=torch.long, device=canvas.device)], dim=1)
        return body.scatter(1, (canvas_lengths + 1).unsqueeze(-1), self.end)

    def _compact(self, canvas, canvas_lengths, prompt, prompt_lengths):
        """Ids ``[N, S]`` laid out as ``[prompt ; BOS ; canvas ; END]`` from index 0, and each row's size ``[N]``."""
        rows, device = canvas.shape[0], canvas.device
        prompt, prompt_lengths, _ = _layout_prompt(prompt, prompt_lengths, rows, device)
        prompt_width = prompt.shape[1]
        body = self._body(canvas, canvas_lengths)
        padded = torch.cat([prompt, body], dim=1)  # [N, P + T + 2], prompt padding in the middle
        sizes = prompt_lengths + canvas_lengths + 2
        index = torch.arange(int(sizes.max()) if rows else 0, device=device)
        source = torch.where(index < prompt_lengths.unsqueeze(-1), index,
                             prompt_width + index - prompt_lengths.unsqueeze(-1))
        return padded.gather(1, source.clamp(max=padded.shape[1] - 1)), sizes, prompt_lengths

    def _encode(self, ids, sizes, prompt_lengths):
        """States ``[N, S, D]`` of the compact rows, packing pairs of rows when that saves work."""
        rows, span = ids.shape
        device = ids.device
        index = torch.arange(span, device=device)
        segments = (index >= prompt_lengths.unsqueeze(-1)).long()
        valid = index < sizes.unsqueeze(-1)
        if self.pack and rows > 1:
            row_of, offset, packed_rows, width = _pack_pairs(sizes)
            if packed_rows * width <= 0.8 * rows * span:
                flat = (row_of * width + offset).unsqueeze(-1) + index  # [N, S] destinations
                flat = torch.where(valid, flat, torch.full_like(flat, packed_rows * width))  # spare slot
                total = packed_rows * width + 1

                def scatter(values, fill):
                    out = torch.full((total,), fill, dtype=values.dtype, device=device)
                    return out.scatter(0, flat.flatten(), values.flatten())[:-1].view(packed_rows, width)

                owner = scatter(torch.arange(rows, device=device).unsqueeze(-1).expand(rows, span), -1)
                # one group per segment; padding forms its own group, so every query sees some key
                attn_mask = (owner.unsqueeze(-1) == owner.unsqueeze(-2)).unsqueeze(1)
                states = self.stack.forward_masked(scatter(ids, 0), scatter(index.expand(rows, span), 0),
                                                   scatter(segments, 0), attn_mask)
                gathered = states.reshape(packed_rows * width, -1)
                return gathered[flat.clamp(max=packed_rows * width - 1)]
        return self.stack(ids, index.expand(rows, span), segments, valid)

    # ---------------------------------------------------------------------------------- prefix attention
    def encode_prompt(self, prompt, prompt_lengths, rows: Optional[int] = None) -> PromptCache:
        """The :class:`PromptCache` of ``B`` prompts ``[B, P]`` (``prompt=None``: ``rows`` empty prompts). Only for
        ``prompt_attention="prefix"``, where prompt positions attend to the prompt alone."""
        if self.prompt_attention != "prefix":
            raise ValueError("encode_prompt needs prompt_attention='prefix' (with full attention the prompt also "
                             "reads the canvas, so it cannot be encoded once)")
        return encode_prompt(self.stack, prompt, prompt_lengths, rows)

    def _encode_body(self, canvas, canvas_lengths, cache: PromptCache):
        """States ``[N, T + 2, D]`` of ``[BOS ; canvas ; END]`` attending to the cached prompt and the canvas."""
        width, device = canvas.shape[1], canvas.device
        body = self._body(canvas, canvas_lengths)
        index = torch.arange(width + 2, device=device)
        body_valid = index < (canvas_lengths + 2).unsqueeze(-1)
        positions = cache.lengths.unsqueeze(-1) + index  # the canvas follows its own prompt, as in the full layout
        keys_valid = torch.cat([cache.valid, body_valid], dim=1)  # [N, P + T + 2]
        attn_mask = keys_valid[:, None, None, :]
        return self.stack.forward_masked(body, positions, torch.ones_like(body), attn_mask, caches=cache.layer_caches(),
                                         valid=body_valid)

    def _encode_prefix_reference(self, ids, sizes, prompt_lengths):
        """Prefix attention without a cache (the reference the cache is tested against): one pass over the compact
        rows, prompt queries masked to the prompt keys."""
        rows, span = ids.shape
        index = torch.arange(span, device=ids.device)
        segments = (index >= prompt_lengths.unsqueeze(-1)).long()
        valid = index < sizes.unsqueeze(-1)
        query_in_prompt = index[None, :, None] < prompt_lengths[:, None, None]
        key_in_prompt = index[None, None, :] < prompt_lengths[:, None, None]
        attn_mask = (valid[:, None, :] & (key_in_prompt | ~query_in_prompt))[:, None]
        return self.stack.forward_masked(ids, index.expand(rows, span), segments, attn_mask, valid=valid)

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, canvas, canvas_lengths, prompt=None, prompt_lengths=None, *,
                prompt_cache: Optional[PromptCache] = None, prompt_index: Optional[torch.Tensor] = None,
                use_cache: bool = True) -> DecoderOutput:
        """``canvas`` ``[N, T]`` long (right-padded), ``canvas_lengths`` ``[N]``; optional prompt ``[N, P]``.

        With ``prompt_attention="prefix"``: ``prompt_cache`` (from :meth:`encode_prompt` on ``B`` prompts) and
        ``prompt_index`` ``[N]`` (each canvas's prompt row) reuse one prompt encoding for many canvases; without a
        cache the prompt rows given are encoded here; ``use_cache=False`` runs the uncached reference pass."""
        width = canvas.shape[1]
        if self.prompt_attention == "full":
            if prompt_cache is not None:
                raise ValueError("a prompt cache needs prompt_attention='prefix'")
            ids, sizes, prompt_lengths = self._compact(canvas, canvas_lengths, prompt, prompt_lengths)
            return self._heads(self._encode(ids, sizes, prompt_lengths), prompt_lengths, canvas_lengths, width)
        if not use_cache:
            ids, sizes, prompt_lengths = self._compact(canvas, canvas_lengths, prompt, prompt_lengths)
            states = self._encode_prefix_reference(ids, sizes, prompt_lengths)
            return self._heads(states, prompt_lengths, canvas_lengths, width)
        if prompt_cache is None:
            prompt_cache, prompt_index = self.encode_prompt(prompt, prompt_lengths, rows=canvas.shape[0]), None
        states = self._encode_body(canvas, canvas_lengths, prompt_cache.rows(prompt_index))
        return self._heads(states, torch.zeros_like(canvas_lengths), canvas_lengths, width)

    def _heads(self, states, offset, canvas_lengths, width) -> DecoderOutput:
        """Stop, slot and token logits from the states; BOS sits at index ``offset`` ``[N]`` of each row."""
        slots = torch.arange(width + 1, device=states.device)
        last = states.shape[1] - 1
        left = (offset.unsqueeze(-1) + slots).clamp(max=last)  # BOS, then canvas tokens
        right = (left + 1).clamp(max=last)  # canvas tokens, then END
        gaps = self.gap(torch.cat([gather_rows(states, left), gather_rows(states, right)], dim=-1))  # [N, T+1, D]
        slot_valid = slots <= canvas_lengths.unsqueeze(-1)
        slot_logits = self.slot_head(gaps).squeeze(-1).masked_fill(~slot_valid, -math.inf)
        stop_logits = self.stop_head(gather_rows(states, offset.unsqueeze(-1)).squeeze(1)).squeeze(-1)
        return DecoderOutput(stop_logits, slot_logits, self.token_head(gaps))
