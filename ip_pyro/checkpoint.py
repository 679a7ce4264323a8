"""Checkpoints: model (and guide) configs and weights plus free-form extras, written atomically.

A checkpoint is written to a temporary file in the same folder, flushed, fsync'ed and renamed over the target, so
a reader sees either the old file or the whole new one; a file cut short (a process killed mid-write elsewhere)
fails to load with a one-line error instead of being taken as whole.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "describe_module", "atomic_write",
           "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _registry():
    """Every model and guide class a checkpoint can name: the families of :data:`ip_pyro.models.FAMILIES` and
    :data:`ip_pyro.guides.FAMILIES` (all rebuild from their ``config``)."""
    from ip_pyro import guides, models

    classes = list(guides.FAMILIES.values()) + list(models.FAMILIES.values())
    return {cls.__name__: cls for cls in classes}


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path``, fsync it and rename it over ``path``.

    The file gets the permissions a plain ``open(path, "w")`` would give (``0o666`` less the umask), not the
    owner-only ``0o600`` of a temporary file, so a checkpoint or data cache stays readable by whoever could read it
    before.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def describe_module(module) -> Optional[dict]:
    """``{"class", "config", "state_dict"}`` of a model or guide (weights on the CPU), or ``None``."""
    if module is None:
        return None
    return {"class": type(module).__name__, "config": dict(getattr(module, "config", {})),
            "state_dict": {name: tensor.detach().cpu() for name, tensor in module.state_dict().items()}}


def save_checkpoint(path, model, guide=None, **extra) -> None:
    """Write ``model`` (and ``guide``) with their configs, plus any picklable ``extra`` entries, atomically."""
    payload = {"format_version": FORMAT_VERSION, "model": describe_module(model), "guide": describe_module(guide),
               "extra": extra}
    atomic_write(path, lambda stream: torch.save(payload, stream))


def _build(entry, path, role):
    registry = _registry()
    if entry["class"] not in registry:
        raise ValueError(f"checkpoint {path} holds an unknown {role} class {entry['class']!r}; "
                         f"known: {', '.join(sorted(registry))}")
    module = registry[entry["class"]](**entry["config"])
    try:
        module.load_state_dict(entry["state_dict"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(f"checkpoint {path} does not match its {role} config ({first}); "
                         "it was written by a different version or config") from None
    return module


def read_checkpoint(path, map_location="cpu") -> dict:
    """The raw contents of a checkpoint file; a one-line error when it is truncated or corrupt."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the file is not a whole checkpoint
        raise ValueError(f"checkpoint {path} is truncated or corrupt ({type(error).__name__}); use an earlier "
                         "checkpoint or start over") from None


def load_checkpoint(path, map_location="cpu", *, use_ema: bool = True):
    """``(model, guide or None, extra)`` from a checkpoint written by :func:`save_checkpoint` or the trainer.

    :param use_ema: for a training checkpoint, load the EMA of the model weights (what evaluation uses).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}; pass the path of a file written by training")
    payload = read_checkpoint(path, map_location)
    if not isinstance(payload, dict) or "format_version" not in payload or "model" not in payload:
        raise ValueError(f"{path} is not an ip-pyro checkpoint (no format_version); pass a file written by "
                         "ip_pyro.checkpoint.save_checkpoint")
    if payload["format_version"] > FORMAT_VERSION:
        raise ValueError(f"checkpoint {path} has format {payload['format_version']} but this ip-pyro reads up "
                         f"to {FORMAT_VERSION}; upgrade ip-pyro")
    if use_ema and payload.get("ema") is not None:
        payload["model"] = dict(payload["model"], state_dict=payload["ema"])
    model = _build(payload["model"], path, "model").to(map_location)
    guide = None if payload["guide"] is None else _build(payload["guide"], path, "guide").to(map_location)
    return model, guide, payload.get("extra", {})
