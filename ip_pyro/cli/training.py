"""What every task's ``ip-pyro train`` shares: the run's config from the flags, and the training loop with resume."""
from __future__ import annotations

from pathlib import Path

from ip_pyro.cli.common import CommandError

__all__ = ["config_from_args", "run_training"]


def config_from_args(args, *, vocab_size: int, max_length: int, max_prompt_length: int = 0,
                     extra: dict | None = None):
    """The :class:`ip_pyro.train.TrainConfig` of ``ip-pyro train``'s flags (shared by every task family)."""
    import torch

    from ip_pyro.train import TrainConfig

    config = TrainConfig(task=args.task, model=args.model, guide=args.guide, steps=args.steps,
                         batch_size=args.batch_size, d_model=args.d_model, layers=args.layers, heads=args.heads,
                         guide_d_model=args.guide_d_model, guide_layers=args.guide_layers, lr=args.lr,
                         guide_lr=args.guide_lr, warmup=args.warmup, particles=args.particles,
                         objective=args.objective, objective_switch=args.objective_switch,
                         elbo_particles=args.elbo_particles,
                         rws_gradient=args.rws_gradient, rws_guide_update=args.rws_guide_update,
                         termination=args.termination, step_sampling=args.step_sampling,
                         steps_per_order=args.steps_per_order, order_entropy_weight=args.order_entropy_weight,
                         order_entropy_anneal=args.order_entropy_anneal, precision=args.precision,
                         compile=args.compile, absolute_positions=args.absolute_positions,
                         prompt_group=args.prompt_group, embed_std=args.embed_std,
                         prompt_attention=args.prompt_attention, decoder=args.decoder, gap_context=args.gap_context,
                         max_prompt_length=max_prompt_length, conditional=max_prompt_length > 0,
                         distributed=args.distributed, dropout=args.dropout, ema_decay=args.ema_decay,
                         ema_start=args.ema_start, eval_every=args.eval_every, eval_size=args.eval_size,
                         checkpoint_every=args.checkpoint_every, time_limit=args.time_limit, seed=args.seed,
                         tensorboard=args.tensorboard,
                         device=args.device, out=args.out,
                         vocab_size=vocab_size, max_length=max_length, extra=dict(extra or {}))
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

    from ip_pyro.train import Trainer, build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    model, guide = build_model(config)
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
