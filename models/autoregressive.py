"""The left-to-right autoregressive baseline (FO-ARM) as a Pyro program: ``token_{t}`` sites over the vocabulary
plus EOS (id ``vocab_size``); EOS is certain at ``max_length``."""
from __future__ import annotations

import math
from typing import Optional

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule, pyro_method

from ip_pyro.batch import Batch, check_batch
from ip_pyro.networks import CausalDecoder
from ip_pyro.networks import check_max_positions, check_network_sizes
from ip_pyro.models.sampler import check_truncation, truncate_logits
from ip_pyro.sampling import check_conditional, sampling_plan
from ip_pyro.utils import evaluating, unique_pyro_name

__all__ = ["LeftToRightLM"]


class LeftToRightLM(PyroModule):
    """A causal Transformer language model with EOS; same blocks as :class:`ip_pyro.models.InsertionProcess`.

    ``max_positions > 0`` adds learned absolute position embeddings to the rotary ones and ``prompt_group > 1``
    reads the prompt as groups of tokens, and ``conditional`` says whether it models prompted data (see
    :class:`ip_pyro.models.InsertionProcess`).

    ``model(batch)`` is the Pyro program (observed ``token_{t}`` sites, no latent variables: train it with
    ``SVI(model, lambda batch: None, optim, Trace_ELBO())`` or directly on :meth:`log_prob`).
    """

    def __init__(self, vocab_size: int, *, d_model: int = 128, n_layers: int = 4, n_heads: int = 4,
                 max_length: int = 64, dropout: float = 0.0, max_positions: int = 0,
                 prompt_group: int = 1, embed_std: float = 0.02, conditional: Optional[bool] = None):
        check_network_sizes(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                            max_length=max_length, dropout=dropout, prompt_group=prompt_group, embed_std=embed_std)
        check_max_positions(max_positions, max_length)
        super().__init__(unique_pyro_name("LeftToRightLM"))
        self.vocab_size, self.max_length, self.eos = vocab_size, max_length, vocab_size
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                           max_length=max_length, dropout=dropout, max_positions=max_positions,
                           prompt_group=prompt_group, embed_std=embed_std)
        self.conditional = check_conditional(conditional)
        if conditional is not None:
            self.config["conditional"] = conditional
        self.network = CausalDecoder(vocab_size, d_model, n_layers, n_heads, dropout, max_positions=max_positions,
                                     prompt_group=prompt_group, embed_std=embed_std)

    def _logits(self, network, tokens, prompt, prompt_lengths) -> torch.Tensor:
        logits = network(tokens, prompt, prompt_lengths)  # [N, T+1, V+1]
        steps = torch.arange(logits.shape[1], device=logits.device)
        forced = (steps >= self.max_length).view(1, -1, 1) & (torch.arange(self.vocab_size + 1,
                                                                            device=logits.device) != self.eos)
        return logits.masked_fill(forced, -math.inf)

    @pyro_method
    def log_prob(self, batch: Batch) -> torch.Tensor:
        """Teacher-forced ``log p(x)`` ``[B]`` (tokens then EOS), one causal pass."""
        check_batch(batch, self.vocab_size, self.max_length, module=self)
        log_probs = self._logits(self.network, batch.tokens, batch.prompt, batch.prompt_lengths).log_softmax(-1)
        width = batch.max_length + 1
        steps = torch.arange(width, device=batch.device)
        targets = torch.nn.functional.pad(batch.tokens, (0, 1))
        targets = torch.where(steps == batch.lengths.unsqueeze(-1), torch.full_like(targets, self.eos), targets)
        picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return picked.masked_fill(steps > batch.lengths.unsqueeze(-1), 0.0).sum(-1)

    def forward(self, batch: Batch) -> Batch:
        """The Pyro program; returns the built (or observed) sequences as a :class:`Batch`."""
        check_batch(batch, self.vocab_size, self.max_length, need_tokens=False, module=self)
        network = self.network
        size, device = batch.batch_size, batch.device
        observed = batch.tokens is not None
        horizon = (int(batch.lengths.max()) if size else 0) if observed else self.max_length
        sequence = torch.zeros(size, 0, dtype=torch.long, device=device)
        lengths = torch.zeros(size, dtype=torch.long, device=device)
        active = torch.ones(size, dtype=torch.bool, device=device)
        with pyro.plate("data", size):
            for t in pyro.markov(range(horizon + 1)):
                logits = self._logits(network, sequence, batch.prompt, batch.prompt_lengths)[:, t]
                obs = None
                if observed:
                    column = batch.tokens[:, t] if t < batch.max_length else torch.zeros_like(lengths)
                    obs = torch.where(batch.lengths == t, torch.full_like(column, self.eos), column)
                with poutine.mask(mask=active):
                    token = pyro.sample(f"token_{t}", dist.Categorical(logits=logits), obs=obs)
                growing = active & (token != self.eos)
                sequence = torch.cat([sequence, torch.where(growing, token, 0).unsqueeze(-1)], dim=1)
                lengths = lengths + growing.long()
                active = growing
                if not bool(active.any()):
                    break
        return Batch(tokens=sequence, lengths=lengths, prompt=batch.prompt, prompt_lengths=batch.prompt_lengths)

    @pyro_method
    @torch.inference_mode()
    def sample(self, num_samples: Optional[int] = None, *, prompt=None, temperature: float = 1.0,
               greedy: bool = False, max_length: Optional[int] = None, use_cache: bool = True,
               top_k: Optional[int] = None, top_p: Optional[float] = None, return_log_probs: bool = False):
        """Draw sequences left to right (same arguments as :meth:`ip_pyro.models.InsertionProcess.sample`;
        ``top_k``/``top_p`` truncate the token distribution, EOS included).

        :param use_cache: reuse keys and values of earlier tokens (one new token per row per step); ``False``
            re-encodes the whole prefix at every step (same distribution, for checking and benchmarking).
        """
        check_truncation(top_k, top_p)
        device = next(self.parameters()).device
        prompt_ids, prompt_lengths, total, limit = sampling_plan(self, device, num_samples, prompt, temperature,
                                                                 greedy, max_length)
        log_probs = torch.zeros(total, device=device)
        results: list[list[int]] = [[] for _ in range(total)]
        alive = torch.arange(total, device=device)
        sequence = torch.zeros(total, 0, dtype=torch.long, device=device)
        network = self.network
        with evaluating(self):
            if use_cache:
                logits, state = network.start(total, prompt_ids, prompt_lengths, device=device)
            for t in range(limit + 1):
                if not use_cache:
                    rows_prompt = None if prompt_ids is None else prompt_ids[alive]
                    rows_lengths = None if prompt_lengths is None else prompt_lengths[alive]
                    logits = self._logits(network, sequence, rows_prompt, rows_lengths)[:, t]
                if t == limit:
                    token = torch.full((len(alive),), self.eos, dtype=torch.long, device=device)
                elif greedy:
                    token = logits.argmax(-1)
                elif top_k is None and top_p is None:
                    token = torch.multinomial((logits / temperature).softmax(-1), 1)[:, 0]
                else:
                    token = torch.multinomial(truncate_logits(logits / temperature, top_k, top_p).softmax(-1), 1)[:, 0]
                if return_log_probs and t < self.max_length:  # at max_length EOS is certain (log 1 = 0)
                    log_probs[alive] += logits.log_softmax(-1).gather(1, token.unsqueeze(-1))[:, 0]
                done = token == self.eos
                for row, ids in zip(alive[done].tolist(), sequence[done].tolist()):
                    results[row] = ids
                if bool(done.all()):
                    break
                keep = ~done
                alive, token = alive[keep], token[keep]
                sequence = torch.cat([sequence[keep], token.unsqueeze(-1)], dim=1)
                if use_cache:
                    state = network.select(state, keep) if not bool(keep.all()) else state
                    logits = network.advance(token, state)
        return (results, log_probs.tolist()) if return_log_probs else results
