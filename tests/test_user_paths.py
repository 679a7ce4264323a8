"""A research user's second hour: misuse refused in one line, messages that name the right fix, sampling and
evaluation they control (prompts, temperature, top-k / nucleus, best-of-n, the exact NLL), the vocabulary object,
the trainer from Python, and diagnostics that explain themselves."""
import json
import math
import re
import warnings

import numpy as np
import pytest
import torch

import ip_pyro
from ip_pyro import Vocabulary, collate
from ip_pyro.cli import main
from ip_pyro.data.sequences import drop_longer_than, load_sequence_task, read_sequences
from ip_pyro.guides import PlackettLuceGuide
from ip_pyro.infer import exact_log_likelihood, importance_log_likelihood
from ip_pyro.models import InsertionProcess, LeftToRightLM
from ip_pyro.models.sampler import truncate_logits

from conftest import DECODERS, roughen
from test_sequences_task import SMALL, brackets

TINY = dict(d_model=16, n_layers=1, n_heads=2)


def one_line(error: str) -> bool:
    return error.strip().count("\n") == 0


# ---------------------------------------------------------------------------------------- silent misuse
@pytest.mark.parametrize("build", [lambda c: InsertionProcess(5, max_length=6, conditional=c, **TINY),
                                   lambda c: InsertionProcess(5, max_length=6, conditional=c, decoder="causal", **TINY),
                                   lambda c: LeftToRightLM(5, max_length=6, conditional=c, **TINY)])
def test_a_conditional_model_needs_a_prompt_and_an_unconditional_one_refuses_it(build):
    with pytest.raises(ValueError, match=r"trained on prompts \(conditional=True\): pass prompt="):
        build(True).sample(3)
    with pytest.raises(ValueError, match=r"trained without prompts \(conditional=False\): drop prompt="):
        build(False).sample(2, prompt=[[1, 2]])
    assert len(build(True).sample(2, prompt=[[1, 2]])) == 2 and len(build(False).sample(2)) == 2
    assert len(build(None).sample(2, prompt=[[1]])) == 2 and len(build(None).sample(2)) == 2  # not said: no check


def test_the_flag_travels_with_a_checkpoint(tmp_path):
    model = InsertionProcess(5, max_length=6, conditional=True, **TINY)
    ip_pyro.save(tmp_path / "m.pt", model)
    again, _, _ = ip_pyro.load(tmp_path / "m.pt")
    assert again.conditional is True
    with pytest.raises(ValueError, match="must be True, False or None"):
        InsertionProcess(5, max_length=6, conditional="yes", **TINY)


def test_blank_lines_are_empty_sequences_with_a_warning(tmp_path):
    text = tmp_path / "d.txt"
    text.write_text("a b\n\nb a\n\n")
    with pytest.warns(UserWarning, match="2 blank lines read as empty sequences"):
        assert read_sequences(text) == [([], ["a", "b"]), ([], []), ([], ["b", "a"]), ([], [])]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"target": ["a"]}\n\n{"target": []}\n')
    with pytest.warns(UserWarning, match="1 blank line skipped"):
        assert read_sequences(jsonl) == [([], ["a"]), ([], [])]
    only_blank = tmp_path / "blank.txt"
    only_blank.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no sequences"):
        read_sequences(only_blank)


def test_held_out_sequences_longer_than_the_model_are_counted_not_fatal(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("\n".join(["a b"] * 40 + ["a b a b a b a b"] * 4) + "\n")
    task = load_sequence_task(path, seed=0, valid_size=4, test_size=8)
    longest_train = max(len(r["target"]) for r in task.splits["train"])
    long_held_out = sum(len(r["target"]) > 3 for name in ("valid", "test") for r in task.splits[name])
    with pytest.warns(UserWarning, match="longer than the model's max_length 3"):
        drop_longer_than(task, 3)
    assert all(len(r["target"]) <= 3 for name in ("valid", "test") for r in task.splits[name])
    assert sum(task.skipped.values()) == long_held_out and longest_train == 8


# ---------------------------------------------------------------------------------------- messages
def test_a_sequence_file_given_to_a_planning_task_names_task_sequences(tmp_path, capsys):
    data = tmp_path / "dyck.txt"
    data.write_text("( )\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r")] + SMALL) == 2
    error = capsys.readouterr().err
    assert "is a file, but --task star-easy reads a folder" in error and "--task sequences" in error
    assert one_line(error)


def test_a_missing_data_file_is_named_as_given(tmp_path, capsys):
    assert main(["train", "--task", "sequences", "--data", str(tmp_path / "nope.txt"), "--out",
                 str(tmp_path / "r")] + SMALL) == 2
    error = capsys.readouterr().err
    assert "no sequence file at" in error and "given as --data" in error and "pass --data" not in error


def sequence_run(tmp_path, capsys, prompted=False, extra=()):
    data = tmp_path / "brackets.txt"
    lines = [(f"len{len(t)}\t" if prompted else "") + " ".join(t) for t in brackets(60)]
    data.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["train", "--task", "sequences", "--data", str(data), "--out", str(run)] + SMALL + list(extra)) == 0
    return run, capsys.readouterr().out


def test_train_says_why_max_length_exceeds_the_longest_sequence(tmp_path, capsys):
    _, said = sequence_run(tmp_path, capsys)
    assert re.search(r"max length (\d+) \(the longest training sequence, (\d+), \+ 2 of headroom", said)


def test_eval_with_a_file_of_another_vocabulary_says_so(tmp_path, capsys):
    run, _ = sequence_run(tmp_path, capsys)
    other = tmp_path / "other.txt"
    other.write_text("\n".join(["x y z"] * 40) + "\n")
    assert main(["eval", "--checkpoint", str(run / "checkpoint.pt"), "--data", str(other)]) == 2
    error = capsys.readouterr().err
    assert "outside the checkpoint's vocabulary ('x' is not among its" in error and one_line(error)


def test_help_texts_speak_of_every_task(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "your own sequences" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "planning tasks and your own sequences" in text and "--exact" in text


# ---------------------------------------------------------------------------------------- evaluation
def test_eval_names_its_nll_and_exact_gives_the_exact_value(tmp_path, capsys):
    run, _ = sequence_run(tmp_path, capsys)
    checkpoint = str(run / "checkpoint.pt")
    assert main(["eval", "--checkpoint", checkpoint, "--nll-samples", "3"]) == 0
    assert "an IWAE bound from 3 orders each" in capsys.readouterr().out
    bound = json.loads((run / "eval_test.json").read_text())
    assert bound["nll_kind"] == "iwae-3"
    if max(len(t) for t in brackets(60)) <= 8:
        assert main(["eval", "--checkpoint", checkpoint, "--exact"]) == 0
        assert "exact NLL" in capsys.readouterr().out
        exact = json.loads((run / "eval_test.json").read_text())
        # one IWAE estimate may fall on either side of the exact value; the bound holds in expectation
        assert exact["nll_kind"] == "exact" and abs(exact["nll"] - bound["nll"]) < 1.0
    else:
        assert main(["eval", "--checkpoint", checkpoint, "--exact"]) == 2
        assert "refuses length" in capsys.readouterr().err


def test_sequence_nll_exact_matches_exact_log_likelihood_and_refuses_long_strings():
    from ip_pyro.evaluation import sequence_nll

    torch.manual_seed(0)
    model = roughen(InsertionProcess(3, max_length=12, **TINY))
    guide = PlackettLuceGuide(3, max_length=12, d_model=8, n_layers=1, n_heads=2)
    examples = [{"target": [0, 1, 2]}, {"target": [2, 2]}]
    result = sequence_nll(model, guide, examples, exact=True)
    expected = -exact_log_likelihood(model, collate([e["target"] for e in examples])).mean()
    assert result["nll_kind"] == "exact" and math.isclose(result["nll"], float(expected), rel_tol=1e-5)
    with pytest.raises(ValueError, match="refuses length 9 > 8"):
        sequence_nll(model, guide, [{"target": [0] * 9}], exact=True)


def test_likelihoods_show_progress_when_asked_and_stay_quiet_when_not(capsys):
    torch.manual_seed(0)
    model = InsertionProcess(3, max_length=6, **TINY)
    guide = PlackettLuceGuide(3, max_length=6, d_model=8, n_layers=1, n_heads=2)
    batch = collate([[0, 1, 2], [1]])
    importance_log_likelihood(model, guide, batch, 8, chunk_size=4, progress=True)
    assert "IWAE orders" in capsys.readouterr().err
    importance_log_likelihood(model, guide, batch, 8, progress=False)
    exact_log_likelihood(model, batch, progress=False)
    assert capsys.readouterr().err == ""
    exact_log_likelihood(model, batch, progress=True)
    assert "exact log-likelihood" in capsys.readouterr().err


def test_the_cli_s_evaluations_draw_no_bars_into_a_file(tmp_path):
    """``eval`` writes its progress bars on a terminal only: redirected to a log, its output holds none."""
    import subprocess
    import sys

    data = tmp_path / "seqs.txt"
    data.write_text("\n".join(" ".join("ab"[(i + j) % 2] for j in range(1 + i % 4)) for i in range(60)) + "\n")
    run = [sys.executable, "-m", "ip_pyro.cli"]
    subprocess.run(run + ["train", "--task", "sequences", "--data", str(data), "--steps", "2", "--d-model", "16",
                          "--layers", "1", "--heads", "2", "--no-progress", "--out", str(tmp_path / "run")],
                   check=True, capture_output=True)
    with open(tmp_path / "eval.log", "w") as log:
        subprocess.run(run + ["eval", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--nll-samples", "2"],
                       check=True, stdout=log, stderr=subprocess.STDOUT)
    text = (tmp_path / "eval.log").read_text()
    assert "NLL" in text and "\r" not in text and "it/s]" not in text and "seq/s]" not in text


# ---------------------------------------------------------------------------------------- sampling
def test_truncation_keeps_the_top_k_and_the_nucleus():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    assert torch.isinf(truncate_logits(logits, 2, None)).tolist() == [[False, True, False, True]]
    probs = logits.softmax(-1)[0]  # 0.64, 0.09, 0.24, 0.03: the 0.8 nucleus is {0, 2}
    assert probs[0] < 0.8 < probs[0] + probs[2]
    assert torch.isinf(truncate_logits(logits, None, 0.8)).tolist() == [[False, True, False, True]]
    assert torch.isinf(truncate_logits(logits, None, 0.5)).tolist() == [[False, True, True, True]]
    assert not torch.isinf(truncate_logits(logits, None, 1.0)).any()


@pytest.mark.parametrize("decoder", DECODERS)
def test_top_k_one_makes_every_insertion_deterministic(decoder):
    """With ``top_k=1`` each insertion is the most probable slot and then its most probable token, so only the
    stop decisions stay random: all draws of one length are the same sequence (without it they differ)."""
    torch.manual_seed(0)
    model = roughen(InsertionProcess(4, max_length=5, decoder=decoder, **TINY))

    def by_length(sequences):
        groups = {}
        for sequence in sequences:
            groups.setdefault(len(sequence), set()).add(tuple(sequence))
        return groups
    truncated = by_length(model.sample(60, top_k=1))
    assert all(len(group) == 1 for group in truncated.values()) and len(truncated) > 1
    assert any(len(group) > 1 for group in by_length(model.sample(60)).values())
    with pytest.raises(ValueError, match="top_k=0 must be a positive integer"):
        model.sample(2, top_k=0)
    with pytest.raises(ValueError, match="top_p=1.5 must lie in"):
        model.sample(2, top_p=1.5)


@pytest.mark.parametrize("decoder", DECODERS)
def test_trajectory_log_probs_bound_the_likelihood_and_equal_it_for_one_order(decoder):
    torch.manual_seed(1)
    model = roughen(InsertionProcess(3, max_length=4, decoder=decoder, **TINY))
    sequences, log_probs = model.sample(40, return_log_probs=True)
    exact = exact_log_likelihood(model, collate(sequences)).tolist()
    for sequence, log_prob, marginal in zip(sequences, log_probs, exact):
        assert log_prob <= marginal + 1e-5
        if len(sequence) <= 1:  # one order only: the trajectory is the sequence
            assert math.isclose(log_prob, marginal, abs_tol=1e-5)


def test_the_left_to_right_model_scores_its_draws_exactly():
    torch.manual_seed(2)
    model = roughen(LeftToRightLM(3, max_length=5, **TINY))
    sequences, log_probs = model.sample(20, return_log_probs=True, top_p=0.9)
    assert np.allclose(log_probs, model.log_prob(collate(sequences)).tolist(), atol=1e-5)


def planning_run(tmp_path, capsys):
    run = tmp_path / "star"
    assert main(["train", "--task", "star-easy", "--out", str(run)] + SMALL) == 0
    capsys.readouterr()
    return str(run / "checkpoint.pt")


def test_sample_decodes_given_prompts_with_truncation_and_best_of_n(tmp_path, capsys):
    checkpoint = planning_run(tmp_path, capsys)
    prompt = "1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9 10 1 10"
    assert main(["sample", "--checkpoint", checkpoint, "--prompt", prompt, "--top-k", "3", "--temperature",
                 "0.8"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(prompt + "  =>  ")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(prompt + "\n" + prompt + "\n")
    assert main(["sample", "--checkpoint", checkpoint, "--prompts", str(prompts), "--best-of", "4",
                 "--top-p", "0.9"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["sample", "--checkpoint", checkpoint, "--prompt", "a b"]) == 2
    assert "integer ids" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", checkpoint, "--best-of", "2", "--greedy", "--prompt", prompt]) == 2
    assert "drop --greedy" in capsys.readouterr().err


def test_an_unprompted_model_refuses_a_prompt_in_one_line(tmp_path, capsys):
    run, _ = sequence_run(tmp_path, capsys)
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "--prompt", "( )"]) == 2
    error = capsys.readouterr().err
    assert "trained without prompts" in error and one_line(error)
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "-n", "2", "--top-p", "0.8"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_a_prompted_run_decodes_a_prompt_written_in_its_tokens(tmp_path, capsys):
    run, _ = sequence_run(tmp_path, capsys, prompted=True)
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "--prompt", "len4", "--best-of", "3"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("len4  =>  ")
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "--prompt", "len99"]) == 2
    assert "token 'len99' is not in the vocabulary" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- the vocabulary
def test_the_vocabulary_encodes_decodes_and_refuses_in_one_line():
    vocabulary = Vocabulary.from_sequences(["( [ ] )", "( )"], prompts=[["len4"]])
    assert vocabulary.tokens == ["len4", "(", "[", "]", ")"] and "(" in vocabulary and len(vocabulary) == 5
    assert vocabulary.decode(vocabulary.encode("( [ ] )")) == ["(", "[", "]", ")"]
    assert vocabulary.collate(["( )", ""]).lengths.tolist() == [2, 0]
    with pytest.raises(ValueError, match="token '<' is not in the vocabulary"):
        vocabulary.encode("( <")
    with pytest.raises(ValueError, match="id 7 is outside"):
        vocabulary.decode([7])
    with pytest.raises(ValueError, match="'a' appears more than once"):
        Vocabulary(["a", "a"])


def test_the_vocabulary_round_trips_through_save_and_is_the_one_the_cli_builds(tmp_path, capsys):
    vocabulary = Vocabulary.from_sequences(["a b", "b c"])
    model = InsertionProcess(len(vocabulary), max_length=4, **TINY)
    ip_pyro.save(tmp_path / "m.pt", model, vocabulary=vocabulary)
    _, _, extra = ip_pyro.load(tmp_path / "m.pt")
    assert Vocabulary.from_checkpoint(extra) == vocabulary == Vocabulary.from_checkpoint(tmp_path / "m.pt")
    assert extra["token_names"] == ["a", "b", "c"]
    run, _ = sequence_run(tmp_path, capsys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        task = load_sequence_task(tmp_path / "brackets.txt")
    assert Vocabulary.from_checkpoint(run / "checkpoint.pt") == task.vocabulary
    with pytest.raises(ValueError, match="holds no token vocabulary"):
        Vocabulary.from_checkpoint({})


# ---------------------------------------------------------------------------------------- the trainer
def test_the_trainer_from_python_sizes_itself_validates_and_resumes(tmp_path):
    vocabulary = Vocabulary.from_sequences(["( )", "( ( ) )", ""])
    examples = [{"target": vocabulary.encode(line)} for line in ["( )", "( ( ) )", ""] * 8]

    def trainer():
        config = ip_pyro.TrainConfig(task="mine", steps=4, batch_size=8, d_model=16, layers=1, heads=2,
                                     guide_d_model=8, guide_layers=1, guide_heads=2, eval_every=2, out=str(tmp_path))
        return ip_pyro.Trainer.from_config(config, examples, evaluate=lambda model, guide, t: {"valid_x": 1.0})

    first, seen = trainer(), []
    assert (first.config.vocab_size, first.config.max_length, first.model.conditional) == (2, 6, False)
    first.fit(progress=False, on_validation=lambda step, metrics: seen.append((step, sorted(metrics))))
    assert seen == [(2, ["order_entropy", "valid_x"]), (4, ["order_entropy", "valid_x"])]
    again = trainer()
    assert again.resume() and again.step == 4
    with pytest.raises(ValueError, match="no training examples"):
        ip_pyro.Trainer.from_config(ip_pyro.TrainConfig(), [])


# ---------------------------------------------------------------------------------------- diagnostics
def test_psis_reads_order_draws_and_inference_data_and_explains_itself():
    from ip_pyro import diagnostics

    torch.manual_seed(0)
    model = InsertionProcess(3, max_length=6, **TINY)
    guide = PlackettLuceGuide(3, max_length=6, d_model=8, n_layers=1, n_heads=2)
    batch = collate([[0, 1, 2, 1], [2, 1]])
    draws = diagnostics.order_draws(model, guide, batch, 2, 20)
    from_array = diagnostics.psis_diagnostics(draws["log_weight"], draws["insertion_step"])
    from_draws = diagnostics.psis_diagnostics(draws)
    from_idata = diagnostics.psis_diagnostics(diagnostics.to_inference_data(draws, batch))
    assert np.array_equal(from_array["khat"], from_draws["khat"])
    assert np.allclose(from_array["ess"], from_idata["ess"])
    assert from_array["summary"].startswith("PSIS: ") and "k-hat" in from_array["summary"]
    with pytest.raises(ValueError, match=r"shape \(chain, draw, sequence\)"):
        diagnostics.psis_diagnostics(np.zeros(5))
    with pytest.raises(ValueError, match="without 'log_weight'"):
        diagnostics.psis_diagnostics({"weights": 1})


def test_psis_says_why_a_khat_is_infinite():
    from ip_pyro import diagnostics

    weights = np.tile(np.array([0.0, -3.0]), 20).reshape(1, 40, 1)  # two distinct weights: no tail to fit
    result = diagnostics.psis_diagnostics(weights)
    assert np.isposinf(result["khat"][0])
    assert "only 2 distinct weights" in result["summary"]


def test_diagnose_of_a_saved_file_without_data_says_what_it_diagnoses(tmp_path, capsys):
    torch.manual_seed(0)
    model = roughen(InsertionProcess(3, max_length=5, **TINY))
    guide = PlackettLuceGuide(3, max_length=5, d_model=8, n_layers=1, n_heads=2)
    ip_pyro.save(tmp_path / "m.pt", model, guide)
    assert main(["diagnose", str(tmp_path / "m.pt"), "--out", str(tmp_path / "d"), "--num-sequences", "6",
                 "--draws", "5", "--chains", "2", "--mcmc-samples", "20", "--mcmc-warmup", "5"]) == 0
    out = capsys.readouterr().out
    assert "no --data given: diagnosing" in out and "sampled from the model (seed 0" in out


def test_the_mcmc_figure_shows_each_chains_step_distribution(tmp_path, monkeypatch):
    """The integer insertion steps tie everywhere, so the figure draws per-chain bars of each step value."""
    import arviz as az
    import matplotlib.pyplot as plt

    from ip_pyro import diagnostics

    rng = np.random.default_rng(0)
    steps = np.stack([rng.permutation(4) for _ in range(2 * 30)]).reshape(2, 30, 4)
    idata = az.from_dict(posterior={"insertion_step": steps}, coords={"position": np.arange(4)},
                         dims={"insertion_step": ["position"]})
    monkeypatch.setattr(az, "plot_rank", lambda *a, **k: pytest.fail("a rank plot of tied integer steps"))
    before = set(plt.get_fignums())
    path = diagnostics.plot_mcmc_rank(idata, tmp_path / "rank.png")
    assert (tmp_path / "rank.png").is_file() and path.endswith("rank.png")
    assert set(plt.get_fignums()) == before  # the figure is closed


def test_diagnose_of_a_prompted_model_without_data_asks_for_the_prompts(tmp_path, capsys):
    checkpoint = planning_run(tmp_path, capsys)
    assert main(["diagnose", checkpoint, "--out", str(tmp_path / "d")]) == 2
    assert "pass --data FILE" in capsys.readouterr().err

