"""SMILES strings as token sequences, and the MOSES data shipped inside the ``molsets`` wheel.

``tokenize`` splits a SMILES string into chemically meaningful tokens: bracket atoms whole (``[nH]``, ``[C@@H]``,
``[O-]``), two-letter atoms (``Cl``, ``Br``), ``%nn`` ring labels, ring-closure digits, bonds, branches. A
:class:`SmilesVocabulary` built from the training split maps tokens to ids (``encode``/``decode``), is saved with
the model (``to_dict``/``from_dict``) and refuses unknown tokens with a one-line error.

MOSES (``fetch_moses``): the files ``train.csv.gz``, ``test.csv.gz``, ``test_scaffolds.csv.gz`` and
``test_stats.npz`` are read out of the ``molsets==0.3.1`` wheel (downloaded with ``pip download --no-deps``;
``moses`` itself is never installed or imported) into a cache folder (``$IP_PYRO_CACHE``, default
``~/.cache/ip-pyro``) with their sha256 recorded and checked on every load.
"""
from __future__ import annotations

import collections
import csv
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Iterable, Optional

from ip_pyro.checkpoint import atomic_write

__all__ = ["tokenize", "SmilesVocabulary", "cache_dir", "extract_moses", "fetch_moses", "read_smiles",
           "MOSES_FILES"]

_TOKEN = re.compile(r"""
      \[[^\[\]]+\]        # bracket atom, whole: isotope, chirality, hydrogens, charge, class
    | Br | Cl             # two-letter atoms of the organic subset
    | %\d\d               # ring-closure label 10..99
    | [BCNOPSFIbcnops]    # one-letter atoms (lower case: aromatic)
    | \*                  # wildcard atom
    | \d                  # ring-closure digit
    | [-=\#$:/\\.]        # bonds, and '.' between disconnected parts
    | [()]                # branches
""", re.VERBOSE)


def tokenize(smiles: str) -> list:
    """Tokens of ``smiles``; ``"".join(tokenize(s)) == s``.

    :raises ValueError: for characters no SMILES token covers.
    """
    if not isinstance(smiles, str):
        raise ValueError(f"SMILES must be a string, got {type(smiles).__name__}")
    tokens, position = [], 0
    while position < len(smiles):
        match = _TOKEN.match(smiles, position)
        if match is None:
            raise ValueError(f"cannot tokenize SMILES {smiles!r}: unexpected {smiles[position]!r} at position "
                             f"{position}; check the string or extend ip_pyro.data.smiles")
        tokens.append(match.group())
        position = match.end()
    return tokens


class SmilesVocabulary:
    """Token <-> id map; ids ``0..len-1`` are the model's content ids.

    Build it from the training split with :meth:`build`; save it beside the model with :meth:`to_dict`.
    """

    def __init__(self, tokens: Iterable[str]):
        self.tokens = list(tokens)
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("vocabulary tokens must be distinct")
        self._ids = {token: index for index, token in enumerate(self.tokens)}

    @classmethod
    def build(cls, smiles: Iterable[str]) -> "SmilesVocabulary":
        """Every token of the given SMILES, most frequent first (ties in character order): deterministic."""
        counts = collections.Counter(token for string in smiles for token in tokenize(string))
        if not counts:
            raise ValueError("cannot build a vocabulary from no SMILES; pass the training split")
        return cls(sorted(counts, key=lambda token: (-counts[token], token)))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, smiles: str) -> list:
        ids = []
        for token in tokenize(smiles):
            if token not in self._ids:
                raise ValueError(f"token {token!r} of SMILES {smiles!r} is not in the vocabulary (built from the "
                                 "training split); rebuild the vocabulary including this data or drop the molecule")
            ids.append(self._ids[token])
        return ids

    def decode(self, ids) -> str:
        try:
            return "".join(self.tokens[int(index)] for index in ids)
        except (IndexError, TypeError, ValueError):
            raise ValueError(f"ids must be integers in 0..{len(self) - 1} (this vocabulary's size)") from None

    def to_dict(self) -> dict:
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, state: dict) -> "SmilesVocabulary":
        return cls(state["tokens"])


MOSES_FILES = ("train.csv.gz", "test.csv.gz", "test_scaffolds.csv.gz", "test_stats.npz")
_MOSES_WHEEL = "molsets==0.3.1"
_MOSES_PREFIX = "moses/dataset/data/"


def cache_dir() -> Path:
    """``$IP_PYRO_CACHE`` or ``~/.cache/ip-pyro``."""
    return Path(os.environ.get("IP_PYRO_CACHE", Path.home() / ".cache" / "ip-pyro"))


def extract_moses(wheel: Path, out: Path) -> dict:
    """Copy the MOSES files out of a ``molsets`` wheel into ``out`` and write ``manifest.json`` with their sha256."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, FileNotFoundError) as error:
        raise ValueError(f"{wheel} is not a readable wheel ({type(error).__name__}); download molsets==0.3.1 "
                         "again") from None
    manifest = {"source": _MOSES_WHEEL, "files": {}}
    with archive:
        for name in MOSES_FILES:
            try:
                payload = archive.read(_MOSES_PREFIX + name)
            except KeyError:
                raise ValueError(f"{wheel} has no {_MOSES_PREFIX + name}; it is not the molsets 0.3.1 wheel") from None
            atomic_write(out / name, lambda stream, data=payload: stream.write(data))
            manifest["files"][name] = hashlib.sha256(payload).hexdigest()
    text = json.dumps(manifest, indent=2).encode()
    atomic_write(out / "manifest.json", lambda stream: stream.write(text))
    return manifest


def _verified(folder: Path) -> bool:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text())
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"the cached MOSES file {path} is missing or does not match its checksum; delete "
                             f"{folder} and run `ip-pyro data moses` again")
    return set(manifest.get("files", {})) == set(MOSES_FILES)


def fetch_moses(folder: Optional[Path] = None) -> Path:
    """The folder holding the MOSES files, extracting them from a downloaded wheel on first use."""
    folder = Path(folder) if folder is not None else cache_dir() / "moses"
    if _verified(folder):
        return folder
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", _MOSES_WHEEL, "-d", download]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(download).glob("molsets-*.whl"))
        if result.returncode != 0 or not wheels:
            reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ValueError(f"MOSES is not cached in {folder} and `pip download {_MOSES_WHEEL}` failed ({reason}); "
                             "connect to PyPI once, or set IP_PYRO_CACHE to a folder that holds the files")
        extract_moses(wheels[0], folder)
    return folder


def read_smiles(path: Path, column: str = "SMILES") -> list:
    """SMILES strings from a CSV (plain or ``.gz``) with a ``column`` header, or a ``.smi`` file (first field)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no SMILES file at {path}")
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
    if not text.strip():
        raise ValueError(f"{path} is empty; it needs one molecule per line")
    if path.suffix == ".smi":
        return [line.split()[0] for line in text.splitlines() if line.strip()]
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or column not in reader.fieldnames:
        raise ValueError(f"{path} has no {column!r} column (columns: {reader.fieldnames}); pass a CSV with a "
                         f"{column!r} header")
    return [row[column] for row in reader if row[column]]
