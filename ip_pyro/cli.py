"""The ``ip-pyro`` command line.

    ip-pyro data TASK --out DIR [--seed S]
    ip-pyro train --task TASK (star-*, maze-*, qm9, moses, smiles) --model {fo-arm,ip} --guide {uniform,l2r,r2l,ends,pl,tree,sequential} --steps N
                  --batch-size B --d-model D --layers L --lr LR --device DEV --seed S --out DIR
                  [--checkpoint-every K] [--resume] [--data DIR] [--guide-lr LR] ...
    ip-pyro eval --checkpoint PATH [--split test] [--decode greedy|sample] [--nll-samples K]
    ip-pyro sample --checkpoint PATH -n N [--split test]
    ip-pyro diagnose CHECKPOINT [--data FILE] [--out DIR] [--domain path|smiles|generic] ...

Errors are one line on stderr with a non-zero exit status; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


class CommandError(ValueError):
    """A user-facing error: printed as one line."""


def _landmarks(records: list) -> list | None:
    """Star-graph records (with ``source``, ``centre``, ``goal``) -> per-target positions of those nodes."""
    if not records or not all({"source", "centre", "goal"} <= set(record) for record in records):
        return None
    return [{"source": 0, "centre": record["target"].index(record["centre"]) if record["centre"] in
             record["target"] else 0, "goal": max(len(record["target"]) - 1, 0)} for record in records]


def _read_records(path: Path) -> list:
    """Records with a ``target`` (and optional ``prompt``, star-graph fields, ...) from a JSONL file, or from a
    JSON file holding a list of id lists."""
    if not path.is_file():
        raise CommandError(f"no data file at {path}; pass a JSONL file with a 'target' list per line")
    text = path.read_text()
    if not text.strip():
        raise CommandError(f"{path} is empty; it needs one example per line")
    if path.suffix == ".json":
        return [{"target": sequence} for sequence in json.loads(text)]
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CommandError(f"{path}:{number} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or "target" not in record:
            raise CommandError(f"{path}:{number} has no 'target' field; each line needs {{\"target\": [ids]}}")
        records.append(record)
    return records


def _diagnose(args) -> int:
    import torch

    from ip_pyro.batch import collate
    from ip_pyro.checkpoint import load_checkpoint
    from ip_pyro.diagnose import diagnose

    model, guide, extra = load_checkpoint(args.checkpoint, map_location=args.device)
    if guide is None:
        raise CommandError(f"checkpoint {args.checkpoint} holds no guide; diagnose needs an IP model with a guide")
    landmarks = None
    token_names = extra.get("token_names")
    if args.data and Path(args.data).name.endswith((".smi", ".csv", ".csv.gz")):
        if "vocabulary" not in extra:
            raise CommandError(f"{args.data} holds SMILES but {args.checkpoint} was not trained on SMILES; pass a "
                               "JSONL file of token ids")
        from ip_pyro.data.smiles import SmilesVocabulary, read_smiles

        vocabulary = SmilesVocabulary(extra["vocabulary"])
        sequences = [vocabulary.encode(smiles) for smiles in read_smiles(Path(args.data))[: args.num_sequences]]
        prompts = None
    elif args.data:
        records = _read_records(Path(args.data))[: args.num_sequences]
        sequences = [record["target"] for record in records]
        prompts = [record.get("prompt", []) for record in records]
        prompts = prompts if any(prompts) else None
        landmarks = _landmarks(records)
    else:
        torch.manual_seed(args.seed)
        sequences, prompts = [s for s in model.sample(args.num_sequences) if s], None
        if not sequences:
            raise CommandError("the model only sampled empty sequences; pass --data with sequences to diagnose")
    batch = collate(sequences, prompts, vocab_size=model.vocab_size).to(args.device)
    report = diagnose(model, guide, batch, args.out, token_names=token_names, domain=args.domain, landmarks=landmarks,
                      num_chains=args.chains, num_draws=args.draws, mcmc_samples=args.mcmc_samples,
                      mcmc_warmup=args.mcmc_warmup, seed=args.seed)
    print(report["summary"])
    print(f"wrote {len(report['files'])} files to {args.out}")
    return 0


def _load_splits(args, task: str, *, need_train: bool = True) -> dict:
    from ip_pyro.data.planning import SPLITS, load_dataset, make_dataset, task_config

    task_config(task)  # one-line error for an unknown task
    if getattr(args, "data", None):
        splits, manifest = load_dataset(args.data)
        if manifest["task"] != task:
            raise CommandError(f"{args.data} holds {manifest['task']} data, not {task}; pass the matching --data")
        return splits
    sizes = dict(SPLITS) if need_train else {"train": 0, "valid": SPLITS["valid"], "test": SPLITS["test"]}
    return make_dataset(task, seed=args.data_seed, sizes=sizes)


def _data(args) -> int:
    from ip_pyro.data.planning import make_dataset, write_dataset

    if args.task in ("moses", "qm9"):
        from ip_pyro.data.smiles import fetch_moses, fetch_qm9

        folder = (fetch_moses if args.task == "moses" else fetch_qm9)(args.out)
        print(f"{args.task} files in {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
        return 0

    if args.out is None:
        raise CommandError(f"pass --out DIR for the {args.task} data")
    splits = make_dataset(args.task, seed=args.seed, sizes={"train": args.train, "valid": args.valid,
                                                            "test": args.test})
    out = write_dataset(splits, args.out, args.task, seed=args.seed)
    print(f"wrote {', '.join(f'{len(v)} {k}' for k, v in splits.items())} examples of {args.task} to {out}")
    return 0


def config_from_args(args, *, vocab_size: int, max_length: int, max_prompt_length: int = 0,
                     extra: dict | None = None):
    """The :class:`ip_pyro.train.TrainConfig` of ``ip-pyro train``'s flags (shared by every task family)."""
    import torch

    from ip_pyro.train import TrainConfig

    config = TrainConfig(task=args.task, model=args.model, guide=args.guide, steps=args.steps,
                         batch_size=args.batch_size, d_model=args.d_model, layers=args.layers, heads=args.heads,
                         guide_d_model=args.guide_d_model, guide_layers=args.guide_layers, lr=args.lr,
                         guide_lr=args.guide_lr, warmup=args.warmup, particles=args.particles,
                         objective=args.objective, objective_switch=args.objective_switch,
                         rws_gradient=args.rws_gradient, rws_guide_update=args.rws_guide_update,
                         termination=args.termination, step_sampling=args.step_sampling,
                         steps_per_order=args.steps_per_order, order_entropy_weight=args.order_entropy_weight,
                         order_entropy_anneal=args.order_entropy_anneal, precision=args.precision,
                         compile=args.compile, absolute_positions=args.absolute_positions,
                         prompt_group=args.prompt_group, embed_std=args.embed_std,
                         max_prompt_length=max_prompt_length,
                         distributed=args.distributed, dropout=args.dropout, ema_decay=args.ema_decay,
                         ema_start=args.ema_start, eval_every=args.eval_every, eval_size=args.eval_size,
                         checkpoint_every=args.checkpoint_every, time_limit=args.time_limit, seed=args.seed,
                         device=args.device, out=args.out,
                         vocab_size=vocab_size, max_length=max_length, extra=dict(extra or {}))
    config.validate()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {args.device} asked for, but no CUDA device is available; use --device cpu")
    if (Path(config.out) / "checkpoint.pt").exists() and not args.resume:
        raise CommandError(f"{config.out} already holds a checkpoint; pass --resume to continue it or choose "
                           "another --out")
    return config


def run_training(args, config, examples: list, evaluate) -> "Trainer":  # noqa: F821 - imported lazily
    """Build the model and guide, train (resuming when asked) and return the trainer."""
    import pyro

    from ip_pyro.train import Trainer, build_model

    pyro.set_rng_seed(args.seed)
    model, guide = build_model(config)
    trainer = Trainer(config, model, guide, examples, evaluate=evaluate)
    if args.resume and trainer.resume():
        print(f"resumed from {config.out}/checkpoint.pt at step {trainer.step}")
    try:
        trainer.fit(progress=not args.no_progress)
    finally:
        import torch.distributed

        if config.distributed and torch.distributed.is_initialized():
            torch.distributed.barrier()  # rank 0 may still be writing the last checkpoint
            torch.distributed.destroy_process_group()
    return trainer


def _train(args) -> int:
    from ip_pyro.data.molecules import is_smiles_task

    if is_smiles_task(args.task):
        from ip_pyro.cli_smiles import train_smiles
        return train_smiles(args)
    from ip_pyro.data.planning import LENGTH_SLACK, task_config
    from ip_pyro.evaluation import planning_metrics

    task = task_config(args.task)
    config = config_from_args(args, vocab_size=task.vocab_size, max_length=task.max_target_length + LENGTH_SLACK,
                              max_prompt_length=task.max_prompt_length)
    splits = _load_splits(args, args.task)
    valid = splits["valid"][: config.eval_size]

    def evaluate(model, guide, trainer):
        return {f"valid_{k}": v for k, v in planning_metrics(model, guide, valid, task=args.task).items()}

    trainer = run_training(args, config, splits["train"], evaluate)
    final = [record for record in trainer.history if "valid_exact_match" in record]
    if final:
        print(json.dumps(final[-1]))
    return 0


def _print_table(results: dict) -> None:
    width = max(len(name) for name in results)
    for name, value in results.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown}")


def _eval(args) -> int:
    from ip_pyro.checkpoint import load_checkpoint
    from ip_pyro.evaluation import planning_metrics, sequence_nll

    model, guide, extra = load_checkpoint(args.checkpoint, map_location=args.device, use_ema=args.weights == "ema")
    task = extra.get("task")
    if task is None:
        raise CommandError(f"checkpoint {args.checkpoint} records no task; evaluate it with the Python API")
    if "vocabulary" in extra:
        from ip_pyro.cli_smiles import eval_smiles
        return eval_smiles(args, model, guide, extra)
    splits = _load_splits(args, task, need_train=False)
    if args.split not in splits:
        raise CommandError(f"no split {args.split!r}; choose from {', '.join(splits)}")
    examples = splits[args.split][: args.limit] if args.limit else splits[args.split]
    results = {"task": task, "split": args.split, "decode": args.decode, "weights": args.weights,
               **planning_metrics(model, guide, examples, task=task, greedy=args.decode == "greedy",
                                  insertions_per_step=args.insertions_per_step)}
    if args.nll_samples:
        subset = examples[: args.nll_limit] if args.nll_limit else examples
        results.update(sequence_nll(model, guide, subset, nll_samples=args.nll_samples), nll_examples=len(subset))
    _print_table(results)
    out = Path(args.json) if args.json else Path(args.checkpoint).with_name(f"eval_{args.split}.json")
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


def _sample(args) -> int:
    from ip_pyro.checkpoint import load_checkpoint

    model, _, extra = load_checkpoint(args.checkpoint, map_location=args.device)
    task = extra.get("task")
    if "vocabulary" in extra:
        from ip_pyro.data.smiles import SmilesVocabulary
        from ip_pyro.evaluation import sample_smiles

        for smiles in sample_smiles(model, SmilesVocabulary(extra["vocabulary"]), args.num):
            print(smiles)
        return 0
    if task is None:
        for sequence in model.sample(args.num):
            print(" ".join(map(str, sequence)))
        return 0
    examples = _load_splits(args, task, need_train=False)[args.split][: args.num]
    predictions = model.sample(prompt=[e["prompt"] for e in examples], greedy=args.greedy)
    for example, prediction in zip(examples, predictions):
        mark = "ok " if prediction == example["target"] else "   "
        goals = (f"subgoals {' '.join(map(str, example['subgoals']))}" if "subgoals" in example
                 else f"source {example['source']} goal {example['goal']}")
        print(f"{mark}{goals}: {' '.join(map(str, prediction))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ip-pyro", description="The Insertion Process in Pyro.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="generate a planning dataset as JSONL with a checksummed manifest, or "
                                             "fetch MOSES or QM9 (`ip-pyro data moses|qm9`)")
    data.add_argument("task")
    data.add_argument("--out", default=None, help="output folder (moses/qm9: default $IP_PYRO_CACHE/<name>)")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--train", type=int, default=50_000)
    data.add_argument("--valid", type=int, default=500)
    data.add_argument("--test", type=int, default=5_000)
    data.set_defaults(run=_data)

    train = commands.add_parser("train", help="train a model on a planning or SMILES task")
    train.add_argument("--task", default="star-easy")
    train.add_argument("--model", default="ip")
    train.add_argument("--guide", default="pl")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--d-model", type=int, default=128)
    train.add_argument("--layers", type=int, default=4)
    train.add_argument("--heads", type=int, default=4)
    train.add_argument("--guide-d-model", type=int, default=64)
    train.add_argument("--guide-layers", type=int, default=3)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--guide-lr", type=float, default=None)
    train.add_argument("--warmup", type=int, default=100)
    train.add_argument("--absolute-positions", action="store_true",
                       help="learned absolute position embeddings on top of the rotary ones (lets attention tell "
                            "the two ends of an edge in a flat edge list apart)")
    train.add_argument("--prompt-group", type=int, default=1,
                       help="read the prompt as groups of this many tokens; each prompt token also embeds the "
                            "rest of its group (2 for the star graphs' edge list u v u v ...; 1 = off)")
    train.add_argument("--embed-std", type=float, default=0.02,
                       help="initial token embedding scale (0.02 as GPT-2; 1.0 learns lookups in the prompt far "
                            "sooner, see benchmarks/edge_lookup.py)")
    train.add_argument("--dropout", type=float, default=0.0)
    train.add_argument("--ema-decay", type=float, default=0.999)
    train.add_argument("--ema-start", type=int, default=200)
    train.add_argument("--particles", type=int, default=2, help="IP: orders per sequence (the ELBO's M; the K of "
                       "--objective rws, where 4 is a good start)")
    train.add_argument("--objective", default="elbo", help="IP: elbo (InsertionELBO) or rws (IWAE for the model, "
                       "reweighted wake-sleep for the guide: learns orders; costs about K (L + 1) canvases per sequence)")
    train.add_argument("--objective-switch", type=int, default=0, metavar="STEP", help="with --objective rws: train "
                       "with the ELBO for STEP steps first, then switch (saved in the checkpoint)")
    train.add_argument("--rws-gradient", default="full", help="with --objective rws: full (backpropagate every "
                       "canvas) or steps (no-grad weights, gradient through --steps-per-order steps per order)")
    train.add_argument("--rws-guide-update", default="wake", help="with --objective rws: wake (wake-phi), elbo (the "
                       "ELBO's guide gradient) or none (guide fixed)")
    train.add_argument("--step-sampling", default="uniform", help="IP: uniform (sampled steps per order, "
                       "unbiased) or all (every step)")
    train.add_argument("--steps-per-order", type=int, default=1, help="IP with --step-sampling uniform: distinct "
                       "steps (prefixes) scored per sampled order in one batched pass")
    train.add_argument("--order-entropy-weight", type=float, default=1.0, help="IP: weight of the guide's entropy "
                       "at the start (1 = the ELBO; < 1 lets the order sharpen)")
    train.add_argument("--order-entropy-anneal", type=int, default=0, help="steps over which that weight rises "
                       "linearly to 1")
    train.add_argument("--precision", default="fp32", help="fp32 or bf16 (autocast)")
    train.add_argument("--compile", action="store_true", help="torch.compile the networks")
    train.add_argument("--distributed", action="store_true", help="data-parallel under torchrun (gloo on CPU, "
                       "NCCL on GPU); --batch-size is the global batch")
    train.add_argument("--termination", default="stop", help="IP only: stop (a stop head) or eos (an end token "
                       "insertable only at the last slot)")
    train.add_argument("--eval-every", type=int, default=500)
    train.add_argument("--eval-size", type=int, default=500)
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--time-limit", type=float, default=0.0, metavar="MINUTES",
                       help="stop after this much training time (evaluation excluded; 0 = no limit); the "
                            "schedule still spans --steps, so set --steps to what fits for a full cosine decay")
    train.add_argument("--device", default="cpu")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data", help="a folder written by `ip-pyro data` (default: generate in memory); for "
                       "--task smiles, the SMILES file (CSV with a SMILES column, .csv.gz or .smi)")
    train.add_argument("--data-seed", type=int, default=0)
    train.add_argument("--train-size", type=int, default=None, help="SMILES tasks: training molecules (default: all;"
                       " moses: 200,000)")
    train.add_argument("--valid-size", type=int, default=1000, help="SMILES tasks: validation molecules")
    train.add_argument("--test-size", type=int, default=10_000, help="SMILES tasks: test molecules held out")
    train.add_argument("--valid-samples", type=int, default=500, help="SMILES tasks: molecules sampled at each "
                       "validation")
    train.add_argument("--out", required=True)
    train.add_argument("--resume", action="store_true")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint (table + JSON)")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--decode", default="greedy", choices=["greedy", "sample"])
    evaluate.add_argument("--weights", default="ema", choices=["ema", "raw"],
                          help="the EMA of the model weights (default) or the last weights")
    evaluate.add_argument("--nll-samples", type=int, default=100)
    evaluate.add_argument("--limit", type=int, default=None)
    evaluate.add_argument("--nll-limit", type=int, default=None, help="NLL on the first N examples only")
    evaluate.add_argument("--data", default=None)
    evaluate.add_argument("--data-seed", type=int, default=0)
    evaluate.add_argument("--json", default=None)
    evaluate.add_argument("--num-samples", type=int, default=10_000, help="SMILES tasks: molecules to sample")
    evaluate.add_argument("--insertions-per-step", type=int, default=1, help="IP: parallel decoding, up to K "
                          "insertions per decoder pass (1 = exact sampling)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(run=_eval)

    sample = commands.add_parser("sample", help="decode the prompts of a split (or draw sequences)")
    sample.add_argument("--checkpoint", required=True)
    sample.add_argument("-n", "--num", type=int, default=10)
    sample.add_argument("--split", default="test")
    sample.add_argument("--greedy", action="store_true")
    sample.add_argument("--data", default=None)
    sample.add_argument("--data-seed", type=int, default=0)
    sample.add_argument("--device", default="cpu")
    sample.set_defaults(run=_sample)
    diagnose = commands.add_parser("diagnose", help="insertion-order diagnostics of a trained checkpoint")
    diagnose.add_argument("checkpoint")
    diagnose.add_argument("--data", help="JSONL with a 'target' per line (default: sequences sampled from the model)")
    diagnose.add_argument("--out", default="diagnostics")
    diagnose.add_argument("--domain", default="generic", choices=["generic", "path", "smiles"])
    diagnose.add_argument("--num-sequences", type=int, default=64)
    diagnose.add_argument("--chains", type=int, default=4)
    diagnose.add_argument("--draws", type=int, default=250)
    diagnose.add_argument("--mcmc-samples", type=int, default=400, help="MCMC draws per chain over the orders of "
                          "one sequence (0: guide-only diagnostics, much faster)")
    diagnose.add_argument("--mcmc-warmup", type=int, default=200)
    diagnose.add_argument("--seed", type=int, default=0)
    diagnose.add_argument("--device", default="cpu")
    diagnose.set_defaults(run=_diagnose)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.run(args)
        if getattr(args, "distributed", False):
            # gloo's worker threads can abort the interpreter's teardown ("terminate called without an active
            # exception") after a finished run; everything is written and the group destroyed, so leave directly
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except (ValueError, OSError, FloatingPointError) as error:
        if args.debug:
            raise
        print(f"ip-pyro {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
