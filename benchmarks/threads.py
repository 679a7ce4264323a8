"""Thread counts on a shared machine: the demo's ELBO step with 1 and with all torch threads, alone and while
another process keeps one core busy (what a second job, a test run or a browser does on a small machine).

    python -m benchmarks.threads            # about a minute on 2 CPU cores (run it on an otherwise idle machine)

Small models are bound by per-operation overheads, not arithmetic: a second thread buys little alone, and when a
core is busy every parallel region waits for the thread that shares it. The printed ratios are what the thread
choices of the demo (``--threads 1``), the trainer (``--threads``) and the tests rest on.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import pyro
import torch
from pyro.infer import SVI

from ip_pyro.data import iterate_batches, mirror_language
from ip_pyro.guides import build_guide
from ip_pyro.infer import InsertionELBO
from ip_pyro.models import InsertionProcess


def seconds_per_step(threads: int, steps: int) -> float:
    """Median-free mean over ``steps`` ELBO steps of the demo's first arm after 5 warm-up steps."""
    torch.set_num_threads(threads)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model = InsertionProcess(4, d_model=64, n_layers=2, n_heads=4, max_length=6)
    guide = build_guide("pl", 4, d_model=32, n_layers=2, n_heads=2, max_length=6)
    svi = SVI(model, guide, pyro.optim.ClippedAdam({"lr": 3e-3, "clip_norm": 1.0}), loss=InsertionELBO(2))
    batches = list(iterate_batches(mirror_language(640, vocab_size=4, max_half=3, seed=0), 64, seed=0))
    for batch in batches[:5]:
        svi.step(batch)
    started = time.perf_counter()
    for index in range(steps):
        svi.step(batches[index % len(batches)])
    return (time.perf_counter() - started) / steps


def main(args) -> dict:
    cores = os.cpu_count() or 1
    result = {"cores": cores, "steps": args.steps, "seconds_per_step": {}}
    for load in ("alone", "one core busy"):
        burner = None
        if load != "alone":
            burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        try:
            for threads in sorted({1, cores}):
                key = f"{threads} thread{'s' if threads > 1 else ''}, {load}"
                result["seconds_per_step"][key] = seconds_per_step(threads, args.steps)
                print(f"  {key:28s} {1000 * result['seconds_per_step'][key]:8.1f} ms/step", flush=True)
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
    times = result["seconds_per_step"]
    if cores > 1:
        result["all_over_one_alone"] = times[f"{cores} threads, alone"] / times["1 thread, alone"]
        result["all_over_one_busy"] = times[f"{cores} threads, one core busy"] / times["1 thread, one core busy"]
        print(f"{cores} threads / 1 thread: {result['all_over_one_alone']:.2f}x alone, "
              f"{result['all_over_one_busy']:.2f}x with one core busy")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result, stream, indent=2)
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed ELBO steps per setting")
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
