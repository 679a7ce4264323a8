"""``ip-pyro train``: the flags, and the planning tasks' training; SMILES tasks and a user's own sequences supply
their data and validation from their own modules (``cli/smiles.py``, ``cli/sequences.py``), which share the
config and the training loop of ``cli/training.py``."""
from __future__ import annotations

import json
from pathlib import Path

from ip_pyro.cli import sequences
from ip_pyro.cli.common import CommandError, load_splits
from ip_pyro.cli.training import config_from_args, run_training

__all__ = ["run", "add_parser"]


def run(args) -> int:
    from ip_pyro.data.molecules import SMILES_TASKS, is_smiles_task
    from ip_pyro.data.planning import task_names

    if args.task not in task_names() and not is_smiles_task(args.task) and args.task != sequences.TASK:
        raise CommandError(f"unknown task {args.task!r}; choose from "
                           + ", ".join(list(task_names()) + list(SMILES_TASKS) + [sequences.TASK]))
    if args.task == sequences.TASK:
        return sequences.train_sequences(args)
    if is_smiles_task(args.task):
        from ip_pyro.cli.smiles import train_smiles
        return train_smiles(args)
    from ip_pyro.data.planning import LENGTH_SLACK, task_config
    from ip_pyro.evaluation import planning_metrics

    task = task_config(args.task)
    data = {"data": str(Path(args.data).resolve()) if args.data else None, "data_seed": args.data_seed}
    config = config_from_args(args, vocab_size=task.vocab_size, max_length=task.max_target_length + LENGTH_SLACK,
                              max_prompt_length=task.max_prompt_length, extra=data)  # eval/sample read it back
    splits = load_splits(args, args.task)
    valid = splits["valid"][: config.eval_size]

    def evaluate(model, guide, trainer):
        return {f"valid_{k}": v for k, v in planning_metrics(model, guide, valid, task=args.task).items()}

    trainer = run_training(args, config, splits["train"], evaluate)
    final = [record for record in trainer.history if "valid_exact_match" in record]
    if final:
        print(json.dumps(final[-1]))
    return 0


def add_parser(commands) -> None:
    """Add this verb's sub-parser to ``commands``."""
    train = commands.add_parser("train", help="train a model on a planning task, SMILES or your own sequences")
    from ip_pyro.config import GUIDE_NAMES, MODEL_NAMES
    from ip_pyro.data.molecules import SMILES_TASKS
    from ip_pyro.data.planning import task_names

    train.add_argument("--task", default="star-easy", help="one of " + ", ".join(
        list(task_names()) + list(SMILES_TASKS) + [sequences.TASK]) + " (sequences: your own file, --data FILE)")
    train.add_argument("--model", default="ip", help="one of " + ", ".join(MODEL_NAMES) + " (ip: the Insertion "
                       "Process; fo-arm: the left-to-right baseline)")
    train.add_argument("--guide", default="pl", help="IP: the order posterior, one of " + ", ".join(GUIDE_NAMES)
                       + " (ip_pyro.guides.FAMILIES)")
    train.add_argument("--steps", type=int, default=2000, help="optimiser steps (the cosine schedule spans them)")
    train.add_argument("--batch-size", type=int, default=64, help="sequences per step (the global batch)")
    train.add_argument("--d-model", type=int, default=128, help="model width")
    train.add_argument("--layers", type=int, default=4, help="model Transformer layers")
    train.add_argument("--heads", type=int, default=4, help="model attention heads")
    train.add_argument("--guide-d-model", type=int, default=64, help="learned guides: encoder width")
    train.add_argument("--guide-layers", type=int, default=3, help="learned guides: encoder layers")
    train.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate of the model")
    train.add_argument("--guide-lr", type=float, default=None, help="learning rate of the guide (default: --lr)")
    train.add_argument("--warmup", type=int, default=100, help="linear warm-up steps before the cosine decay")
    train.add_argument("--absolute-positions", action="store_true",
                       help="learned absolute position embeddings on top of the rotary ones (lets attention tell "
                            "the two ends of an edge in a flat edge list apart)")
    train.add_argument("--prompt-group", type=int, default=1,
                       help="read the prompt as groups of this many tokens; each prompt token also embeds the "
                            "rest of its group (2 for the star graphs' edge list u v u v ...; 1 = off)")
    train.add_argument("--embed-std", type=float, default=0.02,
                       help="initial token embedding scale (0.02 as GPT-2; 1.0 learns lookups in the prompt far "
                            "sooner, see experiments/edge_lookup.py)")
    train.add_argument("--prompt-attention", default=None, help="IP: full (the prompt "
                       "also reads the canvas) or prefix (the prompt attends to itself only and is encoded once per "
                       "sequence for all its canvases and the whole decoding; FO-ARM is causal either way). Default: "
                       "full with --decoder canvas; --decoder causal always uses prefix")
    train.add_argument("--decoder", default="canvas", help="IP: canvas (re-encode "
                       "the canvas at every insertion; L + 1 passes per order) or causal (attention causal in "
                       "writing order: one pass scores every step of an order, sampling keeps a KV cache; see "
                       "docs/method.md). Default: canvas")
    train.add_argument("--gap-context", type=int, default=2, help="IP with --decoder causal: items of the current "
                       "canvas read on each side of a gap by the gap and token heads (default 2)")
    train.add_argument("--dropout", type=float, default=0.0, help="dropout of every network")
    train.add_argument("--ema-decay", type=float, default=0.999, help="decay of the model weights' moving average "
                       "(evaluated by default; 0 = the raw weights)")
    train.add_argument("--ema-start", type=int, default=200, help="steps before the moving average starts "
                       "(it copies the weights until then)")
    train.add_argument("--particles", type=int, default=2, help="IP: orders per sequence (the ELBO's M; the K of "
                       "--objective rws, where 4 is a good start)")
    train.add_argument("--objective", default="elbo", help="IP: elbo (InsertionELBO) or rws (IWAE for the model, "
                       "reweighted wake-sleep for the guide: learns orders; a step scores K whole orders, K (L + 1) "
                       "canvases with --decoder canvas, K passes with causal)")
    train.add_argument("--objective-switch", type=int, default=0, metavar="STEP", help="with --objective rws: train "
                       "with the ELBO for STEP steps first, then switch (saved in the checkpoint)")
    train.add_argument("--elbo-particles", type=int, default=2, metavar="M", help="with --objective rws and "
                       "--objective-switch: the warm-up ELBO's particles (--particles is then the RWS K)")
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
    train.add_argument("--eval-every", type=int, default=500, help="steps between validations (metrics.jsonl)")
    train.add_argument("--eval-size", type=int, default=500, help="validation examples scored each time")
    train.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (also on exit)")
    train.add_argument("--time-limit", type=float, default=0.0, metavar="MINUTES",
                       help="stop after this much training time (evaluation excluded; 0 = no limit); the "
                            "schedule still spans --steps, so set --steps to what fits for a full cosine decay")
    train.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    train.add_argument("--seed", type=int, default=0, help="seeds weights, orders and data order")
    train.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, one per "
                       "core); on a shared or small machine 1 per run degrades gracefully (benchmarks/threads.py)")
    train.add_argument("--data", help="a folder written by `ip-pyro data` (default: generate in memory); for "
                       "--task smiles, the SMILES file (CSV with a SMILES column, .csv.gz or .smi); for --task "
                       "sequences, a text file (one sequence a line, tokens separated by spaces, optionally "
                       "prompt<TAB>target) or a .jsonl file of {\"prompt\": [...], \"target\": [...]}")
    train.add_argument("--data-seed", type=int, default=0, help="planning data generated in memory: its seed")
    train.add_argument("--train-size", type=int, default=None, help="SMILES and sequence files: training examples "
                       "(default: all; moses: 200,000)")
    train.add_argument("--valid-size", type=int, default=None, help="SMILES and sequence files: validation "
                       "examples (default: 5 %% of a --data file, at most 1,000; 1,000 for qm9 and moses)")
    train.add_argument("--test-size", type=int, default=None, help="SMILES and sequence files: test examples held "
                       "out (default: 10 %% of a --data file, at most 10,000; 10,000 for qm9 and moses)")
    train.add_argument("--max-smiles-tokens", type=int, default=None, metavar="N", help="SMILES tasks: drop training "
                       "molecules longer than N tokens (the count dropped is reported); the step cost grows with the "
                       "longest molecule, so this keeps long-molecule files practical on a CPU")
    train.add_argument("--smiles-column", default=None, help="SMILES tasks: the CSV column holding the SMILES "
                       "(case-insensitive; default SMILES)")
    train.add_argument("--valid-samples", type=int, default=500, help="SMILES tasks: molecules sampled at each "
                       "validation")
    train.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.jsonl")
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in --out (bit-exact)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (logs stay short)")
    train.add_argument("--tensorboard", action="store_true", help="also log for TensorBoard under OUT/tensorboard: "
                       "every metric, and the guide's order figure at each validation (pip install "
                       "'ip-pyro[tensorboard]')")
    train.set_defaults(run=run)
