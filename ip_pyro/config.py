"""``TrainConfig``: everything that defines a training run (saved in every checkpoint), and its validation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ip_pyro.guides.registry import FAMILIES as GUIDE_FAMILIES
from ip_pyro.guides.registry import LEARNED as LEARNED_GUIDES
from ip_pyro.infer.rws import GUIDE_UPDATES, MODEL_GRADIENTS
from ip_pyro.models.insertion import DECODERS
from ip_pyro.models.registry import FAMILIES as MODEL_FAMILIES
from ip_pyro.networks.decoder import PROMPT_ATTENTION
from ip_pyro.utils import is_count

__all__ = ["flag", "config_flags", "TrainConfig", "GUIDE_NAMES", "MODEL_NAMES", "CHECKPOINT_VERSION", "PRECISIONS",
           "OBJECTIVES", "RUNTIME_KEYS"]

GUIDE_NAMES = tuple(GUIDE_FAMILIES)  # the registries' names (ip_pyro.guides.FAMILIES, ip_pyro.models.FAMILIES)
MODEL_NAMES = tuple(MODEL_FAMILIES)
CHECKPOINT_VERSION = 1
PRECISIONS = ("fp32", "bf16")
OBJECTIVES = ("elbo", "rws")
# run-time settings that may differ between a run and its resumption (the global batch stays the same)
RUNTIME_KEYS = ("steps", "device", "out", "eval_every", "checkpoint_every", "precision", "compile", "distributed",
                "time_limit", "tensorboard")


def flag(default, help: str, **argparse_options):
    """A :class:`TrainConfig` field that is also an ``ip-pyro train`` flag (``--name-with-dashes``): ``help`` is
    its help line (``{tasks}``, ``{models}``, ``{guides}`` name the registries), ``argparse_options`` go to
    ``add_argument`` (``metavar``, ``required``)."""
    return field(default=default, metadata={"help": help, **argparse_options})


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in every checkpoint)."""

    task: str = flag("star-easy", "one of {tasks} (sequences: your own file, --data FILE)")
    model: str = flag("ip", "one of {models} (ip: the Insertion Process; fo-arm: the left-to-right baseline)")
    guide: str = flag("pl", "IP: the order posterior, one of {guides} (ip_pyro.guides.FAMILIES)")
    steps: int = flag(2000, "optimiser steps (the cosine schedule spans them)")
    batch_size: int = flag(64, "sequences per step (the global batch)")
    d_model: int = flag(128, "model width")
    layers: int = flag(4, "model Transformer layers")
    heads: int = flag(4, "model attention heads")
    dropout: float = flag(0.0, "dropout of every network")
    absolute_positions: bool = flag(
        False,
        "learned absolute position embeddings on top of the rotary ones (lets attention tell the two ends of an "
        "edge in a flat edge list apart)")
    prompt_group: int = flag(
        1,
        "read the prompt as groups of this many tokens; each prompt token also embeds the rest of its group (2 "
        "for the star graphs' edge list u v u v ...; 1 = off)")
    embed_std: float = flag(
        0.02,
        "initial token embedding scale (0.02 as GPT-2; 1.0 learns lookups in the prompt far sooner: "
        "docs/planning.md)")
    prompt_attention: Optional[str] = flag(
        None,
        "IP: full (the prompt also reads the canvas) or prefix (the prompt attends to itself only and is encoded "
        "once per sequence for all its canvases and the whole decoding; FO-ARM is causal either way). Default: "
        "full with --decoder canvas; --decoder causal always uses prefix")
    decoder: str = flag(
        "canvas",
        "IP: canvas (re-encode the canvas at every insertion; L + 1 passes per order) or causal (attention causal"
        " in writing order: one pass scores every step of an order, sampling keeps a KV cache; see "
        "docs/method.md). Default: canvas")
    gap_context: int = flag(
        2,
        "IP with --decoder causal: items of the current canvas read on each side of a gap by the gap and token "
        "heads (default 2)")
    guide_d_model: int = flag(64, "learned guides: encoder width")
    guide_layers: int = flag(3, "learned guides: encoder layers")
    guide_heads: int = 4
    lr: float = flag(1e-3, "AdamW learning rate of the model")
    guide_lr: Optional[float] = flag(None, "learning rate of the guide (default: --lr)")
    weight_decay: float = 0.01
    warmup: int = flag(100, "linear warm-up steps before the cosine decay")
    clip_norm: float = 1.0
    ema_decay: float = flag(
        0.999,
        "decay of the model weights' moving average (evaluated by default; 0 = the raw weights)")
    ema_start: int = flag(200, "steps before the moving average starts (it copies the weights until then)")
    particles: int = flag(
        2,
        "IP: orders per sequence (the ELBO's M; the K of --objective rws, where 4 is a good start)")
    objective: str = flag(
        "elbo",
        "IP: elbo (InsertionELBO) or rws (IWAE for the model, reweighted wake-sleep for the guide: learns orders;"
        " a step scores K whole orders, K (L + 1) canvases with --decoder canvas, K passes with causal)")
    objective_switch: int = flag(
        0,
        "with --objective rws: train with the ELBO for STEP steps first, then switch (saved in the checkpoint)",
        metavar="STEP")
    elbo_particles: int = flag(
        2,
        "with --objective rws and --objective-switch: the warm-up ELBO's particles (--particles is then the RWS "
        "K)",
        metavar="M")
    rws_gradient: str = flag(
        "full",
        "with --objective rws: full (backpropagate every canvas) or steps (no-grad weights, gradient through "
        "--steps-per-order steps per order)")
    rws_guide_update: str = flag(
        "wake",
        "with --objective rws: wake (wake-phi), elbo (the ELBO's guide gradient) or none (guide fixed)")
    termination: str = flag(
        "stop",
        "IP only: stop (a stop head) or eos (an end token insertable only at the last slot)")
    step_sampling: str = flag("uniform", "IP: uniform (sampled steps per order, unbiased) or all (every step)")
    steps_per_order: int = flag(
        1,
        "IP with --step-sampling uniform: distinct steps (prefixes) scored per sampled order in one batched pass")
    order_entropy_weight: float = flag(
        1.0,
        "IP: weight of the guide's entropy at the start (1 = the ELBO; < 1 lets the order sharpen)")
    order_entropy_anneal: int = flag(0, "steps over which that weight rises linearly to 1")
    guide_hold: int = flag(
        0,
        "learned guides: keep the guide at its initial order (uniform: the scores start at zero) for the first "
        "STEP steps, so the model learns under every order before the guide follows its posterior",
        metavar="STEP")
    precision: str = flag("fp32", "fp32 or bf16 (autocast)")
    compile: bool = flag(False, "torch.compile the networks")
    distributed: bool = flag(
        False,
        "data-parallel under torchrun (gloo on CPU, NCCL on GPU); --batch-size is the global batch")
    eval_every: int = flag(500, "steps between validations (metrics.jsonl)")
    eval_size: int = flag(500, "validation examples scored each time")
    checkpoint_every: int = flag(500, "steps between checkpoints (also on exit)")
    time_limit: float = flag(
        0.0,
        "stop after this much training time (evaluation excluded; 0 = no limit); the schedule still spans "
        "--steps, so set --steps to what fits for a full cosine decay",
        metavar="MINUTES")
    tensorboard: bool = flag(
        False,
        "also log for TensorBoard under OUT/tensorboard: every metric, and the guide's order figure at each "
        "validation (pip install 'ip-pyro[tensorboard]')")
    seed: int = flag(0, "seeds weights, orders and data order")
    device: str = flag("cpu", "cpu, cuda or cuda:N")
    out: str = flag("runs/run", "run folder: checkpoint.pt, metrics.jsonl", required=True)
    vocab_size: int = 0
    max_length: int = 0
    max_prompt_length: int = 0  # set from the task; sizes the absolute position embeddings
    conditional: Optional[bool] = None  # the data has prompts (sampling then needs one); None: not said, no check
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(MODEL_NAMES)}")
        if self.model == "ip" and self.guide not in GUIDE_NAMES:
            raise ValueError(f"unknown guide {self.guide!r}; choose from {', '.join(GUIDE_NAMES)}")
        for name in ("steps", "batch_size", "d_model", "layers", "heads", "particles", "eval_every",
                     "checkpoint_every", "steps_per_order", "prompt_group", "elbo_particles", "gap_context"):
            value = getattr(self, name)
            if not is_count(value):
                raise ValueError(f"--{name.replace('_', '-')}={value!r} must be a positive integer")
        if not self.lr > 0 or (self.guide_lr is not None and not self.guide_lr > 0):
            raise ValueError(f"learning rates must be positive, got lr={self.lr}, guide_lr={self.guide_lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"--ema-decay={self.ema_decay} must lie in [0, 1)")
        if not 0.0 <= self.order_entropy_weight <= 1.0 or self.order_entropy_anneal < 0:
            raise ValueError(f"--order-entropy-weight={self.order_entropy_weight} must lie in [0, 1] and "
                             f"--order-entropy-anneal={self.order_entropy_anneal} must be >= 0")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose from {', '.join(OBJECTIVES)}")
        if self.objective == "rws":
            if self.model != "ip":
                raise ValueError("--objective rws trains an insertion model's orders; FO-ARM has no orders (drop it)")
            if self.particles < 2:
                raise ValueError(f"--objective rws needs --particles >= 2 (got {self.particles}); 4 is a good start")
            if self.rws_gradient not in MODEL_GRADIENTS:
                raise ValueError(f"unknown --rws-gradient {self.rws_gradient!r}; choose from "
                                 f"{', '.join(MODEL_GRADIENTS)}")
            if self.rws_guide_update not in GUIDE_UPDATES:
                raise ValueError(f"unknown --rws-guide-update {self.rws_guide_update!r}; choose from "
                                 f"{', '.join(GUIDE_UPDATES)}")
        if not is_count(self.objective_switch, 0):
            raise ValueError(f"--objective-switch={self.objective_switch!r} must be a step count >= 0")
        if not is_count(self.guide_hold, 0):
            raise ValueError(f"--guide-hold={self.guide_hold!r} must be a step count >= 0")
        if self.guide_hold and (self.model != "ip" or self.guide not in LEARNED_GUIDES):
            raise ValueError(f"--guide-hold holds a learned guide ({', '.join(LEARNED_GUIDES)}); --guide "
                             f"{self.guide} has nothing to hold (drop --guide-hold)")
        if self.objective_switch and self.objective != "rws":
            raise ValueError("--objective-switch STEP switches from the ELBO to --objective rws; add --objective rws")
        if self.prompt_attention is not None and self.prompt_attention not in PROMPT_ATTENTION:
            raise ValueError(f"unknown --prompt-attention {self.prompt_attention!r}; choose from "
                             f"{', '.join(PROMPT_ATTENTION)}")
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown --decoder {self.decoder!r}; choose from {', '.join(DECODERS)}")
        if self.decoder == "causal" and self.prompt_attention == "full":
            raise ValueError("--decoder causal encodes the prompt once (prefix attention); drop --prompt-attention "
                             "full or use --decoder canvas")
        if self.step_sampling not in ("uniform", "all"):
            raise ValueError(f"unknown step sampling {self.step_sampling!r}; choose from uniform, all")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        if self.termination not in ("stop", "eos"):
            raise ValueError(f"unknown termination {self.termination!r}; choose from stop, eos")
        if self.model == "fo-arm" and self.termination != "stop":
            raise ValueError("--termination eos is an IP option; the left-to-right model always ends with EOS")
        if not self.time_limit >= 0:
            raise ValueError(f"--time-limit={self.time_limit} must be >= 0 minutes (0 = no limit)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout={self.dropout} must lie in [0, 1)")
        if not 0.0 < self.embed_std < float("inf"):
            raise ValueError(f"--embed-std={self.embed_std} must be a positive number (0.02: GPT-2 init; 1.0: PyTorch's)")


def config_flags() -> list:
    """The :class:`TrainConfig` fields that are ``ip-pyro train`` flags, in field order."""
    from dataclasses import fields

    return [entry for entry in fields(TrainConfig) if "help" in entry.metadata]
