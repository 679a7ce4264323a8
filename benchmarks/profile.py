"""Where the learned-order path's time goes at QM9 shape: ``torch.profiler`` tables of the top operators, and the
share of each call's wall time that no operator accounts for (Python and dispatch overhead).

    python -m benchmarks.profile                      # about a minute on 2 CPU cores
    python -m benchmarks.profile --paths causal_sampling pointer_rws_k4 --rows 12

Paths (the shapes, sizes and untrained networks of ``benchmarks/decoders.py``; QM9 shape: batch 32, strings of
10..28 tokens):

* ``fo_arm_step``: FO-ARM's training step (the reference);
* ``causal_elbo_m2_all``: the causal decoder's all-steps ELBO step (M = 2);
* ``causal_rws_k4``: the causal decoder's ``InsertionRWS(4)`` step;
* ``causal_sampling``: the causal decoder writing 32 strings of 19 tokens with its KV cache (stop suppressed);
* ``fo_arm_sampling``: FO-ARM writing the same with its KV cache;
* ``pointer_rws_k4``: the pointer guide drawing 4 orders, ``log q`` and backward (what RWS asks of it).

For each path: wall milliseconds per call, operator self time (the sum over the table), and ``overhead`` = 1 - that
sum / wall: time spent between operators. Timings are one-thread medians of the calls after one warm-up call.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks import decoders  # (shapes, networks, losses and optimizer steps)

from ip_pyro.guides import build_guide  # noqa: E402

PATHS = ("fo_arm_step", "causal_elbo_m2_all", "causal_rws_k4", "causal_sampling", "fo_arm_sampling",
         "pointer_rws_k4")


def _paths(args) -> dict:
    batch, vocab_size, max_length, _, length = decoders._shape("qm9", args.batch_size, args.device, 0)
    nets = decoders._networks(args, vocab_size, max_length, False)
    steps = decoders._steps(nets, decoders._losses(nets, batch))
    with torch.no_grad():
        nets["causal"].network.stop_head.bias.fill_(-30.0)
        nets["arm"].network.head.bias[nets["arm"].eos] = -30.0
    torch.manual_seed(0)
    pointer = build_guide("pointer", vocab_size, d_model=args.guide_d_model, n_layers=args.guide_layers,
                          max_length=max_length).to(args.device)

    def pointer_rws_k4():
        pointer.zero_grad()
        orders = pointer.order_distribution(batch)
        orders.log_prob(orders.sample((4,))).sum().backward()

    def sampling(name):
        def run():
            with torch.no_grad():
                nets[name].sample(batch.batch_size, max_length=length)
        return run

    return {"fo_arm_step": steps["fo_arm"], "causal_elbo_m2_all": steps["causal_elbo_m2_all"],
            "causal_rws_k4": steps["causal_rws_k4"], "causal_sampling": sampling("causal"),
            "fo_arm_sampling": sampling("arm"), "pointer_rws_k4": pointer_rws_k4}


def profile_path(run, calls: int, rows: int) -> dict:
    """Wall ms per call (median), the operator table of ``calls`` profiled calls and the unaccounted share."""
    run()  # warm up
    walls = []
    for _ in range(calls):
        started = time.perf_counter()
        run()
        walls.append(time.perf_counter() - started)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(calls):
            run()
    events = sorted(prof.key_averages(), key=lambda event: -event.self_cpu_time_total)
    self_ms = sum(event.self_cpu_time_total for event in events) / 1000 / calls
    wall_ms = 1000 * statistics.median(walls)
    table = [{"operator": event.key, "self_ms": event.self_cpu_time_total / 1000 / calls,
              "calls": event.count / calls} for event in events[:rows]]
    return {"wall_ms": wall_ms, "operator_ms": self_ms, "overhead": max(0.0, 1 - self_ms / wall_ms),
            "operator_calls": sum(event.count for event in events) / calls, "top": table}


def section(args) -> dict:
    paths = _paths(args)
    return {name: profile_path(paths[name], args.calls, args.rows) for name in args.paths}


def report(result: dict) -> None:
    for name, entry in result.items():
        if not isinstance(entry, dict):
            continue
        print(f"  {name}: {entry['wall_ms']:.1f} ms a call, operators {entry['operator_ms']:.1f} ms "
              f"({entry['operator_calls']:.0f} operator calls), overhead {100 * entry['overhead']:.0f} %")
        for row in entry["top"]:
            print(f"      {row['operator']:52s} {row['self_ms']:7.2f} ms  {row['calls']:6.0f} calls")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--calls", type=int, default=3, help="profiled calls per path")
    parser.add_argument("--rows", type=int, default=8, help="operators shown per path")
    decoders.add_size_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    decoders.command_line(parse_args, section, report)
