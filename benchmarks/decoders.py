"""The IP's two decoders side by side with FO-ARM: training steps per scored order, sampling, activation memory
and how each cost grows with the sequence length. Part of ``benchmarks/run.py`` (key ``decoders`` of its JSON);
runnable alone:

    python -m benchmarks.decoders --quick            # about 3 minutes on 2 CPU cores
    python -m benchmarks.decoders --json decoders.json

Shapes: QM9 (V = 20, no prompt, random token strings of 10..28 tokens, mean 19, as QM9's SMILES) and star-hard
(real star-hard graphs: prompt of about 90 tokens, paths of 22). Same width, depth and batch for every arm; the IP
arms include their Plackett-Luce guide (width 64, 3 layers). Arms:

* ``fo_arm``: FO-ARM, teacher forced (``-log p(x)``), one pass;
* ``canvas_elbo_m2``: the canvas decoder, ``InsertionELBO(2)``, one uniform step per order (today's default);
* ``canvas_rws_k4``: the canvas decoder, ``InsertionRWS(4)`` (``K (L + 1)`` canvases);
* ``causal_elbo_m2_all``: the causal decoder, ``InsertionELBO(2, step_sampling="all")``: every step of both
  orders in one pass each, closed-form next index at every step;
* ``causal_elbo_m2``: the causal decoder with one uniform step (for reference);
* ``causal_rws_k4``: the causal decoder, ``InsertionRWS(4)``: one pass per order.

Targets: ``causal_rws_k4`` <= 6x and ``causal_elbo_m2_all`` <= 3x the FO-ARM step
(1.5x per scored order); causal sampling >= 0.8x FO-ARM's tokens/s with its KV cache. Beside the sampling ratio
the section prints its bound from arithmetic: FO-ARM's FLOPs a draw over the causal decoder's (``torch.profiler``
counts), the ratio at equal FLOP rates with every other overhead removed; beside each step, its FLOPs and
their ratio to FO-ARM's step, the same bound for the step targets.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks import train_step

from ip_pyro import collate  # noqa: E402
from ip_pyro.guides import PlackettLuceGuide  # noqa: E402
from ip_pyro.infer import InsertionELBO, InsertionRWS  # noqa: E402
from ip_pyro.models import InsertionProcess, LeftToRightLM  # noqa: E402

ARMS = ("fo_arm", "canvas_elbo_m2", "canvas_rws_k4", "causal_elbo_m2_all", "causal_elbo_m2", "causal_rws_k4")
ORDERS_SCORED = {"fo_arm": 1, "canvas_elbo_m2": 2, "canvas_rws_k4": 4, "causal_elbo_m2_all": 2, "causal_elbo_m2": 2,
                 "causal_rws_k4": 4}


def _shape(name: str, batch_size: int, device: str, samples: int):
    """``(batch, vocab_size, max_length, sampling prompts or None, sampling length)``."""
    if name == "qm9":
        generator = torch.Generator().manual_seed(0)
        lengths = torch.randint(10, 29, (batch_size,), generator=generator).tolist()
        batch = collate([torch.randint(0, 20, (n,), generator=generator).tolist() for n in lengths], vocab_size=20)
        return batch.to(device), 20, 30, None, 19
    from ip_pyro.data.planning import make_dataset, task_config

    config = task_config(name)
    examples = make_dataset(name, seed=0, sizes={"train": 0, "valid": 0, "test": max(batch_size, samples)})["test"]
    train = examples[:batch_size]
    batch = collate([e["target"] for e in train], [e["prompt"] for e in train], vocab_size=config.vocab_size)
    return (batch.to(device), config.vocab_size, config.max_target_length + 2,
            [e["prompt"] for e in examples[:samples]], config.max_target_length)


def _networks(args, vocab_size: int, max_length: int, prompted: bool):
    sizes = dict(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, max_length=max_length)
    torch.manual_seed(0)
    canvas = InsertionProcess(vocab_size, prompt_attention="prefix" if prompted else "full", **sizes)
    causal = InsertionProcess(vocab_size, decoder="causal", **sizes)
    arm = LeftToRightLM(vocab_size, **sizes)
    guide = PlackettLuceGuide(vocab_size, d_model=args.guide_d_model, n_layers=args.guide_layers,
                              max_length=max_length)
    return {name: module.to(args.device) for name, module in
            (("canvas", canvas), ("causal", causal), ("arm", arm), ("guide", guide))}


def _losses(nets, batch):
    """Per-arm loss functions (mean over the batch), guide included for the IP arms."""
    objectives = {"canvas_elbo_m2": ("canvas", InsertionELBO(2)), "canvas_rws_k4": ("canvas", InsertionRWS(4)),
                  "causal_elbo_m2_all": ("causal", InsertionELBO(2, step_sampling="all")),
                  "causal_elbo_m2": ("causal", InsertionELBO(2)), "causal_rws_k4": ("causal", InsertionRWS(4))}
    losses = {"fo_arm": lambda: -nets["arm"].log_prob(batch).mean()}
    for name, (decoder, objective) in objectives.items():
        losses[name] = (lambda model=nets[decoder], objective=objective:
                        objective.differentiable_loss(model, nets["guide"], batch) / batch.batch_size)
    return losses


def _steps(nets, losses, lr=1e-4):
    parameters = {"fo_arm": list(nets["arm"].parameters())}
    for name in losses:
        if name != "fo_arm":
            parameters[name] = list(nets[name.split("_")[0]].parameters()) + list(nets["guide"].parameters())
    optimizers = {name: torch.optim.Adam(parameters[name], lr=lr) for name in losses}

    def step(name):
        def run():
            optimizers[name].zero_grad()
            losses[name]().backward()
            optimizers[name].step()
        return run
    return {name: step(name) for name in losses}


def _interleaved(runs: dict, device: str, rounds: int, repeats: int) -> dict:
    for run in runs.values():
        run()  # warm up
    seconds = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            seconds[name].append(statistics.median(train_step.timed(run, device, repeats)))
    return {name: statistics.median(values) for name, values in seconds.items()}


def _sampling(nets, prompts, length: int, count: int, device: str, rounds: int) -> tuple:
    """Tokens per second writing ``count`` sequences of exactly ``length`` tokens (stop suppressed), and the FLOPs
    of one such draw for the causal decoder and FO-ARM."""
    with torch.no_grad():
        for name in ("canvas", "causal"):
            nets[name].network.stop_head.bias.fill_(-30.0)
        nets["arm"].network.head.bias[nets["arm"].eos] = -30.0
    number = None if prompts else count
    runs = {"canvas": lambda: nets["canvas"].sample(number, prompt=prompts, max_length=length),
            "causal": lambda: nets["causal"].sample(number, prompt=prompts, max_length=length),
            "fo_arm_kv_cache": lambda: nets["arm"].sample(number, prompt=prompts, max_length=length)}
    seconds = _interleaved(runs, device, rounds, 1)
    rates = {name: count * length / value for name, value in seconds.items()}
    return rates, {name: _matmul_flops(runs[name]) for name in ("causal", "fo_arm_kv_cache")}


def _matmul_flops(run) -> float:
    """Floating-point operations of one call of ``run`` as ``torch.profiler`` counts them (matrix products and
    elementwise arithmetic): a cost independent of the machine's load."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as profiled:
        run()
    return float(sum(event.flops for event in profiled.key_averages() if event.flops))


def section(args) -> dict:
    result = {}
    for shape in ("qm9", "star-hard"):
        batch, vocab_size, max_length, prompts, length = _shape(shape, args.batch_size, args.device, args.samples)
        nets = _networks(args, vocab_size, max_length, prompts is not None)
        losses = _losses(nets, batch)
        steps = _steps(nets, losses)
        seconds = _interleaved(steps, args.device, args.rounds, args.repeats)
        over_arm = {name: seconds[name] / seconds["fo_arm"] for name in ARMS}
        step_flops = {name: _matmul_flops(steps[name]) for name in ARMS}
        memory = {name: train_step.saved_activation_bytes(losses[name]) / 2 ** 20 for name in ARMS}
        rates, flops = _sampling(nets, prompts, length, args.samples, args.device, args.sampling_rounds)
        result[shape] = {
            "batch_size": batch.batch_size, "target_tokens_mean": float(batch.lengths.float().mean()),
            "prompt_tokens_mean": float(batch.prompt_lengths.float().mean()) if batch.prompt is not None else 0.0,
            "seconds_per_step": seconds, "step_over_fo_arm": over_arm,
            "step_over_fo_arm_per_scored_order": {name: over_arm[name] / ORDERS_SCORED[name] for name in ARMS},
            # each step's FLOPs over FO-ARM's: the step ratio at equal FLOP rates, every overhead removed
            "step_flops": step_flops,
            "step_flops_over_fo_arm": {name: step_flops[name] / step_flops["fo_arm"] for name in ARMS},
            "saved_activation_mib": memory, "sampling_tokens_per_s": rates,
            "sampling_causal_over_fo_arm": rates["causal"] / rates["fo_arm_kv_cache"],
            "sampling_canvas_over_fo_arm": rates["canvas"] / rates["fo_arm_kv_cache"],
            # the causal/FO-ARM ratio tokens per second would reach at equal FLOP rates, every overhead removed
            "sampling_flops": flops, "sampling_causal_flop_bound": flops["fo_arm_kv_cache"] / flops["causal"]}
    result["growth"] = growth(args)
    return result


def growth(args) -> dict:
    """Forward + backward of ``log p(x, sigma)`` for one order per sequence (the unit every objective pays per
    scored order) and FO-ARM's ``log p(x)``, at lengths ``args.lengths``, batch ``args.growth_batch``, V = 32."""
    result = {}
    for length in args.lengths:
        generator = torch.Generator().manual_seed(length)
        batch = collate(torch.randint(0, 32, (args.growth_batch, length), generator=generator).tolist(),
                        vocab_size=32).to(args.device)
        nets = _networks(args, 32, length, False)
        orders = torch.stack([torch.randperm(length, generator=generator) for _ in range(args.growth_batch)])
        orders = orders.to(args.device)
        losses = {"fo_arm": lambda: nets["arm"].log_prob(batch).sum(),
                  "canvas": lambda: nets["canvas"].log_joint(batch, orders).sum(),
                  "causal": lambda: nets["causal"].log_joint(batch, orders).sum()}
        runs = {name: (lambda loss=loss: loss().backward()) for name, loss in losses.items()}
        seconds = _interleaved(runs, args.device, 1, args.growth_repeats)
        memory = {name: train_step.saved_activation_bytes(loss) / 2 ** 20 for name, loss in losses.items()}
        result[length] = {"seconds": seconds, "saved_activation_mib": memory,
                          "canvas_over_fo_arm": seconds["canvas"] / seconds["fo_arm"],
                          "causal_over_fo_arm": seconds["causal"] / seconds["fo_arm"]}
    return result


def report(result: dict) -> None:
    for shape in ("qm9", "star-hard"):
        entry = result[shape]
        print(f"  {shape} (batch {entry['batch_size']}, {entry['target_tokens_mean']:.1f} target / "
              f"{entry['prompt_tokens_mean']:.1f} prompt tokens):")
        for name in ARMS:
            print(f"    {name:20s} {1000 * entry['seconds_per_step'][name]:7.0f} ms/step  "
                  f"{entry['step_over_fo_arm'][name]:5.2f}x FO-ARM  "
                  f"{entry['step_over_fo_arm_per_scored_order'][name]:5.2f}x per scored order  "
                  f"{entry['saved_activation_mib'][name]:7.1f} MiB saved  "
                  f"{entry['step_flops'][name] / 1e9:6.2f} GFLOP ({entry['step_flops_over_fo_arm'][name]:.2f}x)")
        rates = entry["sampling_tokens_per_s"]
        print(f"    sampling tokens/s: canvas {rates['canvas']:.0f}, causal {rates['causal']:.0f}, FO-ARM (KV) "
              f"{rates['fo_arm_kv_cache']:.0f}: causal / FO-ARM {entry['sampling_causal_over_fo_arm']:.2f}x, "
              f"canvas / FO-ARM {entry['sampling_canvas_over_fo_arm']:.2f}x")
        flops = entry["sampling_flops"]
        print(f"    sampling GFLOP a draw: causal {flops['causal'] / 1e9:.2f}, FO-ARM "
              f"{flops['fo_arm_kv_cache'] / 1e9:.2f}: at equal FLOP rates causal / FO-ARM <= "
              f"{entry['sampling_causal_flop_bound']:.2f}x")
    for length, entry in result["growth"].items():
        seconds, memory = entry["seconds"], entry["saved_activation_mib"]
        print(f"  L = {length}: one order fwd+bwd  FO-ARM {1000 * seconds['fo_arm']:.0f} ms, canvas "
              f"{1000 * seconds['canvas']:.0f} ms ({entry['canvas_over_fo_arm']:.1f}x), causal "
              f"{1000 * seconds['causal']:.0f} ms ({entry['causal_over_fo_arm']:.1f}x); saved MiB "
              f"{memory['fo_arm']:.1f} / {memory['canvas']:.1f} / {memory['causal']:.1f}")


def add_size_arguments(parser) -> None:
    """The device, sizes and JSON path shared with ``benchmarks/run.py``."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--guide-d-model", type=int, default=64)
    parser.add_argument("--guide-layers", type=int, default=3)
    parser.add_argument("--json", default=None)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about 3 minutes on 2 cores)")
    add_size_arguments(parser)
    return configure(parser.parse_args(argv))


def configure(args):
    """Fill the section's settings (``rounds``, ``repeats``, ``samples``, ...) from ``args.quick``."""
    quick = args.quick
    args.decoder_settings = dict(rounds=2 if quick else 3, repeats=2 if quick else 4, samples=200 if quick else 1000,
                                 sampling_rounds=1 if quick else 3, lengths=[16, 64, 256], growth_batch=4,
                                 growth_repeats=1 if quick else 2)
    return args


def run(args) -> dict:
    settings = argparse.Namespace(**{**vars(args), **args.decoder_settings})
    return section(settings)


def command_line(parse, run_section, report_section) -> dict:
    """A section run alone: parse the flags, run, print the report and the seconds, write ``--json``."""
    arguments = parse()
    started = time.perf_counter()
    outcome = run_section(arguments)
    report_section(outcome)
    outcome["seconds"] = time.perf_counter() - started
    outcome["threads"] = torch.get_num_threads()
    print(f"{outcome['seconds']:.0f} s")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(outcome, indent=2))
    return outcome


if __name__ == "__main__":
    command_line(parse_args, run, report)
