"""``ip-pyro eval --checkpoint PATH``: the task's metrics on a split (table + JSON)."""
from __future__ import annotations


from ip_pyro.cli.common import CommandError, checkpoint_splits, nll_error, nll_words, print_table, write_results

__all__ = ["run", "add_parser"]


def run(args) -> int:
    import torch

    from ip_pyro.checkpoint import load_checkpoint
    from ip_pyro.evaluation import planning_metrics, sequence_nll

    torch.manual_seed(args.seed)  # sampled decoding, SMILES samples and the NLL's orders: same seed, same numbers

    model, guide, extra = load_checkpoint(args.checkpoint, map_location=args.device, use_ema=args.weights == "ema")
    task = extra.get("task")
    if task is None:
        raise CommandError(f"checkpoint {args.checkpoint} records no task; evaluate it with the Python API")
    if "vocabulary" in extra:
        from ip_pyro.cli.smiles import eval_smiles
        return eval_smiles(args, model, guide, extra)
    if "sequence_vocabulary" in extra:
        from ip_pyro.cli.sequences import eval_sequences
        return eval_sequences(args, model, guide, extra)
    splits, source = checkpoint_splits(args, task, extra)
    if args.split not in splits:
        raise CommandError(f"no split {args.split!r}; choose from {', '.join(splits)}")
    examples = splits[args.split][: args.limit] if args.limit else splits[args.split]
    scored = min(len(examples), args.nll_limit) if args.nll_limit else len(examples)
    print(f"evaluating the {args.split} split of {source}: {args.decode} decoding of {len(examples)} examples"
          + nll_words(args, guide, scored), flush=True)
    results = {"task": task, "split": args.split, "decode": args.decode, "weights": args.weights,
               **planning_metrics(model, guide, examples, task=task, greedy=args.decode == "greedy",
                                  insertions_per_step=args.insertions_per_step, progress=True)}
    if args.nll_samples or args.exact:
        subset = examples[: args.nll_limit] if args.nll_limit else examples
        try:
            results.update(sequence_nll(model, guide, subset, nll_samples=args.nll_samples, progress=True,
                                        exact=args.exact), nll_examples=len(subset))
        except ValueError as error:
            raise nll_error(error) from None
    print_table(results)
    write_results(args, results)
    return 0


def add_parser(commands) -> None:
    """Add this verb's sub-parser to ``commands``."""
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint (table + JSON)")
    evaluate.add_argument("--checkpoint", required=True, help="a checkpoint written by ip-pyro train")
    evaluate.add_argument("--split", default="test", help="the split to score: train, valid or test for planning "
                          "tasks and your own sequences; valid or test for SMILES")
    evaluate.add_argument("--decode", default="greedy", choices=["greedy", "sample"],
                          help="planning: greedy decoding or samples at temperature 1")
    evaluate.add_argument("--weights", default="ema", choices=["ema", "raw"],
                          help="the EMA of the model weights (default) or the last weights")
    evaluate.add_argument("--nll-samples", type=int, default=100, help="IP: orders per sequence of the IWAE NLL "
                          "bound (0: no NLL)")
    evaluate.add_argument("--exact", action="store_true", help="IP: the exact NLL, summed over all L! orders "
                          "(sequences up to length 8 with the canvas decoder, 7 with the causal one), instead of the "
                          "IWAE bound")
    evaluate.add_argument("--limit", type=int, default=None, help="planning: score the first N examples only")
    evaluate.add_argument("--nll-limit", type=int, default=None, help="NLL on the first N examples only (SMILES "
                          "default: 200 molecules, so eval stays bounded on a CPU; planning default: all)")
    evaluate.add_argument("--data", default=None, help="planning: the data folder; SMILES and your own sequences: "
                          "the data file, if it moved since training (the checkpoint keeps its path relative to the "
                          "run folder)")
    evaluate.add_argument("--data-seed", type=int, default=None, help="planning data generated in memory: its seed "
                          "(default: the checkpoint's)")
    evaluate.add_argument("--json", default=None, help="where to write the results (default: eval_SPLIT.json "
                          "beside the checkpoint)")
    evaluate.add_argument("--num-samples", type=int, default=10_000, help="SMILES tasks: molecules to sample")
    evaluate.add_argument("--insertions-per-step", type=int, default=1, help="IP: parallel decoding, up to K "
                          "insertions per decoder pass (1 = exact sampling)")
    evaluate.add_argument("--seed", type=int, default=0, help="seeds every draw of the evaluation (samples, "
                          "orders of the NLL): the same seed gives the same numbers")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    evaluate.set_defaults(run=run)
