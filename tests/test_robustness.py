"""Robustness: a bad-input corpus for the CLI (one row per case), crash-safe resume after SIGKILL, determinism,
and numerics at length 512."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import tiny_model, tiny_pl_guide
from ip_pyro.guides import PlackettLuceGuide
from ip_pyro import Batch
from ip_pyro.checkpoint import save_checkpoint
from ip_pyro.cli import main
from ip_pyro.data.planning import make_dataset, task_config, write_dataset
from ip_pyro.distributions import PlackettLuce
from ip_pyro.infer import InsertionELBO
from ip_pyro.train import TrainConfig, Trainer, model_and_guide
from ip_pyro.models import InsertionProcess

TINY = ["--batch-size", "8", "--d-model", "16", "--layers", "1", "--heads", "2", "--guide-d-model", "8",
        "--guide-layers", "1", "--eval-every", "1000", "--no-progress"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    assert main(["data", "star-easy", "--out", str(folder), "--train", "256", "--valid", "8", "--test", "8"]) == 0
    return folder


@pytest.fixture
def corpus_files(tmp_path, data_dir):
    """Files the bad-input rows point at (WORK stands for tmp_path, DATA for a good data folder)."""
    save_checkpoint(tmp_path / "model.pt", tiny_model(), None)
    save_checkpoint(tmp_path / "guided.pt", tiny_model(), tiny_pl_guide())
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:64])
    (tmp_path / "cut_run").mkdir()
    (tmp_path / "cut_run" / "checkpoint.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:64])
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in os.listdir(data_dir):
        (corrupt / name).write_bytes((data_dir / name).read_bytes())
    (corrupt / "test.jsonl").write_text("{}\n")
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["train", "--model", "fo-arm", "--data", str(data_dir), "--steps", "1", "--out",
                 str(tmp_path / "arm_run")] + TINY) == 0
    save_checkpoint(tmp_path / "smiles.pt", tiny_model(), tiny_pl_guide(), task="smiles", vocabulary=["C", "O", "N"],
                    token_names=["C", "O", "N"])
    (tmp_path / "aromatic.smi").write_text("CCO\nc1ccccc1\n")
    (tmp_path / "unparseable.csv").write_text("SMILES\nC1CC\nC(C\nc1cccc1\n")
    (tmp_path / "no_column.csv").write_text("smiles_string\nCCO\n")
    (tmp_path / "empty.smi").write_text("")
    (tmp_path / "two_columns.csv").write_text("SMILES,smiles\nCCO,CCO\n")
    (tmp_path / "dyck.txt").write_text("\n".join(["( )", "( ( ) )", "( ) ( )"] * 10) + "\n")
    (tmp_path / "other.txt").write_text("\n".join(["x y"] * 30) + "\n")
    assert main(["train", "--task", "sequences", "--data", str(tmp_path / "dyck.txt"), "--steps", "1", "--out",
                 str(tmp_path / "seq_run")] + TINY) == 0
    return tmp_path


# (name, arguments, what the one-line error must say)
CLI_CORPUS = [
    ("unknown task", ["train", "--task", "star-huge", "--out", "WORK/r"], "unknown task 'star-huge'"),
    ("unknown guide", ["train", "--guide", "zigzag", "--out", "WORK/r"], "unknown guide 'zigzag'"),
    ("unknown model", ["train", "--model", "rnn", "--out", "WORK/r"], "unknown model 'rnn'"),
    ("zero steps", ["train", "--steps", "0", "--out", "WORK/r"], "--steps=0 must be a positive integer"),
    ("negative batch", ["train", "--batch-size", "-4", "--out", "WORK/r"], "--batch-size=-4 must be a positive"),
    ("zero width", ["train", "--d-model", "0", "--out", "WORK/r"], "--d-model=0 must be a positive integer"),
    ("negative lr", ["train", "--lr", "-1", "--out", "WORK/r"], "learning rates must be positive"),
    ("bad ema", ["train", "--ema-decay", "1.5", "--out", "WORK/r"], "--ema-decay=1.5 must lie in [0, 1)"),
    ("missing data folder", ["train", "--data", "WORK/nowhere", "--out", "WORK/r"], "has no manifest.json"),
    ("corrupt data cache", ["train", "--data", "WORK/corrupt", "--out", "WORK/r"], "does not match its checksum"),
    ("data of another task", ["train", "--task", "star-medium", "--data", "DATA", "--out", "WORK/r"],
     "holds star-easy data, not star-medium"),
    ("missing checkpoint", ["eval", "--checkpoint", "WORK/none.pt"], "no checkpoint at"),
    ("truncated checkpoint", ["eval", "--checkpoint", "WORK/truncated.pt"], "truncated or corrupt"),
    ("resume from a truncated checkpoint", ["train", "--data", "DATA", "--out", "WORK/cut_run", "--resume"] + TINY,
     "truncated or corrupt"),
    ("checkpoint without task", ["eval", "--checkpoint", "WORK/model.pt"], "records no task"),
    ("diagnose a guide-less model", ["diagnose", "WORK/model.pt"], "holds no guide"),
    ("empty diagnose data", ["diagnose", "WORK/guided.pt", "--data", "WORK/empty.jsonl"], "is empty"),
    ("cuda without a GPU", ["train", "--device", "cuda:7", "--out", "WORK/r"], "no CUDA device"),
    ("unknown data task", ["data", "maze-huge", "--out", "WORK/d"], "unknown task 'maze-huge'"),
    ("unknown SMILES token", ["diagnose", "WORK/smiles.pt", "--data", "WORK/aromatic.smi"],
     "token 'c' of SMILES 'c1ccccc1' is not in the vocabulary"),
    ("SMILES for a model of ids", ["diagnose", "WORK/guided.pt", "--data", "WORK/aromatic.smi"],
     "was not trained on SMILES"),
    ("only unparseable training SMILES", ["train", "--task", "smiles", "--data", "WORK/unparseable.csv",
                                          "--valid-size", "0", "--test-size", "0", "--out", "WORK/r"],
     "no parseable training SMILES"),
    ("SMILES file without the column", ["train", "--task", "smiles", "--data", "WORK/no_column.csv", "--out",
                                        "WORK/r"], "has no 'SMILES' column"),
    ("empty SMILES file", ["train", "--task", "smiles", "--data", "WORK/empty.smi", "--out", "WORK/r"], "is empty"),
    ("SMILES task without a file", ["train", "--task", "smiles", "--out", "WORK/r"], "--task smiles needs --data"),
    ("split larger than the file", ["train", "--task", "smiles", "--data", "WORK/aromatic.smi", "--test-size", "10",
                                    "--out", "WORK/r"], "cannot hold 10 test and 1 validation molecules"),
    ("file too small for the default split", ["train", "--task", "smiles", "--data", "WORK/aromatic.smi", "--out",
                                              "WORK/r"], "or leave both out to hold out 10 % / 5 % of the file"),
    ("ambiguous SMILES column", ["train", "--task", "smiles", "--data", "WORK/two_columns.csv", "--out", "WORK/r"],
     "has more than one 'SMILES' column"),
    ("EOS termination for FO-ARM", ["train", "--model", "fo-arm", "--termination", "eos", "--out", "WORK/r"],
     "--termination eos is an IP option"),
    ("unknown step sampling", ["train", "--step-sampling", "some", "--out", "WORK/r"], "unknown step sampling"),
    ("zero steps per order", ["train", "--steps-per-order", "0", "--out", "WORK/r"],
     "--steps-per-order=0 must be a positive integer"),
    ("unknown precision", ["train", "--precision", "fp8", "--out", "WORK/r"], "unknown precision 'fp8'"),
    ("negative time limit", ["train", "--time-limit", "-5", "--out", "WORK/r"], "--time-limit=-5.0 must be >= 0 minutes"),
    ("zero prompt group", ["train", "--prompt-group", "0", "--out", "WORK/r"],
     "--prompt-group=0 must be a positive integer"),
    ("negative embedding scale", ["train", "--embed-std", "-1", "--out", "WORK/r"],
     "--embed-std=-1.0 must be a positive number"),
    ("unknown objective", ["train", "--objective", "vi", "--out", "WORK/r"], "unknown objective 'vi'"),
    ("RWS with one particle", ["train", "--objective", "rws", "--particles", "1", "--out", "WORK/r"],
     "--objective rws needs --particles >= 2"),
    ("RWS for FO-ARM", ["train", "--model", "fo-arm", "--objective", "rws", "--out", "WORK/r"],
     "FO-ARM has no orders"),
    ("objective switch without RWS", ["train", "--objective-switch", "100", "--out", "WORK/r"],
     "add --objective rws"),
    ("negative objective switch", ["train", "--objective", "rws", "--objective-switch", "-1", "--out", "WORK/r"],
     "--objective-switch=-1 must be a step count"),
    ("unknown RWS gradient", ["train", "--objective", "rws", "--rws-gradient", "half", "--out", "WORK/r"],
     "unknown --rws-gradient 'half'"),
    ("unknown RWS guide update", ["train", "--objective", "rws", "--rws-guide-update", "sleep", "--out", "WORK/r"],
     "unknown --rws-guide-update 'sleep'"),
    ("unknown prompt attention", ["train", "--prompt-attention", "both", "--out", "WORK/r"],
     "unknown --prompt-attention 'both'"),
    ("unknown decoder", ["train", "--decoder", "lstm", "--out", "WORK/r"], "unknown --decoder 'lstm'"),
    ("parallel decoding of FO-ARM", ["eval", "--checkpoint", "WORK/arm_run/checkpoint.pt",
                                     "--insertions-per-step", "3", "--data", "DATA"], "parallel decoding"),
    # a user's second hour
    ("a sequence file for a planning task", ["train", "--data", "WORK/dyck.txt", "--out", "WORK/r"],
     "is a file, but --task star-easy reads a folder written by `ip-pyro data star-easy`; for your own sequences "
     "pass --task sequences"),
    ("a missing sequence file", ["train", "--task", "sequences", "--data", "WORK/nope.txt", "--out", "WORK/r"],
     "nope.txt); check the path"),
    ("eval on a file of another vocabulary", ["eval", "--checkpoint", "WORK/seq_run/checkpoint.pt", "--data",
                                              "WORK/other.txt"], "outside the checkpoint's vocabulary ('x'"),
    ("a prompt to an unprompted run", ["sample", "--checkpoint", "WORK/seq_run/checkpoint.pt", "--prompt", "( )"],
     "trained without prompts (conditional=False)"),
    ("a prompt token the run never saw", ["sample", "--checkpoint", "WORK/arm_run/checkpoint.pt", "--prompt", "a"],
     "this checkpoint's tokens are integer ids"),
    ("best-of with greedy decoding", ["sample", "--checkpoint", "WORK/arm_run/checkpoint.pt", "--best-of", "3",
                                      "--greedy", "--prompt", "1 2"], "drop --greedy"),
    ("best-of below one", ["sample", "--checkpoint", "WORK/arm_run/checkpoint.pt", "--best-of", "0"],
     "--best-of 0 must be at least 1"),
    ("a missing prompt file", ["sample", "--checkpoint", "WORK/arm_run/checkpoint.pt", "--prompts", "WORK/none.txt"],
     "no prompt file at"),
    ("top-k of zero", ["sample", "--checkpoint", "WORK/seq_run/checkpoint.pt", "--top-k", "0"],
     "top_k=0 must be a positive integer"),
]


@pytest.mark.parametrize("name,arguments,message", CLI_CORPUS, ids=[row[0] for row in CLI_CORPUS])
def test_cli_bad_input_corpus(name, arguments, message, corpus_files, data_dir, capsys):
    if name == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    resolved = [a.replace("WORK", str(corpus_files)).replace("DATA", str(data_dir)) for a in arguments]
    assert main(resolved) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error


def _losses(folder):
    """The last logged loss of every step (a killed run may have logged steps past its last checkpoint)."""
    losses = {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            losses[record["step"]] = record["loss"]
    return losses


def _train_command(data_dir, out, steps):
    return [sys.executable, "-m", "ip_pyro.cli", "train", "--task", "star-easy", "--steps", str(steps),
            "--data", str(data_dir), "--out", str(out), "--checkpoint-every", "5"] + TINY


def test_sigkill_mid_run_then_resume_matches_the_uninterrupted_run(tmp_path, data_dir):
    steps = 40
    subprocess.run(_train_command(data_dir, tmp_path / "straight", steps), check=True, capture_output=True)
    expected = _losses(tmp_path / "straight")
    killed = tmp_path / "killed"
    process = subprocess.Popen(_train_command(data_dir, killed, steps), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(_losses(killed) if (killed / "metrics.jsonl").exists() else {}) < 12:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    state = torch.load(killed / "checkpoint.pt", weights_only=False)  # whole, thanks to the atomic write
    assert 5 <= state["step"] < steps
    subprocess.run(_train_command(data_dir, killed, steps) + ["--resume"], check=True, capture_output=True)
    resumed = _losses(killed)
    assert sorted(resumed) == list(range(1, steps + 1))
    assert [resumed[s] for s in range(state["step"] + 1, steps + 1)] == \
        [expected[s] for s in range(state["step"] + 1, steps + 1)]


def test_same_seed_same_losses_and_samples(tmp_path):
    examples = make_dataset("star-easy", seed=0, sizes={"train": 64, "valid": 0, "test": 0})["train"]
    task = task_config("star-easy")

    def run():
        torch.manual_seed(0)
        config = TrainConfig(task="star-easy", steps=4, batch_size=8, d_model=16, layers=1, heads=2,
                             guide_d_model=8, guide_layers=1, guide_heads=2, out=str(tmp_path / "r"),
                             vocab_size=task.vocab_size, max_length=task.max_target_length + 2)
        model, guide = model_and_guide(config)
        trainer = Trainer(config, model, guide, examples)
        losses = [trainer.train_step() for _ in range(4)]
        torch.manual_seed(5)
        return losses, model.sample(4, prompt=[examples[0]["prompt"]])

    assert run() == run()


def test_plackett_luce_and_elbo_stay_finite_at_length_512_with_huge_scores():
    length = 512
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 4, (1, length), generator=generator)
    batch = Batch(tokens=tokens, lengths=torch.tensor([length]))
    model = InsertionProcess(4, d_model=8, n_layers=1, n_heads=2, max_length=length)
    guide = PlackettLuceGuide(4, d_model=8, n_layers=1, n_heads=2, max_length=length)
    with torch.no_grad():
        guide.scorer.score.bias.fill_(0.0)
        guide.scorer.score.weight.normal_(0, 1e4)  # scores of order 1e4
    for sampling in ("uniform", "all"):
        elbo = InsertionELBO(num_particles=2, step_sampling=sampling)
        loss = elbo.differentiable_loss(model, guide, batch)
        loss.backward()
        assert torch.isfinite(loss)
        gradients = [p.grad for p in list(model.parameters()) + list(guide.parameters()) if p.grad is not None]
        assert gradients and all(torch.isfinite(g).all() for g in gradients)
        model.zero_grad(), guide.zero_grad()
    scores = (torch.rand(3, length, generator=generator) * 2 - 1) * 1e4
    assert torch.isfinite(PlackettLuce(scores).log_prob(PlackettLuce(scores).sample((2,)))).all()


def test_data_file_roundtrip_rejects_tampering(tmp_path):
    splits = make_dataset("maze-braided-easy", seed=0, sizes={"train": 20, "valid": 5, "test": 5})
    write_dataset(splits, tmp_path, "maze-braided-easy", seed=0)
    from ip_pyro.data.planning import load_dataset
    assert load_dataset(tmp_path)[0]["test"] == splits["test"]
    os.remove(tmp_path / "valid.jsonl")
    with pytest.raises(ValueError, match="is missing or does not match"):
        load_dataset(tmp_path)
