"""Can a small Transformer look up a node's neighbour in a flat edge list? Rotary, + absolute positions, + edge pairs.

The skill every star-graph model needs, in isolation: the prompt is ``k`` edges written ``u v u v ...`` (random
orientation, shuffled, distinct node ids) followed by a query node; the target is the query's neighbour (one token,
then EOS). Rotary attention sees only offsets between positions, so a node cannot tell whether its partner is the
token before or after it (that is the parity of its index); learned absolute positions make the parity visible.
With ``prompt_group=2`` each prompt token also embeds its edge partner, so the lookup is one content match; the
scale of the initial token embeddings (``embed_std``, 0.02 by default) decides whether it starts learning at all.
All variants train from the same initial weights on the same fresh batches; the script prints held-out accuracy
of the greedy answer against training steps.

    python -m experiments.edge_lookup                      # about 4 minutes on 2 CPU cores
    python -m experiments.edge_lookup --steps 3000 --json edge_lookup.json
    python -m experiments.edge_lookup --directed           # the easier induction-head version
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from ip_pyro import collate
from ip_pyro.models import LeftToRightLM


def lookup_batch(size: int, edges: int, nodes: int, generator: torch.Generator, directed: bool = False) -> tuple:
    """``(prompts, targets)``: ``size`` edge lists of ``edges`` disjoint edges over ``nodes`` ids, plus a query.

    ``directed``: the query is always the first node of its edge, so the answer is the token right after the
    query's match in the list (the classic induction-head task, no parity needed)."""
    prompts, targets = [], []
    for _ in range(size):
        ids = torch.randperm(nodes, generator=generator)[: 2 * edges].view(edges, 2)
        flip = torch.rand(edges, generator=generator) < 0.5
        ids = torch.where(flip.unsqueeze(-1), ids.flip(-1), ids)
        ids = ids[torch.randperm(edges, generator=generator)]
        row = int(torch.randint(0, edges, (1,), generator=generator))
        end = 0 if directed else int(torch.randint(0, 2, (1,), generator=generator))
        prompts.append(ids.flatten().tolist() + [int(ids[row, end])])
        targets.append([int(ids[row, 1 - end])])
    return prompts, targets


def accuracy(model, prompts, targets) -> float:
    answers = model.sample(prompt=prompts, greedy=True, max_length=1)
    return sum(answer[:1] == target for answer, target in zip(answers, targets)) / len(targets)


VARIANTS = {"rotary": ("rotary only", {}),
            "absolute": ("rotary + absolute", {"max_positions": None}),
            "pairs": ("rotary + edge pairs", {"prompt_group": 2}),
            "wide": ("rotary, embed std 1", {"embed_std": 1.0}),
            "pairs-wide": ("edge pairs, embed std 1", {"prompt_group": 2, "embed_std": 1.0})}


def train(variant: str, args) -> dict:
    torch.manual_seed(args.seed)
    prompt_length = 2 * args.edges + 1
    sizes = dict(d_model=args.d_model, n_layers=args.layers, n_heads=4, max_length=1)
    model = LeftToRightLM(args.nodes, **sizes)
    name, options = VARIANTS[variant]
    if options:  # same initial weights for everything the variant does not change
        shared = model.state_dict()
        if "embed_std" in options:
            shared = {key: value for key, value in shared.items() if not key.endswith("stack.embed.weight")}
        options = {key: prompt_length + 3 if value is None else value for key, value in options.items()}
        model = LeftToRightLM(args.nodes, **sizes, **options)
        model.load_state_dict(shared, strict=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    data = torch.Generator().manual_seed(args.seed + 1)
    held_out = lookup_batch(1000, args.edges, args.nodes, torch.Generator().manual_seed(10_000 + args.seed),
                            args.directed)
    curve, started = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        prompts, targets = lookup_batch(args.batch_size, args.edges, args.nodes, data, args.directed)
        loss = -model.log_prob(collate(targets, prompts)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            curve.append({"step": step, "accuracy": accuracy(model, *held_out), "loss": loss.item()})
    return {"positions": name, "curve": curve,
            "seconds": time.perf_counter() - started}


def main(args):
    results = [train(variant, args) for variant in args.variants]
    print(f"{'directed' if args.directed else 'neighbour'} lookup: {args.edges} edges over {args.nodes} node ids, width {args.d_model}, {args.layers} "
          f"layers; held-out accuracy (1,000 lists; chance about {1 / (2 * args.edges - 1):.2f}):")
    print("| step | " + " | ".join(result["positions"] for result in results) + " |")
    print("|---|" + "---|" * len(results))
    for points in zip(*(result["curve"] for result in results)):
        print(f"| {points[0]['step']} | " + " | ".join(f"{point['accuracy']:.3f}" for point in points) + " |")
    print("seconds: " + ", ".join(f"{result['positions']} {result['seconds']:.0f}" for result in results))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"settings": vars(args), "results": results}, stream, indent=2)
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--directed", action="store_true", help="the query is always the first node of its edge")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS),
                        help="rotary: rotary positions only; absolute: + learned absolute positions; pairs: + each "
                             "prompt token embeds its edge partner (prompt_group=2); wide: token embeddings drawn "
                             "with std 1 instead of 0.02; pairs-wide: both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
