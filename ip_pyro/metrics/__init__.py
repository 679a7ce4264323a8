"""Evaluation metrics. Molecules: :mod:`ip_pyro.metrics.molecules` (needs RDKit: ``pip install ip-pyro[chem]``)."""
