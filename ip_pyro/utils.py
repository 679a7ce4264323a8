"""Small helpers shared by models, guides and inference."""
from __future__ import annotations

import contextlib
import itertools

import torch

__all__ = ["unique_pyro_name", "evaluating", "check_same_device", "progress_bar", "is_count"]

_instance_ids = itertools.count()


def unique_pyro_name(prefix: str) -> str:
    """A Pyro name no other instance uses, so two models never share entries of Pyro's global param store
    (two ``InsertionProcess()`` objects in one process would otherwise silently share weights)."""
    return f"{prefix}_{next(_instance_ids)}"


@contextlib.contextmanager
def evaluating(*modules: torch.nn.Module):
    """Put modules in eval mode (no dropout) for the block, then restore each one's previous mode."""
    modes = [module.training for module in modules]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)


def is_count(value, minimum: int = 1) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) of at least ``minimum``: the one check behind every
    "must be a positive integer" error."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def progress_bar(total: int, desc: str, unit: str, progress=None):
    """A tqdm bar on stderr. ``progress``: ``True`` shows it, ``False`` hides it, ``None`` (the library's default)
    shows it only on a terminal and only once the call has run two seconds (quick calls print nothing)."""
    from tqdm.auto import tqdm

    if progress is None:
        return tqdm(total=total, desc=desc, unit=unit, disable=None, delay=2.0, leave=False, dynamic_ncols=True)
    return tqdm(total=total, desc=desc, unit=unit, disable=not progress, leave=False, dynamic_ncols=True)


def check_same_device(batch, module: torch.nn.Module, what: str) -> None:
    """One-line error when a batch and a module live on different devices."""
    parameter = next(module.parameters(), None)
    if parameter is not None and batch.device != parameter.device:
        raise ValueError(f"the batch is on {batch.device} but the {what} is on {parameter.device}; "
                         f"call batch.to({str(parameter.device)!r})")
