"""SMILES generation tasks: QM9, MOSES, or any SMILES file, split, cleaned and encoded for training.

``load_smiles_task(task)`` returns a :class:`SmilesTask`: the vocabulary (built from the training split), the
encoded splits (records ``{"target": ids, "smiles": str}``, as the trainer takes them), the raw SMILES per split and,
for MOSES, the test scaffolds and ``test_stats.npz``.

* ``qm9``: the 130,831 molecules of the ``qm9pack`` wheel, shuffled with ``seed``; the first 10,000 are the test
  split, the next 1,000 the validation split, the rest (or ``train_size`` of them) the training split.
* ``moses``: MOSES's own ``train`` / ``test`` / ``test_scaffolds`` files; ``train_size`` molecules drawn at random
  from the 1.58 M of ``train.csv.gz`` (the file is ordered, so never take its head) and 1,000 more for validation.
* ``smiles``: your own file (``path``: a CSV with a ``SMILES`` column, ``.csv.gz``, or ``.smi``), split like QM9.

Training SMILES that RDKit cannot parse (or that no SMILES token covers) are counted and skipped with a warning that
says how many; held-out molecules with a token outside the training vocabulary cannot be scored and are counted
and skipped the same way, as are held-out molecules longer than the model's ``max_length`` (the longest training
molecule plus 2 tokens). Nothing is dropped silently: ``SmilesTask.skipped`` holds every count.
"""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ip_pyro.data.smiles import SmilesVocabulary, fetch_moses, fetch_qm9, read_smiles, tokenize
from ip_pyro.utils import is_count

__all__ = ["split_sizes", "SMILES_TASKS", "SmilesTask", "load_smiles_task", "parseable_smiles", "is_smiles_task"]

SMILES_TASKS = ("qm9", "moses", "smiles")
# tokens beyond the longest training molecule, so that stopping is the model's choice (as for the planning tasks)
SMILES_LENGTH_SLACK = 2


def is_smiles_task(task: str) -> bool:
    return task in SMILES_TASKS


@dataclass
class SmilesTask:
    """A SMILES task ready for training: ``splits[name]`` are records ``{"target": ids, "smiles": str}``."""

    name: str
    vocabulary: SmilesVocabulary
    splits: dict
    smiles: dict
    skipped: dict = field(default_factory=dict)
    test_scaffolds: Optional[list] = None
    test_stats: Optional[dict] = None

    @property
    def max_length(self) -> int:
        """Longest training molecule in tokens plus a small slack."""
        return max(len(record["target"]) for record in self.splits["train"]) + SMILES_LENGTH_SLACK


def parseable_smiles(smiles: list, *, what: str = "training") -> tuple:
    """``(kept, skipped)``: the strings RDKit parses and sanitises and the tokenizer covers, and how many were not.

    Warns with the count when any are skipped.
    """
    from ip_pyro.metrics.molecules import canonical

    kept = []
    for string in smiles:
        try:
            tokenize(string)
        except ValueError:
            continue
        if canonical(string) is not None:
            kept.append(string)
    skipped = len(smiles) - len(kept)
    if skipped:
        warnings.warn(f"skipped {skipped} of {len(smiles)} {what} SMILES that RDKit cannot parse", stacklevel=2)
    return kept, skipped


def _encode_split(vocabulary: SmilesVocabulary, smiles: list, name: str) -> tuple:
    records, unknown = [], 0
    for string in smiles:
        try:  # one tokenisation per molecule: encode refuses tokens outside the vocabulary
            records.append({"target": vocabulary.encode(string), "smiles": string})
        except ValueError:
            unknown += 1
    if unknown:
        warnings.warn(f"skipped {unknown} of {len(smiles)} {name} SMILES with tokens outside the training "
                      "vocabulary (they cannot be scored)", stacklevel=3)
    return records, unknown


def split_sizes(count: int, valid_size: Optional[int], test_size: Optional[int]) -> tuple:
    """Validation and test sizes for a file of ``count`` molecules: as given, or (``None``) 5 % and 10 % of the
    file, capped at 1,000 and 10,000 (at least 1 each when the file has 20 or more molecules)."""
    valid = min(1000, max(1, count // 20)) if valid_size is None else valid_size
    test = min(10_000, max(1, count // 10)) if test_size is None else test_size
    return valid, test


def _split_one_file(molecules: list, seed: int, valid_size: Optional[int], test_size: Optional[int],
                    train_size: Optional[int]):
    valid_size, test_size = split_sizes(len(molecules), valid_size, test_size)
    if valid_size + test_size >= len(molecules):
        raise ValueError(f"{len(molecules)} molecules cannot hold {test_size} test and {valid_size} validation "
                         "molecules plus a training split; lower --test-size/--valid-size, or leave both out to "
                         "hold out 10 % / 5 % of the file")
    shuffled = list(molecules)
    random.Random(seed).shuffle(shuffled)
    test, valid = shuffled[:test_size], shuffled[test_size:test_size + valid_size]
    train = shuffled[test_size + valid_size:]
    return (train[:train_size] if train_size else train), valid, test


def load_smiles_task(task: str, *, seed: int = 0, train_size: Optional[int] = None,
                     valid_size: Optional[int] = 1000, test_size: Optional[int] = 10_000,
                     path: Optional[Path] = None, folder: Optional[Path] = None,
                     vocabulary: Optional[SmilesVocabulary] = None, smiles_column: Optional[str] = None,
                     max_tokens: Optional[int] = None) -> SmilesTask:
    """Load, split, clean and encode a SMILES task (see the module docstring).

    :param valid_size, test_size: held-out molecules; ``None`` for a user's file: 5 % / 10 % of it (capped at
        1,000 / 10,000, :func:`split_sizes`, which also gives QM9's 1,000 / 10,000); for MOSES, ``None`` is 1,000
        validation molecules and the first 10,000 of its test set.
    :param smiles_column: the CSV column holding the SMILES (case-insensitive; default ``SMILES``).
    :param max_tokens: drop training molecules longer than this many tokens (counted in ``skipped`` and warned
        about); the model's length, and so the step cost, follows the longest training molecule.
    :param vocabulary: reuse a saved vocabulary (evaluating a checkpoint) instead of building one from train.
    """
    if task not in SMILES_TASKS:
        raise ValueError(f"unknown SMILES task {task!r}; choose from {', '.join(SMILES_TASKS)}")
    for name, size in (("train_size", train_size), ("valid_size", valid_size), ("test_size", test_size)):
        if size is not None and not is_count(size, 0):
            raise ValueError(f"{name}={size!r} must be a non-negative integer")
    extra = {}
    if task == "moses":
        from ip_pyro.metrics.molecules import load_test_stats

        cache = fetch_moses(folder)
        pool = read_smiles(cache / "train.csv.gz")
        valid_size = 1000 if valid_size is None else valid_size
        test_size = 10_000 if test_size is None else test_size
        wanted = (train_size or len(pool) - valid_size) + valid_size
        chosen = random.Random(seed).sample(pool, min(wanted, len(pool)))
        valid, train = chosen[:valid_size], chosen[valid_size:]
        test = read_smiles(cache / "test.csv.gz")[: test_size or None]
        extra = {"test_scaffolds": read_smiles(cache / "test_scaffolds.csv.gz"),
                 "test_stats": load_test_stats(cache / "test_stats.npz")}
    else:
        if task == "qm9":
            molecules = read_smiles(fetch_qm9(folder) / "qm9.csv")
        elif path is None:
            raise ValueError("task 'smiles' needs a file: pass --data PATH (a CSV with a SMILES column, or .smi)")
        else:
            molecules = read_smiles(Path(path), smiles_column)
        train, valid, test = _split_one_file(molecules, seed, valid_size, test_size, train_size)
    train, skipped_train = parseable_smiles(train, what="training")
    if not train:
        raise ValueError(f"no parseable training SMILES in the {task} data; check the file's SMILES column")
    vocabulary = vocabulary or SmilesVocabulary.build(train)
    splits, skipped = {}, {"train_unparseable": skipped_train}
    for name, group in (("train", train), ("valid", valid), ("test", test)):
        splits[name], skipped[f"{name}_unknown_tokens"] = _encode_split(vocabulary, group, name)
    if max_tokens is not None:
        if not is_count(max_tokens):
            raise ValueError(f"--max-smiles-tokens={max_tokens!r} must be a positive integer")
        kept = [record for record in splits["train"] if len(record["target"]) <= max_tokens]
        skipped["train_too_long"] = len(splits["train"]) - len(kept)
        if skipped["train_too_long"]:
            warnings.warn(f"dropped {skipped['train_too_long']} of {len(splits['train'])} training SMILES longer than "
                          f"{max_tokens} tokens (--max-smiles-tokens)", stacklevel=2)
        splits["train"] = kept
    if not splits["train"]:
        raise ValueError(f"no training molecule of the {task} data fits the vocabulary (and the length limit); "
                         "rebuild the vocabulary or raise --max-smiles-tokens")
    limit = max(len(record["target"]) for record in splits["train"]) + SMILES_LENGTH_SLACK
    for name in ("valid", "test"):  # the model cannot hold them, so they cannot be scored
        fitting = [record for record in splits[name] if len(record["target"]) <= limit]
        skipped[f"{name}_too_long"] = len(splits[name]) - len(fitting)
        if skipped[f"{name}_too_long"]:
            warnings.warn(f"skipped {skipped[f'{name}_too_long']} of {len(splits[name])} {name} SMILES longer than "
                          f"the model's {limit} tokens (the longest training molecule plus {SMILES_LENGTH_SLACK})",
                          stacklevel=2)
        splits[name] = fitting
    smiles = {name: [record["smiles"] for record in records] for name, records in splits.items()}
    return SmilesTask(task, vocabulary, splits, smiles, skipped, **extra)
