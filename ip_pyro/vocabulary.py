"""Token strings <-> ids: the vocabulary ``ip-pyro train --task sequences`` builds, saved with checkpoints."""
from __future__ import annotations

from typing import Iterable, Optional

__all__ = ["Vocabulary"]


class Vocabulary:
    """Token strings <-> ids ``0 .. V-1`` in the order given; tokens are kept as ``str``.

    >>> vocabulary = Vocabulary.from_sequences([["(", ")"], ["(", "(", ")", ")"]])
    >>> vocabulary.encode(["(", ")"]), vocabulary.decode([1, 0])
    ([0, 1], [')', '('])

    ``ip_pyro.save(path, model, guide, vocabulary=vocabulary)`` stores it (as ``ip-pyro train`` does), and
    :meth:`from_checkpoint` reads it back from the ``extra`` of ``ip_pyro.load`` or from a checkpoint's path.
    """

    def __init__(self, tokens: Iterable):
        self.tokens = [str(token) for token in tokens]
        self.index = {token: number for number, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            repeated = next(token for token in self.tokens if self.tokens.count(token) > 1)
            raise ValueError(f"a vocabulary lists each token once ({repeated!r} appears more than once)")

    @classmethod
    def from_sequences(cls, sequences: Iterable, prompts: Optional[Iterable] = None) -> "Vocabulary":
        """The tokens of ``sequences`` (and ``prompts``, which share the vocabulary) in order of first appearance;
        each sequence is a list of tokens or a string of whitespace-separated tokens."""
        seen: dict = {}
        for group in ([prompts] if prompts is not None else []) + [sequences]:
            for sequence in group:
                for token in (sequence.split() if isinstance(sequence, str) else sequence):
                    seen.setdefault(str(token), len(seen))
        return cls(seen)

    @classmethod
    def from_checkpoint(cls, source) -> "Vocabulary":
        """The vocabulary saved with a checkpoint: ``source`` is the ``extra`` dict of ``ip_pyro.load`` or the
        file's path; a one-line error when it holds none."""
        if not isinstance(source, dict):
            from ip_pyro.checkpoint import read_checkpoint

            source = read_checkpoint(source).get("extra", {})
        tokens = source.get("sequence_vocabulary") or source.get("token_names")
        if tokens is None:
            raise ValueError("this checkpoint holds no token vocabulary (a SMILES run keeps its tokens under "
                             "extra['vocabulary']: ip_pyro.data.smiles.SmilesVocabulary(extra['vocabulary']))")
        return cls(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token) -> bool:
        return str(token) in self.index

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and other.tokens == self.tokens

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, self.tokens[:8])) + (", ..." if len(self) > 8 else "")
        return f"Vocabulary({len(self)} tokens: {shown})"

    def encode(self, tokens) -> list:
        """Ids of ``tokens`` (a list, or a string of whitespace-separated tokens); a one-line ``ValueError`` naming
        the first token the vocabulary does not hold."""
        tokens = tokens.split() if isinstance(tokens, str) else tokens
        unknown = next((token for token in tokens if str(token) not in self.index), None)
        if unknown is not None:
            raise ValueError(f"token {unknown!r} is not in the vocabulary ({len(self)} tokens)")
        return [self.index[str(token)] for token in tokens]

    def decode(self, ids) -> list:
        """Tokens of ``ids`` (ints or a 1-D tensor); a one-line error for an id outside ``0 .. V-1``."""
        ids = [int(number) for number in ids]
        bad = next((number for number in ids if not 0 <= number < len(self)), None)
        if bad is not None:
            raise ValueError(f"id {bad} is outside this vocabulary's 0..{len(self) - 1}")
        return [self.tokens[number] for number in ids]

    def collate(self, sequences, prompts=None):
        """A :class:`ip_pyro.Batch` of token sequences (each a list or a whitespace-separated string)."""
        from ip_pyro.batch import collate

        return collate([self.encode(s) for s in sequences],
                       None if prompts is None else [self.encode(p) for p in prompts], vocab_size=len(self))
