"""SMILES tasks (``qm9``, ``moses``, ``smiles --data FILE``) for every verb.

Training saves the vocabulary in the checkpoint (``extra["vocabulary"]``) with the data settings, so ``eval``
rebuilds the same splits; validation samples molecules (validity, uniqueness) and scores the validation NLL.
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
from ip_pyro.tasks.shared import SMILES_SUFFIXES, records_to_diagnose, sampled_to_diagnose

__all__ = ["SmilesTasks", "train_smiles", "eval_smiles", "smiles_task_for"]

MOSES_DEFAULT_TRAIN = 200_000
SMILES_EVAL_NLL_LIMIT = 200  # molecules whose NLL eval scores unless --nll-limit says otherwise (bounded on a CPU)
VALID_NLL_LIMIT = 100  # molecules whose NLL (8 orders) each periodic validation scores


def smiles_task_for(data: dict, vocabulary=None, *, base: Optional[Path] = None, override: Optional[str] = None):
    """Load the task described by ``data`` (the settings saved with a checkpoint), warnings shown as lines."""
    from ip_pyro.data.molecules import load_smiles_task

    path = data_path(data, base, override)
    if path is not None and not path.is_file() and override:
        raise CommandError(f"no SMILES file at {path} (given as --data); check the path")
    if path is not None and not path.is_file():
        raise CommandError(f"the run's SMILES file {path} is not there (moved?); pass --data FILE to point at it")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = load_smiles_task(data["task"], seed=data["seed"], train_size=data["train_size"],
                                valid_size=data["valid_size"], test_size=data["test_size"], path=path,
                                vocabulary=vocabulary, smiles_column=data.get("smiles_column"),
                                max_tokens=data.get("max_tokens"))
    for warning in caught:
        print(f"warning: {warning.message}")
    return task


def train_smiles(args) -> int:
    from ip_pyro.evaluation import smiles_metrics

    if args.task == "smiles" and not args.data:
        raise CommandError("--task smiles needs --data FILE (a CSV with a SMILES column, .csv.gz or .smi)")
    train_size = args.train_size
    if train_size is None and args.task == "moses":
        train_size = MOSES_DEFAULT_TRAIN
    # the data file is saved relative to the run folder, so a run and its data can move together
    relative = os.path.relpath(Path(args.data).resolve(), Path(args.out).resolve()) if args.data else None
    data = {"task": args.task, "seed": args.data_seed, "train_size": train_size, "valid_size": args.valid_size,
            "test_size": args.test_size, "path": relative, "smiles_column": args.smiles_column,
            "max_tokens": args.max_smiles_tokens}
    task = smiles_task_for(data, override=args.data)  # the run folder may not exist yet
    print(f"{args.task}: {len(task.splits['train'])} train / {len(task.splits['valid'])} valid / "
          f"{len(task.splits['test'])} test molecules, {len(task.vocabulary)} tokens, max length {task.max_length}")
    extra = {"vocabulary": list(task.vocabulary.tokens), "token_names": list(task.vocabulary.tokens),
             "data": data, "skipped": task.skipped, "task_family": SmilesTasks.name}
    config = config_from_args(args, vocab_size=len(task.vocabulary), max_length=task.max_length, extra=extra)
    valid = task.splits["valid"][: min(config.eval_size, VALID_NLL_LIMIT)]
    nll_samples = 8 if config.model == "ip" else 1

    def evaluate(model, guide, trainer):
        results, _ = smiles_metrics(model, guide, task, num_samples=args.valid_samples, nll_samples=nll_samples,
                                    nll_limit=len(valid), split="valid", full=False)
        return {f"valid_{key}": value for key, value in results.items()}

    trainer = run_training(args, config, task.splits["train"], evaluate)
    final = [record for record in trainer.history if "valid_validity" in record]
    if final:
        print(json.dumps(final[-1]))
    return 0


def eval_smiles(args, model, guide, extra: dict) -> int:
    from ip_pyro.data.smiles import SmilesVocabulary
    from ip_pyro.evaluation import smiles_metrics

    if args.split not in ("valid", "test"):
        raise CommandError(f"no split {args.split!r} for a SMILES task; choose valid or test")
    task = smiles_task_for(extra["data"], vocabulary=SmilesVocabulary(extra["vocabulary"]),
                           base=Path(args.checkpoint).resolve().parent, override=args.data)
    nll_limit = args.nll_limit or SMILES_EVAL_NLL_LIMIT
    print(f"evaluating {args.num_samples} samples against the {args.split} split"
          + nll_words(args, guide, min(nll_limit, len(task.splits[args.split]))), flush=True)
    try:
        results, samples = smiles_metrics(model, guide, task, num_samples=args.num_samples,
                                          nll_samples=max(args.nll_samples, 1) if guide is None or args.exact else
                                          args.nll_samples, nll_limit=nll_limit, split=args.split,
                                          insertions_per_step=args.insertions_per_step, progress=None,
                                          exact=args.exact)
    except ValueError as error:
        raise nll_error(error) from None
    results = {"task": extra["task"], "split": args.split, "weights": args.weights,
               "insertions_per_step": args.insertions_per_step, **results}
    print_table(results)
    out = write_results(args, results, announce=False)
    samples_path = out.with_suffix(".smi")
    samples_path.write_text("\n".join(samples) + "\n")
    print(f"wrote {out} and {samples_path}")
    return 0


class SmilesTasks(TaskFamily):
    name = "smiles"

    def names(self) -> list:
        from ip_pyro.data.molecules import SMILES_TASKS

        return list(SMILES_TASKS)

    def train(self, args) -> int:
        return train_smiles(args)

    def evaluate(self, args, model, guide, extra: dict) -> int:
        return eval_smiles(args, model, guide, extra)

    def sample(self, args, model, extra: dict, decode) -> int:
        from ip_pyro.data.smiles import SmilesVocabulary
        from ip_pyro.evaluation import sample_smiles

        if args.best_of > 1:
            raise CommandError("a SMILES model draws molecules without prompts; drop --best-of")
        vocabulary = SmilesVocabulary(extra["vocabulary"])
        for smiles in sample_smiles(model, vocabulary, args.num, temperature=args.temperature, top_k=args.top_k,
                                    top_p=args.top_p, greedy=args.greedy):
            print(smiles)
        return 0

    def diagnose_data(self, args, model, extra: dict, base) -> dict:
        if not args.data:
            return sampled_to_diagnose(args, model)
        if not Path(args.data).name.endswith(SMILES_SUFFIXES):
            return records_to_diagnose(args)
        from ip_pyro.data.smiles import SmilesVocabulary, read_smiles

        vocabulary = SmilesVocabulary(extra["vocabulary"])
        sequences = [vocabulary.encode(smiles) for smiles in read_smiles(Path(args.data))[: args.num_sequences]]
        return {"sequences": sequences, "prompts": None, "landmarks": None, "said": None}


register_task_family(SmilesTasks)
