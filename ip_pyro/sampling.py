"""Argument handling shared by the models' ``sample`` methods."""
from __future__ import annotations

from typing import Optional


from ip_pyro.batch import Batch, collate
from ip_pyro.utils import is_count

__all__ = ["sampling_plan", "check_conditional"]


def check_conditional(conditional) -> Optional[bool]:
    """A model's ``conditional`` flag: ``True`` (trained on prompts: sampling needs one), ``False`` (trained
    without: a prompt is refused) or ``None`` (not said: no check)."""
    if conditional is not None and not isinstance(conditional, bool):
        raise ValueError(f"conditional={conditional!r} must be True, False or None")
    return conditional


def sampling_plan(model, device, num_samples: Optional[int], prompt, temperature: float, greedy: bool,
                  max_length: Optional[int]):
    """Check a ``sample`` call and lay out its prompts.

    :param model: has ``vocab_size`` and ``max_length``.
    :param num_samples: sequences to draw (per prompt when ``prompt`` is given; default 1 per prompt).
    :param prompt: ``None``, a list of prompts (lists of ids) or a :class:`Batch` carrying ``prompt``.
    :returns: ``(prompt_ids [N, P] or None, prompt_lengths [N] or None, N, length limit)``, prompt-major rows.
    :raises ValueError: one line for a bad temperature, length limit, sample count or prompt.
    """
    if not greedy and not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0 (or use greedy=True)")
    limit = model.max_length if max_length is None else int(max_length)
    if not 0 <= limit <= model.max_length:
        raise ValueError(f"max_length={max_length} must lie in 0..{model.max_length} (the model's max_length)")
    if num_samples is not None and not is_count(num_samples, 0):
        raise ValueError(f"num_samples={num_samples!r} must be a non-negative integer")
    conditional = getattr(model, "conditional", None)
    if prompt is None:
        if conditional:
            raise ValueError("this model was trained on prompts (conditional=True): pass prompt=[[ids], ...], one "
                             "prompt per row (num_samples then counts samples per prompt)")
        if num_samples is None:
            raise ValueError("pass num_samples (how many sequences to draw) or prompt")
        return None, None, num_samples, limit
    if conditional is False:
        raise ValueError("this model was trained without prompts (conditional=False): drop prompt= (a prompt it "
                         "never saw gives meaningless samples) or train on prompted data")
    if isinstance(prompt, Batch):
        ids, lengths = prompt.prompt, prompt.prompt_lengths
        if ids is None:
            raise ValueError("the Batch given as prompt carries no prompt")
    else:
        prompt_batch = collate([[] for _ in prompt], prompts=prompt, vocab_size=model.vocab_size)
        ids, lengths = prompt_batch.prompt, prompt_batch.prompt_lengths
    copies = 1 if num_samples is None else num_samples
    ids = ids.to(device).repeat_interleave(copies, 0)
    lengths = lengths.to(device).repeat_interleave(copies, 0)
    return ids, lengths, len(lengths), limit
