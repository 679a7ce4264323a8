"""What every task's ``ip-pyro train`` shares: the run's config from the flags, and the training loop with resume."""
from __future__ import annotations

from pathlib import Path

from ip_pyro.cli.common import CommandError

__all__ = ["add_config_arguments", "config_from_args", "run_training"]


FLAG_TYPES = {"int": int, "float": float, "str": str, "Optional[int]": int, "Optional[float]": float,
              "Optional[str]": str}


def add_config_arguments(parser, names: dict) -> None:
    """One ``--flag`` per :class:`ip_pyro.train.TrainConfig` field that carries a help line (the config is the
    one source of the run's settings); ``names`` fills the help's ``{tasks}``, ``{models}``, ``{guides}``."""
    from ip_pyro.config import config_flags

    for entry in config_flags():
        options = {key: value for key, value in entry.metadata.items() if key != "help"}
        text = entry.metadata["help"].format(**names)
        name = "--" + entry.name.replace("_", "-")
        if entry.type == "bool":
            parser.add_argument(name, action="store_true", help=text, **options)
        else:
            default = None if options.get("required") else entry.default
            parser.add_argument(name, type=FLAG_TYPES[entry.type], default=default, help=text, **options)


def config_from_args(args, *, vocab_size: int, max_length: int, max_prompt_length: int = 0,
                     extra: dict | None = None):
    """The :class:`ip_pyro.train.TrainConfig` of ``ip-pyro train``'s flags (shared by every task family): every
    flag field as parsed, plus the sizes the data gives."""
    import torch

    from ip_pyro.config import config_flags
    from ip_pyro.train import TrainConfig

    config = TrainConfig(**{entry.name: getattr(args, entry.name) for entry in config_flags()},
                         vocab_size=vocab_size, max_length=max_length, max_prompt_length=max_prompt_length,
                         conditional=max_prompt_length > 0, extra=dict(extra or {}))
    config.validate()
    if isinstance(args.threads, bool) or args.threads < 0:
        raise CommandError(f"--threads={args.threads} must be 0 (torch's default) or a positive thread count")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CommandError(f"--device {args.device} asked for, but no CUDA device is available; use --device cpu")
    if (Path(config.out) / "checkpoint.pt").exists() and not args.resume:
        raise CommandError(f"{config.out} already holds a checkpoint; pass --resume to continue it or choose "
                           "another --out")
    return config


def run_training(args, config, examples: list, evaluate) -> "Trainer":  # noqa: F821 - imported lazily
    """Build the model and guide, train (resuming when asked) and return the trainer."""
    import pyro
    import torch

    from ip_pyro.train import Trainer, model_and_guide

    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    model, guide = model_and_guide(config)
    trainer = Trainer(config, model, guide, examples, evaluate=evaluate)
    if args.resume and trainer.resume():
        print(f"resumed from {config.out}/checkpoint.pt at step {trainer.step}")
    try:
        trainer.fit(progress=not args.no_progress)
    finally:
        import torch.distributed

        if config.distributed and torch.distributed.is_initialized():
            torch.distributed.barrier()  # rank 0 may still be writing the last checkpoint
            torch.distributed.destroy_process_group()
    return trainer
