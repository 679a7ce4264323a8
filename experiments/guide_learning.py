"""Does the learned (Plackett–Luce) order leave the uniform order? Objective, guide learning rate, particles and
init, measured.

Trains the IP with the PL guide on mirror strings (short enough for exact likelihoods and exact posteriors) under
several settings, from the same model initialisation and data order, and reports the exact held-out NLL and the
guide's entropy over orders relative to the uniform order's ``log L!`` (1 = still random, 0 = one fixed order).
The uniform and left-to-right guides are the references. The ``RWS`` arms train with
:class:`~ip_pyro.infer.InsertionRWS` (IWAE for the model, wake-phi for the guide) instead of the ELBO.

    python -m experiments.guide_learning                    # about 3 minutes on 2 CPU cores (the ELBO arms)
    python -m experiments.guide_learning --steps 3000 --json guide_learning.json
    python -m experiments.guide_learning --time-limit 240 --seeds 0 1 2 --threads 1 \
        --settings "ELBO, uniform" "ELBO, left to right" "ELBO, PL" "RWS K=2" "RWS K=4" "RWS K=8"

``--decoder causal`` trains every arm with the insertion-causal decoder (one pass per order; the exact NLL then sums
all ``L!`` orders). ``--time-limit SECONDS`` gives every arm the same training wall time (steps are then only a cap); with several
``--seeds`` the table shows the mean and the range.
"""
from __future__ import annotations

import argparse
import json
import time

import pyro
import torch

from ip_pyro.guides import build_guide
from ip_pyro import collate
from ip_pyro.data import iterate_batches, mirror_language
from ip_pyro.diagnostics import order_draws, relative_order_entropy
from ip_pyro.plots import describe_order
from ip_pyro.infer import InsertionELBO, InsertionRWS, exact_log_likelihood
from ip_pyro.models import InsertionProcess

# name: (guide, guide learning rate multiplier, particles, initial score scale, entropy weight annealed from 0,
#        objective: "elbo" or "rws:<model gradient>:<guide update>")
SETTINGS = {
    "ELBO, uniform": ("uniform", 1.0, 2, 0.0, False, "elbo"),
    "ELBO, left to right": ("l2r", 1.0, 2, 0.0, False, "elbo"),
    "ELBO, PL": ("pl", 1.0, 2, 0.0, False, "elbo"),
    "PL, guide lr x10": ("pl", 10.0, 2, 0.0, False, "elbo"),
    "PL, guide lr x10, 8 particles": ("pl", 10.0, 8, 0.0, False, "elbo"),
    "PL, guide lr x10, random init": ("pl", 10.0, 2, 1.0, False, "elbo"),
    "PL, entropy weight 0 -> 1": ("pl", 1.0, 2, 0.0, True, "elbo"),
    "PL, guide lr x10, entropy weight 0 -> 1": ("pl", 10.0, 2, 0.0, True, "elbo"),
    "RWS K=2": ("pl", 1.0, 2, 0.0, False, "rws:full:wake"),
    "RWS K=4": ("pl", 1.0, 4, 0.0, False, "rws:full:wake"),
    "RWS K=8": ("pl", 1.0, 8, 0.0, False, "rws:full:wake"),
    "RWS K=4, sampled-step gradient": ("pl", 1.0, 4, 0.0, False, "rws:steps:wake"),
    "RWS K=4, guide lr x3": ("pl", 3.0, 4, 0.0, False, "rws:full:wake"),
    "RWS K=4, sequential guide": ("sequential", 1.0, 4, 0.0, False, "rws:full:wake"),
    "RWS K=8, sequential guide": ("sequential", 1.0, 8, 0.0, False, "rws:full:wake"),
    "RWS K=4, pointer guide": ("pointer", 1.0, 4, 0.0, False, "rws:full:wake"),
    "RWS K=8, pointer guide": ("pointer", 1.0, 8, 0.0, False, "rws:full:wake"),
    "IWAE K=4, uniform proposal": ("uniform", 1.0, 4, 0.0, False, "rws:full:none"),
    "ELBO all steps, uniform": ("uniform", 1.0, 2, 0.0, False, "elbo:all"),
    "ELBO all steps, PL": ("pl", 1.0, 2, 0.0, False, "elbo:all"),
}
ELBO_ONLY = [name for name, setting in SETTINGS.items() if setting[5] == "elbo"]


def entropy_weight(step: int, total: int) -> float:
    """0 for the first 40 % of training, then linearly to 1 at 80 %, then 1 (the true ELBO)."""
    return min(1.0, max(0.0, (step / total - 0.4) / 0.4))


def train(name: str, train_data, test_batch, args, seed: int) -> dict:
    guide_name, lr_scale, particles, init_scale, anneal, objective_name = SETTINGS[name]
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    model = InsertionProcess(args.vocab_size, d_model=64, n_layers=2, n_heads=4, max_length=2 * args.half,
                             decoder=args.decoder)
    guide = build_guide(guide_name, args.vocab_size, d_model=32, n_layers=2, n_heads=2, max_length=2 * args.half)
    if init_scale:
        torch.nn.init.normal_(guide.scorer.score.weight, std=init_scale)
    groups = [{"params": list(model.parameters()), "lr": args.lr}]
    if list(guide.parameters()):
        groups.append({"params": list(guide.parameters()), "lr": args.lr * lr_scale})
    optimizer = torch.optim.Adam(groups)
    if objective_name.startswith("elbo"):
        objective = InsertionELBO(num_particles=particles,
                                  step_sampling="all" if objective_name == "elbo:all" else "uniform")
    else:
        _, model_gradient, guide_update = objective_name.split(":")
        objective = InsertionRWS(particles, model_gradient=model_gradient, guide_update=guide_update)
    step, epoch, started = 0, 0, time.perf_counter()
    out_of_time = False
    while step < args.steps and not out_of_time:
        for batch in iterate_batches(train_data, args.batch_size, seed=seed + epoch):
            if anneal:
                objective.entropy_weight = entropy_weight(step, args.steps)
            optimizer.zero_grad()
            (objective.differentiable_loss(model, guide, batch) / batch.batch_size).backward()
            optimizer.step()
            step += 1
            out_of_time = bool(args.time_limit) and time.perf_counter() - started >= args.time_limit
            if step >= args.steps or out_of_time:
                break
        epoch += 1
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        nll = -float(exact_log_likelihood(model, test_batch).mean())
        draws = order_draws(model, guide, test_batch, num_chains=1, num_draws=200)
    entropy = relative_order_entropy(draws["log_q"], test_batch.lengths.numpy())
    return {"exact_nll": nll, "relative_order_entropy": float(torch.tensor(entropy).nanmean()),
            "preferred_order": describe_order(draws["insertion_step"]), "seconds": seconds, "steps": step,
            "seed": seed}


def summarise(runs: list) -> dict:
    """Mean and range over seeds of each number."""
    summary = {}
    for key in ("exact_nll", "relative_order_entropy", "seconds", "steps"):
        values = [run[key] for run in runs]
        summary[key] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
    return summary


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    unknown = [name for name in args.settings if name not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; choose from: {', '.join(SETTINGS)}")
    data = mirror_language(args.num_train + args.num_test, vocab_size=args.vocab_size, max_half=args.half,
                           seed=args.data_seed)
    train_data, test_batch = data[: args.num_train], collate(data[args.num_train:])
    results = {}
    for name in args.settings:
        runs = []
        for seed in args.seeds:
            runs.append(train(name, train_data, test_batch, args, seed))
            run = runs[-1]
            print(f"{name:34s} seed {seed}: exact test NLL {run['exact_nll']:.3f}  guide entropy / log L! "
                  f"{run['relative_order_entropy']:.2f}  ({run['steps']} steps, {run['seconds']:.0f} s); the guide's "
                  f"order: {run['preferred_order']}", flush=True)
        results[name] = {"runs": runs, **summarise(runs)}
    print(f"\n{'setting':34s} {'exact NLL mean [min, max]':>27s} {'entropy mean [min, max]':>25s} {'steps':>6s}")
    for name, entry in results.items():
        nll, entropy = entry["exact_nll"], entry["relative_order_entropy"]
        print(f"{name:34s} {nll['mean']:9.3f} [{nll['min']:.3f}, {nll['max']:.3f}] "
              f"{entropy['mean']:9.2f} [{entropy['min']:.2f}, {entropy['max']:.2f}] {entry['steps']['mean']:6.0f}")
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="model/guide initialisation seeds")
    parser.add_argument("--data-seed", type=int, default=0, help="the data (same for every arm and seed)")
    parser.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                        help="training wall time per arm (0 = run --steps); steps then only cap the run")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = PyTorch's default)")
    parser.add_argument("--decoder", default="canvas", choices=["canvas", "causal"], help="the IP's decoder")
    parser.add_argument("--settings", nargs="+", default=ELBO_ONLY, help="which settings to run (names; default: "
                        "the ELBO arms)")
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
