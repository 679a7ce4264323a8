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
__all__ = ["Batch", "collate", "orders_to_slots", "slots_to_orders", "orders_to_ranks", "__version__"]
