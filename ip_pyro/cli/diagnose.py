"""``ip-pyro diagnose CHECKPOINT``: insertion-order diagnostics of a trained model (guide draws, PSIS, MCMC)."""
from __future__ import annotations

from pathlib import Path

from ip_pyro.cli.common import CommandError

__all__ = ["run", "add_parser"]


def run(args) -> int:
    from ip_pyro.batch import collate
    from ip_pyro.checkpoint import load_checkpoint
    from ip_pyro.report import diagnose
    from ip_pyro.tasks import family_of_checkpoint

    model, guide, extra = load_checkpoint(args.checkpoint, map_location=args.device)
    if guide is None:
        raise CommandError(f"checkpoint {args.checkpoint} holds no guide; diagnose needs an IP model with a guide")
    data = family_of_checkpoint(extra).diagnose_data(args, model, extra, Path(args.checkpoint).resolve().parent)
    if data["said"]:
        print(data["said"])
    batch = collate(data["sequences"], data["prompts"], vocab_size=model.vocab_size).to(args.device)
    report = diagnose(model, guide, batch, args.out, token_names=extra.get("token_names"), domain=args.domain,
                      landmarks=data["landmarks"], num_chains=args.chains, num_draws=args.draws,
                      mcmc_samples=args.mcmc_samples, mcmc_warmup=args.mcmc_warmup, seed=args.seed)
    print(report["summary"])
    print(f"wrote {len(report['files'])} files to {args.out}")
    return 0


def add_parser(commands) -> None:
    """Add this verb's sub-parser to ``commands``."""
    diagnose = commands.add_parser("diagnose", help="insertion-order diagnostics of a trained checkpoint")
    diagnose.add_argument("checkpoint", help="a checkpoint with a guide (ip-pyro train --model ip)")
    diagnose.add_argument("--data", help="JSONL with a 'target' per line (default: sequences sampled from the model)")
    diagnose.add_argument("--out", default="diagnostics", help="folder for the figures, netCDF and summary")
    diagnose.add_argument("--domain", default="generic", choices=["generic", "path", "smiles"],
                          help="how to read the orders: path (landmarks), smiles (token classes) or generic")
    diagnose.add_argument("--num-sequences", type=int, default=64, help="sequences whose orders are drawn")
    diagnose.add_argument("--chains", type=int, default=4, help="chains of guide draws (and of MCMC)")
    diagnose.add_argument("--draws", type=int, default=250, help="guide draws per chain")
    diagnose.add_argument("--mcmc-samples", type=int, default=400, help="MCMC draws per chain over the orders of "
                          "one sequence (0: guide-only diagnostics, much faster)")
    diagnose.add_argument("--mcmc-warmup", type=int, default=200, help="MCMC warm-up draws per chain")
    diagnose.add_argument("--seed", type=int, default=0, help="seeds every draw")
    diagnose.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    diagnose.set_defaults(run=run)
