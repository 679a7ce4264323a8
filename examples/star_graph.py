"""Star-graph path finding with the Insertion Process: a research script that calls ``svi.step(batch)``.

Builds star-graph data in memory, the IP model and a guide, and trains with Pyro's SVI in its own loop, reporting
greedy exact match and the guide's order entropy on held-out graphs as it goes. Swap the guide with ``--guide``
and the objective with ``--objective`` (the ELBO with 2 particles, or ``InsertionRWS`` with ``--particles K``,
optionally after ``--objective-switch`` ELBO steps).

    python examples/star_graph.py --task star-easy --guide pl --steps 2000
    python examples/star_graph.py --task star-medium --guide uniform --steps 4000 --device cuda
    python examples/star_graph.py --task star-easy --guide pl --prompt-group 2 --embed-std 1   # learns lookups
    python examples/star_graph.py --task star-easy --guide pl --prompt-group 2 --embed-std 1 --absolute-positions \
        --objective rws --objective-switch 500 --particles 4 --prompt-attention prefix        # learns the order
"""
from __future__ import annotations

import argparse
import time

import pyro
import torch
from pyro.infer import SVI

from ip_pyro.guides import FAMILIES, build_guide
from ip_pyro import collate
from ip_pyro.data.planning import LENGTH_SLACK, make_dataset, task_config
from ip_pyro.evaluation import planning_metrics
from ip_pyro.diagnostics import guide_order_entropy
from ip_pyro.infer import InsertionELBO, InsertionRWS
from ip_pyro.networks import positions_needed
from ip_pyro.models import InsertionProcess


def make_guide(name, task, args):
    sizes = dict(d_model=args.guide_d_model, n_layers=args.guide_layers,
                 max_length=task.max_target_length + LENGTH_SLACK, max_positions=max_positions(task, args),
                 prompt_group=args.prompt_group, embed_std=args.embed_std)
    return build_guide(name, task.vocab_size, **sizes)  # the registry: ip_pyro.guides.FAMILIES


def max_positions(task, args) -> int:
    """Learned absolute positions over ``[prompt ; BOS ; canvas ; END]`` (0 = rotary only)."""
    if not args.absolute_positions:
        return 0
    return positions_needed(task.max_prompt_length, task.max_target_length + LENGTH_SLACK)


def main(args):
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    task = task_config(args.task)
    data = make_dataset(args.task, seed=args.seed, sizes={"train": args.num_train, "valid": args.num_valid,
                                                         "test": 0})
    model = InsertionProcess(task.vocab_size, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                             max_length=task.max_target_length + LENGTH_SLACK,
                             max_positions=max_positions(task, args), prompt_group=args.prompt_group,
                             embed_std=args.embed_std, prompt_attention=args.prompt_attention).to(args.device)
    guide = make_guide(args.guide, task, args).to(args.device)
    optimizer = pyro.optim.ClippedAdam({"lr": args.lr, "clip_norm": 1.0})
    elbo = InsertionELBO(num_particles=2)  # the paper's estimator (also the warm-up before --objective-switch)
    rws = InsertionRWS(num_particles=args.particles, model_gradient=args.rws_gradient) \
        if args.objective == "rws" else None
    svi = SVI(model, guide, optimizer, loss=elbo)
    train, started = data["train"], time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(1, args.steps + 1):
        chosen = torch.randint(len(train), (args.batch_size,), generator=generator).tolist()
        batch = collate([train[i]["target"] for i in chosen], [train[i]["prompt"] for i in chosen]).to(args.device)
        if rws is not None and step == args.objective_switch + 1:
            svi = SVI(model, guide, optimizer, loss=rws)  # swap the objective, keep the optimiser state
        loss = svi.step(batch) / args.batch_size
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            metrics = planning_metrics(model, guide, data["valid"], task=args.task)
            model.train()
            bound = "-IWAE" if svi.loss is rws else "-ELBO"
            entropy = guide_order_entropy(guide, collate([e["target"] for e in data["valid"]],
                                                         [e["prompt"] for e in data["valid"]]).to(args.device))
            print(f"step {step:6d}  {bound}/graph {loss:7.3f}  exact match {metrics['exact_match']:.3f}  "
                  f"edges in graph {metrics['edges_in_graph']:.3f}  order entropy {entropy:.2f}  "
                  f"({time.perf_counter() - started:.0f} s)")
            metrics["order_entropy"] = entropy
    return metrics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="star-easy")
    parser.add_argument("--guide", default="pl", choices=list(FAMILIES), help="a guide family of the registry")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--objective", default="elbo", choices=["elbo", "rws"],
                        help="rws: IWAE for the model, reweighted wake-sleep for the guide (learns the order)")
    parser.add_argument("--objective-switch", type=int, default=0, help="with rws: ELBO steps before switching")
    parser.add_argument("--particles", type=int, default=4, help="the K of --objective rws")
    parser.add_argument("--rws-gradient", default="steps", choices=["full", "steps"])
    parser.add_argument("--prompt-attention", default="full", choices=["full", "prefix"],
                        help="prefix: the edge list is encoded once per graph for all its canvases")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--absolute-positions", action="store_true",
                        help="learned absolute positions on top of the rotary ones (see the README)")
    parser.add_argument("--prompt-group", type=int, default=1,
                        help="2: each edge-list token also embeds its edge partner (see the README)")
    parser.add_argument("--embed-std", type=float, default=0.02, help="initial token embedding scale")
    parser.add_argument("--guide-d-model", type=int, default=64)
    parser.add_argument("--guide-layers", type=int, default=3)
    parser.add_argument("--num-train", type=int, default=50_000)
    parser.add_argument("--num-valid", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
