"""Data-parallel training under torchrun (2 CPU processes, gloo): the ranks stay identical and the loss trajectory
matches a single process on the same global batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ip_pyro.cli import main

TOLERANCE = 1e-4  # relative, on every logged loss and every parameter: only the order of float sums differs


def _records(folder: Path) -> list:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _torchrun(arguments: list, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "ip_pyro.cli", *arguments, "--distributed"]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def star_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp") / "data"
    assert main(["data", "star-easy", "--out", str(folder), "--train", "128", "--valid", "8", "--test", "8"]) == 0
    return folder


def _common(data: Path, guide: str) -> list:
    return ["train", "--task", "star-easy", "--data", str(data), "--model", "ip", "--guide", guide, "--steps", "5",
            "--batch-size", "8", "--d-model", "16", "--layers", "1", "--heads", "2", "--guide-d-model", "16",
            "--guide-layers", "1", "--warmup", "2", "--eval-every", "100", "--checkpoint-every", "100",
            "--no-progress"]


def test_two_processes_match_one_process_on_the_same_global_batch(star_data, tmp_path):
    # a fixed order scored at every step: the estimator has no randomness, so the runs must agree exactly
    common = _common(star_data, "l2r") + ["--step-sampling", "all"]
    _torchrun(common + ["--out", str(tmp_path / "two")], tmp_path)
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    two, one = _records(tmp_path / "two"), _records(tmp_path / "one")
    losses_two = [r["loss"] for r in two if "loss" in r]
    losses_one = [r["loss"] for r in one if "loss" in r]
    assert len(losses_two) == len(losses_one) == 5
    for a, b in zip(losses_two, losses_one):
        assert abs(a - b) <= TOLERANCE * abs(b)
    assert losses_one[-1] < losses_one[0]  # it trained
    assert [r for r in two if "rank_param_spread" in r] == [{"step": 5, "world_size": 2, "rank_param_spread": 0.0}]
    weights_two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)["model"]["state_dict"]
    weights_one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["model"]["state_dict"]
    flat_two = torch.cat([weights_two[name].flatten() for name in weights_one])
    flat_one = torch.cat([tensor.flatten() for tensor in weights_one.values()])
    # per entry, Adam can magnify float noise in a gradient that is zero in exact arithmetic (the slot head's bias:
    # the slot softmax ignores it), so compare the weights as one vector
    assert (flat_two - flat_one).norm() <= TOLERANCE * flat_one.norm()


def test_a_learned_guide_stays_identical_across_ranks(star_data, tmp_path):
    _torchrun(_common(star_data, "pl") + ["--out", str(tmp_path / "pl")], tmp_path)
    records = _records(tmp_path / "pl")
    assert records[-1]["rank_param_spread"] == 0.0  # model and guide parameters, checked by all-reduce
    state = torch.load(tmp_path / "pl" / "checkpoint.pt", weights_only=False)
    assert state["guide"]["state_dict"] and state["step"] == 5


def test_distributed_without_torchrun_is_one_line(star_data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert main(_common(star_data, "l2r") + ["--distributed", "--out", str(tmp_path / "x")]) == 2
    assert "launch with `torchrun" in capsys.readouterr().err
