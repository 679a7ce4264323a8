"""Quickstart: train the Insertion Process with three guide families, two objectives and two decoders on a language
where insertion order matters.

Default language: mirror strings ``w + reversed(w)`` (see :mod:`ip_pyro.data.synthetic`); ``--language checksum``
uses checksum-first strings instead. For each arm (uniform order, left-to-right and learned Plackett–Luce under the
ELBO; then the uniform order and the learned one under the importance-weighted objective ``InsertionRWS`` with the
insertion-causal decoder, ``causal-*``, which scores every step of an order in one pass, so its ELBO uses all steps;
``--guides ... pl-rws`` adds the learned order under ``InsertionRWS`` with the canvas decoder) the script trains with
``svi.step(batch)`` and reports, on held-out strings, the ELBO, the importance-weighted and the exact
log-likelihood (nats per string), the guide's order entropy relative to uniform, the share of samples that belong
to the language, and one sample.

    python examples/quickstart.py                 # five arms, two at a time, one torch thread each
    python examples/quickstart.py --jobs 1 --guides uniform l2r pl pl-rws causal-uniform causal-pl-rws
    python examples/quickstart.py --steps 5000 --device cuda
"""
from __future__ import annotations

import argparse
import multiprocessing
import queue
import time

import pyro
import torch
from pyro.infer import SVI

from ip_pyro.guides import build_guide
from ip_pyro import collate
from ip_pyro.data import checksum_language, is_checksum_valid, is_mirror, iterate_batches, mirror_language
from ip_pyro.diagnostics import guide_order_entropy
from ip_pyro.infer import (InsertionELBO, InsertionRWS, exact_log_likelihood, importance_log_likelihood,
                           log_importance_weights)
from ip_pyro.models import InsertionProcess

ARMS = ("uniform", "l2r", "pl", "pl-rws", "causal-uniform", "causal-pl-rws")
DEMO_ARMS = ("uniform", "l2r", "pl", "causal-uniform", "causal-pl-rws")  # `make demo`: pl-rws (5x a step) left out
# each arm's training time relative to the uniform arm's (measured at the default size), to start the longest first
ARM_COST = {"uniform": 1.0, "l2r": 0.9, "pl": 1.3, "pl-rws": 5.7, "causal-uniform": 1.7, "causal-pl-rws": 2.4}


def decoder_of(name: str) -> str:
    """``causal-*`` arms use the insertion-causal decoder, the others the canvas decoder."""
    return "causal" if name.startswith("causal-") else "canvas"


def make_guide(name: str, args):
    """The guide of an arm, from the registry (``pl-rws`` is the PL guide trained under InsertionRWS)."""
    family = name.removeprefix("causal-")
    family = "pl" if family == "pl-rws" else family
    return build_guide(family, args.vocab_size, d_model=args.guide_d_model, n_layers=args.guide_layers, n_heads=2,
                       max_length=args.max_length)


def make_objective(name: str, args):
    """The ELBO (the paper's estimator; every step of each order with the causal decoder, which scores them in one
    pass) for every arm but ``*pl-rws``: IWAE + reweighted wake-sleep."""
    if name.endswith("pl-rws"):
        return InsertionRWS(num_particles=args.rws_particles)
    return InsertionELBO(num_particles=args.particles,
                         step_sampling="all" if decoder_of(name) == "causal" else "uniform")


def train_one(guide_name: str, train, args):
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    model = InsertionProcess(args.vocab_size, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                             max_length=args.max_length, decoder=decoder_of(guide_name)).to(args.device)
    guide = make_guide(guide_name, args).to(args.device)
    optimizer = pyro.optim.ClippedAdam({"lr": args.lr, "clip_norm": 1.0})
    svi = SVI(model, guide, optimizer, loss=make_objective(guide_name, args))
    step, started, epoch, recent = 0, time.perf_counter(), 0, []
    while step < args.steps:
        for batch in iterate_batches(train, args.batch_size, seed=args.seed + epoch, device=args.device):
            recent.append(svi.step(batch) / batch.batch_size)
            step += 1
            if step % args.log_every == 0:
                bound = "-IWAE" if guide_name.endswith("pl-rws") else "-ELBO"
                print(f"  [{guide_name}] step {step:5d}  {bound}/string {sum(recent) / len(recent):7.3f}")
                recent = []
            if step >= args.steps:
                break
        epoch += 1
    return model, guide, time.perf_counter() - started


@torch.no_grad()
def evaluate(model, guide, test, args):
    batch = collate(test).to(args.device)
    elbo = log_importance_weights(model, guide, batch, num_samples=args.elbo_samples).mean(0)
    iwae = importance_log_likelihood(model, guide, batch, num_samples=args.iwae_samples)
    exact = exact_log_likelihood(model, batch)
    samples = model.sample(args.num_samples)
    valid = [sample for sample in samples if in_language(sample, args)]
    return dict(elbo=elbo.mean().item(), iwae=iwae.mean().item(), exact=exact.mean().item(),
                entropy=guide_order_entropy(guide, batch, num_draws=64), valid=len(valid) / len(samples),
                sample=samples[0])


def in_language(sequence, args) -> bool:
    if args.language == "mirror":
        return is_mirror(sequence)
    return len(sequence) >= 2 and is_checksum_valid(sequence, args.vocab_size)


def make_data(args):
    total = args.num_train + args.num_test
    if args.language == "mirror":
        data = mirror_language(total, vocab_size=args.vocab_size, max_half=args.size, seed=args.seed)
        args.max_length = 2 * args.size
        described = f"mirror strings w + reversed(w), |w| = 1..{args.size}"
    else:
        data = checksum_language(total, vocab_size=args.vocab_size, max_digits=args.size, seed=args.seed)
        args.max_length = args.size + 1
        described = f"checksum-first strings with 1..{args.size} digits"
    return data[: args.num_train], data[args.num_train:], described


def main(args):
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return spread(args) if args.seeds else table(args)
    finally:
        torch.set_num_threads(previous)


def run_arm(name: str, train, test, args):
    """Train and evaluate one arm: ``(name, training seconds, evaluation dict)``."""
    model, guide, seconds = train_one(name, train, args)
    return name, seconds, evaluate(model, guide, test, args)


def _arm_worker(names, results, train, test, args):
    """A forked process: run arms from ``names`` (one torch thread each) until it is empty; put each row (or the
    error's text) on ``results``."""
    torch.set_num_threads(args.threads)
    while True:
        try:
            name = names.get_nowait()
        except queue.Empty:
            return
        try:
            results.put(run_arm(name, train, test, args))
        except Exception as error:  # reported by the parent, which fails with the arm's name
            results.put((name, None, f"{type(error).__name__}: {error}"))


def run_arms(train, test, args) -> list:
    """Every arm of ``args.guides``, ``args.jobs`` at a time (forked processes; each arm seeds itself, so the rows
    equal a one-at-a-time run's), in the order of ``args.guides``; the longest arms start first."""
    if args.jobs <= 1 or len(args.guides) == 1 or args.device != "cpu":
        return [run_arm(name, train, test, args) for name in args.guides]
    context = multiprocessing.get_context("fork")
    names, results = context.Queue(), context.Queue()
    for name in sorted(args.guides, key=lambda arm: -ARM_COST.get(arm, 1.0)):
        names.put(name)
    workers = [context.Process(target=_arm_worker, args=(names, results, train, test, args))
               for _ in range(min(args.jobs, len(args.guides)))]
    for worker in workers:
        worker.start()
    rows = {}
    while len(rows) < len(args.guides):
        try:
            name, seconds, result = results.get(timeout=5)
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers):
                raise SystemExit("error: a demo worker process died without a result; rerun with --jobs 1")
            continue
        if seconds is None:
            raise SystemExit(f"error: arm {name} failed: {result}")
        rows[name] = (name, seconds, result)
    for worker in workers:
        worker.join()
    return [rows[name] for name in args.guides]


def table(args):
    """Every arm once (``--seed``): the results table."""
    train, test, described = make_data(args)
    jobs = min(args.jobs, len(args.guides)) if args.device == "cpu" else 1
    print(f"{described} over {args.vocab_size} symbols; {len(train)} train / {len(test)} test; "
          f"{args.steps} steps per guide on {args.device} ({jobs} arm{'s' * (jobs > 1)} at a time, {args.threads} "
          f"torch thread{'s' * (args.threads > 1)} each)")
    started = time.perf_counter()
    rows = run_arms(train, test, args)
    print()
    print(f"{'arm':14s} {'train s':>8s} {'ELBO':>8s} {'IWAE':>8s} {'exact':>8s} {'entropy':>8s} {'valid %':>8s}  "
          "sample")
    for name, seconds, result in rows:
        print(f"{name:14s} {seconds:8.1f} {result['elbo']:8.3f} {result['iwae']:8.3f} {result['exact']:8.3f} "
              f"{result['entropy']:8.2f} {100 * result['valid']:8.1f}  {result['sample']}")
    print("(log-likelihoods in nats per test string; higher is better. ELBO <= IWAE <= exact. entropy: the guide's "
          "order entropy / log L!, 1 = uniform, 0 = one order. pl-rws: the PL guide under InsertionRWS. causal-*: the "
          "insertion-causal decoder, one pass per order; its ELBO scores every step.)")
    print(f"{len(rows)} arms trained and evaluated in {time.perf_counter() - started:.0f} s")
    return rows


def spread(args):
    """Every arm once per seed of ``--seeds`` (data, initialisation and draws all follow the seed): the exact
    log-likelihood and the guide's entropy as mean [min, max], so a difference can be told from seed noise."""
    results = {name: [] for name in args.guides}
    for seed in args.seeds:
        args.seed = seed
        train, test, _ = make_data(args)
        for name in args.guides:
            model, guide, _ = train_one(name, train, args)
            results[name].append(evaluate(model, guide, test, args))
    print()
    print(f"seeds {' '.join(map(str, args.seeds))}: mean [min, max]")
    print(f"{'arm':14s} {'exact':>26s} {'entropy':>20s}")
    for name, runs in results.items():
        exact = [run["exact"] for run in runs]
        entropy = [run["entropy"] for run in runs]
        print(f"{name:14s} {sum(exact) / len(exact):8.3f} [{min(exact):.3f}, {max(exact):.3f}] "
              f"{sum(entropy) / len(entropy):8.2f} [{min(entropy):.2f}, {max(entropy):.2f}]")
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guides", nargs="+", default=list(DEMO_ARMS), choices=ARMS,
                        help="arms: uniform, l2r, pl (ELBO) and pl-rws (the PL guide under InsertionRWS, with the canvas "
                             "decoder: about 5x the others' training time); causal-uniform and causal-pl-rws with the "
                             "insertion-causal decoder. Default: every arm but pl-rws")
    parser.add_argument("--language", default="mirror", choices=["mirror", "checksum"])
    parser.add_argument("--size", type=int, default=3, help="half length (mirror) or digit count (checksum)")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--particles", type=int, default=2, help="ELBO particles")
    parser.add_argument("--rws-particles", type=int, default=4, help="orders per string for the pl-rws arm")
    parser.add_argument("--vocab-size", type=int, default=4)
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-test", type=int, default=200)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--guide-d-model", type=int, default=32)
    parser.add_argument("--guide-layers", type=int, default=2)
    parser.add_argument("--elbo-samples", type=int, default=16)
    parser.add_argument("--iwae-samples", type=int, default=128)
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="run every arm once per seed and print "
                        "the exact log-likelihood and entropy as mean [min, max] (the demo's seed spread)")
    parser.add_argument("--jobs", type=int, default=2, help="arms trained side by side in forked processes on CPU, "
                        "one torch thread each (default 2, for a 2-core machine); 1: one after another. The table is "
                        "the same either way")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 (default): these small networks "
                        "gain little from more and slow down many-fold when another process shares a core "
                        "(docs/speed.md)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads must be positive integers (e.g. --jobs 2 --threads 1)")
    return args


if __name__ == "__main__":
    main(parse_args())
