"""Planning tasks (star graphs, mazes): generated or ``ip-pyro data`` folders of prompt / target records; validation
and evaluation decode each prompt and score the path (exact match, token accuracy, edges in the graph or success
and valid moves); ``diagnose`` names the source, centre and goal (stars) or the subgoals (mazes) on the path."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ip_pyro.cli.common import CommandError, nll_error, nll_words, print_table, write_results
from ip_pyro.tasks.base import TaskFamily, register_task_family
from ip_pyro.tasks.shared import decode_prompts, records_to_diagnose, sampled_to_diagnose

__all__ = ["PlanningTasks", "landmarks", "load_splits", "checkpoint_splits"]


def landmarks(records: list) -> list | None:
    """Per-target positions of named cells: star-graph records (``source``, ``centre``, ``goal``) -> those nodes;
    maze records (``subgoals``: start, intermediate cells, goal) -> ``start``, ``subgoal 1``, ... (where the path
    first reaches each in turn) and ``goal``. None for other records."""
    if records and all({"source", "centre", "goal"} <= set(record) for record in records):
        return [{"source": 0, "centre": record["target"].index(record["centre"]) if record["centre"] in
                 record["target"] else 0, "goal": max(len(record["target"]) - 1, 0)} for record in records]
    if records and all("subgoals" in record for record in records):
        return [_subgoal_positions(record["target"], record["subgoals"]) for record in records]
    return None


def _subgoal_positions(target: list, subgoals: list) -> dict:
    marks, position = {"start": 0}, 0
    for number, cell in enumerate(subgoals[1:-1], 1):
        if cell in target[position:]:
            position = target.index(cell, position)
            marks[f"subgoal {number}"] = position
    marks["goal"] = max(len(target) - 1, 0)
    return marks


def load_splits(args, task: str, *, need_train: bool = True) -> dict:
    from ip_pyro.data.planning import SPLITS, load_dataset, make_dataset, task_config

    task_config(task)  # one-line error for an unknown task
    if getattr(args, "data", None):
        if Path(args.data).is_file():
            raise CommandError(f"--data {args.data} is a file, but --task {task} reads a folder written by "
                               f"`ip-pyro data {task}`; for your own sequences pass --task sequences (a SMILES file: "
                               "--task smiles)")
        splits, manifest = load_dataset(args.data)
        if manifest["task"] != task:
            raise CommandError(f"{args.data} holds {manifest['task']} data, not {task}; pass the matching --data")
        return splits
    sizes = dict(SPLITS) if need_train else {"train": 0, "valid": SPLITS["valid"], "test": SPLITS["test"]}
    return make_dataset(task, seed=args.data_seed, sizes=sizes)


def checkpoint_splits(args, task: str, extra: dict) -> tuple[dict, str]:
    """The splits a verb on a checkpoint reads, and words saying which: ``--data`` when given, else the data the
    checkpoint was trained on (its recorded ``--data`` folder, or the in-memory data of its recorded seed);
    ``--data-seed`` overrides the recorded seed."""
    data = getattr(args, "data", None)
    if not data and extra.get("data"):
        data = extra["data"]
        if not Path(data).exists():
            raise CommandError(f"the checkpoint was trained on {data}, which is gone; pass --data with the folder "
                               "(or regenerate it with `ip-pyro data`)")
    seed = args.data_seed if getattr(args, "data_seed", None) is not None else extra.get("data_seed", 0)
    splits = load_splits(argparse.Namespace(data=data, data_seed=seed), task, need_train=False)
    words = f"{data}" if data else f"{task} data generated in memory (seed {seed})"
    if data and data == extra.get("data") and not getattr(args, "data", None):
        words += " (the checkpoint's training data)"
    return splits, words


class PlanningTasks(TaskFamily):
    name = "planning"

    def names(self) -> list:
        from ip_pyro.data.planning import task_names

        return list(task_names())

    def train(self, args) -> int:
        from ip_pyro.cli.training import config_from_args, run_training
        from ip_pyro.data.planning import LENGTH_SLACK, task_config
        from ip_pyro.evaluation import planning_metrics

        task = task_config(args.task)
        data = {"data": str(Path(args.data).resolve()) if args.data else None, "data_seed": args.data_seed,
                "task_family": self.name}
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

    def evaluate(self, args, model, guide, extra: dict) -> int:
        from ip_pyro.evaluation import planning_metrics, sequence_nll

        task = extra["task"]
        splits, source = checkpoint_splits(args, task, extra)
        if args.split not in splits:
            raise CommandError(f"no split {args.split!r}; choose from {', '.join(splits)}")
        examples = splits[args.split][: args.limit] if args.limit else splits[args.split]
        scored = min(len(examples), args.nll_limit) if args.nll_limit else len(examples)
        print(f"evaluating the {args.split} split of {source}: {args.decode} decoding of {len(examples)} examples"
              + nll_words(args, guide, scored), flush=True)
        results = {"task": task, "split": args.split, "decode": args.decode, "weights": args.weights,
                   **planning_metrics(model, guide, examples, task=task, greedy=args.decode == "greedy",
                                      insertions_per_step=args.insertions_per_step, progress=None)}
        if args.nll_samples or args.exact:
            subset = examples[: args.nll_limit] if args.nll_limit else examples
            try:
                results.update(sequence_nll(model, guide, subset, nll_samples=args.nll_samples, progress=None,
                                            exact=args.exact), nll_examples=len(subset))
            except ValueError as error:
                raise nll_error(error) from None
        print_table(results)
        write_results(args, results)
        return 0

    def sample(self, args, model, extra: dict, decode) -> int:
        splits, source = checkpoint_splits(args, extra["task"], extra)
        if args.split not in splits:
            raise CommandError(f"no split {args.split!r}; choose from {', '.join(splits)}")
        examples = splits[args.split][: args.num]
        print(f"decoding the first {len(examples)} prompts of the {args.split} split of {source}")
        for example, prediction in zip(examples, decode_prompts(model, [e["prompt"] for e in examples], args)):
            mark = "ok " if prediction == example["target"] else "   "
            goals = (f"subgoals {' '.join(map(str, example['subgoals']))}" if "subgoals" in example
                     else f"source {example['source']} goal {example['goal']}")
            print(f"{mark}{goals}: {decode(prediction)}")
        return 0

    def diagnose_data(self, args, model, extra: dict, base) -> dict:
        return records_to_diagnose(args, landmarks) if args.data else sampled_to_diagnose(args, model)


register_task_family(PlanningTasks)
