"""The learned guides' cost side by side: Plackett–Luce, the pointer guide and the sequential guide at the same
width and depth. Part of ``benchmarks/run.py`` (key ``guides`` of its JSON); runnable alone:

    python -m benchmarks.guide_cost --quick          # about a minute on 2 CPU cores

Shapes: QM9 (V = 20, no prompt, random token strings of 10..28 tokens, mean 19) and star-hard (prompt of about 90
tokens, paths of 22), as in ``benchmarks/decoders.py``. Per guide, two operations on one batch, timings interleaved
and summarised by medians:

* ``rws_k4``: draw K = 4 orders, score their ``log q`` and backpropagate it (what ``InsertionRWS(4)`` asks of a
  guide, wake-phi included);
* ``elbo_m2``: draw M = 2 orders, every step's next-position distribution and ``log q`` with backward (what
  ``InsertionELBO(2)`` asks in closed form);
* ``sample_k4``: drawing the 4 orders alone (the pointer guide's ``L`` cached stream steps; PL's one sort).

Target: the pointer guide's ``rws_k4`` <= 2x the Plackett–Luce guide's. Beside the times, each guide's ``rws_k4``
FLOPs (``torch.profiler``'s count, forward and backward, independent of the load) over PL's: the ratio the times
would show if every operator ran at one FLOP rate, so the gap between the two is per-kernel overhead.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks import decoders  # (shapes, sizes and the interleaved timer)

from ip_pyro.guides import build_guide  # noqa: E402

GUIDES = ("pl", "pointer", "sequential")


def _operations(guide, batch) -> dict:
    """``rws_k4`` and ``elbo_m2`` as in the module docstring, and ``sample_k4``: drawing the 4 orders only."""
    def rws_k4():
        guide.zero_grad()
        q = guide.order_distribution(batch)
        q.log_prob(q.sample((4,))).sum().backward()

    def sample_k4():
        with torch.no_grad():
            guide.order_distribution(batch).sample((4,))

    def elbo_m2():
        guide.zero_grad()
        q = guide.order_distribution(batch)
        steps, all_next = q.log_prob_steps_and_next(q.sample((2,)))
        (steps.sum() + all_next.clamp(min=-30.0).sum()).backward()
    return {"rws_k4": rws_k4, "elbo_m2": elbo_m2, "sample_k4": sample_k4}


def section(args) -> dict:
    result = {}
    for shape in ("qm9", "star-hard"):
        batch, vocab_size, max_length, _, _ = decoders._shape(shape, args.batch_size, args.device, 0)
        runs = {}
        for name in args.guides:
            torch.manual_seed(0)
            guide = build_guide(name, vocab_size, d_model=args.guide_d_model, n_layers=args.guide_layers,
                                max_length=max_length).to(args.device)
            for operation, run in _operations(guide, batch).items():
                runs[f"{name}/{operation}"] = run
        seconds = decoders._interleaved(runs, args.device, args.rounds, args.repeats)
        over_pl = {key: value / seconds[f"pl/{key.split('/')[1]}"] for key, value in seconds.items()}
        flops = {name: decoders._matmul_flops(runs[f"{name}/rws_k4"]) for name in args.guides}
        result[shape] = {"batch_size": batch.batch_size, "target_tokens_mean": float(batch.lengths.float().mean()),
                         "seconds": seconds, "over_pl": over_pl, "rws_k4_flops": flops,
                         "rws_k4_flops_over_pl": {name: value / flops["pl"] for name, value in flops.items()}}
    return result


def report(result: dict) -> None:
    for shape in ("qm9", "star-hard"):
        entry = result[shape]
        print(f"  {shape} (batch {entry['batch_size']}, {entry['target_tokens_mean']:.1f} target tokens):")
        for key, seconds in entry["seconds"].items():
            print(f"    {key:22s} {1000 * seconds:7.1f} ms  {entry['over_pl'][key]:5.2f}x the PL guide")
        for name, flops in entry["rws_k4_flops"].items():
            print(f"    {name + '/rws_k4 FLOPs':22s} {flops / 1e6:7.0f} M   {entry['rws_k4_flops_over_pl'][name]:5.2f}x "
                  "the PL guide's (the bound at equal FLOP rates)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about a minute on 2 cores)")
    parser.add_argument("--guides", nargs="+", default=list(GUIDES), choices=GUIDES,
                        help="guides to time (the Plackett-Luce guide is the reference and always included)")
    decoders.add_size_arguments(parser)
    args = parser.parse_args(argv)
    args.guides = ["pl"] + [name for name in args.guides if name != "pl"]
    return configure(args)


def configure(args):
    """Fill the section's settings from ``args.quick`` (and every guide when ``args`` has no ``guides``)."""
    if not hasattr(args, "guides"):
        args.guides = list(GUIDES)
    args.guide_settings = dict(rounds=2 if args.quick else 3, repeats=3 if args.quick else 6)
    return args


def run(args) -> dict:
    return section(argparse.Namespace(**{**vars(args), **args.guide_settings}))


if __name__ == "__main__":
    decoders.command_line(parse_args, run, report)
