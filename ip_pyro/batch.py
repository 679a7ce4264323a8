"""Batches of variable-length sequences (and optional prompts) as padded tensors.

Content token ids are ``0 .. vocab_size - 1``. Padding entries of ``tokens`` and ``prompt`` hold 0 and carry no
meaning: ``lengths`` and ``prompt_lengths`` say which entries are real. Every special id the networks use (BOS,
END, ...) is internal to the library.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch

from ip_pyro.networks.stack import positions_needed
from ip_pyro.utils import check_same_device

__all__ = ["Batch", "collate", "check_batch", "check_model_and_guide"]


@dataclass
class Batch:
    """A padded batch.

    :param tokens: LongTensor ``[B, L_max]``, right-padded; ``None`` for a batch used only for generation.
    :param lengths: LongTensor ``[B]`` of sequence lengths (``None`` when ``tokens`` is ``None``).
    :param prompt: optional LongTensor ``[B, P_max]``, right-padded conditioning prefix.
    :param prompt_lengths: LongTensor ``[B]``; required with ``prompt``.
    :param num_samples: how many sequences to draw when ``tokens`` and ``prompt`` are both ``None``.
    """

    tokens: Optional[torch.Tensor] = None
    lengths: Optional[torch.Tensor] = None
    prompt: Optional[torch.Tensor] = None
    prompt_lengths: Optional[torch.Tensor] = None
    num_samples: Optional[int] = None

    def __post_init__(self):
        if self.tokens is not None:
            if self.tokens.dim() != 2:
                raise ValueError(f"tokens must be a [B, L_max] tensor, got shape {tuple(self.tokens.shape)}; "
                                 "build batches with ip_pyro.collate")
            if self.lengths is None:
                raise ValueError("a batch with tokens needs lengths; build batches with ip_pyro.collate")
        if self.prompt is not None and self.prompt_lengths is None:
            raise ValueError("a batch with a prompt needs prompt_lengths; build batches with ip_pyro.collate")
        if self.tokens is None and self.prompt is None and self.num_samples is None:
            raise ValueError("an empty Batch needs num_samples (how many sequences to generate)")

    @property
    def batch_size(self) -> int:
        """Number of sequences B."""
        if self.tokens is not None:
            return self.tokens.shape[0]
        if self.prompt is not None:
            return self.prompt.shape[0]
        return int(self.num_samples)

    def __len__(self) -> int:
        return self.batch_size

    @property
    def max_length(self) -> int:
        """Padded length L_max of ``tokens``."""
        return 0 if self.tokens is None else self.tokens.shape[1]

    @property
    def device(self) -> torch.device:
        for tensor in (self.tokens, self.prompt, self.lengths):
            if tensor is not None:
                return tensor.device
        return torch.device("cpu")

    @property
    def mask(self) -> torch.Tensor:
        """Bool ``[B, L_max]``: True at real (non-padding) positions of ``tokens``."""
        positions = torch.arange(self.max_length, device=self.lengths.device)
        return positions < self.lengths.unsqueeze(-1)

    def _map(self, fn) -> "Batch":
        return replace(self, **{name: None if getattr(self, name) is None else fn(getattr(self, name))
                                for name in ("tokens", "lengths", "prompt", "prompt_lengths")})

    def to(self, device, non_blocking: bool = False) -> "Batch":
        """The same batch on ``device``."""
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        return self._map(lambda tensor: tensor.pin_memory())

    def __getitem__(self, index) -> "Batch":
        """Rows ``index`` (an int, slice, index tensor or bool mask) as a new batch."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        if self.tokens is None and self.prompt is None:
            return replace(self, num_samples=len(range(self.num_samples)[index]))
        return self._map(lambda tensor: tensor[index])

    def repeat(self, copies: int) -> "Batch":
        """``copies`` stacked copies, particle-major: row ``m * B + b`` is sequence ``b``.

        Shape ``[copies * B, ...]``."""
        if copies == 1:
            return self
        if self.tokens is None and self.prompt is None:
            return replace(self, num_samples=self.num_samples * copies)

        def tile(tensor):
            return tensor.repeat(copies, *([1] * (tensor.dim() - 1)))

        return self._map(tile)


def _check_ids(name: str, sequence, index: int, vocab_size: Optional[int]) -> list:
    if isinstance(sequence, torch.Tensor):
        if sequence.dim() != 1 or sequence.dtype.is_floating_point or sequence.dtype == torch.bool:
            raise ValueError(f"{name}[{index}] must be a 1-D integer tensor or a list of ints, got "
                             f"{sequence.dtype} with shape {tuple(sequence.shape)}")
        sequence = sequence.tolist()
    if isinstance(sequence, (str, bytes)) or not isinstance(sequence, Sequence):
        raise ValueError(f"{name}[{index}] must be a list of int ids, got {type(sequence).__name__}; "
                         "encode strings with a vocabulary first")
    ids = []
    for position, token in enumerate(sequence):
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise ValueError(f"{name}[{index}][{position}] = {token!r} is not an integer id; "
                             f"pass integer ids in 0..vocab_size-1")
        token = int(token)
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            upper = "vocab_size-1" if vocab_size is None else str(vocab_size - 1)
            raise ValueError(f"{name}[{index}][{position}] = {token} is out of range; ids must lie in 0..{upper} "
                             "(grow vocab_size or re-encode the data)")
        ids.append(token)
    return ids


def _pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    padded = torch.zeros(len(rows), int(lengths.max()) if rows else 0, dtype=torch.long)
    for index, row in enumerate(rows):
        if row:
            padded[index, : len(row)] = torch.tensor(row, dtype=torch.long)
    return padded, lengths


def collate(sequences, prompts=None, *, vocab_size: Optional[int] = None) -> Batch:
    """Pad lists of integer ids into a :class:`Batch`.

    :param sequences: list of B sequences, each a list (or 1-D tensor) of ids; length 0 is legal.
    :param prompts: optional list of B prompts (ids in the same vocabulary).
    :param vocab_size: if given, ids must be ``< vocab_size``.
    :raises ValueError: on an empty list, non-integer or out-of-range ids, or a prompts list of the wrong size.
    """
    if isinstance(sequences, torch.Tensor):
        sequences = list(sequences)
    if not isinstance(sequences, Sequence) or isinstance(sequences, (str, bytes)):
        raise ValueError(f"sequences must be a list of id lists, got {type(sequences).__name__}")
    if len(sequences) == 0:
        raise ValueError("sequences is empty; pass at least one sequence (an empty sequence [] is fine)")
    rows = [_check_ids("sequences", sequence, index, vocab_size) for index, sequence in enumerate(sequences)]
    tokens, lengths = _pad(rows)
    if prompts is None:
        return Batch(tokens=tokens, lengths=lengths)
    if isinstance(prompts, torch.Tensor):
        prompts = list(prompts)
    if not isinstance(prompts, Sequence) or len(prompts) != len(sequences):
        size = len(prompts) if isinstance(prompts, Sequence) else type(prompts).__name__
        raise ValueError(f"prompts has {size} entries but sequences has {len(sequences)}; "
                         "pass one prompt per sequence")
    prompt_rows = [_check_ids("prompts", prompt, index, vocab_size) for index, prompt in enumerate(prompts)]
    prompt, prompt_lengths = _pad(prompt_rows)
    return Batch(tokens=tokens, lengths=lengths, prompt=prompt, prompt_lengths=prompt_lengths)


def check_batch(batch: Batch, vocab_size: int, max_length: int, *, need_tokens: bool = True,
                module: torch.nn.Module = None, component: str = "model") -> None:
    """One-line ``ValueError`` for a batch a model (or guide: ``component``) cannot score: shapes, dtypes, lengths
    and every id, padding included (cheap tensor checks, always on); with ``module``, also that the batch is on the
    module's device."""
    if not isinstance(batch, Batch):
        raise ValueError(f"expected an ip_pyro.Batch, got {type(batch).__name__}; build one with ip_pyro.collate")
    if module is not None:
        check_same_device(batch, module, component)
    if need_tokens and batch.tokens is None:
        raise ValueError("this needs a batch with tokens; build one with ip_pyro.collate(sequences)")
    for name in ("tokens", "lengths", "prompt", "prompt_lengths"):
        tensor = getattr(batch, name)
        if tensor is not None and (tensor.dtype.is_floating_point or tensor.dtype == torch.bool):
            raise ValueError(f"batch.{name} has dtype {tensor.dtype}; token ids and lengths must be integer "
                             "(torch.long) tensors")
    if batch.tokens is not None:
        if batch.lengths.shape != batch.tokens.shape[:1]:
            raise ValueError(f"batch.lengths has shape {tuple(batch.lengths.shape)} but tokens has "
                             f"{batch.tokens.shape[0]} rows; build batches with ip_pyro.collate")
        longest = int(batch.lengths.max()) if batch.lengths.numel() else 0
        if longest > max_length:
            raise ValueError(f"a sequence has length {longest} > the {component}'s max_length={max_length}; build the "
                             f"{component} with a larger max_length or drop long sequences")
        if int(batch.lengths.min()) < 0 or longest > batch.tokens.shape[1]:
            raise ValueError("batch.lengths must lie in 0..tokens.shape[1]; build batches with ip_pyro.collate")
    if batch.prompt is not None and batch.prompt.shape[0] != batch.batch_size:
        raise ValueError(f"batch.prompt has {batch.prompt.shape[0]} rows but the batch has {batch.batch_size}; "
                         "pass one prompt per sequence")
    for name, tensor, lengths in (("tokens", batch.tokens, batch.lengths),
                                  ("prompt", batch.prompt, batch.prompt_lengths)):
        if tensor is None or tensor.numel() == 0:
            continue
        outside = (tensor < 0) | (tensor >= vocab_size)  # always checked: the padding is indexed too
        if bool(outside.any()):
            real = torch.arange(tensor.shape[1], device=tensor.device) < lengths.unsqueeze(-1)
            if bool(outside[real].any()):
                raise ValueError(f"batch.{name} holds ids outside the {component}'s 0..{vocab_size - 1}; re-encode "
                                 f"the data or build the {component} with a larger vocab_size")
            raise ValueError(f"the padding of batch.{name} holds ids outside 0..{vocab_size - 1}; pad with 0 (as "
                             "ip_pyro.collate does)")


def check_model_and_guide(model, guide, batch: Batch) -> None:
    """Before an objective's step: one ``ValueError`` naming every component that cannot take ``batch`` or
    disagrees with the other (vocabulary, ``max_length``, absolute positions for prompt + sequence), so that a user
    fixes all of them at once. Components without ``vocab_size`` / ``max_length`` (the fixed-order guides) pass."""
    components = {name: module for name, module in (("model", model), ("guide", guide))
                  if getattr(module, "vocab_size", None) is not None}
    if not isinstance(batch, Batch) or batch.tokens is None or not components:
        return
    problems = []
    vocabularies = {name: int(module.vocab_size) for name, module in components.items()}
    if len(set(vocabularies.values())) > 1:
        problems.append("the model and guide disagree on the vocabulary (" + ", ".join(
            f"{name} vocab_size={size}" for name, size in vocabularies.items()) + "); build both with the data's")
    real = torch.arange(batch.max_length, device=batch.device) < batch.lengths.unsqueeze(-1)
    highest = int(batch.tokens[real].max()) if bool(real.any()) else -1
    if batch.prompt is not None and batch.prompt.numel():
        prompt_real = torch.arange(batch.prompt.shape[1], device=batch.device) < batch.prompt_lengths.unsqueeze(-1)
        highest = max(highest, int(batch.prompt[prompt_real].max()) if bool(prompt_real.any()) else -1)
    small = [f"{name} vocab_size={size}" for name, size in vocabularies.items() if highest >= size]
    if small:
        problems.append(f"id {highest} is outside " + " and ".join(small) + f"; build with vocab_size >= {highest + 1}")
    longest = int(batch.lengths.max()) if batch.batch_size else 0
    short = [f"{name} max_length={module.max_length}" for name, module in components.items()
             if longest > module.max_length]
    if short:
        problems.append(f"a sequence has length {longest} > " + " and ".join(short)
                        + f"; build with max_length >= {longest}")
    prompt = int(batch.prompt_lengths.max()) if batch.prompt is not None and batch.batch_size else 0
    needed = positions_needed(prompt, longest)
    positions = [f"{name} max_positions={module.config['max_positions']}" for name, module in components.items()
                 if 0 < getattr(module, "config", {}).get("max_positions", 0) < needed]
    if positions:
        problems.append(f"a prompt of {prompt} and a sequence of {longest} tokens need {needed} absolute positions > "
                        + " and ".join(positions) + f"; build with max_positions >= {needed}")
    if problems:
        raise ValueError("; ".join(problems))

