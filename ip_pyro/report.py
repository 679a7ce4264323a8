"""One call that produces every insertion-order diagnostic for a trained model into a folder.

    report = diagnose(model, guide, batch, "diagnostics/", domain="path")
    print(report["summary"])

Writes ``guide_draws.nc`` (ArviZ), ``mcmc_draws.nc``, ``forest.png``, ``rank_heatmap.png``, ``mcmc_trace.png``,
``mcmc_rank.png``, a domain view (``smiles_order.png`` or ``path_growth.png``), ``summary.txt`` and
``summary.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyro
import torch

from ip_pyro import diagnostics, order_statistics, plots
from ip_pyro.batch import Batch
from ip_pyro.infer.mcmc import OrderMH

__all__ = ["diagnose", "DOMAINS"]

DOMAINS = ("generic", "smiles", "path")


def _mcmc_sequence(batch: Batch, requested: Optional[int]) -> int:
    if requested is not None:
        if not 0 <= requested < batch.batch_size:
            raise ValueError(f"mcmc_sequence={requested} is outside 0..{batch.batch_size - 1}")
        return requested
    return int(torch.argmax(batch.lengths))  # the longest sequence has the most interesting posterior


def diagnose(model, guide, batch: Batch, out_dir, *, token_names: Optional[Sequence[str]] = None,
             domain: str = "generic", landmarks: Optional[Sequence[dict]] = None, num_chains: int = 4,
             num_draws: int = 250, mcmc_sequence: Optional[int] = None,
             mcmc_samples: int = 400, mcmc_warmup: int = 200, seed: int = 0) -> dict:
    """Guide draws + PSIS, MCMC over orders for one sequence (skipped with ``mcmc_samples=0``), plots and a text
    summary.

    :param batch: the sequences to diagnose (with tokens).
    :param token_names: optional id -> string map (needed for ``domain="smiles"``).
    :param domain: ``"smiles"`` adds the token-class timing view, ``"path"`` the path-growth view.
    :param landmarks: for ``"path"``: optional per-sequence ``{name: position}`` (e.g. source, centre, goal).
    :returns: a dict with ``summary`` (text), ``psis``, ``rhat_max``, ``comparison`` and the written ``files``.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain={domain!r} must be one of {', '.join(DOMAINS)}")
    if domain == "smiles" and token_names is None:
        raise ValueError("domain='smiles' needs token_names (the vocabulary's id -> SMILES token strings)")
    if batch.tokens is None or batch.batch_size == 0:
        raise ValueError("diagnose needs a batch with at least one sequence (tokens)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pyro.set_rng_seed(seed)
    files = {}

    draws = diagnostics.order_draws(model, guide, batch, num_chains=num_chains, num_draws=num_draws)
    guide_idata = diagnostics.to_inference_data(draws, batch, token_names=token_names)
    files["guide_draws"] = diagnostics.save_inference_data(guide_idata, out / "guide_draws.nc")
    psis = diagnostics.psis_diagnostics(draws["log_weight"], draws["insertion_step"])

    if mcmc_samples < 0 or mcmc_warmup < 0:
        raise ValueError(f"mcmc_samples={mcmc_samples} and mcmc_warmup={mcmc_warmup} must be >= 0 (0 samples: "
                         "guide-only diagnostics)")
    chosen = _mcmc_sequence(batch, mcmc_sequence)
    single = batch[chosen]
    length = int(single.lengths[0])
    mcmc_idata, comparison, rhat = None, {}, float("nan")
    if mcmc_samples:
        mcmc = pyro.infer.MCMC(OrderMH(model, guide), num_samples=mcmc_samples, warmup_steps=mcmc_warmup,
                               num_chains=num_chains, disable_progbar=True)
        mcmc.run(single)
        mcmc_idata = diagnostics.mcmc_to_inference_data(mcmc, single)
        files["mcmc_draws"] = diagnostics.save_inference_data(mcmc_idata, out / "mcmc_draws.nc")
        comparison = diagnostics.compare_to_guide(draws["insertion_step"][:, :, chosen, :length],
                                                  mcmc_idata.posterior["insertion_step"].values)
        rhat = diagnostics.rhat_max(mcmc_idata)

    steps, tokens = draws["insertion_step"], batch.tokens.cpu().numpy()
    class_of = None if token_names is None else (lambda token: str(token_names[token]))
    if domain == "smiles":
        class_of = lambda token: order_statistics.smiles_token_class(str(token_names[token]))  # noqa: E731
        files["smiles_order"] = plots.plot_token_class_timing(steps, tokens, token_names, out / "smiles_order.png")
    if domain == "path":
        files["path_growth"] = plots.plot_path_growth(steps, out / "path_growth.png", landmarks=landmarks)
    files["rank_heatmap"] = plots.plot_rank_heatmap(steps, tokens, out / "rank_heatmap.png", token_class=class_of)
    files["forest"] = plots.plot_insertion_forest(guide_idata, mcmc_idata, out / "forest.png",
                                                        sequence=chosen)
    if length >= 2 and mcmc_idata is not None:
        files["mcmc_trace"] = plots.plot_mcmc_trace(mcmc_idata, out / "mcmc_trace.png")
        files["mcmc_rank"] = plots.plot_mcmc_rank(mcmc_idata, out / "mcmc_rank.png")

    relative_entropy = diagnostics.relative_order_entropy(draws["log_q"], batch.lengths.cpu().numpy())
    lines = [
        f"sequences diagnosed: {batch.batch_size}; guide draws per sequence: {num_chains * num_draws}",
        diagnostics.describe_psis(psis),
        f"MCMC over orders (sequence {chosen}, length {length}, {num_chains} chains x {mcmc_samples}): "
        f"max R-hat {rhat:.3f}; largest total variation between guide and MCMC insertion-step marginals "
        f"{comparison['max_total_variation']:.3f}" if mcmc_samples else
        "MCMC over orders: skipped (mcmc_samples=0)",
        f"guide entropy over orders: {np.nanmean(relative_entropy):.2f} of the uniform order's log L! on average "
        "(1 = random order, 0 = one fixed order)",
        f"preferred order: {order_statistics.describe_order(steps)}",
    ]
    if class_of is not None:
        timing = order_statistics.class_timing(steps, tokens, class_of)
        lines.append(("insertion time by token class" if domain == "smiles" else "insertion time of the most frequent "
                      "tokens") + " (0 = first, 1 = last, 0.50 for a random order): "
                     + ", ".join(f"{name} {value:.2f}" for name, value in timing.items()))
    if landmarks is not None:
        timing = order_statistics.landmark_timing(steps, landmarks)
        lines.append("insertion time of named cells (0 = first, 1 = last, 0.50 for a random order): "
                     + ", ".join(f"{name} {value:.2f}" for name, value in timing.items()))
    summary = "\n".join(lines)
    (out / "summary.txt").write_text(summary + "\n")
    files["summary"] = str(out / "summary.txt")
    report = {"summary": summary, "rhat_max": None if np.isnan(rhat) else rhat, "mcmc_sequence": chosen,
              "relative_order_entropy": [None if np.isnan(v) else float(v) for v in relative_entropy],
              "psis": {key: np.asarray(value).tolist() for key, value in psis.items()},
              "comparison": {key: np.asarray(value).tolist() for key, value in comparison.items()},
              "files": {name: str(path) for name, path in files.items()}}
    (out / "summary.json").write_text(json.dumps(report, indent=2))
    return report
