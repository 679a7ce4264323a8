"""Reference values of the molecule metrics from MOSES's and GuacaMol's own code, for a fixed small sample set.

Imports the metric code of MOSES (``molsets`` 0.3.1) and GuacaMol (0.5.5) from their wheels, without installing
either (small import shims: a bare ``moses`` package so that its ``__init__`` — models, data downloads — never
runs, ``pandas.DataFrame.append``, ``scipy.histogram`` and ``rdkit.six.iteritems`` for the old APIs they call), computes validity,
uniqueness, novelty, IntDiv1/2, SNN, Frag, Scaf and GuacaMol's KL score on a fixed sample set built from RDKit's
bundled ``first_5K.smi``, and writes them with the sample set to ``tests/fixtures/reference_metrics.json``.
``tests/test_reference_metrics.py`` compares ``ip_pyro.metrics.molecules.evaluate`` with that file (no network
at test time).

    pip download --no-deps molsets==0.3.1 guacamol==0.5.5 -d wheels/
    python -m scripts.reference_metrics --wheels wheels/
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import types
import zipfile
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "reference_metrics.json"


def sample_set() -> dict:
    """The fixed inputs: 300 samples (260 NCI molecules, 10 training molecules, 20 repeats, 10 invalid strings), 600
    test and 1,500 training molecules, all from RDKit's ``first_5K.smi``."""
    from rdkit import Chem, RDConfig, RDLogger

    RDLogger.DisableLog("rdApp.*")
    path = os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")
    smiles = [line.split()[0] for line in Path(path).read_text().splitlines() if line.strip()]
    valid = [s for s in smiles if Chem.MolFromSmiles(s) is not None]
    samples = valid[:260] + valid[2000:2010] + valid[:20] + ["C1CC", "C(C", "c1cccc1", "N(", "CC)C", "O=", "C#", "[Zz]", "C1CC2", "x"]
    # the training set in canonical SMILES, as MOSES's is: MOSES compares canonical samples with the training SMILES
    # as given, ip_pyro canonicalises both, and the two rules agree exactly on a canonical training set
    train = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in valid[2000:3500]]
    return {"samples": samples, "test": valid[1000:1600], "train": train}


def load_references(wheels: Path, folder: Path):
    """Unzip the two wheels into ``folder`` and import their metric modules with the shims."""
    import numpy
    import pandas
    import scipy

    for name in ("molsets-0.3.1-py3-none-any.whl", "guacamol-0.5.5-py3-none-any.whl"):
        with zipfile.ZipFile(wheels / name) as archive:
            archive.extractall(folder)
    if not hasattr(pandas.DataFrame, "append"):  # removed in pandas 2; MOSES's utils call it at import
        pandas.DataFrame.append = lambda self, other, sort=False: pandas.concat([self, other], sort=sort)
    if not hasattr(scipy, "histogram"):  # removed from scipy; GuacaMol imports it
        scipy.histogram = numpy.histogram
    six = types.ModuleType("rdkit.six")  # gone from RDKit; MOSES's SA scorer imports iteritems from it
    six.iteritems = lambda mapping: iter(mapping.items())
    sys.modules.setdefault("rdkit.six", six)
    sys.path.insert(0, str(folder))
    moses = types.ModuleType("moses")  # a bare package: moses/__init__.py (models, downloads) never runs
    moses.__path__ = [str(folder / "moses")]
    sys.modules["moses"] = moses
    from moses.metrics import metrics as moses_metrics
    from guacamol import distribution_learning_benchmark as guacamol_benchmark
    return moses_metrics, guacamol_benchmark


class FixedSamples:
    """A GuacaMol generator that returns the fixed samples (what was generated is what is scored)."""

    def __init__(self, samples):
        self.samples = samples

    def generate(self, number_samples: int):
        return list(self.samples[:number_samples])


def reference_values(moses_metrics, guacamol_benchmark, inputs: dict) -> dict:
    from moses.utils import get_mol

    samples, test, train = inputs["samples"], inputs["test"], inputs["train"]
    valid = moses_metrics.remove_invalid(samples, canonize=True)  # what get_all_metrics scores
    molecules, test_molecules = [get_mol(s) for s in valid], [get_mol(s) for s in test]
    values = {
        "validity": moses_metrics.fraction_valid(samples),
        "unique@1k": moses_metrics.fraction_unique(valid, 1000),  # as get_all_metrics: on the valid ones
        "novelty": moses_metrics.novelty(valid, train),
        "intdiv1": moses_metrics.internal_diversity(valid, p=1),
        "intdiv2": moses_metrics.internal_diversity(valid, p=2),
        "snn": moses_metrics.SNNMetric()(gen=molecules, ref=test_molecules),
        "frag": moses_metrics.FragMetric()(gen=molecules, ref=test_molecules),
        "scaf": moses_metrics.ScafMetric()(gen=molecules, ref=test_molecules),
    }
    benchmark = guacamol_benchmark.KLDivBenchmark(number_samples=len(samples), training_set=train)
    values["kl_score"] = benchmark.assess_model(FixedSamples(samples)).score
    return {key: float(value) for key, value in values.items()}


def main(args) -> dict:
    inputs = sample_set()
    with tempfile.TemporaryDirectory() as folder:
        moses_metrics, guacamol_benchmark = load_references(Path(args.wheels), Path(folder))
        values = reference_values(moses_metrics, guacamol_benchmark, inputs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": "MOSES (molsets 0.3.1) and GuacaMol 0.5.5, run by "
                                         "scripts/reference_metrics.py", "reference": values, **inputs}, indent=1))
    for key, value in values.items():
        print(f"{key:10s} {value:.6f}")
    print(f"wrote {out}")
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", required=True, help="folder holding the molsets and guacamol wheels")
    parser.add_argument("--out", default=str(FIXTURE))
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
