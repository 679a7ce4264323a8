"""The package as a user gets it: a wheel whose only top-level name is ``ip_pyro`` (models and guides live under it,
so a user's own ``models/`` folder cannot shadow them), one entry point for the script and ``python -m``, and no
import of the old top-level names anywhere."""
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_SCRIPT = '''
import models  # the user's own package of that name
assert models.MARKER == "the user's models", models
from ip_pyro.models import InsertionProcess
from ip_pyro.guides import PlackettLuceGuide, build_guide
from ip_pyro import collate
from ip_pyro.infer import InsertionRWS
from ip_pyro.train import TrainConfig, Trainer, model_and_guide
import ip_pyro
assert "site-packages" in ip_pyro.__file__, ip_pyro.__file__
model = InsertionProcess(4, d_model=16, n_layers=1, n_heads=2, max_length=6)
guide = build_guide("pl", 4, d_model=8, n_layers=1, n_heads=2, max_length=6)
import pyro.optim
from pyro.infer import SVI
svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), loss=InsertionRWS(2))
print("loss", svi.step(collate([[0, 1, 2], [3, 3]])))
config = TrainConfig(task="star-easy", steps=1, batch_size=2, d_model=16, layers=1, heads=2, guide_d_model=8,
                     guide_layers=1, guide_heads=2, vocab_size=4, max_length=6, out="run")
trainer = Trainer(config, *model_and_guide(config), [{"target": [0, 1]}, {"target": [2]}])
trainer.fit(progress=False)
from ip_pyro.checkpoint import load_checkpoint
load_checkpoint("run/checkpoint.pt")
print("ok")
'''


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, text=True)
    (path,) = out.glob("ip_pyro-*.whl")
    return path


def test_the_wheel_installs_only_ip_pyro_at_the_top_level(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        tops = {name.split("/")[0] for name in names}
        top_level = [name for name in names if name.endswith("top_level.txt")]
        listed = archive.read(top_level[0]).decode().split() if top_level else ["ip_pyro"]
    assert {top for top in tops if not top.endswith(".dist-info")} == {"ip_pyro"}
    assert listed == ["ip_pyro"]
    for module in ("ip_pyro/models/insertion.py", "ip_pyro/guides/plackett_luce.py", "ip_pyro/cli/__main__.py",
                   "ip_pyro/networks/decoder.py", "ip_pyro/infer/rws.py", "ip_pyro/data/planning.py"):
        assert module in names
    packages = {str(path.parent.relative_to(ROOT)) for path in (ROOT / "ip_pyro").rglob("__init__.py")}
    assert {name.replace(".", "/") for name in packages} <= {name.rsplit("/", 1)[0] for name in names}


def test_a_fresh_venv_trains_beside_a_users_own_models_package(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, text=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies (torch, pyro, ...) come from the test environment's site-packages, as plain paths: its .pth
    # files, among them the editable install of this checkout, are not processed
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    user = tmp_path / "project"
    (user / "models").mkdir(parents=True)
    (user / "models" / "__init__.py").write_text('MARKER = "the user\'s models"\n')
    (user / "train_one.py").write_text(USER_SCRIPT)
    result = subprocess.run([str(python), "train_one.py"], cwd=user, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_the_script_and_python_dash_m_behave_the_same(tmp_path):
    script = Path(sys.executable).with_name("ip-pyro")
    if not script.exists():
        pytest.skip("the ip-pyro script is not installed in this environment")
    arguments = ["train", "--steps", "0", "--out", str(tmp_path / "r")]
    by_script = subprocess.run([str(script), *arguments], capture_output=True, text=True)
    by_module = subprocess.run([sys.executable, "-m", "ip_pyro.cli", *arguments], capture_output=True, text=True)
    assert by_script.returncode == by_module.returncode == 2
    assert by_script.stderr == by_module.stderr and "--steps=0 must be a positive integer" in by_script.stderr
    assert by_script.stderr.count("\n") == 1  # one line, no traceback
    help_script = subprocess.run([str(script), "--help"], capture_output=True, text=True).stdout
    help_module = subprocess.run([sys.executable, "-m", "ip_pyro.cli", "--help"], capture_output=True, text=True).stdout
    assert help_script == help_module and "diagnose" in help_script


def test_no_code_imports_the_old_top_level_names():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if any(part in (".venv", "build", ".git") for part in path.parts):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("from models", "from guides", "import models", "import guides")):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    offenders = [o for o in offenders if not o.startswith("tests/test_packaging.py")]
    assert not offenders, offenders
