"""Datasets and batching."""
from ip_pyro.data.loading import iterate_batches
from ip_pyro.data.synthetic import checksum_language, is_checksum_valid

__all__ = ["checksum_language", "is_checksum_valid", "iterate_batches"]
