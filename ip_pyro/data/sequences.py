"""A research user's own sequences (``ip-pyro train --task sequences --data FILE``).

Two file kinds:

* plain text (any suffix but ``.jsonl``): one sequence a line, tokens separated by whitespace; a line with a TAB
  is ``prompt<TAB>target``. A blank line is an empty sequence (length 0 is legal), counted in a warning.
* JSONL (``.jsonl``): one object a line, ``{"target": [tokens...]}`` with an optional ``"prompt": [tokens...]``;
  tokens may be strings or numbers and are kept as written (``str``); blank lines hold no record and are
  skipped, counted in a warning.

The file is shuffled with a seed and split into test, validation and training parts (sizes as for SMILES files:
10 % and 5 % of the file, capped at 10,000 and 1,000, unless given). The vocabulary is built from the training
split (prompt and target tokens share it, in order of first appearance); held-out sequences with a token the
training split never shows are skipped and counted, never silently mapped to another token.
"""
from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ip_pyro.data.molecules import split_sizes
from ip_pyro.vocabulary import Vocabulary

__all__ = ["Vocabulary", "TokenVocabulary", "SequenceTask", "read_sequences", "load_sequence_task", "drop_longer_than",
           "SEQUENCE_LENGTH_SLACK"]

SEQUENCE_LENGTH_SLACK = 2  # the model's max_length is the longest training target plus this


TokenVocabulary = Vocabulary  # the name this module used first; the class is ip_pyro.Vocabulary


@dataclass
class SequenceTask:
    """A user's sequences as id records (``{"prompt": [...], "target": [...]}``) per split, with the vocabulary
    and the sizes a model needs; ``skipped`` counts held-out sequences with tokens outside the vocabulary."""

    splits: dict
    vocabulary: TokenVocabulary
    prompted: bool
    skipped: dict = field(default_factory=dict)

    @property
    def max_length(self) -> int:
        return max((len(record["target"]) for record in self.splits["train"]), default=0) + SEQUENCE_LENGTH_SLACK

    @property
    def max_prompt_length(self) -> int:
        return max((len(record["prompt"]) for split in self.splits.values() for record in split), default=0)


def read_sequences(path) -> list:
    """``(prompt tokens, target tokens)`` pairs from a text or JSONL file (module docstring); one-line errors that
    name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no sequence file at {path}; pass a text file (one sequence a line) or a .jsonl file")
    pairs, blank = [], 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            blank += 1
            if path.suffix != ".jsonl":
                pairs.append(([], []))
            continue
        if path.suffix == ".jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not valid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("target"), list) \
                    or not isinstance(record.get("prompt", []), list):
                raise ValueError(f"{path}:{number} needs {{\"target\": [tokens]}} with an optional "
                                 "\"prompt\": [tokens]")
            pairs.append(([str(t) for t in record.get("prompt", [])], [str(t) for t in record["target"]]))
        elif "\t" in line:
            prompt, _, target = line.partition("\t")
            pairs.append((prompt.split(), target.split()))
        else:
            pairs.append(([], line.split()))
    if not pairs or all(not prompt and not target for prompt, target in pairs):
        raise ValueError(f"{path} holds no sequences; it needs one sequence a line")
    if blank:
        warnings.warn(f"{path}: {blank} blank line{'s' if blank > 1 else ''} "
                      + ("skipped (a JSONL file holds one record a line)" if path.suffix == ".jsonl" else
                         "read as empty sequences (length 0); delete them if they are not data"))
    return pairs


def drop_longer_than(task: "SequenceTask", max_length: int) -> "SequenceTask":
    """``task`` without the held-out (valid, test) sequences longer than a model's ``max_length``, which it cannot
    score; they are counted in ``task.skipped`` and in a warning, as sequences with unseen tokens are."""
    for name in ("valid", "test"):
        kept = [record for record in task.splits[name] if len(record["target"]) <= max_length]
        dropped = len(task.splits[name]) - len(kept)
        if dropped:
            task.skipped[name] = task.skipped.get(name, 0) + dropped
            warnings.warn(f"skipped {dropped} of {len(task.splits[name])} {name} sequences longer than the model's "
                          f"max_length {max_length} (they cannot be scored)")
            task.splits[name] = kept
    return task


def load_sequence_task(path, *, seed: int = 0, train_size: Optional[int] = None, valid_size: Optional[int] = None,
                       test_size: Optional[int] = None, vocabulary: Optional[TokenVocabulary] = None) -> SequenceTask:
    """Split ``path`` (module docstring) and encode it; ``vocabulary`` (from a checkpoint) replaces the one built
    from the training split, so evaluation encodes exactly as training did."""
    pairs = read_sequences(path)
    valid_size, test_size = split_sizes(len(pairs), valid_size, test_size)
    if valid_size + test_size >= len(pairs):
        raise ValueError(f"{len(pairs)} sequences cannot hold {test_size} test and {valid_size} validation sequences "
                         "plus a training split; lower --test-size/--valid-size or use a larger file")
    shuffled = list(pairs)
    random.Random(seed).shuffle(shuffled)
    parts = {"test": shuffled[:test_size], "valid": shuffled[test_size:test_size + valid_size],
             "train": shuffled[test_size + valid_size:]}
    if train_size:
        parts["train"] = parts["train"][:train_size]
    given = vocabulary is not None
    if vocabulary is None:
        seen = {}
        for prompt, target in parts["train"]:
            for token in prompt + target:
                seen.setdefault(token, len(seen))
        vocabulary = TokenVocabulary(list(seen))
    splits, skipped, unknown = {}, {}, None
    for name, part in parts.items():
        records = []
        for prompt, target in part:
            try:
                records.append({"prompt": vocabulary.encode(prompt), "target": vocabulary.encode(target)})
            except ValueError:
                skipped[name] = skipped.get(name, 0) + 1
                unknown = unknown or next(t for t in prompt + target if t not in vocabulary.index)
        splits[name] = records
        if skipped.get(name):
            warnings.warn(f"skipped {skipped[name]} of {len(part)} {name} sequences with tokens outside the "
                          "training vocabulary (they cannot be scored)")
    if not splits["train"] and given:
        raise ValueError(f"{path}: every training sequence holds tokens outside the checkpoint's vocabulary ({unknown!r} "
                         f"is not among its {len(vocabulary)} tokens); pass the file the run was trained on")
    if not splits["train"]:
        raise ValueError(f"{path}: no training sequences left after the split")
    prompted = any(record["prompt"] for split in splits.values() for record in split)
    return SequenceTask(splits=splits, vocabulary=vocabulary, prompted=prompted, skipped=skipped)
