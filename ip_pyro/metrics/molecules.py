"""Molecule-generation metrics with the MOSES definitions (RDKit).

``evaluate(samples, train=None, test=None)`` returns ``validity`` (share of samples RDKit parses and sanitises),
``unique@1k`` / ``unique@10k`` (share of distinct canonical SMILES among the first 1,000 / 10,000 valid samples),
``intdiv1`` / ``intdiv2`` (internal diversity, ``1 - (mean_{pairs} T^p)^(1/p)`` over Morgan fingerprints of radius 2,
1024 bits, Tanimoto ``T``), with ``train``: ``novelty`` (share of unique valid samples not in the training set),
and with ``test``: ``snn`` (mean Tanimoto of each sample to its nearest test molecule), ``frag`` (cosine similarity
of BRICS-fragment counts) and ``scaf`` (cosine similarity of Bemis–Murcko scaffold counts). ``fcd_test`` is the
Fréchet ChemNet Distance of the valid samples to ``test_stats`` (MOSES's precomputed ``test_stats.npz``) or, without
it, to ``test``; ``fcd_testsf`` to ``test_scaffolds``; ``fcd_score`` is GuacaMol's ``exp(-0.2 FCD)`` (needs
``fcd-torch``, whose ChemNet weights ship in its wheel). ``kl_score`` (with ``train``) is GuacaMol's KL-divergence
score (:func:`kl_divergence_score`). Keys whose reference is not given are absent.
"""
from __future__ import annotations

import collections
import math
import warnings
from typing import Iterable, Optional

import numpy as np

__all__ = ["evaluate", "canonical", "validity", "internal_diversity", "nearest_neighbour_similarity",
           "fragment_similarity", "scaffold_similarity", "frechet_chemnet_distance", "load_test_stats", "kl_divergence_score"]

# GuacaMol's physico-chemical descriptors for the KL-divergence benchmark: the first four are continuous (compared
# through Gaussian KDEs), the rest are counts (compared through 10-bin histograms)
KL_CONTINUOUS = ("BertzCT", "MolLogP", "MolWt", "TPSA")
KL_DISCRETE = ("NumHAcceptors", "NumHDonors", "NumRotatableBonds", "NumAliphaticRings", "NumAromaticRings")


def _rdkit():
    try:
        from rdkit import Chem, DataStructs, RDLogger
        from rdkit.Chem import AllChem, BRICS
        from rdkit.Chem.Scaffolds import MurckoScaffold
    except ImportError:
        raise ValueError("molecule metrics need RDKit; install it with `pip install ip-pyro[chem]`") from None
    RDLogger.DisableLog("rdApp.*")
    return Chem, DataStructs, AllChem, BRICS, MurckoScaffold


def _molecule(smiles: str):
    Chem = _rdkit()[0]
    if not isinstance(smiles, str) or not smiles:
        return None
    return Chem.MolFromSmiles(smiles)


def canonical(smiles: str) -> Optional[str]:
    """RDKit's canonical SMILES, or ``None`` when the string does not parse and sanitise."""
    molecule = _molecule(smiles)
    return None if molecule is None else _rdkit()[0].MolToSmiles(molecule)


def validity(samples: Iterable[str]) -> float:
    samples = list(samples)
    return sum(_molecule(s) is not None for s in samples) / len(samples) if samples else 0.0


def _fingerprints(molecules: list) -> list:
    AllChem = _rdkit()[2]
    return [AllChem.GetMorganFingerprintAsBitVect(m, 2, nBits=1024) for m in molecules]


def internal_diversity(molecules: list, p: int = 1) -> float:
    """``1 - (mean over all ordered pairs of T^p)^(1/p)`` (MOSES IntDiv_p)."""
    DataStructs = _rdkit()[1]
    fingerprints = _fingerprints(molecules)
    total = 0.0
    for fingerprint in fingerprints:
        similarities = np.asarray(DataStructs.BulkTanimotoSimilarity(fingerprint, fingerprints))
        total += float((similarities ** p).sum())
    return 1.0 - (total / len(fingerprints) ** 2) ** (1.0 / p)


def nearest_neighbour_similarity(molecules: list, reference: list) -> float:
    """Mean over ``molecules`` of the largest Tanimoto similarity to a ``reference`` molecule (MOSES SNN)."""
    DataStructs = _rdkit()[1]
    reference_fingerprints = _fingerprints(reference)
    return float(np.mean([max(DataStructs.BulkTanimotoSimilarity(f, reference_fingerprints))
                          for f in _fingerprints(molecules)]))


def _cosine(first: collections.Counter, second: collections.Counter) -> float:
    keys = set(first) | set(second)
    a = np.array([first[k] for k in keys], dtype=float)
    b = np.array([second[k] for k in keys], dtype=float)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else 0.0


def fragment_similarity(molecules: list, reference: list) -> float:
    """Cosine similarity of BRICS-fragment count vectors (MOSES Frag)."""
    BRICS = _rdkit()[3]

    def counts(group):
        return collections.Counter(fragment for m in group for fragment in BRICS.BRICSDecompose(m))
    return _cosine(counts(molecules), counts(reference))


def scaffold_similarity(molecules: list, reference: list) -> float:
    """Cosine similarity of Bemis–Murcko scaffold count vectors (MOSES Scaf; acyclic molecules count as '')."""
    MurckoScaffold = _rdkit()[4]

    def counts(group):
        return collections.Counter(MurckoScaffold.MurckoScaffoldSmiles(mol=m) for m in group)
    return _cosine(counts(molecules), counts(reference))


def load_test_stats(path) -> dict:
    """MOSES's ``test_stats.npz`` as a dict (its ``"FCD"`` entry holds the test set's ChemNet ``mu`` and ``sigma``)."""
    try:
        return np.load(path, allow_pickle=True)["stats"].item()
    except Exception as error:  # noqa: BLE001 - unreadable, unpicklable or of another layout: all the same to us
        raise ValueError(f"{path} is not MOSES's test_stats.npz ({type(error).__name__}); run `ip-pyro data moses`"
                         ) from None


def frechet_chemnet_distance(samples: list, reference) -> float:
    """FCD between valid SMILES ``samples`` and ``reference`` (SMILES, or precomputed ``{"mu", "sigma"}``)."""
    try:
        from fcd_torch import FCD
    except ImportError:
        raise ValueError("FCD needs fcd-torch; install it with `pip install ip-pyro[chem]`") from None
    if len(samples) < 2:
        raise ValueError(f"FCD needs at least 2 valid molecules, got {len(samples)}")
    fcd = FCD(device="cpu", n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference_stats = reference if isinstance(reference, dict) else fcd.precalc(list(reference))
        return float(fcd.metric(reference_stats, fcd.precalc(list(samples))))


def _descriptors(molecules: list) -> np.ndarray:
    from rdkit.Chem import Descriptors
    functions = [getattr(Descriptors, name) for name in KL_CONTINUOUS + KL_DISCRETE]
    return np.array([[function(m) for function in functions] for m in molecules], dtype=float)


def _continuous_kl(reference: np.ndarray, sampled: np.ndarray) -> float:
    from scipy.stats import entropy, gaussian_kde
    if np.ptp(reference) == 0 or np.ptp(sampled) == 0:  # a KDE needs spread; a point mass is compared exactly
        return 0.0 if np.ptp(np.concatenate([reference, sampled])) == 0 else _discrete_kl(reference, sampled)
    grid = np.linspace(min(reference.min(), sampled.min()), max(reference.max(), sampled.max()), num=1000)
    return float(entropy(gaussian_kde(reference)(grid) + 1e-10, gaussian_kde(sampled)(grid) + 1e-10))


def _discrete_kl(reference: np.ndarray, sampled: np.ndarray) -> float:
    from scipy.stats import entropy
    reference_counts, bins = np.histogram(reference, bins=10)
    sampled_counts, _ = np.histogram(sampled, bins=bins)
    widths = np.diff(bins)
    # densities as numpy's density=True gives them, but 0 (not NaN) when no sample falls in the reference's range
    reference_density = reference_counts / max(reference_counts.sum(), 1) / widths
    sampled_density = sampled_counts / max(sampled_counts.sum(), 1) / widths
    return float(entropy(reference_density + 1e-10, sampled_density + 1e-10))


def _nearest_internal_similarity(molecules: list) -> np.ndarray:
    """For each molecule, its largest Tanimoto similarity (Morgan radius 2, 4096 bits) to another one of the set."""
    DataStructs, AllChem = _rdkit()[1], _rdkit()[2]
    fingerprints = [AllChem.GetMorganFingerprintAsBitVect(m, 2, nBits=4096) for m in molecules]
    nearest = np.zeros(len(fingerprints))
    for index, fingerprint in enumerate(fingerprints):
        similarities = np.asarray(DataStructs.BulkTanimotoSimilarity(fingerprint, fingerprints))
        similarities[index] = 0.0
        nearest[index] = similarities.max() if len(similarities) > 1 else 0.0
    return nearest


def kl_divergence_score(samples: list, reference: list, *, max_molecules: int = 10_000, seed: int = 0) -> float:
    """GuacaMol's KL-divergence score in ``[0, 1]``: the mean over nine physico-chemical descriptors and the
    nearest-neighbour internal similarity of ``exp(-KL(reference || samples))``.

    Both sets are reduced to distinct valid canonical molecules; at most ``max_molecules`` of each are used (a
    seeded random subset, as GuacaMol does with 10,000 molecules of each).
    """
    Chem = _rdkit()[0]
    groups = []
    for name, group in (("samples", samples), ("reference", reference)):
        group = list(group)
        if len(group) > 2 * max_molecules:  # subsample first: canonicalising a whole training set is slow
            group = list(np.random.default_rng(seed + 1).choice(group, 2 * max_molecules, replace=False))
        unique = sorted({c for c in (canonical(s) for s in group) if c is not None})
        if len(unique) < 2:
            raise ValueError(f"the KL score needs at least 2 distinct valid {name}, got {len(unique)}")
        if len(unique) > max_molecules:
            unique = list(np.random.default_rng(seed).choice(unique, max_molecules, replace=False))
        groups.append([Chem.MolFromSmiles(s) for s in unique])
    sampled, reference_molecules = groups
    sampled_values, reference_values = _descriptors(sampled), _descriptors(reference_molecules)
    divergences = []
    for column in range(len(KL_CONTINUOUS) + len(KL_DISCRETE)):
        compare = _continuous_kl if column < len(KL_CONTINUOUS) else _discrete_kl
        divergences.append(compare(reference_values[:, column], sampled_values[:, column]))
    divergences.append(_continuous_kl(_nearest_internal_similarity(reference_molecules),
                                      _nearest_internal_similarity(sampled)))
    return float(np.mean(np.exp(-np.asarray(divergences))))


def _unique_at(canonical_valid: list, k: int) -> float:
    chosen = canonical_valid[:k]
    if len(chosen) < k:
        warnings.warn(f"unique@{k // 1000}k computed on {len(chosen)} valid samples (fewer than {k})", stacklevel=3)
    return len(set(chosen)) / len(chosen) if chosen else 0.0


def evaluate(samples: list, train: Optional[list] = None, test: Optional[list] = None,
             test_stats: Optional[dict] = None, test_scaffolds: Optional[list] = None) -> dict:
    """MOSES-style metrics of generated SMILES ``samples`` (see the module docstring for the keys).

    :param test_stats: MOSES's test statistics (:func:`load_test_stats`); its ``"FCD"`` entry gives ``fcd_test``.
    """
    if not samples:
        raise ValueError("no samples to evaluate; generate some molecules first")
    if test_stats is not None and "FCD" not in test_stats:
        raise ValueError("test_stats has no 'FCD' entry; load MOSES's test_stats.npz with load_test_stats")
    Chem = _rdkit()[0]
    parsed = [_molecule(s) for s in samples]
    valid = [m for m in parsed if m is not None]
    canonical_valid = [Chem.MolToSmiles(m) for m in valid]
    results = {"validity": len(valid) / len(samples),
               "unique@1k": _unique_at(canonical_valid, 1000), "unique@10k": _unique_at(canonical_valid, 10000)}
    if not valid:
        return results
    results["intdiv1"] = internal_diversity(valid, 1)
    results["intdiv2"] = internal_diversity(valid, 2)
    if train is not None:
        known = {c for c in (canonical(s) for s in train) if c is not None}
        unique = set(canonical_valid)
        results["novelty"] = len(unique - known) / len(unique)
        if len(unique) >= 2:
            results["kl_score"] = kl_divergence_score(canonical_valid, train)
    if test is not None:
        reference = [m for m in (_molecule(s) for s in test) if m is not None]
        if not reference:
            raise ValueError("the test set holds no valid molecule")
        results["snn"] = nearest_neighbour_similarity(valid, reference)
        results["frag"] = fragment_similarity(valid, reference)
        results["scaf"] = scaffold_similarity(valid, reference)
    if len(canonical_valid) < 2 and (test_stats is not None or test is not None or test_scaffolds is not None):
        warnings.warn(f"FCD needs at least 2 valid samples, got {len(canonical_valid)}; fcd keys left out",
                      stacklevel=2)
    elif test_stats is not None or test is not None:
        results["fcd_test"] = frechet_chemnet_distance(canonical_valid, test_stats["FCD"] if test_stats else test)
        results["fcd_score"] = math.exp(-0.2 * results["fcd_test"])
    if test_scaffolds is not None and len(canonical_valid) >= 2:
        results["fcd_testsf"] = frechet_chemnet_distance(canonical_valid, test_scaffolds)
    for key, value in results.items():
        if not math.isfinite(value):
            raise FloatingPointError(f"metric {key} is not finite")
    return results
