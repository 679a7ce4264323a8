"""Batching Python lists of ids into :class:`ip_pyro.Batch` es."""
from __future__ import annotations

import random
from typing import Iterator, Optional, Sequence

from ip_pyro.batch import Batch, collate

__all__ = ["iterate_batches"]


def iterate_batches(sequences: Sequence, batch_size: int, *, prompts: Optional[Sequence] = None,
                    shuffle: bool = True, seed: int = 0, device=None, drop_last: bool = False) -> Iterator[Batch]:
    """One pass over the data in batches of ``batch_size`` (shuffled with ``seed`` when ``shuffle``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be a positive integer")
    indices = list(range(len(sequences)))
    if shuffle:
        random.Random(seed).shuffle(indices)
    for begin in range(0, len(indices), batch_size):
        chosen = indices[begin:begin + batch_size]
        if drop_last and len(chosen) < batch_size:
            return
        batch = collate([sequences[i] for i in chosen], None if prompts is None else [prompts[i] for i in chosen])
        yield batch if device is None else batch.to(device)
