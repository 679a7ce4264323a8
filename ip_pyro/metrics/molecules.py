"""Molecule-generation metrics as MOSES's and GuacaMol's reference code computes them (RDKit).

``evaluate(samples, train=None, test=None)`` returns ``validity`` (share of samples RDKit parses and sanitises),
``unique@1k`` / ``unique@10k`` (share of distinct canonical SMILES among the first 1,000 / 10,000 valid samples),
``intdiv1`` / ``intdiv2`` (internal diversity as MOSES's code computes it: ``1 - mean_i (mean_j T_ij^p)^(1/p)`` over
Morgan fingerprints of radius 2, 1024 bits, Tanimoto ``T``), with ``train``: ``novelty`` (share of unique valid
samples not in the training set; both sides canonicalised — MOSES canonicalises the samples and takes its training
SMILES as given, which is the same thing on MOSES's canonical training set, tested, and avoids counting a training
molecule written differently in a user's file as novel), and with ``test``: ``snn`` (mean Tanimoto of each sample to its nearest test
molecule), ``frag`` (cosine similarity of the counts of every BRICS fragment, ``FragmentOnBRICSBonds`` as in MOSES)
and ``scaf`` (cosine similarity of the counts of Bemis–Murcko scaffolds with at least two rings, as MOSES's
``compute_scaffolds``; absent, with a warning, when no molecule of one side has such a scaffold). Every one of these
equals MOSES 0.3.1's own code on ``tests/fixtures/reference_metrics.json`` (``scripts/reference_metrics.py``). ``fcd_test`` is the
Fréchet ChemNet Distance of the valid samples to ``test_stats`` (MOSES's precomputed ``test_stats.npz``) or, without
it, to ``test``; ``fcd_testsf`` to ``test_scaffolds``; ``fcd_score`` is GuacaMol's ``exp(-0.2 FCD)`` (needs
``fcd-torch``, whose ChemNet weights ship in its wheel). ``kl_score`` (with ``train``) is GuacaMol's KL-divergence
score with GuacaMol's protocol (:func:`kl_divergence_score`: the samples against a random subset of the training
set of the same size; ``kl_reference_molecules`` says how many). Keys whose reference is not given are absent.
"""
from __future__ import annotations

import collections
import math
import warnings
from typing import Iterable, Optional

import numpy as np

__all__ = ["evaluate", "canonical", "validity", "internal_diversity", "nearest_neighbour_similarity",
           "fragment_similarity", "fragment_counts", "scaffold_similarity", "scaffold_counts", "frechet_chemnet_distance",
           "load_test_stats", "kl_divergence_score"]

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
    """MOSES IntDiv_p as its code computes it: ``1 - mean_i (mean_j T_ij^p)^(1/p)`` (the root per molecule; for
    ``p = 1`` this is the mean over all ordered pairs)."""
    DataStructs = _rdkit()[1]
    fingerprints = _fingerprints(molecules)
    per_molecule = []
    for fingerprint in fingerprints:
        similarities = np.asarray(DataStructs.BulkTanimotoSimilarity(fingerprint, fingerprints))
        per_molecule.append(float((similarities ** p).mean()) ** (1.0 / p))
    return 1.0 - float(np.mean(per_molecule))


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


def fragment_counts(molecules: list) -> collections.Counter:
    """Every BRICS fragment of every molecule, counted (MOSES's ``compute_fragments``: the pieces of
    ``FragmentOnBRICSBonds``, attachment points included, repeated fragments counted each time)."""
    Chem, _, AllChem = _rdkit()[:3]
    counts = collections.Counter()
    for molecule in molecules:
        counts.update(Chem.MolToSmiles(AllChem.FragmentOnBRICSBonds(molecule)).split("."))
    return counts


def fragment_similarity(molecules: list, reference: list) -> float:
    """MOSES Frag: cosine similarity of the BRICS-fragment counts of :func:`fragment_counts`."""
    return _cosine(fragment_counts(molecules), fragment_counts(reference))


def scaffold_counts(molecules: list, min_rings: int = 2) -> collections.Counter:
    """Bemis–Murcko scaffolds (canonical SMILES) counted, keeping only scaffolds with at least ``min_rings`` rings and
    never the empty one (MOSES's ``compute_scaffolds``, whose default is ``min_rings=2``)."""
    Chem, MurckoScaffold = _rdkit()[0], _rdkit()[4]
    counts = collections.Counter()
    for molecule in molecules:
        try:
            scaffold = MurckoScaffold.GetScaffoldForMol(molecule)
        except (ValueError, RuntimeError):
            continue
        smiles = Chem.MolToSmiles(scaffold)
        if smiles and scaffold.GetRingInfo().NumRings() >= min_rings:
            counts[smiles] += 1
    return counts


def scaffold_similarity(molecules: list, reference: list, min_rings: int = 2) -> float:
    """MOSES Scaf: cosine similarity of :func:`scaffold_counts`; ``nan`` when one side has no such scaffold (MOSES
    gives ``nan`` there too)."""
    first, second = scaffold_counts(molecules, min_rings), scaffold_counts(reference, min_rings)
    if not first or not second:
        return float("nan")
    return _cosine(first, second)


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


def _without_stereo(smiles_list) -> list:
    """Distinct valid canonical SMILES without stereo information, first occurrence first (GuacaMol's
    ``canonicalize_list(..., include_stereocenters=False)``)."""
    Chem = _rdkit()[0]
    seen, kept = set(), []
    for smiles in smiles_list:
        molecule = Chem.MolFromSmiles(smiles)
        if molecule is None:
            continue
        text = Chem.MolToSmiles(molecule, isomericSmiles=False)
        if text not in seen:
            seen.add(text)
            kept.append(text)
    return kept


def kl_divergence_score(samples: list, reference: list, *, number_samples: Optional[int] = None,
                        seed: int = 42) -> float:
    """GuacaMol's KL-divergence score in ``[0, 1]`` with GuacaMol's protocol: the mean over nine physico-chemical
    descriptors and the nearest-neighbour internal similarity of ``exp(-KL(reference || samples))``.

    The reference is a random subset of ``reference`` (the training set) of ``number_samples`` molecules (default:
    as many as ``samples``), drawn as GuacaMol draws it (``numpy.random`` seeded with 42); both sets are then
    reduced to distinct valid canonical SMILES without stereo. Equal sizes make the score comparable across sample
    counts: against a larger reference a perfect model's score would depend on how many molecules it was asked for.
    """
    Chem = _rdkit()[0]
    number_samples = len(samples) if number_samples is None else number_samples
    reference = list(reference)
    if len(reference) < number_samples:
        raise ValueError(f"the KL score compares {number_samples} samples with as many training molecules, but the "
                         f"training set has {len(reference)}; sample fewer molecules")
    state = np.random.get_state()  # GuacaMol's get_random_subset, which also restores numpy's global state
    try:
        np.random.seed(seed)
        subset = list(np.random.choice(reference, number_samples, replace=False))
    finally:
        np.random.set_state(state)
    groups = []
    for name, group in (("samples", samples), ("reference", subset)):
        unique = _without_stereo(group)
        if len(unique) < 2:
            raise ValueError(f"the KL score needs at least 2 distinct valid {name}, got {len(unique)}")
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
        if len(unique) >= 2 and len(train) < len(samples):
            warnings.warn(f"kl_score left out: GuacaMol's protocol compares the {len(samples)} samples with as many "
                          f"training molecules, and the training set has {len(train)}", stacklevel=2)
        elif len(unique) >= 2:
            results["kl_score"] = kl_divergence_score(samples, train)
            results["kl_reference_molecules"] = len(samples)
    if test is not None:
        reference = [m for m in (_molecule(s) for s in test) if m is not None]
        if not reference:
            raise ValueError("the test set holds no valid molecule")
        results["snn"] = nearest_neighbour_similarity(valid, reference)
        results["frag"] = fragment_similarity(valid, reference)
        scaf = scaffold_similarity(valid, reference)
        if math.isfinite(scaf):
            results["scaf"] = scaf
        else:
            warnings.warn("no sample (or no test molecule) has a Bemis–Murcko scaffold with two or more rings; scaf "
                          "(MOSES's definition) left out", stacklevel=2)
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
