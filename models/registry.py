"""The one registry of model families: CLI name -> class, and ``build_model`` to make one from sizes."""
from __future__ import annotations

from ip_pyro.models.autoregressive import LeftToRightLM
from ip_pyro.models.insertion import InsertionProcess

__all__ = ["FAMILIES", "build_model"]

FAMILIES = {
    "ip": InsertionProcess,  # the Insertion Process (pair it with a guide)
    "fo-arm": LeftToRightLM,  # the fixed-order (left-to-right) autoregressive baseline
}


def build_model(name: str, vocab_size: int, **options):
    """The model family ``name`` (a key of :data:`FAMILIES`) with ``vocab_size`` and its keyword options."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(FAMILIES)}")
    return FAMILIES[name](vocab_size, **options)
