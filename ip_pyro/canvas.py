"""Canvas manipulation without Python loops over the batch."""
from __future__ import annotations

import torch

__all__ = ["gather_canvas", "insert_tokens", "insert_many", "canvas_width"]


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


def insert_many(canvas: torch.Tensor, slots: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Insert ``k`` tokens at once into distinct slots of full canvases (parallel decoding).

    ``canvas`` ``[N, T]`` (every row of length ``T``), ``slots`` ``[N, k]`` distinct slots in ``0..T`` of the
    current canvas, ``tokens`` ``[N, k]`` -> ``[N, T + k]``. The token for slot ``s`` lands between the current
    tokens ``s - 1`` and ``s``, as if the insertions were made one by one from the rightmost slot.
    """
    rows, width = canvas.shape
    slots, order = slots.sort(-1)
    tokens = tokens.gather(1, order)
    count = slots.shape[1]
    # current token i moves right by the number of chosen slots <= i; the j-th chosen slot's token lands at s_j + j
    shift = (slots.unsqueeze(1) <= torch.arange(width, device=canvas.device).view(1, -1, 1)).sum(-1)
    out = torch.zeros(rows, width + count, dtype=canvas.dtype, device=canvas.device)
    out.scatter_(1, torch.arange(width, device=canvas.device) + shift, canvas)
    out.scatter_(1, slots + torch.arange(count, device=canvas.device), tokens)
    return out
