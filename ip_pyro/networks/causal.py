"""The causal left-to-right decoder of the FO-ARM baseline, on the same Transformer stack as the IP's networks,
with incremental (KV-cached) decoding."""
from __future__ import annotations

import torch
from torch import nn

from ip_pyro.networks.stack import TransformerStack, _init_weights, _layout_prompt

__all__ = ["CausalDecoder"]


class CausalDecoder(nn.Module):
    """Left-to-right Transformer over ``[prompt ; BOS ; x]``; logits ``[N, L+1, V+1]`` predict ``x`` then EOS
    (id ``V``) at each position of ``[BOS ; x]``."""

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, dropout: float,
                 max_positions: int = 0, prompt_group: int = 1,
                 embed_std: float = 0.02):
        super().__init__()
        self.bos = vocab_size + 1
        self.stack = TransformerStack(vocab_size + 2, d_model, n_layers, n_heads, dropout, max_positions=max_positions,
                                      prompt_group=prompt_group, embed_std=embed_std)
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

    # ------------------------------------------------------------------------ incremental decoding (KV cache)
    def start(self, rows: int, prompt=None, prompt_lengths=None, device=None):
        """Encode ``[prompt ; BOS]`` once: logits ``[N, V+1]`` for the first token and a decoding state."""
        device = device if prompt is None else prompt.device
        prompt, prompt_lengths, prompt_valid = _layout_prompt(prompt, prompt_lengths, rows, device)
        offset = prompt.shape[1]
        ids = torch.cat([prompt, torch.full((rows, 1), self.bos, dtype=torch.long, device=device)], dim=1)
        positions = torch.cat([torch.arange(offset, device=device).expand(rows, offset),
                               prompt_lengths.unsqueeze(-1)], dim=1)
        segments = torch.cat([torch.zeros_like(prompt), torch.ones(rows, 1, dtype=torch.long, device=device)], 1)
        key_mask = torch.cat([prompt_valid, torch.ones(rows, 1, dtype=torch.bool, device=device)], dim=1)
        caches = [{} for _ in self.stack.blocks]
        states = self.stack(ids, positions, segments, key_mask if offset else None, causal=True, caches=caches)
        state = {"caches": caches, "key_mask": key_mask, "position": prompt_lengths + 1}
        return self.head(states[:, -1]), state

    def advance(self, tokens: torch.Tensor, state: dict) -> torch.Tensor:
        """Append ``tokens`` ``[N]`` (one per row) and return the next logits ``[N, V+1]``; updates ``state``."""
        rows = tokens.shape[0]
        state["key_mask"] = torch.cat([state["key_mask"], torch.ones(rows, 1, dtype=torch.bool,
                                                                     device=tokens.device)], dim=1)
        segments = torch.ones(rows, 1, dtype=torch.long, device=tokens.device)
        states = self.stack.forward_masked(tokens.unsqueeze(-1), state["position"].unsqueeze(-1), segments,
                                           state["key_mask"][:, None, None, :], caches=state["caches"])
        state["position"] = state["position"] + 1
        return self.head(states[:, -1])

    @staticmethod
    def select(state: dict, rows: torch.Tensor) -> dict:
        """Keep only ``rows`` (an index or bool mask) of a decoding state (finished sequences leave the batch)."""
        return {"caches": [{name: tensor[rows] for name, tensor in cache.items()} for cache in state["caches"]],
                "key_mask": state["key_mask"][rows], "position": state["position"][rows]}
