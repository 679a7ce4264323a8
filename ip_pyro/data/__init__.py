"""Datasets and batching."""
from ip_pyro.data.loading import iterate_batches
from ip_pyro.data.synthetic import checksum_language, is_checksum_valid, is_mirror, mirror_language

__all__ = ["checksum_language", "is_checksum_valid", "mirror_language", "is_mirror", "iterate_batches"]
