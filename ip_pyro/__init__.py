"""ip-pyro: the Insertion Process in Pyro.

A generative model for variable-length sequences that builds each sequence by insertions and learns the order
of insertion with an amortised variational posterior (Zhang et al., "Variational Learning for Insertion-based
Generation", ICML 2026).

Sub-packages: ``ip_pyro.models`` (the Pyro models), ``ip_pyro.guides`` (the order posteriors), ``ip_pyro.infer``
(objectives, likelihoods, MCMC), ``ip_pyro.data``, ``ip_pyro.metrics``, ``ip_pyro.networks``, ``ip_pyro.cli``.
"""
import os as _os

# ``ip_pyro.models`` and ``ip_pyro.guides`` live in the repository's top-level ``models/`` and ``guides/`` folders.
# Installed (wheel or editable) they are mapped under this package by setuptools' ``package-dir``; when the source
# tree is used without installing it (``PYTHONPATH=.``), the repository root is searched for them too.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(__path__[0], "models")) and all(
        _os.path.isfile(_os.path.join(_root, name, "__init__.py")) for name in ("models", "guides")) \
        and _os.path.isfile(_os.path.join(_root, "pyproject.toml")):
    __path__.append(_root)
from ip_pyro.batch import Batch, collate
from ip_pyro.orders import orders_to_ranks, orders_to_slots, slots_to_orders

__version__ = "0.1.0"
__all__ = ["Batch", "collate", "orders_to_slots", "slots_to_orders", "orders_to_ranks", "save", "load", "__version__"]


def save(path, model, guide=None, **extra) -> None:
    """Write ``model`` and ``guide`` (their configs and weights) plus any picklable ``extra`` (e.g. ``task=...``,
    ``token_names=[...]``) to ``path``, atomically; ``ip-pyro eval/sample/diagnose`` and :func:`load` read it."""
    from ip_pyro.checkpoint import save_checkpoint

    save_checkpoint(path, model, guide, **extra)


def load(path, map_location="cpu"):
    """``(model, guide or None, extra)`` from a file written by :func:`save` or by ``ip-pyro train`` (the EMA
    weights of a training checkpoint), rebuilt from their configs; one-line errors for bad files."""
    from ip_pyro.checkpoint import load_checkpoint

    return load_checkpoint(path, map_location=map_location)
