"""The Insertion Process as a Pyro program.

Generative story for one sequence (canvas ``c_t`` of ``t`` tokens, ``t + 1`` slots)::

    for t = 0, 1, ...:
        stop_t  ~ Bernoulli(p_stop(c_t))            # certain at t == max_length
        if stop_t: return c_t
        slot_t  ~ Categorical(p(slot | c_t))        # slot k = before current token k; slot t = the end
        token_t ~ Categorical(p(token | slot_t, c_t))
        c_{t+1} = insert(c_t, slot_t, token_t)

Termination. ``termination="stop"`` (default) gives the stop decision its own head. ``termination="eos"`` is the
end-token variant: an end token ``EOS`` may only be inserted at the last slot, and inserting it ends the sequence
(so it is always the last insertion, which is where the stop step already sits in every trajectory; guides need
no change). The decoder then scores (slot, token) pairs over ``V + 1`` tokens and the stop probability is
``p(slot = t) p(EOS | slot = t)``; :meth:`InsertionProcess._decode` rewrites this as the equivalent stop / slot /
token factors (``p(slot | go on)`` takes the remaining mass of slot ``t``, ``p(token | slot, go on)`` the content
tokens renormalised), so the program, the sampler and the ELBO are the same code for both variants.

Guides and ELBOs use only :meth:`InsertionProcess.step_log_probs`, :meth:`InsertionProcess.log_joint` and the
program's site names (``stop_{t}``, ``slot_{t}``, ``token_{t}``).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule, pyro_method

from ip_pyro.batch import Batch, check_batch
from ip_pyro.canvas import gather_canvas, insert_many, insert_tokens
from ip_pyro.networks import DecoderOutput, InsertionDecoder, check_max_positions, check_network_sizes
from ip_pyro.orders import orders_to_ranks, slots_of_positions
from ip_pyro.sampling import sampling_plan
from ip_pyro.utils import evaluating, unique_pyro_name

__all__ = ["InsertionProcess", "StepLogProbs", "TERMINATIONS"]

TERMINATIONS = ("stop", "eos")


def _log1mexp(log_p: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(log_p))`` for ``log_p <= 0``, accurate at both ends, with finite values and gradients
    everywhere: each branch only sees inputs where it is used (``torch.where`` differentiates both), and
    ``log_p`` is capped just below 0, so a certain event gives a very negative number instead of ``-inf``."""
    cap = -torch.finfo(log_p.dtype).tiny if log_p.dtype.is_floating_point else 0.0
    log_p = log_p.clamp(max=cap)
    near_zero = log_p > -math.log(2)
    near = torch.where(near_zero, log_p, torch.full_like(log_p, -1.0))
    far = torch.where(near_zero, torch.full_like(log_p, -1.0), log_p)
    return torch.where(near_zero, torch.log(-torch.expm1(near)), torch.log1p(-torch.exp(far)))


def _eos_as_stop(output: DecoderOutput, canvas_lengths: torch.Tensor, vocab_size: int) -> DecoderOutput:
    """Rewrite (slot, token) scores over ``V + 1`` tokens, with ``EOS`` (id ``V``) allowed only at the last slot,
    as the equivalent stop / slot-given-go-on / token-given-slot-and-go-on logits."""
    slot_log_probs = output.slot_logits.log_softmax(-1)  # [N, T+1]
    token_log_probs = output.token_logits.log_softmax(-1)  # [N, T+1, V+1]
    last = canvas_lengths.unsqueeze(-1)
    eos_at_last = token_log_probs[..., vocab_size].gather(1, last).squeeze(-1)  # [N]
    log_stop = slot_log_probs.gather(1, last).squeeze(-1) + eos_at_last
    stop_logits = log_stop - _log1mexp(log_stop)
    keep_last = slot_log_probs.gather(1, last) + _log1mexp(eos_at_last).unsqueeze(-1)
    keep_last = keep_last.clamp(min=torch.finfo(keep_last.dtype).min)  # finite even when EOS is certain
    slot_logits = slot_log_probs.scatter(1, last, keep_last)  # unnormalised: p(slot, go on)
    return DecoderOutput(stop_logits, slot_logits, output.token_logits[..., :vocab_size])


class StepLogProbs(NamedTuple):
    """Scores of ``N`` canvases from one decoder pass: ``stop`` ``[N]`` (``log p(stop | canvas)``), ``insert``
    ``[N, L]`` (``log p(slot(j), token = x_j | canvas)`` for every position ``j`` not yet inserted, ``-inf``
    elsewhere) and ``go`` ``[N]`` (``log(1 - p(stop | canvas))``). Unpacks as ``stop, insert, go``."""

    stop: torch.Tensor
    insert: torch.Tensor
    go: torch.Tensor


MIN_CANVASES_PER_PASS = 256


def canvas_passes(sizes: torch.Tensor, chunk_size: int, min_canvases: int = MIN_CANVASES_PER_PASS) -> list:
    """Split canvases sorted by size ``[N]`` into decoder passes ``[(begin, end), ...]``: at most ``chunk_size``
    canvases each, and a new pass where the size changes once the current one holds ``min_canvases`` (few, large
    passes, each padded to little more than its own canvases)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be a positive number of canvases per decoder pass")
    _, counts = torch.unique_consecutive(sizes, return_counts=True)
    passes, begin, end = [], 0, 0
    for count in counts.tolist():
        if end - begin >= min_canvases:
            passes.append((begin, end))
            begin = end
        end += count
        while end - begin > chunk_size:
            passes.append((begin, begin + chunk_size))
            begin += chunk_size
    if end > begin:
        passes.append((begin, end))
    return passes


class InsertionProcess(PyroModule):
    """The Insertion Process (IP): a distribution over variable-length sequences built by insertions.

    :param vocab_size: number of content tokens ``V`` (ids ``0..V-1``; prompts use the same ids).
    :param d_model, n_layers, n_heads, dropout: decoder size (:class:`ip_pyro.networks.InsertionDecoder`).
    :param max_length: longest sequence; at this length stopping is certain.
    :param termination: ``"stop"`` (a stop head) or ``"eos"`` (an end token insertable only at the last slot).
    :param max_positions: learned absolute position embeddings for this many positions of ``[prompt ; BOS ;
        canvas ; END]`` on top of the rotary ones (``0``: rotary only); at least prompt length + ``max_length`` + 2.
    :param prompt_group: read the prompt as groups of this many tokens (``2`` for an edge list ``u v u v ...``):
        each prompt token also embeds the other members of its group (``1``: off).
    :param embed_std: standard deviation of the initial token embeddings (0.02; 1.0 learns prompt lookups sooner).
    :param prompt_attention: ``"full"`` (default) or ``"prefix"``: the prompt attends to itself only, so its
        encoding is computed once per sequence and shared by every canvas scored or sampled for it (a different
        model from ``"full"``, not an approximation of it; a task without a prompt gives the same model either way).

    ``model(batch)`` runs the Pyro program (so ``SVI(model, guide, ...)`` works); with ``batch.tokens`` given the
    stop sites are observed and a final factor ``canvas_matches_data`` is ``-inf`` unless the built canvas equals
    the data. With ``batch.tokens is None`` the program draws new sequences and returns them as a :class:`Batch`.
    """

    def __init__(self, vocab_size: int, *, d_model: int = 128, n_layers: int = 4, n_heads: int = 4,
                 max_length: int = 64, dropout: float = 0.0, termination: str = "stop", max_positions: int = 0,
                 prompt_group: int = 1, embed_std: float = 0.02, prompt_attention: str = "full"):
        check_network_sizes(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                            max_length=max_length, dropout=dropout, prompt_group=prompt_group, embed_std=embed_std)
        check_max_positions(max_positions, max_length)
        if termination not in TERMINATIONS:
            raise ValueError(f"unknown termination {termination!r}; choose from {', '.join(TERMINATIONS)}")
        super().__init__(unique_pyro_name("InsertionProcess"))
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.termination = termination
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                           max_length=max_length, dropout=dropout, termination=termination, max_positions=max_positions,
                           prompt_group=prompt_group, embed_std=embed_std, prompt_attention=prompt_attention)
        self.prompt_attention = prompt_attention
        token_classes = vocab_size + 1 if termination == "eos" else vocab_size
        self.network = InsertionDecoder(vocab_size, d_model, n_layers, n_heads, dropout, token_classes=token_classes,
                                        max_positions=max_positions, prompt_group=prompt_group, embed_std=embed_std,
                                        prompt_attention=prompt_attention)

    # ----------------------------------------------------------------------------------------------- scoring
    def _decode(self, network, canvas, canvas_lengths, prompt, prompt_lengths, prompt_cache=None,
                prompt_index=None) -> DecoderOutput:
        if prompt_cache is None:
            output = network(canvas, canvas_lengths, prompt, prompt_lengths)
        else:
            output = network(canvas, canvas_lengths, prompt_cache=prompt_cache, prompt_index=prompt_index)
        if self.termination == "eos":
            output = _eos_as_stop(output, canvas_lengths, self.vocab_size)
        forced = canvas_lengths >= self.max_length  # stopping is certain: an exact 0 / -inf via a finite logit
        stop_logits = output.stop_logits.masked_fill(forced, torch.finfo(output.stop_logits.dtype).max)
        return DecoderOutput(stop_logits, output.slot_logits, output.token_logits)

    def _prompt_cache(self, network, batch: Batch):
        """The batch's prompt encoded once (prefix attention with a prompt), else ``None``."""
        if self.prompt_attention != "prefix" or batch.prompt is None:
            return None
        return network.encode_prompt(batch.prompt, batch.prompt_lengths)

    def _score_canvases(self, network, tokens, lengths, prompt, prompt_lengths, inserted, prompt_cache=None,
                        prompt_index=None) -> StepLogProbs:
        rows, size = tokens.shape
        canvas, canvas_lengths = gather_canvas(tokens, inserted)
        output = self._decode(network, canvas, canvas_lengths, prompt, prompt_lengths, prompt_cache, prompt_index)
        slots_count = output.slot_logits.shape[1]
        slot_log_probs = output.slot_logits.log_softmax(-1)  # [N, T+1]
        token_log_probs = output.token_logits.log_softmax(-1).reshape(rows, slots_count * self.vocab_size)
        slots = slots_of_positions(inserted)  # [N, L]
        joint = slot_log_probs.gather(1, slots) + token_log_probs.gather(1, slots * self.vocab_size + tokens)
        remaining = (torch.arange(size, device=tokens.device) < lengths.unsqueeze(-1)) & ~inserted
        insert = joint.masked_fill(~remaining, -math.inf)
        forced = canvas_lengths >= self.max_length
        stop = torch.nn.functional.logsigmoid(output.stop_logits)
        go = torch.nn.functional.logsigmoid(-output.stop_logits).masked_fill(forced, -math.inf)
        return StepLogProbs(stop, insert, go)

    @pyro_method
    def step_log_probs(self, batch: Batch, inserted: torch.Tensor) -> StepLogProbs:
        """Score the canvases ``x[inserted]`` with one decoder pass.

        :param batch: ``B`` sequences.
        :param inserted: bool ``[N, L_max]``, ``N = k * B`` rows aligned with ``batch.repeat(k)`` (row ``m * B + b``
            holds sequence ``b``): the positions already on each canvas.
        :returns: :class:`StepLogProbs` with ``stop`` ``[N]``, ``insert`` ``[N, L_max]`` and ``go`` ``[N]``.
        """
        check_batch(batch, self.vocab_size, self.max_length, module=self)
        if inserted.dtype != torch.bool or inserted.dim() != 2 or inserted.shape[1] != batch.max_length:
            raise ValueError(f"inserted must be a bool [N, {batch.max_length}] mask, got {inserted.dtype} "
                             f"{tuple(inserted.shape)}")
        if inserted.shape[0] % batch.batch_size:
            raise ValueError(f"inserted has {inserted.shape[0]} rows, not a multiple of the batch size "
                             f"{batch.batch_size}; rows must align with batch.repeat(k)")
        rows = batch.repeat(inserted.shape[0] // batch.batch_size)
        cache = self._prompt_cache(self.network, batch)  # prefix attention: once for all k * B canvases
        index = None if cache is None else torch.arange(inserted.shape[0], device=batch.device) % batch.batch_size
        return self._score_canvases(self.network, rows.tokens, rows.lengths, rows.prompt, rows.prompt_lengths,
                                    inserted, cache, index)

    @pyro_method
    def log_joint(self, batch: Batch, orders: torch.Tensor, *, chunk_size: int = 8192,
                  by_canvas_size: bool = True) -> torch.Tensor:
        """``log p(x, sigma)`` ``[N]`` for orders ``[N, L_max]`` (rows aligned with ``batch.repeat(N // B)``).

        Scores every prefix of every order (``sum_n (L_n + 1)`` canvases) in decoder passes of at most
        ``chunk_size`` canvases. ``by_canvas_size`` (default) sorts the canvases by their number of tokens and starts
        a new pass where the size grows (once a pass holds ``MIN_CANVASES_PER_PASS``), so a canvas of ``t`` tokens is
        padded to about ``t``, not to the longest canvas in the batch; ``False`` keeps the row order (benchmarks).
        """
        check_batch(batch, self.vocab_size, self.max_length, module=self)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer (canvases per decoder pass)")
        if orders.dim() != 2 or orders.shape[1] != batch.max_length or orders.shape[0] % batch.batch_size:
            raise ValueError(f"orders must be [k * {batch.batch_size}, {batch.max_length}], got "
                             f"{tuple(orders.shape)}")
        rows = batch.repeat(orders.shape[0] // batch.batch_size)
        network = self.network
        counts = rows.lengths + 1
        row_index = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
        starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        steps = torch.arange(len(row_index), device=counts.device) - starts  # = tokens on the canvas
        if by_canvas_size:
            by_size = torch.argsort(steps, stable=True)
            row_index, steps = row_index[by_size], steps[by_size]
            passes = canvas_passes(steps, chunk_size, MIN_CANVASES_PER_PASS)
        else:
            passes = [(begin, min(begin + chunk_size, len(steps))) for begin in range(0, len(steps), chunk_size)]
        ranks = orders_to_ranks(orders)
        cache = self._prompt_cache(network, batch)  # prefix attention: the prompts are encoded once for all chunks
        total = torch.zeros(orders.shape[0], dtype=torch.get_default_dtype(), device=orders.device)
        for begin, end in passes:
            index, step = row_index[begin:end], steps[begin:end]
            part = rows[index]
            inserted = (ranks[index] < step.unsqueeze(-1)) & part.mask
            scores = self._score_canvases(network, part.tokens, part.lengths, part.prompt, part.prompt_lengths,
                                          inserted, cache, None if cache is None else index % batch.batch_size)
            term = scores.stop
            if batch.max_length:  # otherwise every sequence is empty and only stops
                next_position = orders[index].gather(1, step.clamp(max=batch.max_length - 1).unsqueeze(-1))
                inserting = scores.go + scores.insert.gather(1, next_position).squeeze(-1)
                term = torch.where(step < part.lengths, inserting, scores.stop)
            total = total.to(term.dtype).index_add(0, index, term)
        return total

    # ------------------------------------------------------------------------------------------ the program
    def forward(self, batch: Batch) -> Batch:
        """The Pyro program. Returns the built sequences as a :class:`Batch` (tokens, lengths)."""
        check_batch(batch, self.vocab_size, self.max_length, need_tokens=False, module=self)
        network = self.network
        size, device = batch.batch_size, batch.device
        observed = batch.tokens is not None
        horizon = (int(batch.lengths.max()) if size else 0) if observed else self.max_length
        canvas = torch.zeros(size, 0, dtype=torch.long, device=device)
        canvas_lengths = torch.zeros(size, dtype=torch.long, device=device)
        active = torch.ones(size, dtype=torch.bool, device=device)
        cache = self._prompt_cache(network, batch)
        with pyro.plate("data", size):
            for t in pyro.markov(range(horizon + 1)):
                output = self._decode(network, canvas, canvas_lengths, batch.prompt, batch.prompt_lengths, cache)
                stop_obs = (batch.lengths == t).to(output.stop_logits.dtype) if observed else None
                with poutine.mask(mask=active):
                    stop = pyro.sample(f"stop_{t}", dist.Bernoulli(logits=output.stop_logits), obs=stop_obs)
                growing = active & (stop == 0)
                if not bool(growing.any()):
                    break
                with poutine.mask(mask=growing):
                    slot = pyro.sample(f"slot_{t}", dist.Categorical(logits=output.slot_logits))
                    slot_index = slot.long().view(size, 1, 1).expand(size, 1, self.vocab_size)
                    token_logits = output.token_logits.gather(1, slot_index).squeeze(1)
                    token = pyro.sample(f"token_{t}", dist.Categorical(logits=token_logits))
                canvas, canvas_lengths = insert_tokens(canvas, canvas_lengths, slot.long(), token.long(), growing)
                active = growing
            if observed:
                width = batch.max_length
                built = torch.nn.functional.pad(canvas, (0, max(width - canvas.shape[1], 0)))[:, :width]
                same = ((built == batch.tokens) | ~batch.mask).all(-1) & (canvas_lengths == batch.lengths)
                pyro.factor("canvas_matches_data",
                            torch.zeros(size, device=device).masked_fill(~same, -math.inf))
        return Batch(tokens=canvas, lengths=canvas_lengths, prompt=batch.prompt, prompt_lengths=batch.prompt_lengths)

    # ------------------------------------------------------------------------------------------- generation
    @pyro_method
    @torch.no_grad()
    def sample(self, num_samples: Optional[int] = None, *, prompt=None, temperature: float = 1.0,
               greedy: bool = False, max_length: Optional[int] = None,
               insertions_per_step: int = 1) -> list[list[int]]:
        """Draw sequences, one decoder pass per step for all unfinished sequences (finished ones leave the batch).

        :param num_samples: how many sequences (per prompt when ``prompt`` is given; default 1 per prompt).
        :param prompt: optional list of prompts (lists of ids) or a :class:`Batch` carrying ``prompt``.
        :param temperature: divides every logit (stop, slot and token).
        :param greedy: take the most probable decision at each step (stop if ``p_stop > 0.5``, else the most
            probable (slot, token) pair).
        :param max_length: stop every sequence at this length (at most the model's ``max_length``).
        :param insertions_per_step: parallel decoding (Insertion-Transformer style): after each decoder pass that
            does not stop, insert into up to ``k`` distinct slots at once (the ``k`` most probable slots when
            greedy, else ``k`` slots drawn without replacement), each with its own token drawn from
            ``p(token | slot)``. ``1`` (default) samples the model exactly; ``k > 1`` is an approximation that
            needs about ``k`` times fewer passes.
        :returns: list of sequences (prompt-major when prompts are given).
        """
        if isinstance(insertions_per_step, bool) or not isinstance(insertions_per_step, int) \
                or insertions_per_step < 1:
            raise ValueError(f"insertions_per_step={insertions_per_step!r} must be a positive integer")
        device = next(self.parameters()).device
        prompt_ids, prompt_lengths, total, limit = sampling_plan(self, device, num_samples, prompt, temperature,
                                                                 greedy, max_length)
        network = self.network
        results: list[list[int]] = [[] for _ in range(total)]
        alive = torch.arange(total, device=device)
        canvas = torch.zeros(total, 0, dtype=torch.long, device=device)
        with evaluating(self):
            # the prompt encoded once for the whole decoding; its rows follow ``alive`` (compacted only when some
            # sequences stop, not gathered again at every step)
            cache = (network.encode_prompt(prompt_ids, prompt_lengths, rows=total)
                     if self.prompt_attention == "prefix" else None)
            uncached = cache is None and prompt_ids is not None  # else the cache already holds the prompt
            while True:
                rows, length = canvas.shape
                lengths = torch.full((rows,), length, dtype=torch.long, device=device)
                row_prompt = prompt_ids[alive] if uncached else None
                row_prompt_lengths = prompt_lengths[alive] if uncached else None
                output = self._decode(network, canvas, lengths, row_prompt, row_prompt_lengths, cache)
                if length >= limit:
                    stop = torch.ones(rows, dtype=torch.bool, device=device)
                elif greedy:
                    stop = output.stop_logits > 0
                else:
                    stop = torch.bernoulli(torch.sigmoid(output.stop_logits / temperature)).bool()
                for row, sequence in zip(alive[stop].tolist(), canvas[stop].tolist()):
                    results[row] = sequence
                keep = ~stop
                if not bool(keep.any()):
                    break
                if cache is not None and bool(stop.any()):
                    cache = cache.rows(keep.nonzero()[:, 0])
                alive, canvas = alive[keep], canvas[keep]
                slot_log_probs = output.slot_logits[keep].log_softmax(-1)  # [n, t+1]
                token_log_probs = output.token_logits[keep].log_softmax(-1)  # [n, t+1, V]
                count = min(insertions_per_step, length + 1, limit - length)
                if count == 1:
                    joint = (slot_log_probs.unsqueeze(-1) + token_log_probs).flatten(1)  # [n, (t+1) * V]
                    choice = (joint.argmax(-1) if greedy
                              else torch.multinomial((joint / temperature).softmax(-1), 1)[:, 0])
                    canvas, _ = insert_tokens(canvas, lengths[keep], choice // self.vocab_size,
                                              choice % self.vocab_size, torch.ones_like(choice, dtype=torch.bool))
                    continue
                if greedy:
                    slots = slot_log_probs.topk(count, -1).indices
                    token_scores = token_log_probs.gather(1, slots.unsqueeze(-1).expand(-1, -1, self.vocab_size))
                    tokens = token_scores.argmax(-1)
                else:
                    gumbel = -torch.log(-torch.log(torch.rand_like(slot_log_probs).clamp_min(1e-20)))
                    slots = (slot_log_probs / temperature + gumbel).topk(count, -1).indices
                    token_scores = token_log_probs.gather(1, slots.unsqueeze(-1).expand(-1, -1, self.vocab_size))
                    tokens = torch.multinomial((token_scores / temperature).softmax(-1).flatten(0, 1), 1)
                    tokens = tokens.view(slots.shape)
                canvas = insert_many(canvas, slots, tokens)
        return results
