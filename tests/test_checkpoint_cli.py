import json
import os

import pytest
import torch

from conftest import roughen, tiny_model, tiny_pl_guide
from ip_pyro import collate
from ip_pyro.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from ip_pyro.cli import main


def test_round_trip_keeps_weights_config_and_extras(tmp_path):
    model, guide = tiny_model(), tiny_pl_guide()
    path = tmp_path / "run" / "model.pt"
    save_checkpoint(path, model, guide, step=12, token_names=["a", "b", "c"])
    loaded_model, loaded_guide, extra = load_checkpoint(path)
    batch = collate([[0, 1, 2], [2]])
    orders = torch.tensor([[2, 0, 1], [0, 1, 2]])
    assert torch.allclose(loaded_model.log_joint(batch, orders), model.log_joint(batch, orders))
    assert torch.allclose(loaded_guide.order_distribution(batch).logits, guide.order_distribution(batch).logits)
    assert extra == {"step": 12, "token_names": ["a", "b", "c"]}
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind


@pytest.mark.parametrize("decoder", ["canvas", "causal"])
def test_save_and_load_of_the_python_api_keep_the_likelihood_and_feed_the_cli(decoder, tmp_path, capsys):
    """ip_pyro.save / ip_pyro.load: a model and guide built in Python come back with the same exact
    log-likelihood and the same guide, and ip-pyro sample reads the file."""
    import ip_pyro
    from ip_pyro.guides import PointerGuide
    from ip_pyro.infer import exact_log_likelihood

    model = tiny_model(decoder=decoder)
    guide = roughen(PointerGuide(3, d_model=8, n_layers=1, n_heads=2, max_length=6), 0.5, 3)
    ip_pyro.save(tmp_path / "mine.pt", model, guide, token_names=["a", "b", "c"])
    loaded_model, loaded_guide, extra = ip_pyro.load(tmp_path / "mine.pt")
    batch = collate([[0, 1, 2], [2, 2], []])
    assert torch.equal(exact_log_likelihood(loaded_model, batch), exact_log_likelihood(model, batch))
    orders = guide.order_distribution(batch).sample((2,))
    assert torch.equal(loaded_guide.order_distribution(batch).log_prob(orders),
                       guide.order_distribution(batch).log_prob(orders))
    assert extra["token_names"] == ["a", "b", "c"]
    assert main(["sample", "--checkpoint", str(tmp_path / "mine.pt"), "-n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and set(" ".join(lines).split()) <= {"a", "b", "c"}  # the file's token names


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, tiny_model(), tiny_pl_guide())
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    with pytest.raises(ValueError, match="not an ip-pyro checkpoint"):
        load_checkpoint(other)
    payload = torch.load(path, weights_only=False)
    payload["model"]["config"]["d_model"] = 16
    mismatched = tmp_path / "mismatched.pt"
    torch.save(payload, mismatched)
    with pytest.raises(ValueError, match="does not match its model config"):
        load_checkpoint(mismatched)
    with pytest.raises(ValueError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old and whole")

    def broken(stream):
        stream.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old and whole"
    assert os.listdir(tmp_path) == ["model.pt"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_an_atomic_write_has_the_permissions_of_a_plain_write(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "atomic.pt", lambda stream: stream.write(b"x"))
        (tmp_path / "plain.pt").write_bytes(b"x")
    finally:
        os.umask(previous)
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777
    assert mode("atomic.pt") == mode("plain.pt") == 0o666 & ~umask


def test_cli_diagnose_writes_the_report(tmp_path, capsys):
    path = tmp_path / "model.pt"
    save_checkpoint(path, tiny_model(), tiny_pl_guide())
    data = tmp_path / "test.jsonl"
    data.write_text("\n".join(json.dumps({"target": t}) for t in ([0, 1, 2, 1], [2, 2], [1])) + "\n")
    out = tmp_path / "report"
    status = main(["diagnose", str(path), "--data", str(data), "--out", str(out), "--draws", "20",
                   "--mcmc-samples", "20", "--mcmc-warmup", "5", "--chains", "2", "--domain", "path"])
    assert status == 0
    assert "PSIS" in capsys.readouterr().out
    assert {"summary.txt", "forest.png", "path_growth.png", "guide_draws.nc"} <= set(os.listdir(out))


@pytest.mark.parametrize("arguments,message", [
    (["diagnose", "MISSING"], "no checkpoint at"),
    (["diagnose", "CHECKPOINT", "--data", "BADDATA"], "has no 'target' field"),
    (["diagnose", "CHECKPOINT", "--data", "OUTOFRANGE"], "is out of range"),
])
def test_cli_errors_are_one_line_without_traceback(arguments, message, tmp_path, capsys):
    save_checkpoint(tmp_path / "model.pt", tiny_model(), tiny_pl_guide())
    (tmp_path / "bad.jsonl").write_text('{"prompt": [1]}\n')
    (tmp_path / "range.jsonl").write_text('{"target": [0, 7]}\n')
    names = {"MISSING": str(tmp_path / "missing.pt"), "CHECKPOINT": str(tmp_path / "model.pt"),
             "BADDATA": str(tmp_path / "bad.jsonl"), "OUTOFRANGE": str(tmp_path / "range.jsonl")}
    status = main([names.get(argument, argument) for argument in arguments])
    error = capsys.readouterr().err
    assert status == 2 and message in error and error.count("\n") == 1 and "Traceback" not in error
    with pytest.raises(ValueError):
        main(["--debug"] + [names.get(argument, argument) for argument in arguments])


def test_star_records_give_landmarks_for_the_path_view():
    from ip_pyro.tasks.planning import landmarks as _landmarks

    records = [{"target": [3, 7, 7, 9, 9, 4], "source": 3, "centre": 9, "goal": 4},
               {"target": [5, 1], "source": 5, "centre": 5, "goal": 1}]
    assert _landmarks(records) == [{"source": 0, "centre": 3, "goal": 5}, {"source": 0, "centre": 0, "goal": 1}]
    assert _landmarks([{"target": [1, 2]}]) is None


def test_maze_records_give_subgoal_landmarks_in_the_order_the_path_reaches_them():
    from ip_pyro.tasks.planning import landmarks as _landmarks

    records = [{"target": [30, 24, 11, 24, 8], "subgoals": [30, 11, 8]},
               {"target": [5, 6, 7, 6, 5, 9], "subgoals": [5, 7, 5, 9]},  # a subgoal revisiting the start
               {"target": [3], "subgoals": [3, 3]}]
    assert _landmarks(records) == [{"start": 0, "subgoal 1": 2, "goal": 4},
                                   {"start": 0, "subgoal 1": 2, "subgoal 2": 4, "goal": 5},
                                   {"start": 0, "goal": 0}]
