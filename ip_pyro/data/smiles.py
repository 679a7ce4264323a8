"""SMILES strings as token sequences, and the MOSES data shipped inside the ``molsets`` wheel.

``tokenize`` splits a SMILES string into chemically meaningful tokens: bracket atoms whole (``[nH]``, ``[C@@H]``,
``[O-]``), two-letter atoms (``Cl``, ``Br``), ``%nn`` ring labels, ring-closure digits, bonds, branches. A
:class:`SmilesVocabulary` built from the training split maps tokens to ids (``encode``/``decode``), is saved with
the model (``to_dict``/``from_dict``) and refuses unknown tokens with a one-line error.

MOSES (``fetch_moses``): the files ``train.csv.gz``, ``test.csv.gz``, ``test_scaffolds.csv.gz`` and
``test_stats.npz`` are read out of the ``molsets==0.3.1`` wheel (downloaded with ``pip download --no-deps``;
``moses`` itself is never installed or imported) into a cache folder (``$IP_PYRO_CACHE``, default
``~/.cache/ip-pyro``) with their sha256 recorded and checked on every load. QM9 (``fetch_qm9``): the SMILES of the
130,831 molecules in the three CSVs of the ``qm9pack==1.0.3`` wheel, cached as one ``qm9.csv`` (``SMILES,index``).
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

__all__ = ["tokenize", "SmilesVocabulary", "cache_dir", "extract_moses", "fetch_moses", "extract_qm9", "fetch_qm9",
           "read_smiles", "MOSES_FILES"]

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
_MOSES = {"name": "MOSES", "wheel": "molsets==0.3.1", "prefix": "moses/dataset/data/"}
_QM9 = {"name": "QM9", "wheel": "qm9pack==1.0.3", "prefix": "qm9pack/data/",
        "parts": ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")}


def cache_dir() -> Path:
    """``$IP_PYRO_CACHE`` or ``~/.cache/ip-pyro``."""
    return Path(os.environ.get("IP_PYRO_CACHE", Path.home() / ".cache" / "ip-pyro"))


def _open_wheel(wheel: Path, spec: dict) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, FileNotFoundError) as error:
        raise ValueError(f"{wheel} is not a readable wheel ({type(error).__name__}); download {spec['wheel']} "
                         "again") from None


def _read_member(archive: zipfile.ZipFile, wheel: Path, spec: dict, name: str) -> bytes:
    try:
        return archive.read(spec["prefix"] + name)
    except KeyError:
        raise ValueError(f"{wheel} has no {spec['prefix'] + name}; it is not the {spec['wheel']} wheel") from None


def _write_manifest(out: Path, spec: dict, files: dict) -> dict:
    """Write ``files`` ({name: bytes}) and a manifest of their sha256 into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"source": spec["wheel"], "files": {}}
    for name, payload in files.items():
        atomic_write(out / name, lambda stream, data=payload: stream.write(data))
        manifest["files"][name] = hashlib.sha256(payload).hexdigest()
    text = json.dumps(manifest, indent=2).encode()
    atomic_write(out / "manifest.json", lambda stream: stream.write(text))
    return manifest


def extract_moses(wheel: Path, out: Path) -> dict:
    """Copy the MOSES files out of a ``molsets`` wheel into ``out`` and write ``manifest.json`` with their sha256."""
    with _open_wheel(wheel, _MOSES) as archive:
        files = {name: _read_member(archive, wheel, _MOSES, name) for name in MOSES_FILES}
    return _write_manifest(Path(out), _MOSES, files)


def extract_qm9(wheel: Path, out: Path) -> dict:
    """Write ``qm9.csv`` (``SMILES,index``) from the CSVs of a ``qm9pack`` wheel into ``out``, with a manifest."""
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["SMILES", "index"])
    with _open_wheel(wheel, _QM9) as archive:
        for part in _QM9["parts"]:
            reader = csv.DictReader(io.StringIO(_read_member(archive, wheel, _QM9, part).decode()))
            if reader.fieldnames is None or "SMILES" not in reader.fieldnames:
                raise ValueError(f"{part} in {wheel} has no SMILES column; it is not the {_QM9['wheel']} wheel")
            for record in reader:
                writer.writerow([record["SMILES"], record.get("Index", "")])
    return _write_manifest(Path(out), _QM9, {"qm9.csv": rows.getvalue().encode()})


def _verified(folder: Path, expected: set, spec: dict) -> bool:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text())
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"the cached {spec['name']} file {path} is missing or does not match its checksum; "
                             f"delete {folder} and run `ip-pyro data {spec['name'].lower()}` again")
    return set(manifest.get("files", {})) == expected


def _fetch(folder: Path, spec: dict, expected: set, extract) -> Path:
    if _verified(folder, expected, spec):
        return folder
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", spec["wheel"], "-d", download]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(download).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ValueError(f"{spec['name']} is not cached in {folder} and `pip download {spec['wheel']}` failed "
                             f"({reason}); connect to PyPI once, or set IP_PYRO_CACHE to a folder that holds the "
                             "files")
        extract(wheels[0], folder)
    return folder


def fetch_moses(folder: Optional[Path] = None) -> Path:
    """The folder holding the MOSES files, extracting them from a downloaded wheel on first use."""
    folder = Path(folder) if folder is not None else cache_dir() / "moses"
    return _fetch(folder, _MOSES, set(MOSES_FILES), extract_moses)


def fetch_qm9(folder: Optional[Path] = None) -> Path:
    """The folder holding ``qm9.csv``, extracting it from a downloaded ``qm9pack`` wheel on first use."""
    folder = Path(folder) if folder is not None else cache_dir() / "qm9"
    return _fetch(folder, _QM9, {"qm9.csv"}, extract_qm9)


def read_smiles(path: Path, column: Optional[str] = None) -> list:
    """SMILES strings from a CSV (plain or ``.gz``) or a ``.smi`` file.

    CSV: the column named ``column``, matched case-insensitively (default ``SMILES``, so ``smiles`` and ``Smiles``
    headers work too). ``.smi``: the first field of each line, with or without a header line (a first line whose
    first field is ``smiles`` in any case is taken as a header). Stereo and charges are kept as written.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no SMILES file at {path}")
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
    if not text.strip():
        raise ValueError(f"{path} is empty; it needs one molecule per line")
    wanted = column or "SMILES"
    if path.suffix == ".smi":
        rows = [line.split()[0] for line in text.splitlines() if line.strip()]
        return rows[1:] if rows and rows[0].lower() == wanted.lower() else rows
    reader = csv.DictReader(io.StringIO(text))
    names = reader.fieldnames or []
    matches = [name for name in names if name.strip().lower() == wanted.lower()]
    if len(matches) != 1:
        found = "no" if not matches else "more than one"
        raise ValueError(f"{path} has {found} {wanted!r} column (case-insensitive; columns: {names}); name the "
                         "column with --smiles-column")
    return [row[matches[0]] for row in reader if row[matches[0]]]
