"""``ip-pyro eval --checkpoint PATH``: the metrics of the checkpoint's task family on a split (table + JSON)."""
from __future__ import annotations

__all__ = ["run", "add_parser"]


def run(args) -> int:
    import torch

    from ip_pyro.checkpoint import load_checkpoint
    from ip_pyro.tasks import family_of_checkpoint

    torch.manual_seed(args.seed)  # sampled decoding, SMILES samples and the NLL's orders: same seed, same numbers
    model, guide, extra = load_checkpoint(args.checkpoint, map_location=args.device, use_ema=args.weights == "ema")
    return family_of_checkpoint(extra).evaluate(args, model, guide, extra)


def add_parser(commands) -> None:
    """Add this verb's sub-parser to ``commands``."""
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint (table + JSON)")
    evaluate.add_argument("--checkpoint", required=True, help="a checkpoint written by ip-pyro train")
    evaluate.add_argument("--split", default="test", help="the split to score: train, valid or test for planning "
                          "tasks and your own sequences; valid or test for SMILES")
    evaluate.add_argument("--decode", default="greedy", choices=["greedy", "sample"],
                          help="planning: greedy decoding or samples at temperature 1")
    evaluate.add_argument("--weights", default="ema", choices=["ema", "raw"],
                          help="the EMA of the model weights (default) or the last weights")
    evaluate.add_argument("--nll-samples", type=int, default=100, help="IP: orders per sequence of the IWAE NLL "
                          "bound (0: no NLL)")
    evaluate.add_argument("--exact", action="store_true", help="IP: the exact NLL, summed over all L! orders "
                          "(sequences up to length 8 with the canvas decoder, 7 with the causal one), instead of the "
                          "IWAE bound")
    evaluate.add_argument("--limit", type=int, default=None, help="planning: score the first N examples only")
    evaluate.add_argument("--nll-limit", type=int, default=None, help="NLL on the first N examples only (SMILES "
                          "default: 200 molecules, so eval stays bounded on a CPU; planning default: all)")
    evaluate.add_argument("--data", default=None, help="planning: the data folder; SMILES and your own sequences: "
                          "the data file, if it moved since training (the checkpoint keeps its path relative to the "
                          "run folder)")
    evaluate.add_argument("--data-seed", type=int, default=None, help="planning data generated in memory: its seed "
                          "(default: the checkpoint's)")
    evaluate.add_argument("--json", default=None, help="where to write the results (default: eval_SPLIT.json "
                          "beside the checkpoint)")
    evaluate.add_argument("--num-samples", type=int, default=10_000, help="SMILES tasks: molecules to sample")
    evaluate.add_argument("--insertions-per-step", type=int, default=1, help="IP: parallel decoding, up to K "
                          "insertions per decoder pass (1 = exact sampling)")
    evaluate.add_argument("--seed", type=int, default=0, help="seeds every draw of the evaluation (samples, "
                          "orders of the NLL): the same seed gives the same numbers")
    evaluate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    evaluate.set_defaults(run=run)
