"""A small synthetic language where the insertion order matters.

*Checksum-first strings*: ``x = (c, a_1, ..., a_n)`` over digits ``0..K-1`` with ``c = (a_1 + ... + a_n) mod K``.
A left-to-right model must commit to the checksum before it has written the digits it sums; an insertion model
can write the digits first and insert the checksum at the front last.
"""
from __future__ import annotations

import random

__all__ = ["checksum_language", "is_checksum_valid"]


def checksum_language(num_sequences: int, *, vocab_size: int = 5, min_digits: int = 1, max_digits: int = 6,
                      seed: int = 0) -> list[list[int]]:
    """``num_sequences`` checksum-first strings with ``min_digits..max_digits`` digits (lengths one more)."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size={vocab_size} must be at least 2")
    if not 0 <= min_digits <= max_digits:
        raise ValueError(f"need 0 <= min_digits <= max_digits, got {min_digits} and {max_digits}")
    rng = random.Random(seed)
    sequences = []
    for _ in range(num_sequences):
        digits = [rng.randrange(vocab_size) for _ in range(rng.randint(min_digits, max_digits))]
        sequences.append([sum(digits) % vocab_size] + digits)
    return sequences


def is_checksum_valid(sequence, vocab_size: int = 5) -> bool:
    """True when ``sequence`` is a non-empty checksum-first string."""
    return len(sequence) >= 1 and sequence[0] == sum(sequence[1:]) % vocab_size
