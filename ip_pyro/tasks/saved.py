"""A file of ``ip_pyro.save`` (or any checkpoint) that records no task: ``sample`` draws from the model (tokens
printed by the file's ``token_names``), ``diagnose`` reads a JSONL ``--data`` or the model's own draws, and
``eval`` says it needs the Python API."""
from __future__ import annotations

from ip_pyro.cli.common import CommandError
from ip_pyro.tasks.base import TaskFamily, register_task_family
from ip_pyro.tasks.shared import records_to_diagnose, sampled_to_diagnose, sampling_options

__all__ = ["SavedModel"]


class SavedModel(TaskFamily):
    name = "saved"

    def train(self, args) -> int:
        raise CommandError("a saved model has no task to train; pass --task")

    def evaluate(self, args, model, guide, extra: dict) -> int:
        raise CommandError(f"checkpoint {args.checkpoint} records no task; evaluate it with the Python API")

    def sample(self, args, model, extra: dict, decode) -> int:
        if getattr(model, "conditional", None):
            raise CommandError(f"{args.checkpoint} models prompted data and holds no data; pass --prompt \"TOKENS\" "
                               "or --prompts FILE")
        if args.best_of > 1:
            raise CommandError("--best-of ranks draws for one prompt; this model has no prompts (use -n)")
        for sequence in model.sample(args.num, **sampling_options(args)):
            print(decode(sequence))
        return 0

    def diagnose_data(self, args, model, extra: dict, base) -> dict:
        return records_to_diagnose(args) if args.data else sampled_to_diagnose(args, model)


register_task_family(SavedModel)
