"""The molecule metrics equal MOSES's and GuacaMol's own code on a fixed sample set: the fixture was written by
``scripts/reference_metrics.py``, which runs their metric code from their wheels (no network here)."""
import json
import warnings
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "reference_metrics.json"


@pytest.fixture(scope="module")
def evaluated():
    pytest.importorskip("rdkit")
    from ip_pyro.metrics.molecules import evaluate

    data = json.loads(FIXTURE.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unique@10k on fewer than 10,000 samples
        return data, evaluate(data["samples"], train=data["train"], test=data["test"])


@pytest.mark.parametrize("key", ["validity", "unique@1k", "novelty", "intdiv1", "intdiv2", "snn", "frag", "scaf",
                                 "kl_score"])
def test_metric_equals_the_reference_implementation(evaluated, key):
    data, results = evaluated
    assert results[key] == pytest.approx(data["reference"][key], abs=1e-6), key


def test_the_fixture_exercises_what_differed():
    """Duplicates, invalid strings, molecules of the training set and scaffolds with fewer than two rings are all in
    the sample set (each changed a metric before the definitions were aligned)."""
    from rdkit import Chem

    data = json.loads(FIXTURE.read_text())
    samples = data["samples"]
    assert len(set(samples)) < len(samples) and 0 < data["reference"]["validity"] < 1
    assert 0 < data["reference"]["novelty"] < 1
    molecules = [Chem.MolFromSmiles(s) for s in samples]
    assert any(m is not None and m.GetRingInfo().NumRings() < 2 for m in molecules)
    assert len(data["train"]) != len(samples)  # the KL score's reference is resized to the sample count
