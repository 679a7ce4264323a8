"""Seconds per training step, measured side by side in one run on one batch and one network size.

Compares
* ``InsertionELBO`` vs Pyro's generic ``TraceGraph_ELBO`` on the same IP model and Plackett–Luce guide;
* the IP step (PL guide, 2 particles, one uniform step per sequence) vs a left-to-right causal Transformer of the
  same width/depth taking a teacher-forced step (``LeftToRightLM.log_prob``), both with Adam; the IP step is also
  timed with one fused torch Adam (separating Pyro's per-parameter optimiser) and with the parameter-free uniform
  guide (separating the guide network's cost).

Timings are interleaved (A, B, A, B, ...) and summarised by the median, so machine noise hits both sides alike.

    python -m benchmarks.train_step            # about a minute on 2 CPU cores
    python -m benchmarks.train_step --device cuda --batch-size 64 --json results.json
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import pyro
import torch
from pyro.infer import SVI, TraceGraph_ELBO

from ip_pyro.guides import PlackettLuceGuide, UniformOrderGuide
from ip_pyro import collate
from ip_pyro.infer import InsertionELBO
from ip_pyro.models import InsertionProcess, LeftToRightLM


def synchronise(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(step, device, repeats):
    times = []
    for _ in range(repeats):
        synchronise(device)
        started = time.perf_counter()
        step()
        synchronise(device)
        times.append(time.perf_counter() - started)
    return times


def saved_activation_bytes(loss_fn) -> int:
    """Bytes of the tensors autograd saves for backward during one loss evaluation (activation memory)."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_fn().backward()
    return total


def main(args):
    pyro.set_rng_seed(args.seed)
    rng = random.Random(args.seed)
    lengths = [rng.randint(args.min_length, args.max_length) for _ in range(args.batch_size)]
    batch = collate([[rng.randrange(args.vocab_size) for _ in range(n)] for n in lengths]).to(args.device)
    sizes = dict(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, max_length=args.max_length)

    model = InsertionProcess(args.vocab_size, **sizes).to(args.device)
    guide = PlackettLuceGuide(args.vocab_size, d_model=args.guide_d_model, n_layers=args.guide_layers,
                              max_length=args.max_length).to(args.device)
    fast = SVI(model, guide, pyro.optim.Adam({"lr": 1e-4}), loss=InsertionELBO(num_particles=2))
    generic = SVI(model, guide, pyro.optim.Adam({"lr": 1e-4}), loss=TraceGraph_ELBO())

    baseline = LeftToRightLM(args.vocab_size, **sizes).to(args.device)
    baseline_optimizer = torch.optim.Adam(baseline.parameters(), lr=1e-4)

    def baseline_step():
        baseline_optimizer.zero_grad()
        loss = -baseline.log_prob(batch).sum()
        loss.backward()
        baseline_optimizer.step()

    def torch_step(step_guide):
        """The same ELBO through Pyro's PyTorch interface and one fused Adam (no per-parameter PyroOptim)."""
        module = InsertionELBO(num_particles=2)(model, step_guide)
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad()
            module(batch).backward()
            optimizer.step()
        return step

    steps = {"InsertionELBO": lambda: fast.step(batch), "TraceGraph_ELBO": lambda: generic.step(batch),
             "left-to-right": baseline_step, "IP, torch Adam": torch_step(guide),
             "IP, uniform guide": torch_step(UniformOrderGuide())}
    for step in steps.values():  # warm up (allocations, Adam state)
        step()
    results = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            repeats = max(1, args.repeats // 4) if name == "TraceGraph_ELBO" else args.repeats
            results[name] += timed(step, args.device, repeats)
    median = {name: statistics.median(values) for name, values in results.items()}
    report = {
        "device": str(args.device), "batch_size": args.batch_size, "lengths": [args.min_length, args.max_length],
        "d_model": args.d_model, "layers": args.layers, "threads": torch.get_num_threads(),
        "seconds_per_step": median,
        "elbo_speedup_over_tracegraph": median["TraceGraph_ELBO"] / median["InsertionELBO"],
        "train_step_ratio_ip_over_arm": median["InsertionELBO"] / median["left-to-right"],
        "train_step_ratio_ip_torch_adam_over_arm": median["IP, torch Adam"] / median["left-to-right"],
        "train_step_ratio_ip_uniform_guide_over_arm": median["IP, uniform guide"] / median["left-to-right"],
    }
    print(f"batch {args.batch_size}, lengths {args.min_length}..{args.max_length}, width {args.d_model}, "
          f"{args.layers} layers, device {args.device}, {torch.get_num_threads()} threads")
    for name, seconds in median.items():
        print(f"  {name:18s} {1000 * seconds:9.1f} ms/step  ({len(results[name])} timed steps)")
    print(f"  InsertionELBO speed-up over TraceGraph_ELBO: {report['elbo_speedup_over_tracegraph']:.1f}x "
          "(target >= 10x)")
    print(f"  IP svi.step (PL guide) / left-to-right step: {report['train_step_ratio_ip_over_arm']:.2f}x "
          "(target <= 1.5x)")
    print(f"    the same with one fused torch Adam:        {report['train_step_ratio_ip_torch_adam_over_arm']:.2f}x")
    print(f"    with the parameter-free uniform guide:     "
          f"{report['train_step_ratio_ip_uniform_guide_over_arm']:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--min-length", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=24)
    parser.add_argument("--vocab-size", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--guide-d-model", type=int, default=64)
    parser.add_argument("--guide-layers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
