"""Evaluation: conditional generation on planning tasks (decode, then score against the targets) and unconditional
SMILES generation (sample, decode, then the molecule metrics)."""
from __future__ import annotations

import math
import random
from typing import Optional

import numpy as np
import torch

from ip_pyro.batch import collate
from ip_pyro.data.mazes import sequence_match
from ip_pyro.data.planning import example_metrics
from ip_pyro.infer import importance_log_likelihood
from ip_pyro.utils import evaluating, progress_bar

__all__ = ["decode", "planning_metrics", "sequence_metrics", "sequence_nll", "sample_smiles", "smiles_metrics"]


def _sample_options(model, insertions_per_step: int) -> dict:
    if insertions_per_step == 1:
        return {}
    if not hasattr(model, "termination"):
        raise ValueError("parallel decoding (insertions_per_step > 1) is for insertion models; the left-to-right "
                         "model writes one token per pass")
    return {"insertions_per_step": insertions_per_step}


def decode(model, examples: list, *, greedy: bool = True, max_length: Optional[int] = None,
           batch_size: int = 256, insertions_per_step: int = 1, progress: Optional[bool] = False) -> list:
    """Predicted targets for the prompts of ``examples`` (one per example); ``progress``: a bar with an ETA (True
    shows it, False hides it, None: on a terminal only, as every ``progress`` of this module)."""
    options = _sample_options(model, insertions_per_step)
    predictions = []
    bar = progress_bar(len(examples), "decoding", "ex", progress)
    for begin in range(0, len(examples), batch_size):
        prompts = [example["prompt"] for example in examples[begin:begin + batch_size]]
        predictions += model.sample(prompt=prompts, greedy=greedy, max_length=max_length, **options)
        bar.update(len(prompts))
    bar.close()
    return predictions


def planning_metrics(model, guide, examples: list, *, task: str = "star-easy", greedy: bool = True,
                     nll_samples: int = 0, batch_size: int = 256, device=None, insertions_per_step: int = 1,
                     progress: Optional[bool] = False, exact: bool = False) -> dict:
    """The task's metrics (stars: exact match, token accuracy, share of predicted edges in the graph; mazes: exact
    match, token accuracy, success, valid moves), the termination rate (stopped before the length limit), and
    (``nll_samples > 0``) the test NLL in nats per sequence (IWAE bound for the IP, exact for left-to-right)."""
    if not examples:
        raise ValueError("no examples to evaluate; check the split name and the data folder")
    with evaluating(model):
        predictions = decode(model, examples, greedy=greedy, max_length=model.max_length, batch_size=batch_size,
                             insertions_per_step=insertions_per_step, progress=progress)
    scores = [example_metrics(task, example, prediction) for example, prediction in zip(examples, predictions)]
    result = {name: float(np.mean([score[name] for score in scores])) for name in scores[0]}
    # stopped by itself: shorter than the decoding limit (models get slack beyond the longest target)
    result["termination_rate"] = float(np.mean([len(p) < model.max_length for p in predictions]))
    result["num_examples"] = len(examples)
    if nll_samples:
        result.update(sequence_nll(model, guide, examples, nll_samples=nll_samples, batch_size=batch_size,
                                   device=device, exact=exact))
    return result


def sequence_metrics(model, guide, examples: list, *, prompted: bool, nll_samples: int = 100,
                     nll_limit: Optional[int] = None, greedy: bool = True, progress: Optional[bool] = False,
                     exact: bool = False) -> dict:
    """Metrics of a user's own sequences (``ip-pyro train --task sequences``): with prompts, decode each prompt
    and score ``exact_match``, ``token_accuracy`` and the ``termination_rate``; always the NLL of the first
    ``nll_limit`` targets (:func:`sequence_nll`); ``predictions`` are returned under ``"_predictions"``."""
    if not examples:
        raise ValueError("no examples to evaluate; the split is empty")
    result = {"num_examples": len(examples)}
    if prompted:
        with evaluating(model):
            predictions = decode(model, examples, greedy=greedy, max_length=model.max_length, progress=progress)
        scores = [sequence_match(example["target"], prediction) for example, prediction in zip(examples, predictions)]
        result.update({name: float(np.mean([score[name] for score in scores])) for name in scores[0]})
        result["termination_rate"] = float(np.mean([len(p) < model.max_length for p in predictions]))
        result["_predictions"] = predictions
    if nll_samples:
        scored = examples[:nll_limit] if nll_limit else examples
        result.update(sequence_nll(model, guide, scored, nll_samples=nll_samples, progress=progress, exact=exact),
                      nll_examples=len(scored))
    return result


def sequence_nll(model, guide, examples: list, *, nll_samples: int = 100, batch_size: int = 256,
                 device=None, progress: Optional[bool] = False, exact: bool = False) -> dict:
    """Test NLL of the targets given their prompts: ``nll`` (nats per sequence), ``nll_per_token`` (tokens plus
    the stop) and ``nll_kind``: for the IP an IWAE bound from ``nll_samples`` orders (``iwae-N``: at least the true
    NLL) or, with ``exact=True``, the exact value summed over all ``L!`` orders (``exact``; ``L <= 8`` for the
    canvas decoder, ``<= 7`` for the causal one); always exact for the left-to-right model.
    ``progress``: a progress bar over the molecules (stderr)."""
    if not examples:
        raise ValueError("no examples to evaluate; check the split name and the data folder")
    device = device or next(model.parameters()).device
    if exact and guide is not None:
        from ip_pyro.infer import exact_log_likelihood
        from ip_pyro.infer.likelihood import MAX_ENUMERATED_LENGTH, MAX_EXACT_LENGTH

        limit = MAX_EXACT_LENGTH if getattr(model, "canvas_markov", True) else MAX_ENUMERATED_LENGTH
        longest = max(len(example["target"]) for example in examples)
        if longest > limit:
            raise ValueError(f"the exact NLL sums all L! orders and refuses length {longest} > {limit} (this "
                             f"decoder's limit); drop --exact / exact=True for the IWAE bound")
    totals = []
    bar = progress_bar(len(examples), "NLL", "seq", progress)
    for begin in range(0, len(examples), batch_size):
        chunk = examples[begin:begin + batch_size]
        prompts = [e.get("prompt", []) for e in chunk]
        batch = collate([e["target"] for e in chunk], prompts if any(prompts) else None).to(device)
        with torch.inference_mode(), evaluating(model):
            if guide is None:
                totals.append(-model.log_prob(batch))
            elif exact:
                totals.append(-exact_log_likelihood(model, batch, progress=False))
            else:
                totals.append(-importance_log_likelihood(model, guide, batch, num_samples=nll_samples, progress=False))
        bar.update(len(chunk))
    bar.close()
    nll = torch.cat(totals)
    result = {"nll": float(nll.mean()),
              "nll_per_token": float(nll.sum() / sum(len(e["target"]) + 1 for e in examples)),
              "nll_kind": "exact" if guide is None or exact else f"iwae-{nll_samples}"}
    if not math.isfinite(result["nll"]):
        raise FloatingPointError("the test NLL is not finite; the checkpoint may be damaged")
    return result



def sample_smiles(model, vocabulary, num_samples: int, *, batch_size: int = 1000, temperature: float = 1.0,
                  insertions_per_step: int = 1, progress: Optional[bool] = False, top_k: Optional[int] = None,
                  top_p: Optional[float] = None, greedy: bool = False) -> list:
    """``num_samples`` SMILES strings drawn from an unconditional model (decoded with ``vocabulary``);
    ``top_k``/``top_p``/``greedy`` as for ``model.sample``; ``progress``: a progress bar (stderr)."""
    options = _sample_options(model, insertions_per_step)
    if top_k is not None or top_p is not None or greedy:
        options.update(top_k=top_k, top_p=top_p, greedy=greedy)
    samples = []
    with evaluating(model), progress_bar(num_samples, "sampling", "mol", progress) as bar:
        for begin in range(0, num_samples, batch_size):
            count = min(batch_size, num_samples - begin)
            samples += [vocabulary.decode(ids) for ids in model.sample(count, temperature=temperature, **options)]
            bar.update(count)
    return samples


def smiles_metrics(model, guide, task, *, num_samples: int = 10_000, nll_samples: int = 0,
                   nll_limit: Optional[int] = 1000, split: str = "test", full: bool = True,
                   batch_size: int = 1000, insertions_per_step: int = 1, reference_limit: int = 10_000,
                   progress: Optional[bool] = False, exact: bool = False) -> tuple:
    """``(metrics, samples)`` for an unconditional SMILES model on a :class:`ip_pyro.data.molecules.SmilesTask`.

    ``full=False`` gives only validity and uniqueness (cheap enough for periodic validation); ``full=True`` adds
    novelty and the KL score vs the training split, SNN/Frag/Scaf/FCD vs ``split`` (MOSES: FCD vs
    ``test_stats.npz`` and the scaffold test set; with precomputed test statistics, SNN/Frag/Scaf use the first
    ``reference_limit`` test molecules and FCD/TestSF a fixed random ``reference_limit`` of the scaffold set). With ``nll_samples > 0`` the NLL of the first ``nll_limit``
    molecules of ``split`` (nats per molecule and per token, stop included) is added.
    """
    from ip_pyro.metrics.molecules import evaluate

    samples = sample_smiles(model, task.vocabulary, num_samples, batch_size=batch_size,
                            insertions_per_step=insertions_per_step, progress=progress)
    if full:
        reference = task.smiles[split]
        scaffolds = task.test_scaffolds if split == "test" else None
        if scaffolds is not None and len(scaffolds) > reference_limit:
            # ChemNet over all 176k MOSES scaffold-test molecules takes longer than most CPU runs train
            scaffolds = random.Random(0).sample(scaffolds, reference_limit)
        results = evaluate(samples, train=task.smiles["train"], test=reference if task.test_stats is None else
                           reference[:reference_limit], test_stats=task.test_stats if split == "test" else None,
                           test_scaffolds=scaffolds)
        if scaffolds is not None:
            results["testsf_molecules"] = len(scaffolds)
    else:
        from ip_pyro.metrics.molecules import canonical
        valid = [c for c in (canonical(s) for s in samples) if c is not None]
        results = {"validity": len(valid) / len(samples), "unique": len(set(valid)) / max(len(valid), 1)}
    results["num_samples"] = num_samples
    results["mean_smiles_chars"] = float(np.mean([len(s) for s in samples]))
    if nll_samples:
        examples = task.splits[split][:nll_limit] if nll_limit else task.splits[split]
        results.update(sequence_nll(model, guide, examples, nll_samples=nll_samples, batch_size=256,
                                    progress=progress, exact=exact))
        results["nll_molecules"] = len(examples)
    return results, samples
