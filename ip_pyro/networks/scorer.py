"""The order scorer: a Transformer encoder over ``[prompt ; BOS ; x]`` with one score per position (the guides)."""
from __future__ import annotations

import torch
from torch import nn

from ip_pyro.networks.stack import TransformerStack, _layout_prompt

__all__ = ["OrderScorer"]


class OrderScorer(nn.Module):
    """Transformer encoder over ``[prompt ; BOS ; x]`` giving one score per position of ``x``: ``[B, L]``.

    BOS is always a valid key (an empty ``x`` with no prompt stays finite). The score head starts at zero, so a
    fresh Plackett–Luce guide is the uniform order.
    """

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, dropout: float,
                 max_positions: int = 0, prompt_group: int = 1,
                 embed_std: float = 0.02):
        super().__init__()
        self.bos = vocab_size
        self.stack = TransformerStack(vocab_size + 1, d_model, n_layers, n_heads, dropout, num_segments=3,
                                      max_positions=max_positions, prompt_group=prompt_group, embed_std=embed_std)
        self.score = nn.Linear(d_model, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, tokens, lengths, prompt=None, prompt_lengths=None, inserted=None):
        """Scores ``[N, L]``; ``inserted`` (bool ``[N, L]``, optional) marks positions already on the canvas
        (a third segment embedding), for state-dependent order policies."""
        return self.score(self.encode(tokens, lengths, prompt, prompt_lengths, inserted)[:, 1:]).squeeze(-1)

    def encode(self, tokens, lengths, prompt=None, prompt_lengths=None, inserted=None):
        """The encoder's states of ``[BOS ; x]``: ``[N, L + 1, D]`` (BOS first; it has read the prompt and ``x``)."""
        rows, width = tokens.shape
        device = tokens.device
        prompt, prompt_lengths, prompt_valid = _layout_prompt(prompt, prompt_lengths, rows, device)
        offset = prompt.shape[1]
        region = torch.arange(width + 1, device=device)  # BOS, x
        ids = torch.cat([prompt, torch.full((rows, 1), self.bos, dtype=torch.long, device=device), tokens], dim=1)
        positions = torch.cat([torch.arange(offset, device=device).expand(rows, offset),
                               prompt_lengths.unsqueeze(-1) + region], dim=1)
        body_segments = torch.ones(rows, width + 1, dtype=torch.long, device=device)
        if inserted is not None:
            body_segments[:, 1:] += inserted.long()
        segments = torch.cat([torch.zeros_like(prompt), body_segments], dim=1)
        key_mask = torch.cat([prompt_valid, region <= lengths.unsqueeze(-1)], dim=1)
        return self.stack(ids, positions, segments, key_mask)[:, offset:]
