"""Parallel decoding of a trained IP: speed and quality for several insertions per decoder pass.

For a SMILES checkpoint: validity and uniqueness of ``--num`` samples and sequences/s; for a planning checkpoint:
greedy exact match on the first ``--num`` test examples and sequences/s. ``k = 1`` is exact sampling; ``k > 1``
inserts into ``k`` slots per pass (see ``InsertionProcess.sample``). Settings are timed in rotation.

    python -m benchmarks.parallel_decoding runs/qm9/ip-pl/checkpoint.pt --k 1 2 4 --num 2000
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from ip_pyro.checkpoint import load_checkpoint


def main(args):
    model, _, extra = load_checkpoint(args.checkpoint)
    torch.manual_seed(args.seed)
    if "vocabulary" in extra:
        from ip_pyro.data.smiles import SmilesVocabulary
        from ip_pyro.evaluation import sample_smiles
        from ip_pyro.metrics.molecules import canonical

        vocabulary = SmilesVocabulary(extra["vocabulary"])

        def run(k):
            samples = sample_smiles(model, vocabulary, args.num, insertions_per_step=k)
            valid = [c for c in map(canonical, samples) if c is not None]
            return {"validity": len(valid) / len(samples), "unique": len(set(valid)) / max(len(valid), 1)}
    else:
        from ip_pyro.data.planning import SPLITS, make_dataset
        from ip_pyro.evaluation import planning_metrics

        examples = make_dataset(extra["task"], seed=0, sizes={"train": 0, "valid": 0,
                                                             "test": SPLITS["test"]})["test"][: args.num]

        def run(k):
            metrics = planning_metrics(model, None, examples, task=extra["task"], insertions_per_step=k)
            return {"exact_match": metrics["exact_match"]}
    results = {k: {"seconds": 0.0} for k in args.k}
    for repeat in range(args.repeats):
        for k in args.k[repeat % len(args.k):] + args.k[: repeat % len(args.k)]:
            started = time.perf_counter()
            with torch.no_grad():
                quality = run(k)
            results[k]["seconds"] += time.perf_counter() - started
            for name, value in quality.items():
                results[k][name] = results[k].get(name, 0.0) + value / args.repeats
    for k, entry in results.items():
        entry["sequences_per_s"] = args.num * args.repeats / entry.pop("seconds")
        print(f"k={k}: " + ", ".join(f"{name} {value:.3f}" for name, value in entry.items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2, help="rotations of the settings (the first also warms up)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
