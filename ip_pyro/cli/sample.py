"""``ip-pyro sample --checkpoint PATH``: decode prompts (yours, or a split's) or draw sequences / molecules.

Prompts come from ``--prompt "TOKENS"`` (repeatable) or ``--prompts FILE`` (one prompt a line), tokens written as
the task writes them (node ids for planning, your tokens for ``--task sequences``, ``token_names`` of a file saved
with ``ip_pyro.save``); without either, a planning or prompted run decodes the first ``-n`` prompts of
``--split``. ``--temperature``, ``--top-k`` and ``--top-p`` shape each draw; ``--best-of N`` draws N per prompt
and keeps the one whose trajectory the model finds most probable.
"""
from __future__ import annotations

from pathlib import Path

from ip_pyro.cli.common import CommandError
from ip_pyro.tasks.shared import decode_prompts

__all__ = ["run", "add_parser"]


def _token_codec(extra: dict):
    """``(encode, decode)`` between the checkpoint's written tokens and ids: its vocabulary (own sequences),
    its ``token_names`` (a saved file), or the ids themselves (planning tasks)."""
    names = extra.get("sequence_vocabulary") or extra.get("token_names")
    if names is not None:
        from ip_pyro.vocabulary import Vocabulary

        vocabulary = Vocabulary(names)
        return vocabulary.encode, lambda ids: " ".join(vocabulary.decode(ids)) or "(empty)"

    def encode(words):
        try:
            return [int(word) for word in words.split()]
        except ValueError:
            raise CommandError(f"prompt {words!r}: this checkpoint's tokens are integer ids") from None
    return encode, lambda ids: " ".join(map(str, ids))


def _given_prompts(args) -> list | None:
    """The prompts of ``--prompt`` and ``--prompts FILE`` as written (strings), or None when neither is given."""
    prompts = list(args.prompt or [])
    if args.prompts:
        path = Path(args.prompts)
        if not path.is_file():
            raise CommandError(f"no prompt file at {path} (--prompts); it needs one prompt a line")
        prompts += [line for line in path.read_text().splitlines() if line.strip()]
    return prompts if (args.prompt or args.prompts) else None


def run(args) -> int:
    from ip_pyro.checkpoint import load_checkpoint
    from ip_pyro.tasks import family_of_checkpoint

    if args.best_of < 1:
        raise CommandError(f"--best-of {args.best_of} must be at least 1")
    model, _, extra = load_checkpoint(args.checkpoint, map_location=args.device)
    family = family_of_checkpoint(extra)
    given = _given_prompts(args)
    if given is None:
        return family.sample(args, model, extra, _token_codec(extra)[1])
    if family.name == "smiles":
        raise CommandError("a SMILES model draws molecules without prompts; drop --prompt/--prompts")
    encode, decode = _token_codec(extra)
    try:
        prompts = [encode(words) for words in given]
    except ValueError as error:
        raise CommandError(f"a prompt holds a token the model does not know: {error}") from None
    for words, prediction in zip(given, decode_prompts(model, prompts, args)):
        print(f"{words}  =>  {decode(prediction)}")
    return 0


def add_parser(commands) -> None:
    """Add this verb's sub-parser to ``commands``."""
    sample = commands.add_parser("sample", help="decode prompts (yours or a split's), or draw sequences")
    sample.add_argument("--checkpoint", required=True, help="a checkpoint written by ip-pyro train or ip_pyro.save")
    sample.add_argument("-n", "--num", type=int, default=10, help="how many prompts of --split to decode (or "
                        "sequences to draw from a model without prompts)")
    sample.add_argument("--prompt", action="append", default=None, metavar="TOKENS", help="a prompt to decode, its "
                        "tokens separated by spaces as the task writes them (repeat for several)")
    sample.add_argument("--prompts", default=None, metavar="FILE", help="a file of prompts to decode, one a line")
    sample.add_argument("--split", default="test", help="planning tasks and your own prompted sequences: the split "
                        "whose prompts are decoded (when no --prompt or --prompts is given)")
    sample.add_argument("--greedy", action="store_true", help="greedy decoding instead of samples")
    sample.add_argument("--temperature", type=float, default=1.0, help="divides every logit (stop, slot, token)")
    sample.add_argument("--top-k", type=int, default=None, help="draw slots and tokens among the K most probable "
                        "(default: no truncation)")
    sample.add_argument("--top-p", type=float, default=None, help="nucleus sampling of slots and tokens: the "
                        "smallest set holding probability P (default: none)")
    sample.add_argument("--best-of", type=int, default=1, metavar="N", help="per prompt, draw N samples and keep "
                        "the one whose trajectory is most probable under the model (default 1)")
    sample.add_argument("--data", default=None, help="planning: a data folder; your own sequences: the data file "
                        "(default: the checkpoint's)")
    sample.add_argument("--data-seed", type=int, default=None, help="planning data generated in memory: its seed "
                        "(default: the checkpoint's)")
    sample.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    sample.set_defaults(run=run)
