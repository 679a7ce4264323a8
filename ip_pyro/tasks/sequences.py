"""``ip-pyro train|eval|sample|diagnose`` for a user's own sequences: ``--task sequences --data FILE`` with a text
file (one sequence a line, whitespace-separated tokens, optionally ``prompt<TAB>target``) or JSONL
(``{"prompt": [...], "target": [...]}``); see :mod:`ip_pyro.data.sequences`.

Training saves the vocabulary (``extra["sequence_vocabulary"]``, also ``token_names``) and the data settings in the
checkpoint, so ``eval``, ``sample`` and ``diagnose`` rebuild the same splits and print tokens as the user wrote
them. Validation: exact match and token accuracy of greedy decoding (prompted data) and the NLL.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Optional

from ip_pyro.cli.common import CommandError, data_path, nll_error, nll_words, print_table, write_results
from ip_pyro.cli.training import config_from_args, run_training
from ip_pyro.tasks.base import TaskFamily, register_task_family
from ip_pyro.tasks.shared import decode_prompts, sampling_options

__all__ = ["SequenceTasks", "TASK", "train_sequences", "eval_sequences", "diagnose_sequences", "task_for"]

TASK = "sequences"
VALID_LIMIT = 100  # validation sequences each periodic validation decodes and scores (8 orders for the NLL)
SHOWN = 5  # examples eval prints as tokens


def task_for(data: dict, vocabulary: Optional[list] = None, *, base: Optional[Path] = None,
             override: Optional[str] = None, max_length: Optional[int] = None):
    """The split task of a run's data settings (``data``, saved with the checkpoint); the file is ``override``
    (``--data``) or the saved path, relative to the run folder ``base``; with ``max_length`` (a model's), held-out
    sequences longer than it are dropped and counted. Warnings print as lines."""
    from ip_pyro.data.sequences import TokenVocabulary, drop_longer_than, load_sequence_task

    path = data_path(data, base, override).resolve()
    if not path.is_file() and override:
        raise CommandError(f"no sequence file at {path} (given as --data {override}); check the path")
    if not path.is_file():
        raise CommandError(f"the run's sequence file {path} is not there (moved?); pass --data FILE to point at it")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = load_sequence_task(path, seed=data["seed"], train_size=data["train_size"],
                                  valid_size=data["valid_size"], test_size=data["test_size"],
                                  vocabulary=TokenVocabulary(vocabulary) if vocabulary is not None else None)
        if max_length is not None:
            drop_longer_than(task, max_length)
    for warning in caught:
        print(f"warning: {warning.message}")
    return task, path


def _words(vocabulary, ids) -> str:
    return " ".join(vocabulary.decode(ids)) or "(empty)"


def train_sequences(args) -> int:
    from ip_pyro.data.sequences import SEQUENCE_LENGTH_SLACK
    from ip_pyro.evaluation import sequence_metrics

    if not args.data:
        raise CommandError("--task sequences needs --data FILE: a text file (one sequence a line, tokens separated "
                           "by spaces, optionally prompt<TAB>target) or a .jsonl file of {\"prompt\", \"target\"}")
    # the file is saved relative to the run folder, so a run and its data can move together
    relative = os.path.relpath(Path(args.data).resolve(), Path(args.out).resolve())
    data = {"task": TASK, "seed": args.data_seed, "train_size": args.train_size, "valid_size": args.valid_size,
            "test_size": args.test_size, "path": relative}
    task, path = task_for(data, override=args.data)
    print(f"{path}: {len(task.splits['train'])} train / {len(task.splits['valid'])} valid / "
          f"{len(task.splits['test'])} test sequences, {len(task.vocabulary)} tokens, max length {task.max_length} "
          f"(the longest training sequence, {task.max_length - SEQUENCE_LENGTH_SLACK}, + {SEQUENCE_LENGTH_SLACK} "
          "of headroom, so that sampling ends by the model's stop decision, not by the length cap)"
          + (f", prompts up to {task.max_prompt_length} tokens" if task.prompted else ", no prompts"))
    extra = {"sequence_vocabulary": list(task.vocabulary.tokens), "token_names": list(task.vocabulary.tokens),
             "data": data, "skipped": task.skipped, "prompted": task.prompted, "task_family": SequenceTasks.name}
    config = config_from_args(args, vocab_size=len(task.vocabulary), max_length=task.max_length,
                              max_prompt_length=task.max_prompt_length, extra=extra)
    valid = task.splits["valid"][: min(config.eval_size, VALID_LIMIT)]

    def evaluate(model, guide, trainer):
        results = sequence_metrics(model, guide, valid, prompted=task.prompted, nll_samples=8 if guide else 1)
        return {f"valid_{key}": value for key, value in results.items() if not key.startswith("_")}

    if not valid:
        print("warning: the validation split is empty (its sequences hold tokens the training split never shows); "
              "training runs without validation")
    trainer = run_training(args, config, task.splits["train"], evaluate if valid else None)
    final = [record for record in trainer.history if "valid_nll" in record]
    if final:
        print(json.dumps(final[-1]))
    return 0


def eval_sequences(args, model, guide, extra: dict) -> int:
    from ip_pyro.evaluation import sequence_metrics

    task, path = task_for(extra["data"], extra["sequence_vocabulary"], base=Path(args.checkpoint).resolve().parent,
                          override=args.data, max_length=model.max_length)
    if args.split not in task.splits:
        raise CommandError(f"no split {args.split!r}; choose from {', '.join(task.splits)}")
    examples = task.splits[args.split][: args.limit] if args.limit else task.splits[args.split]
    scored = min(len(examples), args.nll_limit) if args.nll_limit else len(examples)
    print(f"evaluating the {args.split} split of {path}: {len(examples)} sequences"
          + (f" ({args.decode} decoding of their prompts)" if task.prompted else "")
          + nll_words(args, guide, scored), flush=True)
    nll_samples = (args.nll_samples if guide is not None else 1) if args.nll_samples or args.exact else 0
    try:
        results = sequence_metrics(model, guide, examples, prompted=task.prompted, greedy=args.decode == "greedy",
                                   nll_samples=max(nll_samples, 1) if args.exact else nll_samples,
                                   nll_limit=args.nll_limit, progress=None, exact=args.exact)
    except ValueError as error:
        raise nll_error(error) from None
    predictions = results.pop("_predictions", None)
    results = {"task": TASK, "data": str(path), "split": args.split, "weights": args.weights, **results}
    print_table(results)
    vocabulary = task.vocabulary
    if predictions is not None:
        for example, prediction in list(zip(examples, predictions))[:SHOWN]:
            mark = "ok " if prediction == example["target"] else "   "
            print(f"{mark}{_words(vocabulary, example['prompt'])}  =>  {_words(vocabulary, prediction)}")
    else:
        for sequence in model.sample(SHOWN):
            print(f"sample: {_words(vocabulary, sequence)}")
    write_results(args, results)
    return 0


def diagnose_sequences(args, extra: dict, base: Path, max_length: Optional[int] = None) -> tuple:
    """``(targets, prompts or None)`` id lists that ``diagnose`` reads: the first ``--num-sequences`` of
    ``--data`` (a file in the user's format, encoded with the run's vocabulary) or of the run's test split."""
    if args.data:
        from ip_pyro.data.sequences import TokenVocabulary, read_sequences

        vocabulary = TokenVocabulary(extra["sequence_vocabulary"])
        try:
            pairs = [(vocabulary.encode(p), vocabulary.encode(t)) for p, t in read_sequences(args.data)]
        except ValueError as error:
            raise CommandError(f"{args.data}: {error}") from None
        records = [{"prompt": p, "target": t} for p, t in pairs]
    else:
        task, _ = task_for(extra["data"], extra["sequence_vocabulary"], base=base, max_length=max_length)
        records = task.splits["test"]
    records = records[: args.num_sequences]
    prompts = [record["prompt"] for record in records]
    return [record["target"] for record in records], (prompts if any(prompts) else None)


class SequenceTasks(TaskFamily):
    name = "sequences"

    def names(self) -> list:
        return [TASK]

    def train(self, args) -> int:
        return train_sequences(args)

    def evaluate(self, args, model, guide, extra: dict) -> int:
        return eval_sequences(args, model, guide, extra)

    def sample(self, args, model, extra: dict, decode) -> int:
        """Unprompted data: draw ``-n`` sequences; prompted: decode the first ``-n`` prompts of ``--split``."""
        if not extra.get("prompted") and not getattr(model, "conditional", None):
            if args.best_of > 1:
                raise CommandError("--best-of ranks draws for one prompt; this model has no prompts (use -n)")
            for sequence in model.sample(args.num, **sampling_options(args)):
                print(decode(sequence))
            return 0
        if not extra.get("data"):
            raise CommandError(f"{args.checkpoint} holds no data settings; pass --prompt \"TOKENS\" or --prompts FILE")
        task, path = task_for(extra["data"], extra["sequence_vocabulary"], base=Path(args.checkpoint).resolve().parent,
                              override=args.data)
        if args.split not in task.splits:
            raise CommandError(f"no split {args.split!r}; choose from {', '.join(task.splits)}")
        examples = task.splits[args.split][: args.num]
        print(f"decoding the first {len(examples)} prompts of the {args.split} split of {path}")
        for example, prediction in zip(examples, decode_prompts(model, [e["prompt"] for e in examples], args)):
            mark = "ok " if prediction == example["target"] else "   "
            print(f"{mark}{decode(example['prompt'])}  =>  {decode(prediction)}")
        return 0

    def diagnose_data(self, args, model, extra: dict, base) -> dict:
        sequences, prompts = diagnose_sequences(args, extra, base, model.max_length)
        return {"sequences": sequences, "prompts": prompts, "landmarks": None, "said": None}


register_task_family(SequenceTasks)
