"""Task families behind ``ip-pyro train|eval|sample|diagnose``: one module each (planning, SMILES, a user's own
sequences, a saved model without a task) and one registry (:mod:`ip_pyro.tasks.base`). A new family is one module
with a :class:`TaskFamily` subclass and a :func:`register_task_family` line."""
from ip_pyro.tasks.base import (TASK_FAMILIES, TaskFamily, family_for_name, family_of_checkpoint,  # noqa: F401
                                register_task_family, task_names)
from ip_pyro.tasks import planning, smiles, sequences, saved  # noqa: F401,E402,I001 (each registers its family)

__all__ = ["TaskFamily", "TASK_FAMILIES", "register_task_family", "family_for_name", "family_of_checkpoint",
           "task_names"]
