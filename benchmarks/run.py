"""The benchmark harness: training, sampling, scaling and FLOP/s, IP vs the left-to-right baseline, side by side.

Every ratio is measured in this one run on this machine with the same width, depth and batch (timings interleaved
and summarised by medians). Sections:

* training (``benchmarks/train_step.py``): seconds per step and tokens/s of the IP (PL guide, 2 particles, one
  uniform step) and of FO-ARM; ``InsertionELBO`` vs Pyro's ``TraceGraph_ELBO``; activation memory (bytes saved for
  backward, and the CUDA peak on a GPU);
* prompt cache: prefix attention with the shared prompt cache against full attention (same weights) and the IP
  against FO-ARM with its KV cache, star-easy- and star-hard-shaped: sampling throughput and the ``InsertionRWS(4)``
  step (``sampling.star-hard.ip_over_arm``, ``sampling.star-hard.prefix_speedup``,
  ``training.star-hard.prefix_speedup``);
* objectives: the ``InsertionRWS`` training step (K = 2, 4; full and sampled-step model gradient) beside the
  ELBO's on the same network and star-easy batch, with canvases scored per second (``training.rws_over_elbo``);
* scoring: ``log_joint`` over whole orders (InsertionRWS's weights, the IWAE likelihood) with the canvases sorted
  by size into passes against one padded pass (``training.scoring.*.by_size_speedup_no_grad``);
* sampling: sequences/s for 1,000 sequences of star-medium length (prompted) and of QM9 length (unconditional):
  the IP one insertion per pass, the IP with parallel decoding (4 slots per pass), FO-ARM with and without its KV
  cache. Untrained networks are biased never to stop early, so every model writes the same number of tokens;
* decoders (``benchmarks/decoders.py``): the canvas and the insertion-causal decoder against FO-ARM at QM9 and
  star-hard shapes: training steps per scored order (ELBO M = 2, RWS K = 4), sampling tokens/s, activation memory,
  and one order's cost at L = 16, 64, 256 (``decoders.qm9.step_over_fo_arm.causal_rws_k4``, ...);
* guides (``benchmarks/guide_cost.py``): the Plackett–Luce, pointer and sequential guides drawing K = 4 orders
  with ``log q`` and its backward pass, and the ELBO's M = 2 with every step's next-position distribution
  (``guides.qm9.over_pl.pointer/rws_k4``, ...);
* scaling: step time against sequence length (16 ... 256) and batch size;
* FLOP/s: FLOPs of one training step (``torch.utils.flop_counter``) over its time, as a fraction of this machine's
  measured matmul throughput.

    python -m benchmarks.run --quick                 # < 3 minutes on 2 CPU cores
    python -m benchmarks.run --json benchmarks/results.json
    python -m benchmarks.run --device cuda --json results-gpu.json
"""
from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks import decoders  # (the two IP decoders against FO-ARM)
from benchmarks import guide_cost  # (the learned guides against each other)
from benchmarks import train_step  # (the training-step benchmark, reused as the first section)

from ip_pyro.guides import PlackettLuceGuide  # noqa: E402
from ip_pyro import collate  # noqa: E402
from ip_pyro.infer import InsertionELBO, InsertionRWS  # noqa: E402
from ip_pyro.models import InsertionProcess, LeftToRightLM  # noqa: E402


def _median_seconds(function, device: str, repeats: int) -> float:
    return statistics.median(train_step.timed(function, device, repeats))


def _models(args, vocab_size: int, max_length: int):
    sizes = dict(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, max_length=max_length)
    torch.manual_seed(0)
    ip = InsertionProcess(vocab_size, **sizes).to(args.device)
    arm = LeftToRightLM(vocab_size, **sizes).to(args.device)
    guide = PlackettLuceGuide(vocab_size, d_model=args.guide_d_model, n_layers=args.guide_layers,
                              max_length=max_length).to(args.device)
    return ip, arm, guide


def _random_batch(vocab_size: int, batch_size: int, length: int, device: str):
    generator = torch.Generator().manual_seed(length * 7 + batch_size)
    tokens = torch.randint(0, vocab_size, (batch_size, length), generator=generator).tolist()
    return collate(tokens).to(device)


def _steps(ip, arm, guide, batch):
    elbo = InsertionELBO(num_particles=2)
    ip_optimizer = torch.optim.Adam(list(ip.parameters()) + list(guide.parameters()), lr=1e-4)
    arm_optimizer = torch.optim.Adam(arm.parameters(), lr=1e-4)

    def ip_loss():
        return elbo.differentiable_loss(ip, guide, batch) / batch.batch_size

    def arm_loss():
        return -arm.log_prob(batch).mean()

    def step(loss_fn, optimizer):
        def run():
            optimizer.zero_grad()
            loss_fn().backward()
            optimizer.step()
        return run
    return {"ip": (ip_loss, step(ip_loss, ip_optimizer)), "fo-arm": (arm_loss, step(arm_loss, arm_optimizer))}


def objective_section(args) -> dict:
    """Seconds per training step of each objective on one star-easy batch (same network, batch and guide), and the
    canvases each scores per step: the ELBO ``M`` per sequence; RWS ``K (L + 1)`` (``full``: all with a graph;
    ``steps``: all without, plus ``K`` with)."""
    from ip_pyro.data.planning import make_dataset, task_config

    task = task_config("star-easy")
    examples = make_dataset("star-easy", seed=0, sizes={"train": args.batch_size, "valid": 0, "test": 0})["train"]
    batch = collate([e["target"] for e in examples], [e["prompt"] for e in examples],
                    vocab_size=task.vocab_size).to(args.device)
    ip, _, guide = _models(args, task.vocab_size, task.max_target_length + 2)
    optimizer = torch.optim.Adam(list(ip.parameters()) + list(guide.parameters()), lr=1e-4)
    objectives = {"elbo": InsertionELBO(2), "rws_k2_full": InsertionRWS(2), "rws_k4_full": InsertionRWS(4),
                  "rws_k4_steps": InsertionRWS(4, model_gradient="steps")}
    scored = int((batch.lengths + 1).sum())
    canvases = {"elbo": 2 * batch.batch_size, "rws_k2_full": 2 * scored, "rws_k4_full": 4 * scored,
                "rws_k4_steps": 4 * scored + 4 * batch.batch_size}

    def step(objective):
        def run():
            optimizer.zero_grad()
            (objective.differentiable_loss(ip, guide, batch) / batch.batch_size).backward()
            optimizer.step()
        return run
    runs = {name: step(objective) for name, objective in objectives.items()}
    for run in runs.values():
        run()  # warm up
    seconds = {name: [] for name in runs}
    for _ in range(args.rounds):  # interleaved
        for name, run in runs.items():
            seconds[name].append(_median_seconds(run, args.device, max(1, args.repeats // 2)))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {"task_shape": "star-easy", "batch_size": batch.batch_size,
            "prompt_tokens_mean": float(batch.prompt_lengths.float().mean()),
            "target_tokens_mean": float(batch.lengths.float().mean()),
            "seconds_per_step": median, "canvases_per_step": canvases,
            "canvases_per_s": {name: canvases[name] / median[name] for name in median},
            "rws_over_elbo": median["rws_k4_full"] / median["elbo"],
            "rws_over_elbo_by_arm": {name: median[name] / median["elbo"] for name in median if name != "elbo"}}


def scoring_section(args) -> dict:
    """``log_joint`` of ``K = 4`` orders per sequence (the ``K (L + 1)`` canvases behind InsertionRWS's weights and
    the IWAE likelihood), canvases sorted by size into passes (the default) against one pass in row order, where
    every canvas is padded to the longest: without autograd (the weights) and forward + backward (the full model
    gradient). Star-medium batches (prompted, prefix attention) and SMILES-shaped ones (random tokens, lengths
    8..36, no prompt)."""
    from ip_pyro.data.planning import make_dataset, task_config
    from ip_pyro.guides import UniformOrderGuide

    result = {}
    for shape in ("star-medium", "smiles-shaped"):
        torch.manual_seed(0)
        if shape == "star-medium":
            config = task_config(shape)
            examples = make_dataset(shape, seed=0, sizes={"train": args.batch_size, "valid": 0, "test": 0})["train"]
            batch = collate([e["target"] for e in examples], [e["prompt"] for e in examples],
                            vocab_size=config.vocab_size).to(args.device)
            vocab_size, max_length, attention = config.vocab_size, config.max_target_length + 2, "prefix"
        else:
            lengths = torch.randint(8, 37, (args.batch_size,)).tolist()
            batch = collate([torch.randint(0, 30, (n,)).tolist() for n in lengths]).to(args.device)
            vocab_size, max_length, attention = 30, 40, "full"
        model = InsertionProcess(vocab_size, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                                 max_length=max_length, prompt_attention=attention).to(args.device)
        orders = UniformOrderGuide().order_distribution(batch).sample((4,)).reshape(4 * batch.batch_size, -1)

        def weights(by_size):
            with torch.no_grad():
                model.log_joint(batch, orders, by_canvas_size=by_size)

        def gradient(by_size):
            model.zero_grad()
            model.log_joint(batch, orders, by_canvas_size=by_size).sum().backward()
        runs = {f"{kind}_{layout}": functools.partial(function, flag)
                for kind, function in (("no_grad", weights), ("grad", gradient))
                for layout, flag in (("row_order", False), ("by_size", True))}
        seconds = {name: [] for name in runs}
        for _ in range(args.rounds):  # interleaved
            for name, run in runs.items():
                seconds[name].append(_median_seconds(run, args.device, max(1, args.repeats // 4)))
        median = {name: statistics.median(values) for name, values in seconds.items()}
        result[shape] = {"batch_size": batch.batch_size, "canvases": int(4 * (batch.lengths + 1).sum()),
                         "target_tokens_mean": float(batch.lengths.float().mean()),
                         "target_tokens_max": int(batch.lengths.max()), "seconds": median,
                         "by_size_speedup_no_grad": median["no_grad_row_order"] / median["no_grad_by_size"],
                         "by_size_speedup_grad": median["grad_row_order"] / median["grad_by_size"]}
    return result


def prompt_cache_section(args) -> dict:
    """Prefix attention with the shared prompt cache against full attention (same weights), and the IP against
    FO-ARM with its KV cache, on star-easy- and star-hard-shaped batches: sampling throughput (exact, one insertion
    per pass) and the training step of ``InsertionRWS(4)`` (both model-gradient modes)."""
    from ip_pyro.data.planning import make_dataset, task_config

    result = {}
    for task in ("star-easy", "star-hard"):
        config = task_config(task)
        count = args.cache_samples
        examples = make_dataset(task, seed=0, sizes={"train": 0, "valid": 0, "test": count})["test"]
        prompts = [e["prompt"] for e in examples]
        sizes = dict(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                     max_length=config.max_target_length + 2)
        torch.manual_seed(0)
        full = InsertionProcess(config.vocab_size, **sizes).to(args.device)
        prefix = InsertionProcess(config.vocab_size, prompt_attention="prefix", **sizes).to(args.device)
        prefix.load_state_dict(full.state_dict())
        arm = LeftToRightLM(config.vocab_size, **sizes).to(args.device)
        with torch.no_grad():  # write every path to the task's longest length in every model
            for model in (full, prefix):
                model.network.stop_head.bias.fill_(-30.0)
            arm.network.head.bias[arm.eos] = -30.0
        length = config.max_target_length
        runs = {"ip_full": lambda: full.sample(prompt=prompts, max_length=length),
                "ip_prefix": lambda: prefix.sample(prompt=prompts, max_length=length),
                "fo-arm_kv_cache": lambda: arm.sample(prompt=prompts, max_length=length)}
        seconds = {key: [] for key in runs}
        for _ in range(args.sampling_rounds):
            for key, run in runs.items():
                seconds[key].append(_median_seconds(run, args.device, 1))
        rates = {key: count / statistics.median(values) for key, values in seconds.items()}
        batch_examples = examples[: args.cache_batch]
        batch = collate([e["target"] for e in batch_examples], [e["prompt"] for e in batch_examples],
                        vocab_size=config.vocab_size).to(args.device)
        guide = PlackettLuceGuide(config.vocab_size, d_model=args.guide_d_model, n_layers=args.guide_layers,
                                  max_length=sizes["max_length"]).to(args.device)
        steps = {}
        for gradient in ("full", "steps"):
            objective = InsertionRWS(4, model_gradient=gradient)
            for name, model in (("full", full), ("prefix", prefix)):
                def run(model=model, objective=objective):
                    model.zero_grad()
                    torch.manual_seed(0)
                    (objective.differentiable_loss(model, guide, batch) / batch.batch_size).backward()
                run()
                steps[f"rws4_{gradient}_{name}"] = _median_seconds(run, args.device, args.cache_repeats)
        result[task] = {
            "prompt_tokens_mean": sum(map(len, prompts)) / count, "target_tokens": length,
            "sampling": {"sequences_per_s": rates, "ip_over_arm": rates["ip_prefix"] / rates["fo-arm_kv_cache"],
                         "ip_full_over_arm": rates["ip_full"] / rates["fo-arm_kv_cache"],
                         "prefix_speedup": rates["ip_prefix"] / rates["ip_full"]},
            "training": {"batch_size": batch.batch_size, "seconds_per_step": steps,
                         "prefix_speedup": steps["rws4_full_full"] / steps["rws4_full_prefix"],
                         "prefix_speedup_steps_gradient": steps["rws4_steps_full"] / steps["rws4_steps_prefix"]}}
    return result


def memory_section(args) -> dict:
    ip, arm, guide = _models(args, 32, 26)
    batch = _random_batch(32, args.batch_size, 24, args.device)
    result = {}
    for name, (loss_fn, step) in _steps(ip, arm, guide, batch).items():
        entry = {"saved_activation_mib": train_step.saved_activation_bytes(loss_fn) / 2 ** 20}
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            step()
            entry["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
        result[name] = entry
    result["ip_over_arm"] = result["ip"]["saved_activation_mib"] / result["fo-arm"]["saved_activation_mib"]
    return result


def sampling_section(args) -> dict:
    """Sequences/s for ``args.samples`` sequences of star-medium and QM9 length."""
    from ip_pyro.data.planning import make_dataset

    examples = make_dataset("star-medium", seed=0, sizes={"train": 0, "valid": 0, "test": args.samples})["test"]
    settings = {"star-medium": dict(vocab_size=20, length=10, prompts=[e["prompt"] for e in examples]),
                "qm9": dict(vocab_size=20, length=19, prompts=None)}
    result = {}
    for name, setting in settings.items():
        ip, arm, _ = _models(args, setting["vocab_size"], setting["length"])
        with torch.no_grad():  # never stop before the length limit: every model writes the same tokens
            ip.network.stop_head.bias.fill_(-30.0)
            arm.network.head.bias[arm.eos] = -30.0
        prompts, count = setting["prompts"], None if setting["prompts"] else args.samples
        runs = {"ip": lambda: ip.sample(count, prompt=prompts),
                "ip_parallel4": lambda: ip.sample(count, prompt=prompts, insertions_per_step=4),
                "fo-arm_kv_cache": lambda: arm.sample(count, prompt=prompts),
                "fo-arm_no_cache": lambda: arm.sample(count, prompt=prompts, use_cache=False)}
        seconds = {key: [] for key in runs}
        for _ in range(args.sampling_rounds):  # interleaved
            for key, run in runs.items():
                seconds[key].append(_median_seconds(run, args.device, 1))
        rates = {key: args.samples / statistics.median(values) for key, values in seconds.items()}
        result[name] = {"length": setting["length"], "sequences_per_s": rates,
                        "ip_over_arm": rates["ip"] / rates["fo-arm_kv_cache"],
                        "ip_parallel4_over_arm": rates["ip_parallel4"] / rates["fo-arm_kv_cache"],
                        "kv_cache_speedup": rates["fo-arm_kv_cache"] / rates["fo-arm_no_cache"]}
    return result


def scaling_section(args) -> dict:
    result = {"length": {}, "batch_size": {}}
    grid = [(length, args.scaling_batch) for length in args.lengths]
    grid += [(args.scaling_length, batch) for batch in args.batch_sizes]
    for length, batch_size in grid:
        ip, arm, guide = _models(args, 32, length)
        batch = _random_batch(32, batch_size, length, args.device)
        steps = _steps(ip, arm, guide, batch)
        for _, step in steps.values():
            step()  # warm up
        seconds = {name: _median_seconds(step, args.device, args.scaling_repeats) for name, (_, step) in steps.items()}
        entry = {**{f"{name}_s_per_step": value for name, value in seconds.items()},
                 "ip_over_arm": seconds["ip"] / seconds["fo-arm"]}
        if (length, batch_size) in grid[: len(args.lengths)]:
            result["length"][length] = entry
        if length == args.scaling_length and batch_size in args.batch_sizes:
            result["batch_size"][batch_size] = entry
    return result


def flops_section(args) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    size = 1024
    a = torch.randn(size, size, device=args.device)
    b = torch.randn(size, size, device=args.device)
    matmul_seconds = _median_seconds(lambda: a @ b, args.device, 10)
    peak = 2 * size ** 3 / matmul_seconds
    ip, arm, guide = _models(args, 32, 26)
    batch = _random_batch(32, args.batch_size, 24, args.device)
    result = {"matmul_flop_per_s": peak}
    for name, (_, step) in _steps(ip, arm, guide, batch).items():
        step()
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        seconds = _median_seconds(step, args.device, args.repeats)
        achieved = counter.get_total_flops() / seconds
        result[name] = {"flop_per_step": counter.get_total_flops(), "flop_per_s": achieved,
                        "fraction_of_matmul_peak": achieved / peak}
    return result


def main(args) -> dict:
    started = time.perf_counter()
    torch.manual_seed(0)
    step_args = train_step.parse_args(["--batch-size", str(args.batch_size), "--d-model", str(args.d_model),
                                       "--layers", str(args.layers), "--heads", str(args.heads),
                                       "--rounds", str(args.rounds), "--repeats", str(args.repeats),
                                       "--device", args.device])
    print("== training step")
    training = train_step.main(step_args)
    tokens = args.batch_size * (step_args.min_length + step_args.max_length) / 2
    training["tokens_per_s"] = {name: tokens / seconds for name, seconds in training["seconds_per_step"].items()}
    print("== objectives (star-easy batch)")
    objectives = objective_section(args)
    training["objectives"] = objectives
    training["rws_over_elbo"] = objectives["rws_over_elbo"]
    for name, value in objectives["seconds_per_step"].items():
        print(f"  {name}: {1000 * value:.0f} ms/step, {objectives['canvases_per_step'][name]} canvases/step, "
              f"{objectives['canvases_per_s'][name]:.0f} canvases/s")
    print(f"  rws_over_elbo (K = 4, full gradient) {objectives['rws_over_elbo']:.1f}x")
    print("== scoring whole orders (log_joint, K = 4): canvases sorted by size vs one padded pass")
    scoring = scoring_section(args)
    training["scoring"] = scoring
    for shape, entry in scoring.items():
        print(f"  {shape} ({entry['canvases']} canvases, mean {entry['target_tokens_mean']:.1f} / max "
              f"{entry['target_tokens_max']} tokens): by size {entry['by_size_speedup_no_grad']:.2f}x faster "
              f"without autograd, {entry['by_size_speedup_grad']:.2f}x with")
    print("== prompt cache (prefix attention) vs full attention")
    cache = prompt_cache_section(args)
    for task, entry in cache.items():
        rates = ", ".join(f"{k} {v:.0f}/s" for k, v in entry["sampling"]["sequences_per_s"].items())
        print(f"  {task}: sampling {rates}; prefix speedup {entry['sampling']['prefix_speedup']:.2f}x, IP(prefix) / "
              f"FO-ARM(KV) {entry['sampling']['ip_over_arm']:.2f}x; RWS K=4 step prefix speedup "
              f"{entry['training']['prefix_speedup']:.2f}x (full gradient), "
              f"{entry['training']['prefix_speedup_steps_gradient']:.2f}x (sampled steps)")
    print("== activation memory")
    memory = memory_section(args)
    print(json.dumps(memory, indent=1))
    print("== sampling")
    sampling = sampling_section(args)
    for name, entry in sampling.items():
        rates = ", ".join(f"{key} {value:.0f}/s" for key, value in entry["sequences_per_s"].items())
        print(f"  {name} (length {entry['length']}): {rates}; IP / FO-ARM(KV) {entry['ip_over_arm']:.2f}x")
    print("== decoders: canvas vs insertion-causal vs FO-ARM")
    decoder_result = decoders.run(args)
    decoders.report(decoder_result)
    print("== guides: Plackett-Luce vs pointer vs sequential")
    guide_result = guide_cost.run(args)
    guide_cost.report(guide_result)
    print("== scaling")
    scaling = scaling_section(args)
    for axis, entries in scaling.items():
        for key, entry in entries.items():
            print(f"  {axis} {key}: IP {1000 * entry['ip_s_per_step']:.0f} ms, FO-ARM "
                  f"{1000 * entry['fo-arm_s_per_step']:.0f} ms, ratio {entry['ip_over_arm']:.2f}x")
    print("== FLOP/s")
    flops = flops_section(args)
    for name in ("ip", "fo-arm"):
        print(f"  {name}: {flops[name]['flop_per_s'] / 1e9:.1f} GFLOP/s = "
              f"{100 * flops[name]['fraction_of_matmul_peak']:.0f}% of the {flops['matmul_flop_per_s'] / 1e9:.0f} "
              "GFLOP/s matmul peak")
    report = {
        "date": time.strftime("%Y-%m-%d"), "device": args.device, "threads": torch.get_num_threads(),
        "quick": args.quick, "batch_size": args.batch_size, "d_model": args.d_model, "layers": args.layers,
        "train_step_ratio_ip_over_arm": training["train_step_ratio_ip_over_arm"],
        "sampling_ratio_ip_over_arm": statistics.mean(entry["ip_over_arm"] for entry in sampling.values()),
        "elbo_speedup_over_tracegraph": training["elbo_speedup_over_tracegraph"],
        "training": {**training, **{task: entry["training"] for task, entry in cache.items()}},
        "memory": memory, "sampling": {**sampling, **{task: entry["sampling"] for task, entry in cache.items()}},
        "scaling": scaling, "flops": flops, "decoders": decoder_result, "guides": guide_result,
        "seconds": time.perf_counter() - started,
    }
    print(f"train_step_ratio_ip_over_arm {report['train_step_ratio_ip_over_arm']:.2f} (target <= 1.5), "
          f"sampling_ratio_ip_over_arm {report['sampling_ratio_ip_over_arm']:.2f} (target >= 0.5), "
          f"elbo_speedup_over_tracegraph {report['elbo_speedup_over_tracegraph']:.1f} (target >= 10); "
          f"{report['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a smaller grid (< 3 min on 2 cores)")
    decoders.add_size_arguments(parser)
    args = guide_cost.configure(decoders.configure(parser.parse_args(argv)))
    if args.quick:
        args.cache_samples, args.cache_batch, args.cache_repeats = 200, 8, 1
        args.rounds, args.repeats, args.samples, args.sampling_rounds = 2, 4, 1000, 1
        args.lengths, args.batch_sizes, args.scaling_repeats = [16, 64, 256], [8, 64], 2
    else:
        args.cache_samples, args.cache_batch, args.cache_repeats = 1000, 16, 3
        args.rounds, args.repeats, args.samples, args.sampling_rounds = 3, 8, 1000, 3
        args.lengths, args.batch_sizes, args.scaling_repeats = [16, 32, 64, 128, 256], [8, 32, 128], 4
    args.scaling_batch, args.scaling_length = 8, 32
    return args


if __name__ == "__main__":
    main(parse_args())
