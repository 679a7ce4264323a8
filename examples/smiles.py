"""Unconditional SMILES generation with the Insertion Process: a research script that calls ``svi.step(batch)``.

Loads QM9 (from the ``qm9pack`` wheel, cached), or any SMILES file, builds the vocabulary from the training split,
trains the IP with a guide of your choice through Pyro's SVI in its own loop, and reports validity, uniqueness,
novelty (and, at the end, the KL score and FCD) of sampled molecules. Swap the guide with ``--guide``, the
termination with ``--termination eos``.

    python examples/smiles.py --steps 2000                               # QM9, learned (Plackett-Luce) order
    python examples/smiles.py --guide uniform --termination eos --steps 2000
    python examples/smiles.py --data my_molecules.smi --steps 500        # your own file
"""
from __future__ import annotations

import argparse
import time

import pyro
import torch
from pyro.infer import SVI

from ip_pyro.guides import build_guide
from ip_pyro import collate
from ip_pyro.data.molecules import load_smiles_task
from ip_pyro.evaluation import smiles_metrics
from ip_pyro.infer import InsertionELBO
from ip_pyro.models import InsertionProcess


def make_guide(name, vocab_size, max_length, args):
    sizes = dict(d_model=args.guide_d_model, n_layers=args.guide_layers, max_length=max_length)
    return build_guide(name, vocab_size, **sizes)  # the registry: ip_pyro.guides.FAMILIES


def main(args):
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    task = load_smiles_task("smiles" if args.data else "qm9", path=args.data, train_size=args.num_train,
                            valid_size=args.num_valid, test_size=args.num_test, seed=args.seed)
    vocab_size, max_length = len(task.vocabulary), task.max_length
    print(f"{len(task.splits['train'])} training molecules, {vocab_size} tokens: {' '.join(task.vocabulary.tokens)}")
    model = InsertionProcess(vocab_size, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                             max_length=max_length, termination=args.termination).to(args.device)
    guide = make_guide(args.guide, vocab_size, max_length, args).to(args.device)
    optimizer = pyro.optim.ClippedAdam({"lr": args.lr, "clip_norm": 1.0})
    svi = SVI(model, guide, optimizer, loss=InsertionELBO(num_particles=args.particles))
    train, started = task.splits["train"], time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        chosen = torch.randint(len(train), (args.batch_size,), generator=generator).tolist()
        batch = collate([train[i]["target"] for i in chosen]).to(args.device)
        loss = svi.step(batch) / args.batch_size
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with torch.no_grad():
                metrics, samples = smiles_metrics(model, guide, task, num_samples=args.num_samples, full=False)
            model.train()
            print(f"step {step:6d}  -ELBO/molecule {loss:7.3f}  validity {metrics['validity']:.3f}  "
                  f"unique {metrics['unique']:.3f}  e.g. {' '.join(samples[:3])}  "
                  f"({time.perf_counter() - started:.0f} s)")
    model.eval()
    with torch.no_grad():
        final, _ = smiles_metrics(model, guide, task, num_samples=args.num_samples, nll_samples=args.nll_samples,
                                  nll_limit=args.num_valid, split="valid")
    print("  ".join(f"{key} {value:.3f}" for key, value in final.items() if isinstance(value, float)))
    return final


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a SMILES file (default: QM9)")
    parser.add_argument("--guide", default="pl")
    parser.add_argument("--termination", default="stop", choices=["stop", "eos"])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--particles", type=int, default=2)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--guide-d-model", type=int, default=64)
    parser.add_argument("--guide-layers", type=int, default=3)
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--num-valid", type=int, default=500)
    parser.add_argument("--num-test", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--nll-samples", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
