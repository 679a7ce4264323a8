"""The IWAE likelihood's cost against the exact likelihood's, side by side in one run:

    python -m benchmarks.likelihood --quick          # about a minute on 2 CPU cores

Shape: 64 mirror strings ``w + reversed(w)`` of length <= 6 (the quickstart's language), a width-128, 4-layer model
and its Plackett–Luce guide (width 64, 3 layers), untrained (weights do not change the cost). Per decoder, one call
each, timings summarised by medians over ``--rounds``:

* ``exact``: :func:`exact_log_likelihood` (the canvas decoder's ``2^L`` subset recursion; the causal decoder sums
  all ``L!`` orders);
* ``iwae``: :func:`importance_log_likelihood` with ``--orders`` orders (default 1,000), each distinct canvas (or,
  causal decoder, order) scored once;
* ``iwae_plain`` (``--plain``): the same orders, every one scored with ``model.log_joint`` (the path without the
  sharing; slow: 7,000 canvases per string at 1,000 orders).

Targets: canvas ``iwae`` within 3x ``exact``; causal ``iwae``
under 10 s.
"""
from __future__ import annotations

import argparse
import statistics
import time

import pyro
import torch

from benchmarks import decoders  # (the shared command line and JSON writer)

from ip_pyro import collate  # noqa: E402
from ip_pyro.data import mirror_language  # noqa: E402
from ip_pyro.guides import build_guide  # noqa: E402
from ip_pyro.infer import exact_log_likelihood, importance_log_likelihood  # noqa: E402
from ip_pyro.models import InsertionProcess  # noqa: E402


def _calls(decoder: str, args) -> dict:
    pyro.clear_param_store()
    torch.manual_seed(0)
    batch = collate(mirror_language(64, vocab_size=4, max_half=3, seed=0), vocab_size=4).to(args.device)
    model = InsertionProcess(4, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, max_length=6,
                             decoder=decoder).to(args.device)
    guide = build_guide("pl", 4, d_model=args.guide_d_model, n_layers=args.guide_layers, n_heads=2,
                        max_length=6).to(args.device)
    calls = {"exact": lambda: exact_log_likelihood(model, batch, progress=False),
             "iwae": lambda: importance_log_likelihood(model, guide, batch, args.orders, progress=False)}
    if args.plain:
        calls["iwae_plain"] = lambda: importance_log_likelihood(model, guide, batch, args.orders, progress=False,
                                                                distinct=False)
    return calls


def _seconds(call, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def section(args) -> dict:
    result = {"orders": args.orders, "strings": 64}
    for decoder in ("canvas", "causal"):
        calls = _calls(decoder, args)
        seconds = {name: _seconds(call, args.rounds) for name, call in calls.items()}
        result[decoder] = {"seconds": seconds, "iwae_over_exact": seconds["iwae"] / seconds["exact"]}
        if "iwae_plain" in seconds:
            result[decoder]["plain_over_iwae"] = seconds["iwae_plain"] / seconds["iwae"]
    return result


def report(result: dict) -> None:
    print(f"  {result['strings']} mirror strings of length <= 6, {result['orders']} orders:")
    for decoder in ("canvas", "causal"):
        entry = result[decoder]
        shown = "  ".join(f"{name} {value:6.2f} s" for name, value in entry["seconds"].items())
        extra = f", the plain path {entry['plain_over_iwae']:.1f}x slower" if "plain_over_iwae" in entry else ""
        print(f"    {decoder:6s} {shown}   iwae / exact {entry['iwae_over_exact']:.2f}x{extra}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    parser.add_argument("--orders", type=int, default=1000, help="IWAE orders per string")
    parser.add_argument("--plain", action="store_true", help="also time the path without sharing (slow)")
    decoders.add_size_arguments(parser)
    args = parser.parse_args(argv)
    args.rounds = 1 if args.quick else 3
    return args


if __name__ == "__main__":
    decoders.command_line(parse_args, section, report)
