"""The task layer: what ``ip-pyro train``, ``eval``, ``sample`` and ``diagnose`` ask of a task family, and the
registry that finds it by ``--task`` name (training) or from a checkpoint (every other verb).

A family is one module with one :class:`TaskFamily` subclass and one :func:`register_task_family` line. It turns
the ``train`` flags into data, a vocabulary and sizes, runs the training with its own validation
(:meth:`TaskFamily.train`), and for a checkpoint it trained rebuilds its data and evaluates
(:meth:`TaskFamily.evaluate`), decodes or draws samples printed in the task's own tokens
(:meth:`TaskFamily.sample`) and says which sequences ``diagnose`` reads and how to show them
(:meth:`TaskFamily.diagnose_data`). Checkpoints record the family's name (``extra["task_family"]``).
"""
from __future__ import annotations

__all__ = ["TaskFamily", "TASK_FAMILIES", "register_task_family", "family_for_name", "family_of_checkpoint",
           "task_names"]


class TaskFamily:
    """One family of tasks (see the module docstring); stateless, every method takes the parsed arguments."""

    name = ""

    def names(self) -> list:
        """The ``--task`` names this family trains."""
        return []

    def train(self, args) -> int:
        raise NotImplementedError

    def evaluate(self, args, model, guide, extra: dict) -> int:
        raise NotImplementedError

    def sample(self, args, model, extra: dict, decode) -> int:
        """Decode or draw ``-n`` samples without user prompts (``decode``: ids -> the task's written tokens)."""
        raise NotImplementedError

    def diagnose_data(self, args, model, extra: dict, base) -> dict:
        """What ``diagnose`` reads: ``{"sequences", "prompts" (or None), "landmarks" (or None), "said"}`` (``said``:
        one line on where the sequences come from, or None)."""
        raise NotImplementedError


TASK_FAMILIES: dict = {}


def register_task_family(family: type) -> type:
    """Add a :class:`TaskFamily` subclass under its ``name``; returns it."""
    if not (isinstance(family, type) and issubclass(family, TaskFamily)) or not family.name:
        raise ValueError(f"a task family is a TaskFamily subclass with a name, not {family!r}")
    TASK_FAMILIES[family.name] = family
    return family


def task_names() -> list:
    """Every ``--task`` name, family by family."""
    return [name for family in TASK_FAMILIES.values() for name in family().names()]


def family_for_name(task: str) -> TaskFamily:
    """The family that trains ``--task task``; a one-line error naming every task otherwise."""
    for family in TASK_FAMILIES.values():
        if task in family().names():
            return family()
    from ip_pyro.cli.common import CommandError

    raise CommandError(f"unknown task {task!r}; choose from {', '.join(task_names())}")


def family_of_checkpoint(extra: dict) -> TaskFamily:
    """The family a checkpoint's ``extra`` names, or that its keys show (checkpoints written before the record:
    a SMILES vocabulary, a token vocabulary, a planning task name); a file of ``ip_pyro.save`` without a task is
    the ``saved`` family."""
    name = extra.get("task_family")
    if name is None:
        if "vocabulary" in extra:
            name = "smiles"
        elif "sequence_vocabulary" in extra:
            name = "sequences"
        else:
            task = extra.get("task")
            name = next((family.name for family in TASK_FAMILIES.values() if task in family().names()), "saved")
    if name not in TASK_FAMILIES:
        from ip_pyro.cli.common import CommandError

        raise CommandError(f"the checkpoint was trained on a task of family {name!r}, which this installation does "
                           f"not know (known: {', '.join(TASK_FAMILIES)}); register it before loading")
    return TASK_FAMILIES[name]()
