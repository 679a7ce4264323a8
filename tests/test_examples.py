"""The research scripts in examples/ run end to end at toy size (their main(args) with small flags)."""
import importlib.util
import os
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOY = ["--steps", "4", "--batch-size", "8", "--d-model", "16", "--layers", "1", "--heads", "2",
       "--guide-d-model", "8", "--guide-layers", "1", "--eval-every", "2", "--device", "cpu"]


@pytest.mark.parametrize("guide,termination", [("pl", "stop"), ("uniform", "eos")])
def test_smiles_example(guide, termination):
    pytest.importorskip("rdkit")
    from rdkit import RDConfig

    example = load("smiles")
    path = os.path.join(RDConfig.RDDataDir, "NCI", "first_5K.smi")
    args = example.parse_args(TOY + ["--data", path, "--guide", guide, "--termination", termination,
                                     "--num-train", "300", "--num-valid", "20", "--num-test", "20",
                                     "--num-samples", "20", "--nll-samples", "2"])
    final = example.main(args)
    assert 0.0 <= final["validity"] <= 1.0 and final["nll"] > 0


@pytest.mark.parametrize("extra", [[], ["--absolute-positions", "--task", "star-medium"],
                                   ["--prompt-group", "2", "--embed-std", "1", "--guide", "uniform"],
                                   ["--guide", "r2l"], ["--guide", "ends"]])
def test_star_graph_example(extra):
    example = load("star_graph")
    args = example.parse_args(TOY + ["--num-train", "64", "--num-valid", "8"] + extra)
    assert 0.0 <= example.main(args)["exact_match"] <= 1.0
