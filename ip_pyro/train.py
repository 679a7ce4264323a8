"""The training loop shared by the CLI and the examples.

AdamW (a separate learning rate for the guide), linear warm-up then cosine decay, gradient clipping, an EMA of the
model weights used for evaluation, a tqdm bar with loss and throughput, periodic validation, a JSONL metrics log,
atomic checkpoints every N steps and on exit (model, guide, optimiser, scheduler, EMA, RNG states, data position,
config), and exact resume.
"""
from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from ip_pyro import distributed
from ip_pyro.batch import collate
from ip_pyro.checkpoint import atomic_write, describe_module, read_checkpoint
from ip_pyro.config import (CHECKPOINT_VERSION, GUIDE_NAMES, MODEL_NAMES, OBJECTIVES, PRECISIONS, RUNTIME_KEYS,
                            TrainConfig)
from ip_pyro.infer import InsertionELBO, InsertionRWS
from ip_pyro.networks import positions_needed

__all__ = ["TrainConfig", "Trainer", "model_and_guide", "build_model", "GUIDE_NAMES", "MODEL_NAMES", "CHECKPOINT_VERSION",
           "PRECISIONS", "OBJECTIVES"]


def model_and_guide(config: TrainConfig):
    """``(model, guide or None)`` for a config (``vocab_size`` and ``max_length`` set from the data), through the
    registries :data:`ip_pyro.models.FAMILIES` and :data:`ip_pyro.guides.FAMILIES`."""
    from ip_pyro import guides, models

    config.validate()
    max_positions = positions_needed(config.max_prompt_length, config.max_length) if config.absolute_positions else 0
    shared = dict(max_length=config.max_length, dropout=config.dropout, max_positions=max_positions,
                  prompt_group=config.prompt_group, embed_std=config.embed_std)
    sizes = dict(d_model=config.d_model, n_layers=config.layers, n_heads=config.heads, **shared)
    conditional = config.conditional  # the data has prompts: sampling the model then needs one (None: unchecked)
    if config.model == "fo-arm":
        return models.build_model("fo-arm", config.vocab_size, conditional=conditional, **sizes), None
    guide_sizes = dict(d_model=config.guide_d_model, n_layers=config.guide_layers, n_heads=config.guide_heads,
                       **shared)
    model = models.build_model("ip", config.vocab_size, termination=config.termination,
                               prompt_attention=config.prompt_attention, decoder=config.decoder,
                               gap_context=config.gap_context, conditional=conditional, **sizes)
    return model, guides.build_guide(config.guide, config.vocab_size, **guide_sizes)


build_model = model_and_guide  # its first name; ip_pyro.models.build_model(name, vocab_size, ...) is another thing


def _schedule(config: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


class Trainer:
    """Train ``model`` (and ``guide``) on ``examples`` (dicts with ``target`` and optional ``prompt``).

    :param evaluate: optional ``evaluate(model, guide, trainer) -> dict`` run every ``eval_every`` steps with the
        EMA weights; its numbers go to the metrics log.

    ``config.distributed``: run under ``torchrun`` (see :mod:`ip_pyro.distributed`): each rank trains on its share
    of every global batch of ``batch_size``, gradients of model and guide are averaged, and only rank 0 logs,
    evaluates and writes checkpoints. ``config.precision="bf16"`` runs the loss under bfloat16 autocast;
    ``config.compile`` compiles the networks with ``torch.compile`` (same state-dict keys, so checkpoints move
    freely between compiled and eager runs).
    """

    def __init__(self, config: TrainConfig, model, guide, examples: list, *,
                 evaluate: Optional[Callable] = None):
        config.validate()
        self.config, self.model, self.guide, self.examples = config, model, guide, examples
        self.evaluate_fn = evaluate
        self.device = torch.device(config.device)
        if config.distributed:
            self.device = distributed.setup(self.device)
            distributed.check_batch_size(config.batch_size)
        self.model.to(self.device)
        if guide is not None:
            guide.to(self.device)
        groups = [{"params": list(model.parameters()), "lr": config.lr}]
        if guide is not None and list(guide.parameters()):
            groups.append({"params": list(guide.parameters()), "lr": config.guide_lr or config.lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(config))
        distributed.broadcast_parameters([model, guide])
        self._seed_rank(0)
        self.ema = copy.deepcopy(model).requires_grad_(False)
        if config.compile:
            for module in (model, guide):
                for child in (getattr(module, "network", None), getattr(module, "scorer", None)):
                    if isinstance(child, torch.nn.Module):
                        child.compile()
        elbo_particles = config.elbo_particles if config.objective == "rws" else config.particles
        self.elbo = (InsertionELBO(elbo_particles, config.step_sampling, num_steps=config.steps_per_order)
                     if guide is not None else None)
        self.rws = (InsertionRWS(config.particles, guide_update=config.rws_guide_update,
                                 model_gradient=config.rws_gradient, num_steps=config.steps_per_order)
                    if guide is not None and config.objective == "rws" else None)
        self.step, self.epoch, self.position = 0, 0, 0
        self.hooks: list = []  # what fit runs besides training (ip_pyro.train_hooks), set by each fit
        self.elapsed = 0.0  # training wall time in seconds, summed over resumed sessions (evaluation excluded)
        self.out = Path(config.out)
        self.history: list = []

    @classmethod
    def from_config(cls, config: TrainConfig, examples: list, *, evaluate: Optional[Callable] = None) -> "Trainer":
        """A trainer with the model and guide of ``config`` built from the seed ``config.seed`` (what ``ip-pyro
        train`` does). ``vocab_size``, ``max_length`` and ``max_prompt_length`` left at 0 are read off
        ``examples`` (dicts with ``target`` and optional ``prompt`` id lists): the largest id + 1, the longest
        target + 2 (headroom so that sampling ends by the model's stop decision) and the longest prompt."""
        import pyro

        if not examples:
            raise ValueError("no training examples; pass a list of {'target': [ids]} dicts")
        prompts = [example.get("prompt", []) for example in examples]
        if not config.vocab_size:
            config.vocab_size = 1 + max((max(seq) for seq in [e["target"] for e in examples] + prompts if seq),
                                        default=0)
        if not config.max_length:
            config.max_length = max(len(example["target"]) for example in examples) + 2
        if not config.max_prompt_length:
            config.max_prompt_length = max(len(prompt) for prompt in prompts)
        if config.conditional is None:
            config.conditional = any(prompts)
        pyro.set_rng_seed(config.seed)
        model, guide = model_and_guide(config)
        return cls(config, model, guide, examples, evaluate=evaluate)

    # -------------------------------------------------------------------------------------------- data
    def _epoch_order(self) -> list:
        """The shuffled example order of the current epoch (a pure function of seed and epoch, cached)."""
        if getattr(self, "_order_cache", (None,))[0] != self.epoch:
            order = list(range(len(self.examples)))
            random.Random(self.config.seed * 1_000_003 + self.epoch).shuffle(order)
            self._order_cache = (self.epoch, order)
        return self._order_cache[1]

    def _collate(self, chosen: list):
        """A :class:`ip_pyro.Batch` of examples (with their prompts when any has one), on the CPU."""
        prompts = [example.get("prompt", []) for example in chosen]
        return collate([example["target"] for example in chosen], prompts if any(prompts) else None,
                       vocab_size=self.config.vocab_size)

    def next_batch(self):
        """The next batch of the epoch-wise shuffled data (the position is part of the checkpoint)."""
        order = self._epoch_order()
        if self.position + self.config.batch_size > len(order):
            self.epoch, self.position = self.epoch + 1, 0
            order = self._epoch_order()
        chosen = [self.examples[i] for i in order[self.position: self.position + self.config.batch_size]]
        self.position += self.config.batch_size
        if self.config.distributed:
            chosen = distributed.shard(chosen)
        batch = self._collate(chosen)
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device)

    # -------------------------------------------------------------------------------------------- steps
    def loss(self, batch) -> torch.Tensor:
        """Mean per-sequence loss (the negative ELBO surrogate, or the negative log-likelihood for FO-ARM)."""
        if self.guide is None:
            return -self.model.log_prob(batch).mean()
        return self.objective().differentiable_loss(self.model, self.guide, batch) / batch.batch_size

    def objective(self):
        """The objective of the next step: the ELBO until ``objective_switch`` steps are done, then InsertionRWS
        (with ``objective="rws"``); ``None`` for FO-ARM."""
        if self.rws is not None and self.step >= self.config.objective_switch:
            return self.rws
        return self.elbo

    def objective_name(self) -> str:
        return "nll" if self.guide is None else ("rws" if self.objective() is self.rws else "elbo")

    def train_step(self) -> float:
        self.model.train()
        if self.guide is not None:
            self.guide.train()
        batch = self.next_batch()
        if self.elbo is not None:
            self.elbo.entropy_weight = self.entropy_weight()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
            loss = self.loss(batch)
        loss = loss.float()
        reported = distributed.average_scalar(loss.detach())  # the global batch's loss; NaN on any rank is seen by all
        if not torch.isfinite(reported):
            raise FloatingPointError(f"the loss became {reported.item()} at step {self.step + 1}; lower the learning "
                                     f"rate (now {self.scheduler.get_last_lr()[0]:.2e}) or clip gradients harder; "
                                     "the last good checkpoint is kept")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        distributed.average_gradients(parameters)
        if self.guide is not None and self.step < self.config.guide_hold:
            for held in self.guide.parameters():
                held.grad = None  # AdamW leaves a parameter without a gradient untouched (no decay either)
        torch.nn.utils.clip_grad_norm_(parameters, self.config.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self._update_ema()
        return reported.item()

    def entropy_weight(self) -> float:
        """The weight of the guide's entropy at this step: ``order_entropy_weight`` rising linearly to 1 over
        ``order_entropy_anneal`` steps (constant without annealing; 1 is the ELBO)."""
        start, span = self.config.order_entropy_weight, self.config.order_entropy_anneal
        return start if span == 0 else min(1.0, start + (1.0 - start) * self.step / span)

    def _update_ema(self) -> None:
        decay = 0.0 if self.step <= self.config.ema_start else self.config.ema_decay
        with torch.no_grad():
            for shadow, live in zip(self.ema.parameters(), self.model.parameters()):
                shadow.lerp_(live, 1.0 - decay)

    # -------------------------------------------------------------------------------------------- loop
    def fit(self, *, progress: bool = True, on_step: Optional[Callable[[int, float], None]] = None,
            on_validation: Optional[Callable[[int, dict], None]] = None, hooks: Optional[list] = None) -> list:
        """Train to ``config.steps`` (or ``config.time_limit``); returns the metrics history. Checkpoints every
        ``checkpoint_every`` steps and on exit, also on Ctrl-C.

        :param on_step: called as ``on_step(step, loss)`` after every optimiser step.
        :param on_validation: called as ``on_validation(step, metrics)`` after every validation (the dict logged
            to ``metrics.jsonl``: ``evaluate``'s numbers and the guide's ``order_entropy``).
        :param hooks: objects run around the loop on rank 0 (:mod:`ip_pyro.train_hooks`); default: the ones the
            config asks for (the RWS cost note, TensorBoard).
        """
        from ip_pyro.train_hooks import default_hooks

        main = distributed.is_main()
        self.hooks = list(default_hooks(self.config) if hooks is None else hooks) if main else []
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=self.config.steps, initial=self.step, disable=not (progress and main), dynamic_ncols=True)
        started, recent = time.perf_counter(), []
        try:
            out_of_time = self._out_of_time()
            while self.step < self.config.steps and not out_of_time:
                self._call_hooks("before_step")
                tick = time.perf_counter()
                objective = self.objective_name()
                loss = self.train_step()
                self.elapsed += time.perf_counter() - tick
                recent.append(loss)
                if on_step is not None:
                    on_step(self.step, loss)
                self._log({"step": self.step, "loss": loss, "lr": self.scheduler.get_last_lr()[0],
                           "elapsed_s": round(self.elapsed, 3), "objective": objective})
                bar.update(1)
                if self.step % 10 == 0 or self.step == self.config.steps:
                    rate = self.config.batch_size * len(recent) / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix(loss=f"{np.mean(recent):.3f}", seq_per_s=f"{rate:.0f}")
                    started, recent = time.perf_counter(), []
                out_of_time = self._out_of_time()
                last = self.step == self.config.steps or out_of_time
                if self.evaluate_fn is not None and (self.step % self.config.eval_every == 0 or last):
                    if main:
                        metrics = self.run_evaluation()
                        self._log({"step": self.step, **metrics})
                        if on_validation is not None:
                            on_validation(self.step, metrics)
                        self._call_hooks("after_validation", metrics)
                    distributed.barrier()
                if self.step % self.config.checkpoint_every == 0:
                    self.save()
            if self.step < self.config.steps:
                self._log({"step": self.step, "stopped": "time limit", "time_limit_min": self.config.time_limit,
                           "elapsed_s": round(self.elapsed, 3)})
            if self.config.distributed:  # a built-in check that data parallelism kept the ranks identical
                spread = distributed.parameter_spread([p for group in self.optimizer.param_groups
                                                       for p in group["params"]])
                self._log({"step": self.step, "world_size": distributed.world_size(), "rank_param_spread": spread})
        finally:
            bar.close()
            if self.step:
                self.save()
            self._call_hooks("close")
            self.hooks = []
        return self.history

    def _call_hooks(self, name: str, *arguments) -> None:
        for hook in self.hooks:
            method = getattr(hook, name, None)
            if method is not None:
                method(self, *arguments)

    def _out_of_time(self) -> bool:
        """Whether ``config.time_limit`` minutes of training time are spent (rank 0 decides for every rank).

        The learning-rate schedule still runs over ``config.steps``: pick ``steps`` to fit the budget for a full
        cosine decay; the limit is the cap that makes arms with different step costs comparable."""
        if not self.config.time_limit:
            return False
        spent = torch.tensor(float(self.elapsed >= 60.0 * self.config.time_limit), device=self.device)
        return bool(distributed.broadcast_scalar(spent).item())

    def _seed_rank(self, step: int) -> None:
        """Ranks other than 0 draw their own orders and steps (rank 0 keeps the single-process stream)."""
        if self.config.distributed and distributed.rank() > 0:
            torch.manual_seed(self.config.seed * 7919 + step * 104_729 + distributed.rank())

    def run_evaluation(self) -> dict:
        self.ema.eval()
        if self.guide is not None:
            self.guide.eval()
        with torch.no_grad():
            results = dict(self.evaluate_fn(self.ema, self.guide, self))
            if self.guide is not None:
                results["order_entropy"] = self.order_entropy()
            return results

    def order_entropy(self, num_sequences: int = 256, num_draws: int = 16) -> float:
        """The guide's entropy over orders relative to the uniform ``log L!`` (1 random, 0 one order), from
        ``num_draws`` guide draws on the first ``num_sequences`` training sequences (no model passes; its own seeded
        random stream, so evaluating leaves training unchanged)."""
        from ip_pyro.diagnostics import guide_order_entropy

        if getattr(self, "_entropy_batch", None) is None:
            chosen = self.examples[:num_sequences]
            self._entropy_batch = self._collate(chosen).to(self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the training stream must not depend on evaluation
            torch.manual_seed(self.config.seed)  # the same Gumbel draws at every validation
            return guide_order_entropy(self.guide, self._entropy_batch, num_draws=num_draws)

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if not distributed.is_main():
            return
        with open(self.out / "metrics.jsonl", "a") as stream:
            stream.write(json.dumps(record) + "\n")
        self._call_hooks("after_log", record)

    # -------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"format_version": CHECKPOINT_VERSION, "config": asdict(self.config),
                "model": describe_module(self.model), "guide": describe_module(self.guide),
                "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": self.step, "epoch": self.epoch,
                "position": self.position, "elapsed_s": self.elapsed,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                        "python": random.getstate(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                "extra": {"task": self.config.task, **self.config.extra}}

    def save(self, path=None) -> Path:
        """Write ``checkpoint.pt`` (or ``path``) atomically (rank 0 only when distributed)."""
        path = Path(path) if path is not None else self.out / "checkpoint.pt"
        if not distributed.is_main():
            return path
        state = self.state_dict()
        atomic_write(path, lambda stream: torch.save(state, stream))
        return path

    def load_state_dict(self, state: dict) -> None:
        saved = {key: value for key, value in state["config"].items() if key not in RUNTIME_KEYS}
        current = {key: value for key, value in asdict(self.config).items() if key in saved}
        for config in (saved, current):  # where the data folder lies may change between sessions, what it holds not
            if isinstance(config.get("extra"), dict):
                config["extra"] = {key: value for key, value in config["extra"].items() if key != "data"}
        changed = sorted(key for key in saved if saved[key] != current[key])
        if changed:
            raise ValueError(f"the checkpoint was written with a different config ({', '.join(changed)}); "
                             "resume with the same flags or start a new --out folder")
        self.model.load_state_dict(state["model"]["state_dict"])
        if self.guide is not None:
            self.guide.load_state_dict(state["guide"]["state_dict"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.elapsed = float(state.get("elapsed_s", 0.0))
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        if state["rng"].get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self._seed_rank(self.step)

    def resume(self, path=None) -> bool:
        """Load ``checkpoint.pt`` (or ``path``) if it exists; returns whether it did."""
        path = Path(path) if path is not None else self.out / "checkpoint.pt"
        if not path.is_file():
            return False
        self.load_state_dict(read_checkpoint(path, self.device))
        return True

