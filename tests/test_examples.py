"""The research scripts in examples/ run end to end at toy size (their main(args) with small flags)."""
import importlib.util
import math
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
                                   ["--guide", "r2l"], ["--guide", "ends"],
                                   ["--objective", "rws", "--objective-switch", "2", "--particles", "2",
                                    "--prompt-attention", "prefix"]])
def test_star_graph_example(extra):
    example = load("star_graph")
    args = example.parse_args(TOY + ["--num-train", "64", "--num-valid", "8"] + extra)
    assert 0.0 <= example.main(args)["exact_match"] <= 1.0


def test_quickstart_runs_every_arm_including_rws():
    example = load("quickstart")
    assert example.parse_args([]).guides == list(example.DEMO_ARMS) and "pl-rws" not in example.DEMO_ARMS
    args = example.parse_args(["--guides", *example.ARMS, "--steps", "3", "--num-train", "64", "--num-test", "8", "--d-model", "16",
                               "--layers", "1", "--guide-d-model", "8", "--guide-layers", "1", "--iwae-samples", "4",
                               "--elbo-samples", "2", "--num-samples", "8", "--device", "cpu"])
    rows = example.main(args)
    assert [name for name, _, _ in rows] == ["uniform", "l2r", "pl", "pl-rws", "causal-uniform", "causal-pl-rws"]
    for name, _, result in rows:
        assert math.isfinite(result["elbo"]) and result["exact"] < 0 and 0.0 <= result["valid"] <= 1.0
        assert (result["entropy"] == 0.0) if name == "l2r" else 0.5 < result["entropy"] < 1.1


def test_quickstart_side_by_side_arms_give_the_one_at_a_time_table():
    """--jobs 2 (the demo's default) runs arms in forked processes; each arm seeds itself, so every number of the
    table equals the sequential run's."""
    example = load("quickstart")
    flags = ["--steps", "3", "--num-train", "64", "--num-test", "8", "--d-model", "16", "--layers", "1",
             "--guide-d-model", "8", "--guide-layers", "1", "--iwae-samples", "4", "--elbo-samples", "2",
             "--num-samples", "8", "--device", "cpu", "--guides", "uniform", "pl-rws", "causal-uniform"]
    together = example.main(example.parse_args(flags + ["--jobs", "2"]))
    alone = example.main(example.parse_args(flags + ["--jobs", "1"]))
    assert [row[0] for row in together] == ["uniform", "pl-rws", "causal-uniform"]
    for (name, _, result), (_, _, expected) in zip(together, alone):
        assert result == expected, name
    with pytest.raises(SystemExit):
        example.parse_args(["--jobs", "0"])


def test_quickstart_reports_the_seed_spread_and_leaves_the_thread_count_alone(capsys):
    import torch

    example = load("quickstart")
    threads = torch.get_num_threads()
    args = example.parse_args(["--steps", "2", "--num-train", "64", "--num-test", "8", "--d-model", "16",
                               "--layers", "1", "--guide-d-model", "8", "--guide-layers", "1", "--iwae-samples", "4",
                               "--elbo-samples", "2", "--num-samples", "8", "--device", "cpu", "--guides", "uniform",
                               "l2r", "--seeds", "0", "1", "--threads", "1"])
    results = example.main(args)
    assert torch.get_num_threads() == threads
    assert [len(runs) for runs in results.values()] == [2, 2]
    assert results["uniform"][0]["exact"] != results["uniform"][1]["exact"]  # the seed moves data and weights
    assert "seeds 0 1: mean [min, max]" in capsys.readouterr().out

