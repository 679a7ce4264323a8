"""SMILES tasks end to end: splits, counted skips, vocabulary, CLI train/eval/sample/diagnose on a small file."""
import json
import os
import re

import pytest

pytest.importorskip("rdkit")

from ip_pyro.cli import main  # noqa: E402
from ip_pyro.data.molecules import load_smiles_task, parseable_smiles  # noqa: E402

TINY = ["--batch-size", "8", "--d-model", "16", "--layers", "1", "--heads", "2", "--guide-d-model", "8",
        "--guide-layers", "1", "--eval-every", "1000", "--no-progress", "--valid-size", "20", "--test-size", "30",
        "--valid-samples", "10", "--eval-size", "10"]


@pytest.fixture(scope="module")
def nci_file():
    from rdkit import RDConfig

    return os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")


@pytest.fixture
def small_csv(tmp_path, nci_file):
    lines = [line.split()[0] for line in open(nci_file) if line.strip()][:300]
    path = tmp_path / "molecules.csv"
    path.write_text("SMILES\n" + "\n".join(["C1CC", "c1cccc1", "C(C"] + lines) + "\n")
    return path


def test_splits_are_deterministic_and_encoded(nci_file):
    task = load_smiles_task("smiles", path=nci_file, train_size=500, valid_size=50, test_size=100)
    again = load_smiles_task("smiles", path=nci_file, train_size=500, valid_size=50, test_size=100)
    assert task.smiles == again.smiles and task.vocabulary.tokens == again.vocabulary.tokens
    assert len(task.splits["train"]) <= 500 and len(task.splits["valid"]) <= 50 and len(task.splits["test"]) <= 100
    for record in task.splits["train"][:50]:
        assert task.vocabulary.decode(record["target"]) == record["smiles"]
    assert task.max_length == max(len(r["target"]) for r in task.splits["train"]) + 2
    other = load_smiles_task("smiles", path=nci_file, train_size=500, valid_size=50, test_size=100, seed=1)
    assert other.smiles["test"] != task.smiles["test"]


def test_unparseable_training_smiles_are_counted_and_skipped_with_a_warning(small_csv):
    with pytest.warns(UserWarning, match=r"skipped 3 of \d+ training SMILES that RDKit cannot parse"):
        kept, skipped = parseable_smiles(["CCO", "C1CC", "c1cccc1", "C(C", "c1ccccc1"])
    assert kept == ["CCO", "c1ccccc1"] and skipped == 3
    with pytest.warns(UserWarning, match="RDKit cannot parse"):
        task = load_smiles_task("smiles", path=small_csv, valid_size=0, test_size=0)
    assert task.skipped["train_unparseable"] == 3 and len(task.splits["train"]) == 300


def test_molecules_with_tokens_outside_the_vocabulary_are_counted(tmp_path):
    from ip_pyro.data.smiles import SmilesVocabulary

    path = tmp_path / "tiny.smi"
    path.write_text("\n".join(["CCO", "CCN", "CCC", "CO", "CN", "CBr"] * 4) + "\n")
    vocabulary = SmilesVocabulary.build(["CCO"])  # as saved with a checkpoint trained elsewhere
    with pytest.warns(UserWarning, match="tokens outside the training vocabulary"):
        task = load_smiles_task("smiles", path=path, valid_size=6, test_size=6, vocabulary=vocabulary)
    counted = sum(task.skipped[f"{split}_unknown_tokens"] for split in ("train", "valid", "test"))
    assert counted == 12  # every CCN, CN and CBr
    assert all(set(s) <= set("CO") for split in task.smiles.values() for s in split)


def test_cli_trains_evaluates_samples_and_diagnoses_a_smiles_model(small_csv, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "smiles", "--data", str(small_csv), "--steps", "3", "--out", str(run)] + TINY) == 0
    assert re.search(r"warning: skipped \d+ of \d+ training SMILES that RDKit", capsys.readouterr().out)
    assert main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--num-samples", "20", "--nll-samples", "2",
                 "--nll-limit", "5"]) == 0
    results = json.loads((run / "eval_test.json").read_text())
    assert {"validity", "unique@1k", "nll", "nll_per_token", "task"} <= set(results)
    assert len((run / "eval_test.smi").read_text().splitlines()) == 20
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "-n", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    molecules = tmp_path / "some.smi"
    molecules.write_text("c1ccccc1\n")  # aromatic lower case: not a token of this (Kekulé) training set
    assert main(["diagnose", str(run / "checkpoint.pt"), "--data", str(molecules)]) == 2
    assert "token 'c' of SMILES 'c1ccccc1' is not in the vocabulary" in capsys.readouterr().err
    molecules.write_text("CCO\nC1=CC=CC=C1\n")
    assert main(["diagnose", str(run / "checkpoint.pt"), "--data", str(molecules), "--domain", "smiles",
                 "--chains", "2", "--draws", "20", "--mcmc-samples", "20", "--mcmc-warmup", "10",
                 "--out", str(tmp_path / "diag")]) == 0
    assert any((tmp_path / "diag").iterdir())


@pytest.mark.parametrize("model_flags", [["--model", "ip", "--termination", "eos"], ["--model", "fo-arm"],
                                         ["--model", "ip", "--guide", "sequential"]])
def test_cli_trains_every_smiles_arm(model_flags, small_csv, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--task", "smiles", "--data", str(small_csv), "--steps", "2", "--out", str(run)]
                + model_flags + TINY) == 0
    assert (run / "checkpoint.pt").is_file()


def test_user_files_as_they_come_header_case_column_and_split_sizes(tmp_path, nci_file):
    from ip_pyro.data.molecules import split_sizes
    from ip_pyro.data.smiles import read_smiles

    lines = [line.split()[0] for line in open(nci_file) if line.strip()][:200]
    (tmp_path / "lower.csv").write_text("id,smiles\n" + "".join(f"{i},{s}\n" for i, s in enumerate(lines)))
    (tmp_path / "named.csv").write_text("mol,canonical_form\n" + "".join(f"{i},{s}\n" for i, s in enumerate(lines)))
    (tmp_path / "header.smi").write_text("SMILES Name\n" + "".join(f"{s} m{i}\n" for i, s in enumerate(lines)))
    (tmp_path / "plain.smi").write_text("".join(f"{s}\n" for s in lines))
    assert read_smiles(tmp_path / "lower.csv") == lines
    assert read_smiles(tmp_path / "named.csv", "Canonical_Form") == lines
    assert read_smiles(tmp_path / "header.smi") == read_smiles(tmp_path / "plain.smi") == lines
    assert read_smiles(tmp_path / "plain.smi")[0] == lines[0]  # stereo and charges kept as written
    assert split_sizes(200, None, None) == (10, 20) and split_sizes(500_000, None, None) == (1000, 10_000)
    assert split_sizes(200, 7, 3) == (7, 3)
    with pytest.warns(UserWarning):  # tokens of held-out molecules outside the small training vocabulary
        task = load_smiles_task("smiles", path=tmp_path / "lower.csv", valid_size=None, test_size=None)
    assert len(task.smiles["train"]) + task.skipped["train_unparseable"] == 170


def test_a_run_moves_with_its_data_and_eval_points_elsewhere_with_data(tmp_path, small_csv, capsys):
    import shutil

    data = tmp_path / "project" / "data"
    data.mkdir(parents=True)
    shutil.copy(small_csv, data / "molecules.csv")
    out = tmp_path / "project" / "run"
    assert main(["train", "--task", "smiles", "--data", str(data / "molecules.csv"), "--steps", "2",
                 "--out", str(out)] + TINY) == 0
    err = capsys.readouterr().err
    assert "UserWarning" not in err  # warnings are one line each
    saved = json.loads(json.dumps(__import__("torch").load(out / "checkpoint.pt", weights_only=False)["extra"]))
    assert saved["data"]["path"] == os.path.join("..", "data", "molecules.csv")
    shutil.move(str(tmp_path / "project"), str(tmp_path / "moved"))
    moved = tmp_path / "moved" / "run" / "checkpoint.pt"
    arguments = ["eval", "--checkpoint", str(moved), "--num-samples", "12", "--nll-samples", "1", "--nll-limit", "3"]
    assert main(arguments + ["--seed", "3", "--json", str(tmp_path / "a.json")]) == 0
    assert main(arguments + ["--seed", "3", "--json", str(tmp_path / "b.json")]) == 0
    assert (tmp_path / "a.smi").read_text() == (tmp_path / "b.smi").read_text()  # same seed, same samples
    shutil.move(str(tmp_path / "moved" / "data"), str(tmp_path / "elsewhere"))
    capsys.readouterr()
    assert main(arguments) == 2
    assert "pass --data FILE" in capsys.readouterr().err
    assert main(arguments + ["--data", str(tmp_path / "elsewhere" / "molecules.csv")]) == 0


def test_max_smiles_tokens_drops_long_training_molecules_and_says_how_many(nci_file):
    task = load_smiles_task("smiles", path=nci_file, train_size=400, valid_size=20, test_size=20)
    longest = max(len(r["target"]) for r in task.splits["train"])
    with pytest.warns(UserWarning, match=r"dropped \d+ of \d+ training SMILES longer than 40 tokens"):
        short = load_smiles_task("smiles", path=nci_file, train_size=400, valid_size=20, test_size=20, max_tokens=40)
    assert longest > 40 >= max(len(r["target"]) for r in short.splits["train"])
    assert short.skipped["train_too_long"] == sum(len(r["target"]) > 40 for r in task.splits["train"])
    # the model, and so each step, is sized by what is left
    assert short.max_length == max(len(r["target"]) for r in short.splits["train"]) + 2 <= 42
    with pytest.raises(ValueError, match="--max-smiles-tokens=0 must be a positive integer"):
        load_smiles_task("smiles", path=nci_file, train_size=50, valid_size=5, test_size=5, max_tokens=0)
