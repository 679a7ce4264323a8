"""Steps scored per sampled order: held-out exact NLL against wall-clock time, K = 1 (the paper's) vs K > 1 vs all.

Each setting trains the IP with the Plackett–Luce guide on mirror strings (short enough for the exact
likelihood) for the same wall-clock budget, from the same initialisation and data order, and records the exact
test NLL (nats per string) at fixed fractions of the budget. Scoring K prefixes of each sampled order costs one
larger decoder pass instead of K passes; whether that buys more per second than more optimiser steps is the
question. The settings run one after another (each gets the whole machine); the order is rotated per repeat.

    python -m experiments.prefixes                     # 4 settings x 60 s
    python -m experiments.prefixes --budget 120 --repeats 2 --json prefixes.json
"""
from __future__ import annotations

import argparse
import json
import time

import pyro
import torch

from ip_pyro.guides import PlackettLuceGuide
from ip_pyro import collate
from ip_pyro.data import iterate_batches, mirror_language
from ip_pyro.infer import InsertionELBO, exact_log_likelihood
from ip_pyro.models import InsertionProcess


def run(setting: str, train, test_batch, args) -> list:
    """``[(seconds, steps, exact test NLL)]`` at ``args.checkpoints`` fractions of the budget."""
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    model = InsertionProcess(args.vocab_size, d_model=args.d_model, n_layers=args.layers, n_heads=4,
                             max_length=2 * args.half)
    guide = PlackettLuceGuide(args.vocab_size, d_model=32, n_layers=2, n_heads=2, max_length=2 * args.half)
    elbo = (InsertionELBO(2, step_sampling="all") if setting == "all"
            else InsertionELBO(2, num_steps=int(setting)))
    optimizer = torch.optim.Adam(list(model.parameters()) + list(guide.parameters()), lr=args.lr)
    marks = [args.budget * (k + 1) / args.checkpoints for k in range(args.checkpoints)]
    results, step, spent, epoch = [], 0, 0.0, 0
    while marks:
        for batch in iterate_batches(train, args.batch_size, seed=args.seed + epoch):
            started = time.perf_counter()
            optimizer.zero_grad()
            (elbo.differentiable_loss(model, guide, batch) / batch.batch_size).backward()
            optimizer.step()
            spent += time.perf_counter() - started
            step += 1
            if spent >= marks[0]:
                with torch.no_grad():
                    model.eval()
                    nll = -float(exact_log_likelihood(model, test_batch).mean())
                    model.train()
                results.append((round(spent, 1), step, nll))
                marks.pop(0)
                if not marks:
                    break
        epoch += 1
    return results


def main(args):
    torch.manual_seed(args.seed)
    data = mirror_language(args.num_train + args.num_test, vocab_size=args.vocab_size, max_half=args.half,
                           seed=args.seed)
    train, test = data[: args.num_train], data[args.num_train:]
    test_batch = collate(test)
    settings = args.settings
    table = {setting: [] for setting in settings}
    for repeat in range(args.repeats):
        rotated = settings[repeat % len(settings):] + settings[: repeat % len(settings)]
        for setting in rotated:
            table[setting].append(run(setting, train, test_batch, args))
            print(f"repeat {repeat} K={setting}: " + ", ".join(f"{s:.0f} s / {n} steps: {v:.3f}"
                                                               for s, n, v in table[setting][-1]))
    print(f"\nexact test NLL (nats per string) after each share of a {args.budget:.0f} s budget, "
          f"mean over {args.repeats} repeat(s)")
    print("K      " + "  ".join(f"{100 * (k + 1) // args.checkpoints:>6d}%" for k in range(args.checkpoints))
          + "   steps")
    summary = {}
    for setting, runs in table.items():
        means = [sum(r[k][2] for r in runs) / len(runs) for k in range(args.checkpoints)]
        steps = sum(r[-1][1] for r in runs) / len(runs)
        summary[setting] = {"nll": means, "steps": steps}
        print(f"{setting:<6} " + "  ".join(f"{m:7.3f}" for m in means) + f"   {steps:.0f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"budget_s": args.budget, "summary": summary, "runs": table}, handle, indent=2)
    return summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["1", "2", "4", "all"])
    parser.add_argument("--budget", type=float, default=60.0, help="training seconds per setting")
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--half", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=4)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-test", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
