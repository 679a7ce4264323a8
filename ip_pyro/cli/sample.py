"""``ip-pyro sample --checkpoint PATH``: decode a split's prompts, or draw sequences / molecules."""
from __future__ import annotations

from ip_pyro.cli.common import checkpoint_splits

__all__ = ["run", "add_parser"]


def run(args) -> int:
    from ip_pyro.checkpoint import load_checkpoint

    model, _, extra = load_checkpoint(args.checkpoint, map_location=args.device)
    task = extra.get("task")
    if "vocabulary" in extra:
        from ip_pyro.data.smiles import SmilesVocabulary
        from ip_pyro.evaluation import sample_smiles

        for smiles in sample_smiles(model, SmilesVocabulary(extra["vocabulary"]), args.num):
            print(smiles)
        return 0
    if "sequence_vocabulary" in extra:
        from ip_pyro.cli.sequences import sample_sequences
        return sample_sequences(args, model, extra)
    if task is None:
        names = extra.get("token_names")  # written back as the user's tokens when the file carries them
        for sequence in model.sample(args.num):
            print(" ".join(str(names[token]) if names else str(token) for token in sequence))
        return 0
    splits, source = checkpoint_splits(args, task, extra)
    examples = splits[args.split][: args.num]
    print(f"decoding the first {len(examples)} prompts of the {args.split} split of {source}")
    predictions = model.sample(prompt=[e["prompt"] for e in examples], greedy=args.greedy)
    for example, prediction in zip(examples, predictions):
        mark = "ok " if prediction == example["target"] else "   "
        goals = (f"subgoals {' '.join(map(str, example['subgoals']))}" if "subgoals" in example
                 else f"source {example['source']} goal {example['goal']}")
        print(f"{mark}{goals}: {' '.join(map(str, prediction))}")
    return 0


def add_parser(commands) -> None:
    """Add this verb's sub-parser to ``commands``."""
    sample = commands.add_parser("sample", help="decode the prompts of a split (or draw sequences)")
    sample.add_argument("--checkpoint", required=True, help="a checkpoint written by ip-pyro train")
    sample.add_argument("-n", "--num", type=int, default=10, help="how many prompts to decode (or sequences to draw)")
    sample.add_argument("--split", default="test", help="planning: the split whose prompts are decoded")
    sample.add_argument("--greedy", action="store_true", help="greedy decoding instead of samples")
    sample.add_argument("--data", default=None, help="planning: a data folder (default: the checkpoint's)")
    sample.add_argument("--data-seed", type=int, default=None, help="planning data generated in memory: its seed "
                        "(default: the checkpoint's)")
    sample.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    sample.set_defaults(run=run)
