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
from ip_pyro.vocabulary import Vocabulary

__version__ = "0.1.0"
__all__ = ["Batch", "collate", "Vocabulary", "Trainer", "TrainConfig", "orders_to_slots", "slots_to_orders",
           "orders_to_ranks", "save", "load", "__version__"]


def save(path, model, guide=None, **extra) -> None:
    """Write ``model`` and ``guide`` (their configs and weights) plus any picklable ``extra`` (e.g. ``task=...``,
    ``token_names=[...]``) to ``path``, atomically; ``ip-pyro eval/sample/diagnose`` and :func:`load` read it.
    ``vocabulary=`` a :class:`Vocabulary` is stored as ``ip-pyro train`` stores it (``sequence_vocabulary`` and
    ``token_names``); ``Vocabulary.from_checkpoint(extra)`` reads it back."""
    from ip_pyro.checkpoint import save_checkpoint

    vocabulary = extra.pop("vocabulary", None)
    if isinstance(vocabulary, Vocabulary):
        extra = {"sequence_vocabulary": list(vocabulary.tokens), "token_names": list(vocabulary.tokens), **extra}
    elif vocabulary is not None:
        extra["vocabulary"] = vocabulary  # e.g. a SMILES run's token list, as ip-pyro train stores it

    save_checkpoint(path, model, guide, **extra)


def load(path, map_location="cpu"):
    """``(model, guide or None, extra)`` from a file written by :func:`save` or by ``ip-pyro train`` (the EMA
    weights of a training checkpoint), rebuilt from their configs; one-line errors for bad files."""
    from ip_pyro.checkpoint import load_checkpoint

    return load_checkpoint(path, map_location=map_location)


def __getattr__(name):
    """``ip_pyro.Trainer`` and ``ip_pyro.TrainConfig`` (the CLI's training loop), imported on first use."""
    if name in ("Trainer", "TrainConfig"):
        from ip_pyro import train

        return getattr(train, name)
    raise AttributeError(f"module 'ip_pyro' has no attribute {name!r}")
