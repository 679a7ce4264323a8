"""Does the learned (Plackett–Luce) order leave the uniform order? Guide learning rate, particles and init, measured.

Trains the IP with the PL guide on mirror strings (short enough for exact likelihoods and exact posteriors) under
several guide settings, from the same model initialisation and data order, and reports the exact held-out NLL and
the guide's entropy over orders relative to the uniform order's ``log L!`` (1 = still random, 0 = one fixed
order). The uniform and left-to-right guides are the references.

    python benchmarks/guide_learning.py                    # about 3 minutes on 2 CPU cores
    python benchmarks/guide_learning.py --steps 3000 --json guide_learning.json
"""
from __future__ import annotations

import argparse
import json
import time

import pyro
import torch

from guides import LeftToRightGuide, PlackettLuceGuide, UniformOrderGuide
from ip_pyro import collate
from ip_pyro.data import iterate_batches, mirror_language
from ip_pyro.diagnostics import order_draws, relative_order_entropy
from ip_pyro.infer import InsertionELBO, exact_log_likelihood
from models import InsertionProcess

# name: (guide, guide learning rate multiplier, particles, initial score scale, entropy weight annealed from 0)
SETTINGS = {
    "uniform guide": ("uniform", 1.0, 2, 0.0, False),
    "left-to-right guide": ("l2r", 1.0, 2, 0.0, False),
    "PL, guide lr = model lr": ("pl", 1.0, 2, 0.0, False),
    "PL, guide lr x10": ("pl", 10.0, 2, 0.0, False),
    "PL, guide lr x10, 8 particles": ("pl", 10.0, 8, 0.0, False),
    "PL, guide lr x10, random init": ("pl", 10.0, 2, 1.0, False),
    "PL, entropy weight 0 -> 1": ("pl", 1.0, 2, 0.0, True),
    "PL, guide lr x10, entropy weight 0 -> 1": ("pl", 10.0, 2, 0.0, True),
}


def entropy_weight(step: int, total: int) -> float:
    """0 for the first 40 % of training, then linearly to 1 at 80 %, then 1 (the true ELBO)."""
    return min(1.0, max(0.0, (step / total - 0.4) / 0.4))


def train(name: str, train_data, test_batch, args) -> dict:
    guide_name, lr_scale, particles, init_scale, anneal = SETTINGS[name]
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    model = InsertionProcess(args.vocab_size, d_model=64, n_layers=2, n_heads=4, max_length=2 * args.half)
    if guide_name == "pl":
        guide = PlackettLuceGuide(args.vocab_size, d_model=32, n_layers=2, n_heads=2, max_length=2 * args.half)
        if init_scale:
            torch.nn.init.normal_(guide.scorer.score.weight, std=init_scale)
    else:
        guide = UniformOrderGuide() if guide_name == "uniform" else LeftToRightGuide()
    groups = [{"params": list(model.parameters()), "lr": args.lr}]
    if list(guide.parameters()):
        groups.append({"params": list(guide.parameters()), "lr": args.lr * lr_scale})
    optimizer = torch.optim.Adam(groups)
    elbo = InsertionELBO(num_particles=particles)
    step, epoch, started = 0, 0, time.perf_counter()
    while step < args.steps:
        for batch in iterate_batches(train_data, args.batch_size, seed=args.seed + epoch):
            if anneal:
                elbo.entropy_weight = entropy_weight(step, args.steps)
            optimizer.zero_grad()
            (elbo.differentiable_loss(model, guide, batch) / batch.batch_size).backward()
            optimizer.step()
            step += 1
            if step >= args.steps:
                break
        epoch += 1
    model.eval()
    with torch.no_grad():
        nll = -float(exact_log_likelihood(model, test_batch).mean())
        draws = order_draws(model, guide, test_batch, num_chains=1, num_draws=200)
    entropy = relative_order_entropy(draws["log_q"], test_batch.lengths.numpy())
    return {"exact_nll": nll, "relative_order_entropy": float(torch.tensor(entropy).nanmean()),
            "seconds": time.perf_counter() - started}


def main(args):
    data = mirror_language(args.num_train + args.num_test, vocab_size=args.vocab_size, max_half=args.half,
                           seed=args.seed)
    train_data, test_batch = data[: args.num_train], collate(data[args.num_train:])
    results = {}
    for name in args.settings:
        results[name] = train(name, train_data, test_batch, args)
        entry = results[name]
        print(f"{name:32s} exact test NLL {entry['exact_nll']:.3f}  guide entropy / log L! "
              f"{entry['relative_order_entropy']:.2f}  ({entry['seconds']:.0f} s)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--half", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=4)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-test", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="which settings to run (names)")
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
