"""What the :class:`ip_pyro.train.Trainer` runs around its loop besides training: hooks, passed to ``fit`` (by
default the ones the config asks for, :func:`default_hooks`).

A hook may define ``before_step(trainer)``, ``after_log(trainer, record)`` (every ``metrics.jsonl`` record),
``after_validation(trainer, metrics)`` and ``close(trainer)`` (when ``fit`` ends, also on errors); each runs on
rank 0 only.
"""
from __future__ import annotations

import sys
import time

import torch

__all__ = ["RWSCostNote", "TensorBoardHook", "default_hooks"]


class RWSCostNote:
    """Once per process, before the first RWS step: time an RWS and an ELBO forward + backward on the same batch
    (the first examples; random state, data position and gradients left as they were), print the ratio and log it,
    so that nobody learns from the step counter what an RWS step costs."""

    def __init__(self, repeats: int = 2):
        self.repeats, self.said = repeats, False

    def before_step(self, trainer) -> None:
        if self.said or trainer.rws is None or trainer.objective() is not trainer.rws:
            return
        self.said = True
        trainer._log(self.measure(trainer))

    def measure(self, trainer) -> dict:
        """``{"step", "rws_step_s", "elbo_step_s", "rws_over_elbo"}``, printed as one line on stderr."""
        config, device = trainer.config, trainer.device
        batch = trainer._collate(trainer.examples[: config.batch_size]).to(device)
        seconds = {}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for name, objective in (("rws", trainer.rws), ("elbo", trainer.elbo)):
                times = []
                for _ in range(self.repeats + 1):  # the first call warms up
                    tick = time.perf_counter()
                    (objective.differentiable_loss(trainer.model, trainer.guide, batch) / batch.batch_size).backward()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    times.append(time.perf_counter() - tick)
                seconds[name] = min(times[1:])
        trainer.optimizer.zero_grad(set_to_none=True)
        ratio = seconds["rws"] / max(seconds["elbo"], 1e-9)
        left = config.steps - trainer.step
        print(f"InsertionRWS (K={config.particles}): a step's forward and backward take {seconds['rws']:.2f} s, "
              f"{ratio:.1f}x an InsertionELBO step of this model and batch ({seconds['elbo']:.2f} s); the "
              f"{left} RWS steps left take about {left * seconds['rws'] / 60.0:.0f} min at this rate"
              + (f" (the time limit is {config.time_limit:g} min)" if config.time_limit else ""), file=sys.stderr)
        return {"step": trainer.step, "rws_step_s": round(seconds["rws"], 4),
                "elbo_step_s": round(seconds["elbo"], 4), "rws_over_elbo": round(ratio, 2)}


class TensorBoardHook:
    """Every number of every ``metrics.jsonl`` record as a scalar, and the guide's order figure at each
    validation, under ``OUT/tensorboard`` (opened on first use)."""

    def __init__(self):
        self.log = None

    def _board(self, trainer):
        if self.log is None:
            from ip_pyro.tensorboard import TensorBoardLog

            self.log = TensorBoardLog(trainer.out / "tensorboard")
        return self.log

    def after_log(self, trainer, record: dict) -> None:
        self._board(trainer).scalars(record)

    def after_validation(self, trainer, metrics: dict) -> None:
        if trainer.guide is not None:
            self._board(trainer).order_figure(trainer.guide, trainer._entropy_batch, trainer.step,
                                              token_names=trainer.config.extra.get("token_names"))

    def close(self, trainer) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


def default_hooks(config) -> list:
    """The hooks a run's config asks for: the RWS cost note for ``objective="rws"``, TensorBoard for
    ``tensorboard=True``."""
    hooks = [RWSCostNote()] if config.objective == "rws" and config.model == "ip" else []
    return hooks + ([TensorBoardHook()] if config.tensorboard else [])
