"""Small synthetic languages where the insertion order matters.

* *Mirror strings* (palindromes of even length) ``w reverse(w)``: built from the middle outwards, every insertion
  is a local copy; built left to right, the second half must be copied from far back.
* *Checksum-first strings* ``(c, a_1, ..., a_n)`` with ``c = (a_1 + ... + a_n) mod K``: a left-to-right model must
  commit to the checksum before writing the digits it sums; an insertion model can insert it last. (A modular
  sum is parity-like and slow to learn by gradient descent: a harder benchmark.)
"""
from __future__ import annotations

import random

__all__ = ["checksum_language", "is_checksum_valid", "mirror_language", "is_mirror"]


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


def mirror_language(num_sequences: int, *, vocab_size: int = 5, min_half: int = 1, max_half: int = 4,
                    seed: int = 0) -> list[list[int]]:
    """``num_sequences`` strings ``w + reversed(w)`` with ``min_half <= len(w) <= max_half``."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size={vocab_size} must be at least 2")
    if not 0 <= min_half <= max_half:
        raise ValueError(f"need 0 <= min_half <= max_half, got {min_half} and {max_half}")
    rng = random.Random(seed)
    sequences = []
    for _ in range(num_sequences):
        half = [rng.randrange(vocab_size) for _ in range(rng.randint(min_half, max_half))]
        sequences.append(half + half[::-1])
    return sequences


def is_mirror(sequence) -> bool:
    """True when ``sequence`` is a non-empty even-length palindrome."""
    return len(sequence) >= 2 and len(sequence) % 2 == 0 and list(sequence) == list(sequence)[::-1]
