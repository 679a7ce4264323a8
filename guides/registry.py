"""The one registry of guide families: CLI name -> class, and ``build_guide`` to make one from sizes.

A new family is added here (and exported from :mod:`ip_pyro.guides`); the trainer, the CLI, checkpoints, the
examples and the benchmarks all read this table.
"""
from __future__ import annotations

from ip_pyro.guides.binary_tree import BinaryTreeGuide
from ip_pyro.guides.left_to_right import LeftToRightGuide
from ip_pyro.guides.outside_in import OutsideInGuide
from ip_pyro.guides.plackett_luce import PlackettLuceGuide
from ip_pyro.guides.pointer import PointerGuide
from ip_pyro.guides.right_to_left import RightToLeftGuide
from ip_pyro.guides.sequential import SequentialGuide
from ip_pyro.guides.uniform import UniformOrderGuide

__all__ = ["FAMILIES", "LEARNED", "build_guide"]

FAMILIES = {
    "uniform": UniformOrderGuide,  # every order equally likely (the random-order IP, AO-IP)
    "l2r": LeftToRightGuide,
    "r2l": RightToLeftGuide,
    "ends": OutsideInGuide,
    "tree": BinaryTreeGuide,  # middle out
    "pl": PlackettLuceGuide,  # learned: Plackett-Luce over amortised scores
    "sequential": SequentialGuide,  # learned: each choice conditioned on the canvas so far
    "pointer": PointerGuide,  # learned: Plackett-Luce plus a causal stream over the order written (one pass)
}
LEARNED = ("pl", "sequential", "pointer")  # families with a network, built from vocab_size and sizes


def build_guide(name: str, vocab_size: int = 0, **sizes):
    """The guide family ``name`` (a key of :data:`FAMILIES`); learned families take ``vocab_size`` and network
    ``sizes`` (``d_model``, ``n_layers``, ``n_heads``, ``max_length``, ...), fixed ones take nothing."""
    if name not in FAMILIES:
        raise ValueError(f"unknown guide {name!r}; choose from {', '.join(FAMILIES)}")
    if name in LEARNED:
        return FAMILIES[name](vocab_size, **sizes)
    return FAMILIES[name]()
