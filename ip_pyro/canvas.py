"""Canvas manipulation without Python loops over the batch."""
from __future__ import annotations

import torch

__all__ = ["gather_canvas", "insert_tokens", "canvas_width"]


def canvas_width(inserted: torch.Tensor) -> int:
    """Padded width needed for the canvases of ``inserted`` ``[N, L]`` (the largest count)."""
    return int(inserted.sum(-1).max()) if inserted.numel() else 0


def gather_canvas(tokens: torch.Tensor, inserted: torch.Tensor, width: int | None = None):
    """Tokens at the inserted positions, in original order, right-padded with 0.

    ``tokens`` ``[N, L]``, ``inserted`` bool ``[N, L]`` -> ``canvas`` ``[N, width]``, ``canvas_lengths`` ``[N]``.
    """
    rows, size = tokens.shape
    counts = inserted.long().cumsum(-1)
    canvas_lengths = counts[:, -1] if size else torch.zeros(rows, dtype=torch.long, device=tokens.device)
    width = canvas_width(inserted) if width is None else width
    destination = torch.where(inserted, counts - 1, torch.full_like(counts, width))  # spare column for the rest
    canvas = torch.zeros(rows, width + 1, dtype=tokens.dtype, device=tokens.device)
    canvas.scatter_(1, destination, torch.where(inserted, tokens, torch.zeros_like(tokens)))
    return canvas[:, :width], canvas_lengths


def insert_tokens(canvas, canvas_lengths, slots, tokens, growing):
    """Insert ``tokens[n]`` into slot ``slots[n]`` of each growing canvas.

    ``canvas`` ``[N, T]`` -> ``[N, T + 1]``; rows where ``growing`` is False are unchanged (one more padding column).
    """
    rows = canvas.shape[0]
    pad = torch.zeros(rows, 1, dtype=canvas.dtype, device=canvas.device)
    kept, shifted = torch.cat([canvas, pad], 1), torch.cat([pad, canvas], 1)
    index = torch.arange(canvas.shape[1] + 1, device=canvas.device)
    slot = slots.unsqueeze(-1)
    grown = torch.where(index < slot, kept, torch.where(index == slot, tokens.unsqueeze(-1), shifted))
    return torch.where(growing.unsqueeze(-1), grown, kept), canvas_lengths + growing.long()
