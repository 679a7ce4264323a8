"""A task family is one module and one registry line: a toy family defined here (mirror strings, scored by the
exact likelihood) runs through ``ip-pyro train``, ``eval``, ``sample`` and ``diagnose`` without a change to any
verb, and its checkpoints name it."""
import json

import pytest

from ip_pyro import collate
from ip_pyro.checkpoint import read_checkpoint
from ip_pyro.cli import main
from ip_pyro.cli.common import print_table, write_results
from ip_pyro.tasks import TASK_FAMILIES, TaskFamily, family_for_name, family_of_checkpoint, task_names

SMALL = ["--steps", "4", "--batch-size", "8", "--d-model", "16", "--layers", "1", "--heads", "2",
         "--guide-d-model", "8", "--guide-layers", "1", "--eval-every", "2", "--no-progress"]


def mirror_examples(count: int, seed: int) -> list:
    from ip_pyro.data import mirror_language

    return [{"target": sequence} for sequence in mirror_language(count, vocab_size=3, max_half=2, seed=seed)]


class ToyTasks(TaskFamily):
    name = "toy"

    def names(self):
        return ["toy-mirror"]

    def train(self, args):
        from ip_pyro.cli.training import config_from_args, run_training
        from ip_pyro.infer import exact_log_likelihood

        valid = mirror_examples(16, seed=1)
        config = config_from_args(args, vocab_size=3, max_length=6, extra={"task_family": self.name})
        batch = collate([e["target"] for e in valid])

        def evaluate(model, guide, trainer):
            return {"valid_nll": float(-exact_log_likelihood(model, batch).mean())}

        run_training(args, config, mirror_examples(64, seed=0), evaluate)
        return 0

    def evaluate(self, args, model, guide, extra):
        from ip_pyro.infer import exact_log_likelihood

        batch = collate([e["target"] for e in mirror_examples(16, seed=2)])
        results = {"task": "toy-mirror", "split": args.split, "nll": float(-exact_log_likelihood(model, batch).mean()),
                   "nll_kind": "exact"}
        print_table(results)
        write_results(args, results)
        return 0

    def sample(self, args, model, extra, decode):
        for sequence in model.sample(args.num):
            print("toy: " + decode(sequence))
        return 0

    def diagnose_data(self, args, model, extra, base):
        sequences = [e["target"] for e in mirror_examples(args.num_sequences, seed=3) if e["target"]]
        return {"sequences": sequences, "prompts": None, "landmarks": None, "said": "diagnosing toy strings"}


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(TASK_FAMILIES, "toy", ToyTasks)
    yield


def test_a_registered_family_runs_through_every_verb(toy, tmp_path, capsys):
    assert "toy-mirror" in task_names() and family_for_name("toy-mirror").name == "toy"
    run = tmp_path / "run"
    assert main(["train", "--task", "toy-mirror", "--out", str(run)] + SMALL) == 0
    checkpoint = str(run / "checkpoint.pt")
    assert read_checkpoint(checkpoint)["extra"]["task_family"] == "toy"
    assert any("valid_nll" in json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    capsys.readouterr()
    assert main(["eval", "--checkpoint", checkpoint]) == 0
    assert json.loads((run / "eval_test.json").read_text())["nll_kind"] == "exact"
    assert main(["sample", "--checkpoint", checkpoint, "-n", "3"]) == 0
    assert capsys.readouterr().out.count("toy: ") == 3
    assert main(["diagnose", checkpoint, "--out", str(tmp_path / "d"), "--num-sequences", "6", "--draws", "4",
                 "--chains", "1", "--mcmc-samples", "0"]) == 0
    assert "diagnosing toy strings" in capsys.readouterr().out


def test_an_unknown_task_and_an_unknown_family_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--task", "toy-mirror", "--out", str(tmp_path / "r")] + SMALL) == 2
    assert "unknown task 'toy-mirror'; choose from star-easy" in capsys.readouterr().err
    with pytest.raises(ValueError, match="a task of family 'toy', which this installation does not know"):
        family_of_checkpoint({"task_family": "toy"})


@pytest.mark.parametrize("extra,family", [({"vocabulary": ["C"]}, "smiles"), ({"sequence_vocabulary": ["a"]},
                                                                             "sequences"),
                                          ({"task": "star-easy"}, "planning"), ({}, "saved"),
                                          ({"token_names": ["a"]}, "saved")])
def test_checkpoints_written_before_the_record_find_their_family(extra, family):
    assert family_of_checkpoint(extra).name == family
