import os

import numpy as np
import pytest

pytest.importorskip("rdkit")

from ip_pyro.data.smiles import read_smiles  # noqa: E402
from ip_pyro.metrics import molecules  # noqa: E402


@pytest.fixture(scope="module")
def nci():
    from rdkit import RDConfig

    return read_smiles(os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi"))[:300]


def test_known_invalid_strings():
    samples = ["CCO", "c1ccccc1", "C1CC", "C(C", "c1cccc1", "", "CC(=O)O", "[Xx]"]
    assert molecules.validity(samples) == 3 / 8
    assert molecules.canonical("OCC") == molecules.canonical("CCO") == "CCO"
    assert molecules.canonical("C(C") is None


def test_a_set_against_itself(nci):
    valid = [s for s in nci if molecules.canonical(s)]
    with pytest.warns(UserWarning, match="fewer than"):
        results = molecules.evaluate(valid, train=valid, test=valid)
    assert results["validity"] == 1.0
    assert results["novelty"] == 0.0
    assert results["kl_score"] == pytest.approx(1.0)  # identical descriptor distributions: every KL is 0
    assert results["snn"] == pytest.approx(1.0)
    assert results["frag"] == pytest.approx(1.0) and results["scaf"] == pytest.approx(1.0)
    # power-mean inequality: sqrt(mean T^2) >= mean T, so IntDiv2 <= IntDiv1 (MOSES: 0.850 vs 0.856)
    assert 0.5 < results["intdiv1"] < 1.0 and results["intdiv2"] <= results["intdiv1"] + 1e-12


def test_novelty_uniqueness_and_reference_keys(nci):
    valid = [s for s in nci if molecules.canonical(s)]
    train, generated = valid[:150], valid[100:250]  # 50 of the 150 generated are in train
    with pytest.warns(UserWarning, match="fewer than 1000|kl_score left out"):
        results = molecules.evaluate(generated + generated[:10], train=train)
    assert results["unique@1k"] == pytest.approx(len(set(map(molecules.canonical, generated))) / 160)
    assert results["novelty"] == pytest.approx(100 / 150, abs=0.02)
    assert "snn" not in results and "fcd_test" not in results
    assert "kl_score" not in results  # 160 samples, 150 training molecules: GuacaMol compares equal-sized sets
    with pytest.warns(UserWarning, match="fewer than 1000"):
        sized = molecules.evaluate(generated, train=valid[:300])
    assert sized["kl_reference_molecules"] == 150 and 0 < sized["kl_score"] <= 1
    identical = molecules.internal_diversity([molecules._molecule("CCO")] * 3)
    assert identical == pytest.approx(0.0)


def test_moses_test_stats_feed_fcd(tmp_path, nci):
    pytest.importorskip("fcd_torch")
    valid = [molecules.canonical(s) for s in nci if molecules.canonical(s)][:120]
    from fcd_torch import FCD

    stats = {"FCD": FCD(device="cpu", n_jobs=1).precalc(valid)}
    np.savez(tmp_path / "test_stats.npz", stats=stats)
    loaded = molecules.load_test_stats(tmp_path / "test_stats.npz")
    assert np.allclose(loaded["FCD"]["mu"], stats["FCD"]["mu"])
    with pytest.warns(UserWarning, match="fewer than"):
        results = molecules.evaluate(valid, test_stats=loaded)
    assert abs(results["fcd_test"]) < 1e-3 and results["fcd_score"] == pytest.approx(1.0, abs=1e-3)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="is not MOSES's test_stats.npz"):
        molecules.load_test_stats(tmp_path / "bad.npz")


def test_errors():
    with pytest.raises(ValueError, match="no samples"):
        molecules.evaluate([])
    with pytest.raises(ValueError, match="has no 'FCD' entry"):
        molecules.evaluate(["CCO"], test_stats={"mu": 0})


def test_fcd_is_near_zero_for_a_set_against_itself_and_grows_with_a_shift(nci):
    pytest.importorskip("fcd_torch")
    valid = [molecules.canonical(s) for s in nci if molecules.canonical(s)]
    first, second = valid[:150], valid[150:300]
    same = molecules.frechet_chemnet_distance(first, first)
    assert abs(same) < 1e-3
    other = molecules.frechet_chemnet_distance(first, second)
    shifted = molecules.frechet_chemnet_distance(first, ["C" * n for n in range(2, 40)] + ["O" * 3, "CCO"] * 20)
    assert 0 < other < shifted
    with pytest.warns(UserWarning, match="fewer than"):
        results = molecules.evaluate(first, test=second, test_scaffolds=second)
    assert results["fcd_test"] == pytest.approx(other, rel=1e-4)
    assert results["fcd_score"] == pytest.approx(np.exp(-0.2 * other)) and "fcd_testsf" in results


def test_kl_score_separates_a_shifted_set_and_orders_by_closeness(nci):
    valid = [s for s in nci if molecules.canonical(s)]
    reference, close = valid[:150], valid[150:300]
    alkanes = ["C" * n for n in range(1, 30)] + ["C" * n + "O" for n in range(1, 30)]
    same_source = molecules.kl_divergence_score(close, reference)
    shifted = molecules.kl_divergence_score(alkanes, reference)
    assert 0.0 < shifted < 0.5 < same_source <= 1.0
    with pytest.raises(ValueError, match="at least 2 distinct valid samples"):
        molecules.kl_divergence_score(["C1CC", "CCO"], reference)
