"""``TrainConfig``: everything that defines a training run (saved in every checkpoint), and its validation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ip_pyro.guides.registry import FAMILIES as GUIDE_FAMILIES
from ip_pyro.infer.rws import GUIDE_UPDATES, MODEL_GRADIENTS
from ip_pyro.models.insertion import DECODERS
from ip_pyro.models.registry import FAMILIES as MODEL_FAMILIES
from ip_pyro.networks.decoder import PROMPT_ATTENTION

__all__ = ["TrainConfig", "GUIDE_NAMES", "MODEL_NAMES", "CHECKPOINT_VERSION", "PRECISIONS", "OBJECTIVES",
           "RUNTIME_KEYS"]

GUIDE_NAMES = tuple(GUIDE_FAMILIES)  # the registries' names (ip_pyro.guides.FAMILIES, ip_pyro.models.FAMILIES)
MODEL_NAMES = tuple(MODEL_FAMILIES)
CHECKPOINT_VERSION = 1
PRECISIONS = ("fp32", "bf16")
OBJECTIVES = ("elbo", "rws")
# run-time settings that may differ between a run and its resumption (the global batch stays the same)
RUNTIME_KEYS = ("steps", "device", "out", "eval_every", "checkpoint_every", "precision", "compile", "distributed",
                "time_limit", "tensorboard")


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in every checkpoint)."""

    task: str = "star-easy"
    model: str = "ip"
    guide: str = "pl"
    steps: int = 2000
    batch_size: int = 64
    d_model: int = 128
    layers: int = 4
    heads: int = 4
    dropout: float = 0.0
    absolute_positions: bool = False  # learned absolute position embeddings on top of the rotary ones
    prompt_group: int = 1  # read the prompt as groups of this many tokens (2: an edge list u v u v ...)
    embed_std: float = 0.02  # initial token embedding scale (1.0 learns prompt lookups far sooner)
    prompt_attention: Optional[str] = None  # IP: "full" / "prefix" (None: the decoder's own; FO-ARM: always causal)
    decoder: str = "canvas"  # IP: "canvas" (re-encode the canvas per step) or "causal" (one pass per order)
    gap_context: int = 2  # IP with the causal decoder: canvas items read on each side of a gap
    guide_d_model: int = 64
    guide_layers: int = 3
    guide_heads: int = 4
    lr: float = 1e-3
    guide_lr: Optional[float] = None
    weight_decay: float = 0.01
    warmup: int = 100
    clip_norm: float = 1.0
    ema_decay: float = 0.999
    ema_start: int = 200
    particles: int = 2  # orders per sequence: the ELBO's M, or the K of the importance-weighted objective
    objective: str = "elbo"  # "elbo" (InsertionELBO) or "rws" (InsertionRWS: IWAE model, reweighted wake-sleep guide)
    objective_switch: int = 0  # with "rws": train with the ELBO for this many steps first, then switch
    elbo_particles: int = 2  # with "rws" and a switch: the warm-up ELBO's M (particles is then the RWS K)
    rws_gradient: str = "full"  # InsertionRWS model_gradient: "full" or "steps" (steps_per_order steps per order)
    rws_guide_update: str = "wake"  # InsertionRWS guide_update: "wake", "elbo" or "none"
    termination: str = "stop"
    step_sampling: str = "uniform"
    steps_per_order: int = 1
    order_entropy_weight: float = 1.0
    order_entropy_anneal: int = 0
    precision: str = "fp32"
    compile: bool = False
    distributed: bool = False
    eval_every: int = 500
    eval_size: int = 500
    checkpoint_every: int = 500
    time_limit: float = 0.0  # minutes of training time (evaluation excluded) after which fit stops; 0 = none
    tensorboard: bool = False  # also log scalars and order figures for TensorBoard (OUT/tensorboard)
    seed: int = 0
    device: str = "cpu"
    out: str = "runs/run"
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
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
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
        if isinstance(self.objective_switch, bool) or not isinstance(self.objective_switch, int) \
                or self.objective_switch < 0:
            raise ValueError(f"--objective-switch={self.objective_switch!r} must be a step count >= 0")
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
