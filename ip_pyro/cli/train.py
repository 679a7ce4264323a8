"""``ip-pyro train``: the run's flags, and the training of the ``--task``'s family (:mod:`ip_pyro.tasks`), which
turns them into data, a vocabulary and sizes and validates with its own metrics."""
from __future__ import annotations

from ip_pyro.cli.training import add_config_arguments

__all__ = ["run", "add_parser"]


def run(args) -> int:
    from ip_pyro.tasks import family_for_name

    return family_for_name(args.task).train(args)


def add_parser(commands) -> None:
    """Add this verb's sub-parser to ``commands``: the run's settings from :class:`ip_pyro.train.TrainConfig`'s
    fields (:func:`ip_pyro.cli.training.add_config_arguments`), then the data and process flags."""
    train = commands.add_parser("train", help="train a model on a planning task, SMILES or your own sequences")
    from ip_pyro.config import GUIDE_NAMES, MODEL_NAMES
    from ip_pyro.tasks import task_names

    add_config_arguments(train, {"tasks": ", ".join(task_names()), "models": ", ".join(MODEL_NAMES),
                                 "guides": ", ".join(GUIDE_NAMES)})
    train.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default, one per "
                       "core); on a shared or small machine 1 per run degrades gracefully (docs/speed.md)")
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
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in --out (bit-exact)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (logs stay short)")
    train.set_defaults(run=run)
