import json
import math
import random
import shutil
import time

import pytest
import torch

from ip_pyro import collate
from ip_pyro.cli import main
from ip_pyro.data.planning import (StarConfig, load_dataset, make_dataset, path_metrics, star_graph, task_config,
                                   write_dataset)
from ip_pyro.train import GUIDE_NAMES, TrainConfig, Trainer, model_and_guide

SMALL = {"train": 200, "valid": 20, "test": 50}


@pytest.mark.parametrize("task", ["star-easy", "star-easy-v0", "star-medium", "star-hard"])
def test_star_graphs_have_the_documented_structure(task):
    config = task_config(task)
    if task == "star-easy":  # ILM's star_small: 5 nodes per arm counting the source, 4 edges, 20 ids
        assert (config.degree, config.arm_max, config.num_nodes, config.max_target_length) == (3, 4, 20, 8)
    rng = random.Random(0)
    for _ in range(200):
        example = star_graph(rng, config)
        path, edges = example["path"], {frozenset(edge) for edge in example["edges"]}
        assert all(frozenset(path[k: k + 2]) in edges for k in range(len(path) - 1))
        assert example["source"] == path[0] and example["goal"] == path[-1] and example["centre"] in path
        assert example["prompt"][-2:] == [example["source"], example["goal"]]
        assert example["target"] == [n for k in range(len(path) - 1) for n in path[k: k + 2]]
        assert len(set(n for edge in example["edges"] for n in edge)) == len(edges) + 1  # a tree
        if config.outward_edges:  # every edge points away from the source, as in ILM's generator
            depth = {example["source"]: 0}
            for _ in edges:
                depth.update({v: depth[u] + 1 for u, v in example["edges"] if u in depth})
            assert all(depth[v] == depth[u] + 1 for u, v in example["edges"])
        assert max(example["prompt"]) < config.num_nodes and len(example["target"]) <= config.max_target_length
        degree = sum(example["centre"] in edge for edge in edges)
        if config.centre_is_source:
            assert example["source"] == example["centre"] and degree == 3 and len(path) == config.arm_max + 1
        else:
            assert len(path) - 1 - path.index(example["centre"]) >= config.plan  # the plan past the centre
            assert degree >= config.degree  # every arm passes through the centre


@pytest.mark.parametrize("task", ["maze-braided-easy", "maze-imperfect-medium", "maze-braided-hard"])
def test_mazes_solve_their_own_targets(task):
    from ip_pyro.data.mazes import build_maze
    from ip_pyro.data.planning import example_metrics

    config = task_config(task)
    splits = make_dataset(task, seed=1, sizes={"train": 100, "valid": 10, "test": 30})
    passages = build_maze(config, 1)
    side = config.side
    degrees = [sum(frozenset({c, n}) in passages for n in range(side * side)) for c in range(side * side)]
    assert min(degrees) >= (2 if config.kind == "braided" else 1)  # braided: no dead ends
    edges = len(passages)
    assert edges >= side * side - 1 + (1 if config.kind == "imperfect" else 0)  # connected, with cycles
    for example in splits["test"]:
        assert example["prompt"] == example["subgoals"] and len(example["target"]) <= config.max_path
        assert example_metrics(task, example, example["target"])["success"] == 1.0
        broken = example["target"][:1] + example["target"][2:]
        assert example_metrics(task, example, broken)["success"] == 0.0
    keys = {tuple(e["subgoals"]) for e in splits["train"]}
    assert not keys & {tuple(e["subgoals"]) for e in splits["test"]}


def test_datasets_are_deterministic_checksummed_and_disjoint(tmp_path):
    first = make_dataset("star-medium", seed=3, sizes=SMALL)
    assert first == make_dataset("star-medium", seed=3, sizes=SMALL)
    assert first != make_dataset("star-medium", seed=4, sizes=SMALL)
    assert make_dataset("star-medium", seed=3, sizes=dict(SMALL, train=0))["test"] == first["test"]
    key = lambda e: (tuple(sorted(tuple(sorted(edge)) for edge in e["edges"])), e["source"], e["goal"])  # noqa
    assert not {key(e) for e in first["train"]} & {key(e) for e in first["test"]}
    write_dataset(first, tmp_path, "star-medium", seed=3)
    loaded, manifest = load_dataset(tmp_path)
    assert manifest["files"]["test"]["count"] == 50
    assert [e["target"] for e in loaded["test"]] == [e["target"] for e in first["test"]]
    (tmp_path / "test.jsonl").write_text((tmp_path / "test.jsonl").read_text()[:-40])
    with pytest.raises(ValueError, match="does not match its checksum"):
        load_dataset(tmp_path)


def test_bad_task_and_sizes_are_refused():
    with pytest.raises(ValueError, match="unknown task 'star-huge'"):
        task_config("star-huge")
    with pytest.raises(ValueError, match="do not fit in 10 node ids"):
        StarConfig(degree=5, arm_min=6, arm_max=12, num_nodes=10, plan=5).validate()
    with pytest.raises(ValueError, match="cannot hold a plan"):
        StarConfig(degree=3, arm_min=2, arm_max=4, num_nodes=20, plan=2).validate()


def test_path_metrics():
    example = {"target": [1, 2, 2, 3], "edges": [[2, 1], [2, 3], [3, 4]]}
    assert path_metrics(example, [1, 2, 2, 3]) == {"exact_match": 1.0, "token_accuracy": 1.0, "edges_in_graph": 1.0}
    wrong = path_metrics(example, [1, 3, 3, 4])
    assert wrong["exact_match"] == 0.0 and wrong["token_accuracy"] == 0.25 and wrong["edges_in_graph"] == 0.5


NETWORK_ARMS = [("ip", "pl"), ("ip", "sequential"), ("ip", "pointer"), ("fo-arm", "pl")]  # every learned network


def tiny_config(tmp_path, **changes):
    task = task_config("star-easy")
    values = dict(task="star-easy", model="ip", guide="pl", steps=6, batch_size=8, d_model=16, layers=1, heads=2,
                  guide_d_model=8, guide_layers=1, guide_heads=2, warmup=2, ema_start=2, checkpoint_every=100,
                  eval_every=100, out=str(tmp_path / "run"), vocab_size=task.vocab_size,
                  max_length=task.max_target_length + 2)
    values.update(changes)
    return TrainConfig(**values)


@pytest.mark.parametrize("model_name,guide_name", NETWORK_ARMS)
def test_resume_reproduces_the_uninterrupted_run_exactly(model_name, guide_name, tmp_path):
    examples = make_dataset("star-easy", seed=0, sizes={"train": 64, "valid": 0, "test": 0})["train"]

    def trainer(out):
        torch.manual_seed(0)
        config = tiny_config(tmp_path, model=model_name, guide=guide_name, out=str(tmp_path / out))
        model, guide = model_and_guide(config)
        return Trainer(config, model, guide, examples)

    straight = trainer("straight")
    expected = [straight.train_step() for _ in range(6)]
    first = trainer("interrupted")
    first_half = [first.train_step() for _ in range(3)]
    first.save()
    torch.manual_seed(123)  # whatever happens in between must not matter
    second = trainer("interrupted")
    assert second.resume()
    assert second.step == 3
    assert first_half + [second.train_step() for _ in range(3)] == expected


@pytest.mark.parametrize("task", ["star-hard", "maze-braided-hard"])
@pytest.mark.parametrize("model_name,guide_name", NETWORK_ARMS)
def test_absolute_positions_cover_the_longest_prompt_and_target(task, model_name, guide_name, tmp_path):
    """Sized from the task, the position table must hold training rows and every decoding step of the longest
    prompt (sampling runs to max_length)."""
    from ip_pyro.evaluation import planning_metrics

    config = task_config(task)
    examples = make_dataset(task, seed=0, sizes={"train": 16, "valid": 4, "test": 0})
    longest = max(examples["train"] + examples["valid"], key=lambda example: len(example["prompt"]))
    settings = tiny_config(tmp_path, task=task, model=model_name, guide=guide_name, absolute_positions=True,
                           vocab_size=config.vocab_size, max_length=config.max_target_length + 2,
                           max_prompt_length=config.max_prompt_length)
    model, guide = model_and_guide(settings)
    assert model.config["max_positions"] == config.max_prompt_length + config.max_target_length + 4
    trainer = Trainer(settings, model, guide, [longest] * 8)
    assert math.isfinite(trainer.train_step())
    with torch.no_grad():
        planning_metrics(model, guide, [longest] * 8, task=task, greedy=False)


@pytest.mark.parametrize("guide_name", GUIDE_NAMES)
def test_every_guide_of_the_cli_survives_a_checkpoint(guide_name, tmp_path):
    from ip_pyro.checkpoint import load_checkpoint

    examples = make_dataset("star-easy", seed=0, sizes={"train": 16, "valid": 0, "test": 0})["train"]
    config = tiny_config(tmp_path, guide=guide_name)
    model, guide = model_and_guide(config)
    trainer = Trainer(config, model, guide, examples)
    trainer.train_step()
    trainer.save()
    loaded_model, loaded_guide, _ = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert type(loaded_guide) is type(guide) and type(loaded_model) is type(model)
    for name, tensor in guide.state_dict().items():
        assert torch.equal(loaded_guide.state_dict()[name], tensor)


def test_nan_loss_names_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    examples = make_dataset("star-easy", seed=0, sizes={"train": 32, "valid": 0, "test": 0})["train"]
    config = tiny_config(tmp_path, checkpoint_every=2, steps=5)
    model, guide = model_and_guide(config)
    trainer = Trainer(config, model, guide, examples)
    original = trainer.loss
    monkeypatch.setattr(trainer, "loss", lambda batch: original(batch) * (float("nan") if trainer.step >= 3 else 1))
    with pytest.raises(FloatingPointError, match="at step 4; lower the learning rate"):
        trainer.fit(progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 3 and all(torch.isfinite(v).all() for v in state["model"]["state_dict"].values())


def test_time_limit_stops_early_with_a_final_evaluation_and_checkpoint(tmp_path, monkeypatch):
    examples = make_dataset("star-easy", seed=0, sizes={"train": 32, "valid": 0, "test": 0})["train"]
    config = tiny_config(tmp_path, steps=50, time_limit=0.5)
    model, guide = model_and_guide(config)
    trainer = Trainer(config, model, guide, examples, evaluate=lambda ema, guide, trainer: {"valid_score": 1.0})
    clock = iter(range(0, 10_000, 10))  # every timed step takes 10 s: the 30 s budget is spent after 3 steps
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    history = trainer.fit(progress=False)
    assert trainer.step == 3
    assert [record["step"] for record in history if "valid_score" in record] == [3]
    assert history[-1]["stopped"] == "time limit" and history[-1]["time_limit_min"] == 0.5
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == 3
    with pytest.raises(ValueError, match="--time-limit=-1"):
        tiny_config(tmp_path, time_limit=-1).validate()


@pytest.mark.parametrize("decoder_flags", [[], ["--decoder", "causal", "--step-sampling", "all"]])
def test_cli_data_train_eval_sample(decoder_flags, tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "star-easy", "--out", str(data), "--train", "64", "--valid", "8", "--test", "8"]) == 0
    run = tmp_path / "run"
    common = ["train", "--task", "star-easy", "--steps", "4", "--batch-size", "8", "--d-model", "16", "--layers",
              "1", "--heads", "2", "--guide-d-model", "8", "--guide-layers", "1", "--eval-every", "2",
              "--data", str(data), "--out", str(run), "--no-progress"] + decoder_flags
    assert main(common) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("valid_exact_match" in record for record in records)
    assert main(common) == 2 and "pass --resume" in capsys.readouterr().err
    assert main(common[:4] + ["8"] + common[5:] + ["--resume"]) == 0
    assert main(common[:8] + ["32"] + common[9:] + ["--resume"]) == 2
    assert "different config (d_model)" in capsys.readouterr().err
    checkpoint = str(run / "checkpoint.pt")
    assert main(["eval", "--checkpoint", checkpoint, "--data", str(data), "--nll-samples", "4"]) == 0
    results = json.loads((run / "eval_test.json").read_text())
    assert {"exact_match", "token_accuracy", "termination_rate", "edges_in_graph", "nll"} <= set(results)
    assert main(["sample", "--checkpoint", checkpoint, "--data", str(data), "-n", "3"]) == 0
    assert "source" in capsys.readouterr().out
    # without --data, eval and sample read the folder the checkpoint was trained on (8 test examples here, not the
    # 5,000 of a regenerated split) and say so before they start
    assert main(["eval", "--checkpoint", checkpoint, "--nll-samples", "2", "--json", str(tmp_path / "e.json")]) == 0
    said = capsys.readouterr().out
    assert f"the test split of {data.resolve()} (the checkpoint's training data): greedy decoding of 8 examples" in said
    assert json.loads((tmp_path / "e.json").read_text())["num_examples"] == 8
    assert main(["sample", "--checkpoint", checkpoint, "-n", "2"]) == 0
    assert "decoding the first 2 prompts of the test split of" in capsys.readouterr().out
    shutil.move(str(data), str(tmp_path / "moved"))
    assert main(["eval", "--checkpoint", checkpoint]) == 2
    assert "which is gone; pass --data" in capsys.readouterr().err
    from ip_pyro.checkpoint import load_checkpoint
    assert load_checkpoint(checkpoint)[0].decoder == ("causal" if decoder_flags else "canvas")


def test_cli_help_names_every_option_its_default_and_the_registries(capsys):
    import argparse

    from ip_pyro.cli import build_parser
    from ip_pyro.config import GUIDE_NAMES, MODEL_NAMES

    parser = build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, verb in verbs.items():
        silent = [a.dest for a in verb._actions if a.option_strings and a.dest != "help" and not a.help]
        assert not silent, f"ip-pyro {name}: options without help: {silent}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 2000)" in text and "(default: star-easy)" in text
    assert all(name in text for name in GUIDE_NAMES + MODEL_NAMES) and "qm9, moses, smiles" in text
    assert main(["train", "--task", "star-huge", "--out", "X"]) == 2
    assert "qm9, moses, smiles" in capsys.readouterr().err  # the error names the SMILES tasks too


@pytest.mark.parametrize("arguments,message", [
    (["train", "--task", "star-huge", "--out", "X"], "unknown task 'star-huge'"),
    (["train", "--guide", "zigzag", "--out", "X"], "unknown guide 'zigzag'"),
    (["train", "--steps", "0", "--out", "X"], "--steps=0 must be a positive integer"),
    (["data", "maze-huge", "--out", "X"], "unknown task 'maze-huge'"),
    (["train", "--decoder", "causal", "--prompt-attention", "full", "--out", "X"],
     "--decoder causal encodes the prompt once"),
    (["train", "--decoder", "causal", "--gap-context", "0", "--out", "X"], "--gap-context=0 must be a positive"),
])
def test_cli_bad_names_are_one_line_errors(arguments, message, tmp_path, capsys):
    assert main([a.replace("X", str(tmp_path / "x")) for a in arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_evaluation_leaves_the_ema_weights_alone(tmp_path):
    """The EMA copy has its own Pyro name: evaluating it must not pull the live weights in from the param store."""
    examples = make_dataset("star-easy", seed=0, sizes={"train": 32, "valid": 0, "test": 0})["train"]
    config = tiny_config(tmp_path, ema_decay=0.5, ema_start=0)
    model, guide = model_and_guide(config)
    trainer = Trainer(config, model, guide, examples,
                      evaluate=lambda ema, guide, trainer: {"n": len(ema.sample(2, prompt=[examples[0]["prompt"]]))})
    for _ in range(3):
        trainer.train_step()
    before = {name: value.clone() for name, value in trainer.ema.state_dict().items()}
    assert any(not torch.equal(before[name], value) for name, value in trainer.model.state_dict().items())
    trainer.run_evaluation()
    after = trainer.ema.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_bf16_autocast_trains_with_finite_losses_and_float32_weights(tmp_path):
    examples = make_dataset("star-easy", seed=0, sizes={"train": 64, "valid": 0, "test": 0})["train"]
    config = tiny_config(tmp_path, precision="bf16", steps=3)
    model, guide = model_and_guide(config)
    history = Trainer(config, model, guide, examples).fit(progress=False)
    losses = [record["loss"] for record in history if "loss" in record]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert all(p.dtype == torch.float32 for p in list(model.parameters()) + list(guide.parameters()))


def test_compile_option_compiles_model_and_guide_networks_in_place(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    config = tiny_config(tmp_path, compile=True)
    model, guide = model_and_guide(config)
    keys = set(model.state_dict())
    Trainer(config, model, guide, [])
    assert compiled == ["InsertionDecoder", "OrderScorer"]
    assert set(model.state_dict()) == keys  # checkpoints keep their keys


def test_k_steps_per_order_trains(tmp_path):
    examples = make_dataset("star-easy", seed=0, sizes={"train": 64, "valid": 0, "test": 0})["train"]
    config = tiny_config(tmp_path, steps_per_order=3, steps=2)
    model, guide = model_and_guide(config)
    trainer = Trainer(config, model, guide, examples)
    assert trainer.elbo.num_steps == 3
    assert len([r for r in trainer.fit(progress=False) if "loss" in r]) == 2


def test_order_entropy_weight_rises_to_one_and_is_validated(tmp_path):
    config = tiny_config(tmp_path, order_entropy_weight=0.2, order_entropy_anneal=4)
    model, guide = model_and_guide(config)
    trainer = Trainer(config, model, guide, [])
    weights = []
    for step in range(6):
        trainer.step = step
        weights.append(trainer.entropy_weight())
    assert weights == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    with pytest.raises(ValueError, match="--order-entropy-weight=1.5 must lie in"):
        tiny_config(tmp_path, order_entropy_weight=1.5).validate()


@pytest.mark.parametrize("model_name,guide_name", NETWORK_ARMS)
def test_prompt_group_and_embed_std_reach_every_network_and_its_checkpoint(model_name, guide_name, tmp_path):
    from ip_pyro.checkpoint import load_checkpoint

    examples = make_dataset("star-easy", seed=0, sizes={"train": 16, "valid": 0, "test": 0})["train"]
    config = tiny_config(tmp_path, model=model_name, guide=guide_name, prompt_group=2, embed_std=1.0)
    model, guide = model_and_guide(config)
    networks = [model.network.stack] + ([guide.scorer.stack] if guide is not None else [])
    assert all(stack.prompt_group == 2 and stack.group_mix is not None for stack in networks)
    assert all(stack.embed.weight.std().item() > 0.5 for stack in networks)
    trainer = Trainer(config, model, guide, examples)
    assert math.isfinite(trainer.train_step())
    trainer.save()
    loaded_model, loaded_guide, _ = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert loaded_model.config["prompt_group"] == 2 and loaded_model.config["embed_std"] == 1.0
    if guide is not None:
        assert loaded_guide.config["prompt_group"] == 2


@pytest.mark.parametrize("rws_gradient", ["full", "steps"])
def test_rws_objective_switches_at_its_step_logs_the_order_entropy_and_resumes_exactly(rws_gradient, tmp_path,
                                                                                       capsys):
    examples = make_dataset("star-easy", seed=0, sizes={"train": 64, "valid": 0, "test": 0})["train"]

    def trainer(out):
        torch.manual_seed(0)
        config = tiny_config(tmp_path, objective="rws", objective_switch=2, particles=3, rws_gradient=rws_gradient,
                             eval_every=2, out=str(tmp_path / out))
        model, guide = model_and_guide(config)
        return Trainer(config, model, guide, examples, evaluate=lambda model, guide, trainer: {"checked": 1.0})

    straight = trainer("straight")
    assert (straight.elbo.num_particles, straight.rws.num_particles) == (2, 3)  # warm-up M = 2, then K = 3
    history = straight.fit(progress=False)
    steps = [record for record in history if "loss" in record]
    assert [record["objective"] for record in steps] == ["elbo", "elbo", "rws", "rws", "rws", "rws"]
    # the RWS step's cost is said once, before the first RWS step (and, below, changes no loss of the run)
    (cost,) = [record for record in history if "rws_over_elbo" in record]
    assert cost["step"] == 2 and cost["rws_step_s"] > 0 and cost["elbo_step_s"] > 0
    said = capsys.readouterr().err
    assert said.count("InsertionRWS (K=3): a step's forward and backward take") == 1 and "x an InsertionELBO" in said
    assert all(math.isfinite(record["loss"]) for record in steps)
    entropies = [record["order_entropy"] for record in history if "order_entropy" in record]
    assert len(entropies) == 3 and all(0.9 < value < 1.1 for value in entropies)  # a fresh guide: near uniform
    first = trainer("interrupted")
    first_half = [first.train_step() for _ in range(3)]
    first.save()
    second = trainer("interrupted")
    assert second.resume() and second.objective() is second.rws
    assert first_half + [second.train_step() for _ in range(3)] == [record["loss"] for record in steps]
    saved = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["config"]
    assert (saved["objective"], saved["objective_switch"], saved["rws_gradient"]) == ("rws", 2, rws_gradient)
    changed = trainer("other")
    changed.config.objective_switch = 1
    changed.save()
    with pytest.raises(ValueError, match="objective_switch"):
        trainer("other").resume()


@pytest.mark.parametrize("guide_name,decoder", [("pl", "canvas"), ("pointer", "causal"), ("sequential", "canvas")])
def test_guide_hold_keeps_the_guide_at_its_uniform_start_then_lets_it_learn(guide_name, decoder, tmp_path):
    from ip_pyro.diagnostics import guide_order_entropy

    examples = make_dataset("star-easy", seed=0, sizes={"train": 64, "valid": 0, "test": 0})["train"]
    torch.manual_seed(0)
    config = tiny_config(tmp_path, guide=guide_name, decoder=decoder, objective="rws", particles=3, guide_hold=2,
                         guide_lr=1e-2)
    model, guide = model_and_guide(config)
    trainer = Trainer(config, model, guide, examples)
    start_guide = [p.detach().clone() for p in guide.parameters()]
    start_model = [p.detach().clone() for p in model.parameters()]
    batch = trainer._collate(examples[:8])
    assert guide_order_entropy(guide, batch, 64) == pytest.approx(1.0, abs=1e-4)  # zero scores: the uniform order
    for _ in range(2):
        trainer.train_step()
    assert all(torch.equal(p, q) for p, q in zip(guide.parameters(), start_guide))  # held: not even weight decay
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), start_model))  # the model learns
    trainer.train_step()
    assert not all(torch.equal(p, q) for p, q in zip(guide.parameters(), start_guide))  # step 3: the guide learns


@pytest.mark.parametrize("changes,message", [
    (dict(guide="uniform", guide_hold=5), "--guide-hold holds a learned guide"),
    (dict(model="fo-arm", guide_hold=5), "--guide-hold holds a learned guide"),
    (dict(guide_hold=-1), "--guide-hold=-1 must be a step count"),
])
def test_guide_hold_refuses_what_it_cannot_hold(changes, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, **changes).validate()


def test_fixed_guides_log_their_exact_order_entropy(tmp_path):
    from ip_pyro.diagnostics import guide_order_entropy
    from ip_pyro.guides import LeftToRightGuide, UniformOrderGuide

    batch = collate([[0, 1, 2, 3], [1, 2], [3]])
    assert guide_order_entropy(LeftToRightGuide(), batch) == 0.0
    assert guide_order_entropy(UniformOrderGuide(), batch) == pytest.approx(1.0)


def test_star_easy_v0_draws_the_graphs_the_earlier_star_easy_drew():
    """star-easy-v0 keeps the old tier's random stream: the first graph of its test split, recomputed here from the
    old definition (arms of 5 beyond the centre, random edge directions, seeded "star-easy:0")."""
    old = StarConfig(degree=3, arm_min=5, arm_max=5, num_nodes=20, plan=5, centre_is_source=True)
    assert task_config("star-easy-v0") == old
    rng = random.Random("star-easy:0")
    first_valid = star_graph(rng, old)
    assert make_dataset("star-easy-v0", seed=0, sizes={"train": 0, "valid": 1, "test": 0})["valid"][0] == first_valid


def test_prefix_attention_reaches_the_model_its_checkpoint_and_the_cli_on_a_prompted_task(tmp_path):
    from ip_pyro.checkpoint import load_checkpoint

    assert main(["train", "--task", "star-easy", "--steps", "2", "--batch-size", "4", "--d-model", "16", "--layers",
                 "1", "--heads", "2", "--guide-d-model", "8", "--guide-layers", "1", "--eval-every", "2",
                 "--eval-size", "4", "--prompt-attention", "prefix", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 0
    model, _, _ = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert model.prompt_attention == "prefix"
    config = tiny_config(tmp_path, model="fo-arm", prompt_attention="prefix")  # accepted: FO-ARM is causal anyway
    assert model_and_guide(config)[1] is None


def test_tensorboard_logs_every_metric_and_the_order_figure(tmp_path):
    """--tensorboard: the event file read back holds every step's loss, the validations and the guide's order figure."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    examples = make_dataset("star-easy", seed=0, sizes={"train": 32, "valid": 0, "test": 0})["train"]
    config = tiny_config(tmp_path, steps=4, eval_every=2, tensorboard=True)
    model, guide = model_and_guide(config)
    trainer = Trainer(config, model, guide, examples, evaluate=lambda model, guide, trainer: {"valid_score": 0.5})
    trainer.fit(progress=False)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [event.step for event in events.Scalars("loss")] == [1, 2, 3, 4]
    assert [event.step for event in events.Scalars("valid_score")] == [2, 4]
    entropies = [event.value for event in events.Scalars("order_entropy")]
    assert len(entropies) == 2 and all(0.9 < value < 1.1 for value in entropies)
    assert [event.step for event in events.Images("order")] == [2, 4]
    assert events.Images("order")[0].encoded_image_string.startswith(b"\x89PNG")
