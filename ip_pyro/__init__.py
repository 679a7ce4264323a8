"""ip-pyro: the Insertion Process in Pyro.

A generative model for variable-length sequences that builds each sequence by insertions and learns the order
of insertion with an amortised variational posterior (Zhang et al., "Variational Learning for Insertion-based
Generation", ICML 2026).
"""
from ip_pyro.batch import Batch, collate
from ip_pyro.orders import orders_to_ranks, orders_to_slots, slots_to_orders

__version__ = "0.1.0"
__all__ = ["Batch", "collate", "orders_to_slots", "slots_to_orders", "orders_to_ranks", "__version__"]
