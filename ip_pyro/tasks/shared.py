"""What several task families share: decoding prompts with the ``sample`` flags (``--best-of``, truncation), and
for ``diagnose`` sequences from a JSONL file of records, or drawn from the model when no ``--data`` is given."""
from __future__ import annotations

from pathlib import Path

from ip_pyro.cli.common import CommandError, read_records

__all__ = ["records_to_diagnose", "sampled_to_diagnose", "SMILES_SUFFIXES", "sampling_options", "decode_prompts"]

SMILES_SUFFIXES = (".smi", ".csv", ".csv.gz")


def records_to_diagnose(args, landmarks_of=None) -> dict:
    """The first ``--num-sequences`` records of the JSONL ``--data`` (targets, prompts, and the named cells that
    ``landmarks_of(records)`` finds, if given)."""
    if Path(args.data).name.endswith(SMILES_SUFFIXES):
        raise CommandError(f"{args.data} holds SMILES but {args.checkpoint} was not trained on SMILES; pass a "
                           "JSONL file of token ids")
    records = read_records(Path(args.data))[: args.num_sequences]
    prompts = [record.get("prompt", []) for record in records]
    return {"sequences": [record["target"] for record in records], "prompts": prompts if any(prompts) else None,
            "landmarks": landmarks_of(records) if landmarks_of else None, "said": None}


def sampled_to_diagnose(args, model) -> dict:
    """``--num-sequences`` draws of an unprompted model (the empty ones left out), said in one line."""
    import torch

    if getattr(model, "conditional", None):
        raise CommandError(f"{args.checkpoint} models prompted data, so diagnose needs the prompts: pass --data "
                           "FILE (JSONL with a 'prompt' and a 'target' per line)")
    torch.manual_seed(args.seed)
    drawn = model.sample(args.num_sequences)
    sequences = [sequence for sequence in drawn if sequence]
    if not sequences:
        raise CommandError("the model only sampled empty sequences; pass --data with sequences to diagnose")
    empty = len(drawn) - len(sequences)
    said = (f"no --data given: diagnosing {len(sequences)} sequences sampled from the model (seed {args.seed}"
            + (f"; {empty} empty draws left out)" if empty else ")"))
    return {"sequences": sequences, "prompts": None, "landmarks": None, "said": said}


def sampling_options(args) -> dict:
    """``model.sample``'s keyword arguments from the flags (greedy, temperature, top-k, top-p)."""
    return {"greedy": args.greedy, "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}


def _best_of(model, prompts: list, copies: int, options: dict) -> list:
    """One sequence per prompt: of ``copies`` draws each, the one with the highest ``log p(x, sigma | prompt)``."""
    drawn, scores = model.sample(copies, prompt=prompts, return_log_probs=True, **options)
    chosen = []
    for index in range(len(prompts)):
        block = range(index * copies, (index + 1) * copies)
        chosen.append(drawn[max(block, key=lambda row: scores[row])])
    return chosen


def decode_prompts(model, prompts: list, args) -> list:
    """One output per prompt (``--best-of`` draws, ``--greedy`` or one draw)."""
    if args.best_of > 1:
        if args.greedy:
            raise CommandError("--best-of draws several samples per prompt; drop --greedy (greedy gives one)")
        return _best_of(model, prompts, args.best_of, sampling_options(args))
    return model.sample(prompt=prompts, **sampling_options(args))
