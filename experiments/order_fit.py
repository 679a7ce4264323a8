"""How well does a trained IP fit each insertion order? Mean ``log p(x, sigma)`` per order family on held-out data.

The ELBO pulls a learned guide towards orders with a higher model log joint; if the model fits every order about
equally well, there is little for the guide to learn. For each family — the fixed orders left to right, right to
left, outside in and middle out, uniform random orders, and the checkpoint's own guide (if it has one) — this
prints the mean and spread over sequences of ``log p(x, sigma)`` (nats per sequence; higher is better), and the
share of sequences on which the family beats a uniform random order.

    python -m experiments.order_fit runs/star-easy-ip-pl/checkpoint.pt --data data/star-easy/test.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ip_pyro.guides import build_guide
from ip_pyro import collate
from ip_pyro.checkpoint import load_checkpoint


# the fixed orders of the guide registry (ip_pyro.guides.FAMILIES) under their display names
FIXED_ORDERS = {"left to right": "l2r", "right to left": "r2l", "outside in": "ends", "middle out (tree)": "tree"}


def mean_log_joint(model, guide, batch, samples: int) -> torch.Tensor:
    """``[B]``: ``log p(x, sigma)`` averaged over ``samples`` orders drawn from ``guide`` (one for a fixed order)."""
    repeated = batch.repeat(samples)
    with torch.no_grad():
        orders = guide.order_distribution(repeated).sample()
        return model.log_joint(repeated, orders).view(samples, batch.batch_size).mean(0)


def main(args):
    model, guide, _ = load_checkpoint(args.checkpoint)
    model.eval()
    records = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line][: args.num]
    prompts = [record.get("prompt", []) for record in records]
    batch = collate([record["target"] for record in records], prompts if any(prompts) else None,
                    vocab_size=model.vocab_size)
    torch.manual_seed(args.seed)
    families = {label: (build_guide(name), 1) for label, name in FIXED_ORDERS.items()}
    families["uniform random"] = (build_guide("uniform"), args.samples)
    if guide is not None and type(guide).__name__ not in {type(g).__name__ for g, _ in families.values()}:
        families[f"the checkpoint's guide ({type(guide).__name__})"] = (guide.eval(), args.samples)
    scores = {name: mean_log_joint(model, family, batch, samples) for name, (family, samples) in families.items()}
    uniform = scores["uniform random"]
    print(f"{args.checkpoint}: mean log p(x, sigma) over {batch.batch_size} sequences (nats; higher fits better)")
    print("| order | mean | std | beats uniform random |")
    print("|---|---|---|---|")
    results = {}
    for name, values in scores.items():
        beats = (values > uniform).float().mean().item()
        results[name] = {"mean": values.mean().item(), "std": values.std().item(), "beats_uniform": beats}
        print(f"| {name} | {values.mean():.2f} | {values.std():.2f} | {beats:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2))
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True, help="JSONL with a 'target' (and optional 'prompt') per line")
    parser.add_argument("--num", type=int, default=500, help="sequences (the first ones of the file)")
    parser.add_argument("--samples", type=int, default=8, help="orders per sequence for the random families")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
