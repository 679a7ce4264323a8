"""Evaluation of conditional generation on planning tasks: decode, then score against the targets."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ip_pyro.batch import collate
from ip_pyro.data.planning import example_metrics
from ip_pyro.infer import importance_log_likelihood
from ip_pyro.utils import evaluating

__all__ = ["decode", "planning_metrics", "sequence_nll"]


def decode(model, examples: list, *, greedy: bool = True, max_length: Optional[int] = None,
           batch_size: int = 256) -> list:
    """Predicted targets for the prompts of ``examples`` (one per example)."""
    predictions = []
    for begin in range(0, len(examples), batch_size):
        prompts = [example["prompt"] for example in examples[begin:begin + batch_size]]
        predictions += model.sample(prompt=prompts, greedy=greedy, max_length=max_length)
    return predictions


def planning_metrics(model, guide, examples: list, *, task: str = "star-easy", greedy: bool = True,
                     nll_samples: int = 0, batch_size: int = 256, device=None) -> dict:
    """The task's metrics (stars: exact match, token accuracy, share of predicted edges in the graph; mazes: exact
    match, token accuracy, success, valid moves), the termination rate (stopped before the length limit), and
    (``nll_samples > 0``) the test NLL in nats per sequence (IWAE bound for the IP, exact for left-to-right)."""
    if not examples:
        raise ValueError("no examples to evaluate; check the split name and the data folder")
    with evaluating(model):
        predictions = decode(model, examples, greedy=greedy, max_length=model.max_length, batch_size=batch_size)
    scores = [example_metrics(task, example, prediction) for example, prediction in zip(examples, predictions)]
    result = {name: float(np.mean([score[name] for score in scores])) for name in scores[0]}
    # stopped by itself: shorter than the decoding limit (models get slack beyond the longest target)
    result["termination_rate"] = float(np.mean([len(p) < model.max_length for p in predictions]))
    result["num_examples"] = len(examples)
    if nll_samples:
        result.update(sequence_nll(model, guide, examples, nll_samples=nll_samples, batch_size=batch_size,
                                   device=device))
    return result


def sequence_nll(model, guide, examples: list, *, nll_samples: int = 100, batch_size: int = 256,
                 device=None) -> dict:
    """Test NLL of the targets given their prompts: ``nll`` (nats per sequence) and ``nll_per_token`` (tokens plus
    the stop); an IWAE bound with ``nll_samples`` orders for the IP, exact for the left-to-right model."""
    if not examples:
        raise ValueError("no examples to evaluate; check the split name and the data folder")
    device = device or next(model.parameters()).device
    totals = []
    for begin in range(0, len(examples), batch_size):
        chunk = examples[begin:begin + batch_size]
        batch = collate([e["target"] for e in chunk], [e["prompt"] for e in chunk]).to(device)
        with torch.no_grad(), evaluating(model):
            if guide is None:
                totals.append(-model.log_prob(batch))
            else:
                totals.append(-importance_log_likelihood(model, guide, batch, num_samples=nll_samples))
    nll = torch.cat(totals)
    result = {"nll": float(nll.mean()),
              "nll_per_token": float(nll.sum() / sum(len(e["target"]) + 1 for e in examples))}
    if not math.isfinite(result["nll"]):
        raise FloatingPointError("the test NLL is not finite; the checkpoint may be damaged")
    return result

