import gzip
import json
import os
import zipfile

import pytest

from ip_pyro.cli import main
from ip_pyro.data import smiles as smiles_data
from ip_pyro.data.smiles import SmilesVocabulary, extract_moses, fetch_moses, read_smiles, tokenize


@pytest.mark.parametrize("string,expected", [
    ("C[C@@H](Cl)c1ccccc1Br", ["C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c", "c", "c", "1", "Br"]),
    ("c1ccc2c(c1)%12CC%12", ["c", "1", "c", "c", "c", "2", "c", "(", "c", "1", ")", "%12", "C", "C", "%12"]),
    ("[nH]1cc[n+](C)c1.[Cl-]", ["[nH]", "1", "c", "c", "[n+]", "(", "C", ")", "c", "1", ".", "[Cl-]"]),
    ("C#N", ["C", "#", "N"]), ("F/C=C\\F", ["F", "/", "C", "=", "C", "\\", "F"]), ("", []),
])
def test_tokenize(string, expected):
    assert tokenize(string) == expected
    assert "".join(tokenize(string)) == string


def test_tokenize_refuses_what_no_token_covers():
    with pytest.raises(ValueError, match=r"unexpected 'X' at position 1"):
        tokenize("CXC")


@pytest.fixture(scope="module")
def nci_smiles():
    rdkit = pytest.importorskip("rdkit")
    from rdkit import RDConfig

    path = os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")
    return read_smiles(path), rdkit


def test_round_trip_on_rdkit_nci_molecules(nci_smiles):
    molecules, _ = nci_smiles
    assert len(molecules) > 4000
    vocabulary = SmilesVocabulary.build(molecules[:4000])
    seen = [s for s in molecules if all(t in vocabulary.tokens for t in tokenize(s))]
    assert len(seen) > 0.95 * len(molecules)
    assert all(vocabulary.decode(vocabulary.encode(s)) == s for s in seen)
    assert SmilesVocabulary.from_dict(json.loads(json.dumps(vocabulary.to_dict()))).tokens == vocabulary.tokens


def test_vocabulary_errors():
    vocabulary = SmilesVocabulary.build(["CCO", "c1ccccc1"])
    assert vocabulary.tokens == ["c", "1", "C", "O"]  # by frequency, ties in character order
    with pytest.raises(ValueError, match=r"token 'Br' of SMILES 'CBr' is not in the vocabulary"):
        vocabulary.encode("CBr")
    with pytest.raises(ValueError, match="ids must be integers in 0..3"):
        vocabulary.decode([0, 9])
    with pytest.raises(ValueError, match="no SMILES"):
        SmilesVocabulary.build([])


def fake_wheel(path, broken=False):
    with zipfile.ZipFile(path, "w") as archive:
        for name in smiles_data.MOSES_FILES:
            if broken and name == "test_stats.npz":
                continue
            content = gzip.compress(b"SMILES,SPLIT\nCCO,test\nc1ccccc1,test\n") if name.endswith(".gz") else b"npz"
            archive.writestr("moses/dataset/data/" + name, content)
    return path


def test_moses_files_come_out_of_the_wheel_with_checksums(tmp_path, monkeypatch):
    folder = tmp_path / "moses"
    manifest = extract_moses(fake_wheel(tmp_path / "molsets.whl"), folder)
    assert set(manifest["files"]) == set(smiles_data.MOSES_FILES)
    assert read_smiles(folder / "test.csv.gz") == ["CCO", "c1ccccc1"]
    monkeypatch.setattr(smiles_data.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    assert fetch_moses(folder) == folder  # cached and verified: no network
    (folder / "train.csv.gz").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match its checksum; delete"):
        fetch_moses(folder)
    with pytest.raises(ValueError, match="it is not the molsets==0.3.1 wheel"):
        extract_moses(fake_wheel(tmp_path / "broken.whl", broken=True), tmp_path / "other")


def test_missing_cache_without_network_is_a_clear_error(tmp_path, monkeypatch):
    class Failed:
        returncode, stderr = 1, "ERROR: Could not find a version (network is unreachable)"

    monkeypatch.setattr(smiles_data.subprocess, "run", lambda *a, **k: Failed())
    monkeypatch.setenv("IP_PYRO_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="MOSES is not cached in .* failed .*network is unreachable.*IP_PYRO_CACHE"):
        fetch_moses()
    assert main(["data", "moses", "--out", str(tmp_path / "m")]) == 2


@pytest.mark.parametrize("content,message", [(b"", "is empty"), (b"smiles_wrong\nCCO\n", "has no 'SMILES' column")])
def test_bad_smiles_files(tmp_path, content, message):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_smiles(path)


def test_cli_data_moses_uses_the_cache(tmp_path, monkeypatch, capsys):
    extract_moses(fake_wheel(tmp_path / "molsets.whl"), tmp_path / "moses")
    monkeypatch.setattr(smiles_data.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    assert main(["data", "moses", "--out", str(tmp_path / "moses")]) == 0
    assert "test.csv.gz" in capsys.readouterr().out


def fake_qm9_wheel(path, column="SMILES"):
    header = f"XYZ_file,Index,{column},InChi\n"
    with zipfile.ZipFile(path, "w") as archive:
        for number, part in enumerate(("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")):
            archive.writestr("qm9pack/data/" + part, header + f'"a.xyz",{number},"C{"C" * number}O","InChI=1S/x"\n')
    return path


def test_qm9_smiles_come_out_of_the_wheel_as_one_checked_csv(tmp_path, monkeypatch):
    from ip_pyro.data.smiles import extract_qm9, fetch_qm9

    folder = tmp_path / "qm9"
    extract_qm9(fake_qm9_wheel(tmp_path / "qm9pack.whl"), folder)
    assert read_smiles(folder / "qm9.csv") == ["CO", "CCO", "CCCO"]
    monkeypatch.setattr(smiles_data.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    assert fetch_qm9(folder) == folder
    assert main(["data", "qm9", "--out", str(folder)]) == 0
    with pytest.raises(ValueError, match="has no SMILES column"):
        extract_qm9(fake_qm9_wheel(tmp_path / "bad.whl", column="smiles"), tmp_path / "bad")
    (folder / "qm9.csv").write_text("SMILES,index\nC,1\n")
    with pytest.raises(ValueError, match="cached QM9 file .* does not match its checksum"):
        fetch_qm9(folder)
