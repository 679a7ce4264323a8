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
from typing import Optional

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule, pyro_method

from ip_pyro.batch import Batch, check_batch
from ip_pyro.canvas import gather_canvas
from ip_pyro.models.insertion_steps import (MIN_CANVASES_PER_PASS, CanvasSession, HistorySession, StepLogProbs,
                                            canvas_passes, finish_output, history_log_joint, history_steps,
                                            step_scores)
from ip_pyro.networks import (DecoderOutput, InsertionCausalDecoder, InsertionDecoder, check_max_positions,
                              check_network_sizes)
from ip_pyro.orders import orders_to_ranks
from ip_pyro.sampling import check_conditional, sampling_plan
from ip_pyro.models.sampler import check_truncation, draw
from ip_pyro.utils import evaluating, is_count, unique_pyro_name

__all__ = ["InsertionProcess", "StepLogProbs", "TERMINATIONS", "DECODERS", "canvas_passes"]

TERMINATIONS = ("stop", "eos")
DECODERS = ("canvas", "causal")  # re-encode the canvas at every step; insertion-causal, one pass per order


class InsertionProcess(PyroModule):
    """The Insertion Process (IP): a distribution over variable-length sequences built by insertions.

    :param vocab_size: number of content tokens ``V`` (ids ``0..V-1``; prompts use the same ids).
    :param d_model, n_layers, n_heads, dropout: decoder size.
    :param max_length: longest sequence; at this length stopping is certain.
    :param termination: ``"stop"`` (a stop head) or ``"eos"`` (an end token insertable only at the last slot).
    :param decoder: ``"canvas"`` (default; :class:`ip_pyro.networks.InsertionDecoder`: a bidirectional encoder
        re-run on the canvas at every step, so a step depends on the canvas only) or ``"causal"``
        (:class:`ip_pyro.networks.InsertionCausalDecoder`: attention causal in writing order, so one pass scores
        every step of an order and sampling advances a KV cache; a step then depends on the order in which the
        canvas was written, so :meth:`step_log_probs` needs that order and the exact likelihood sums all ``L!``
        orders).
    :param max_positions: learned absolute position embeddings for this many positions of ``[prompt ; BOS ;
        canvas ; END]`` on top of the rotary ones (``0``: rotary only); at least prompt length + ``max_length`` + 2.
    :param prompt_group: read the prompt as groups of this many tokens (``2`` for an edge list ``u v u v ...``):
        each prompt token also embeds the other members of its group (``1``: off).
    :param embed_std: standard deviation of the initial token embeddings (0.02; 1.0 learns prompt lookups sooner).
    :param prompt_attention: ``"full"`` or ``"prefix"``: the prompt attends to itself only, so its encoding is
        computed once per sequence and shared by every canvas scored or sampled for it (a different model from
        ``"full"``, not an approximation of it; a task without a prompt gives the same model either way). Default
        (``None``): ``"full"`` for the canvas decoder; the causal decoder always uses ``"prefix"``.
    :param gap_context: causal decoder only: how many items of the current canvas on each side of a gap its gap and
        token heads read (``1``: the two neighbours; ``2``, the default: two on each side).
    :param conditional: ``True`` for a model of prompted data (``sample`` then requires a prompt), ``False`` for
        unprompted data (``sample`` refuses one), ``None`` (default) when not said (no check). ``ip-pyro train``
        sets it from the data; saved with the config.

    ``model(batch)`` runs the Pyro program (so ``SVI(model, guide, ...)`` works); with ``batch.tokens`` given the
    stop sites are observed and a final factor ``canvas_matches_data`` is ``-inf`` unless the built canvas equals
    the data. With ``batch.tokens is None`` the program draws new sequences and returns them as a :class:`Batch`.
    """

    def __init__(self, vocab_size: int, *, d_model: int = 128, n_layers: int = 4, n_heads: int = 4,
                 max_length: int = 64, dropout: float = 0.0, termination: str = "stop", max_positions: int = 0,
                 prompt_group: int = 1, embed_std: float = 0.02, prompt_attention: Optional[str] = None,
                 decoder: str = "canvas", gap_context: int = 2, conditional: Optional[bool] = None):
        check_network_sizes(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                            max_length=max_length, dropout=dropout, prompt_group=prompt_group, embed_std=embed_std)
        check_max_positions(max_positions, max_length)
        if termination not in TERMINATIONS:
            raise ValueError(f"unknown termination {termination!r}; choose from {', '.join(TERMINATIONS)}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
        if prompt_attention is None:
            prompt_attention = "prefix" if decoder == "causal" else "full"
        if decoder == "causal" and prompt_attention != "prefix":
            raise ValueError("the causal decoder encodes the prompt once (prompt_attention='prefix'); leave "
                             "prompt_attention unset or use decoder='canvas' for full attention")
        super().__init__(unique_pyro_name("InsertionProcess"))
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.termination = termination
        self.decoder = decoder
        self.prompt_attention = prompt_attention
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                           max_length=max_length, dropout=dropout, termination=termination, max_positions=max_positions,
                           prompt_group=prompt_group, embed_std=embed_std, prompt_attention=prompt_attention,
                           decoder=decoder)
        if decoder == "causal":
            self.config["gap_context"] = gap_context
        self.conditional = check_conditional(conditional)
        if conditional is not None:
            self.config["conditional"] = conditional
        token_classes = vocab_size + 1 if termination == "eos" else vocab_size
        sizes = dict(token_classes=token_classes, max_positions=max_positions, prompt_group=prompt_group,
                     embed_std=embed_std)
        if decoder == "causal":
            self.network = InsertionCausalDecoder(vocab_size, d_model, n_layers, n_heads, dropout, context=gap_context,
                                                  **sizes)
        else:
            self.network = InsertionDecoder(vocab_size, d_model, n_layers, n_heads, dropout,
                                            prompt_attention=prompt_attention, **sizes)

    @property
    def canvas_markov(self) -> bool:
        """Whether a step's scores depend on the canvas alone (the canvas decoder), not on the order written."""
        return self.decoder == "canvas"

    # ----------------------------------------------------------------------------------------------- scoring
    def _decode(self, network, canvas, canvas_lengths, prompt, prompt_lengths, prompt_cache=None,
                prompt_index=None) -> DecoderOutput:
        if prompt_cache is None:
            output = network(canvas, canvas_lengths, prompt, prompt_lengths)
        else:
            output = network(canvas, canvas_lengths, prompt_cache=prompt_cache, prompt_index=prompt_index)
        return finish_output(output, canvas_lengths, self)

    def _prompt_cache(self, network, batch: Batch):
        """The batch's prompt encoded once (prefix attention; the causal decoder always, empty prompts included),
        else ``None``."""
        if self.decoder == "causal":
            return network.encode_prompt(batch.prompt, batch.prompt_lengths, rows=batch.batch_size)
        if self.prompt_attention != "prefix" or batch.prompt is None:
            return None
        return network.encode_prompt(batch.prompt, batch.prompt_lengths)

    def _score_canvases(self, network, tokens, lengths, prompt, prompt_lengths, inserted, prompt_cache=None,
                        prompt_index=None) -> StepLogProbs:
        canvas, canvas_lengths = gather_canvas(tokens, inserted)
        output = self._decode(network, canvas, canvas_lengths, prompt, prompt_lengths, prompt_cache, prompt_index)
        return step_scores(output, tokens, lengths, inserted, canvas_lengths, self.max_length)

    def _check_orders(self, batch: Batch, orders: torch.Tensor) -> Batch:
        check_batch(batch, self.vocab_size, self.max_length, module=self)
        if orders.dim() != 2 or orders.shape[1] != batch.max_length or orders.shape[0] % batch.batch_size:
            raise ValueError(f"orders must be [k * {batch.batch_size}, {batch.max_length}], got "
                             f"{tuple(orders.shape)}")
        return batch.repeat(orders.shape[0] // batch.batch_size)

    @pyro_method
    def step_log_probs(self, batch: Batch, inserted: torch.Tensor, orders: Optional[torch.Tensor] = None
                       ) -> StepLogProbs:
        """Score the canvases ``x[inserted]`` with one decoder pass.

        :param batch: ``B`` sequences.
        :param inserted: bool ``[N, L_max]``, ``N = k * B`` rows aligned with ``batch.repeat(k)`` (row ``m * B + b``
            holds sequence ``b``): the positions already on each canvas.
        :param orders: ``[N, L_max]`` orders whose first ``inserted.sum(-1)`` steps wrote each canvas; required by
            the causal decoder (its steps depend on the order written), ignored by the canvas decoder.
        :returns: :class:`StepLogProbs` with ``stop`` ``[N]``, ``insert`` ``[N, L_max]`` and ``go`` ``[N]``.
        """
        check_batch(batch, self.vocab_size, self.max_length, module=self)
        if inserted.dtype != torch.bool or inserted.dim() != 2 or inserted.shape[1] != batch.max_length:
            raise ValueError(f"inserted must be a bool [N, {batch.max_length}] mask, got {inserted.dtype} "
                             f"{tuple(inserted.shape)}")
        if inserted.shape[0] % batch.batch_size:
            raise ValueError(f"inserted has {inserted.shape[0]} rows, not a multiple of the batch size "
                             f"{batch.batch_size}; rows must align with batch.repeat(k)")
        if self.decoder == "causal":
            if orders is None or orders.shape != inserted.shape:
                raise ValueError("the causal decoder scores a step from the order that wrote its canvas: pass "
                                 f"orders= [N, {batch.max_length}] aligned with inserted (or use decoder='canvas')")
            steps = inserted.sum(-1)
            if not bool((orders_to_ranks(orders) < steps.unsqueeze(-1)).eq(inserted).all()):
                raise ValueError("inserted must hold the first inserted.sum(-1) positions of each order "
                                 "(inserted_before(orders, lengths, steps))")
            scores = history_steps(self, batch, self._check_orders(batch, orders), orders, steps.unsqueeze(-1))
            return StepLogProbs(scores.stop[:, 0], scores.insert[:, 0], scores.go[:, 0])
        rows = batch.repeat(inserted.shape[0] // batch.batch_size)
        cache = self._prompt_cache(self.network, batch)  # prefix attention: once for all k * B canvases
        index = None if cache is None else torch.arange(inserted.shape[0], device=batch.device) % batch.batch_size
        return self._score_canvases(self.network, rows.tokens, rows.lengths, rows.prompt, rows.prompt_lengths,
                                    inserted, cache, index)

    @pyro_method
    def all_step_log_probs(self, batch: Batch, orders: torch.Tensor, *, chunk_size: int = 8192) -> StepLogProbs:
        """Every step of every order: ``stop`` ``[N, L_max+1]``, ``insert`` ``[N, L_max+1, L_max]`` (row ``n``,
        step ``t``: the canvas after ``t`` steps of ``orders[n]``), ``go`` ``[N, L_max+1]``; steps past a
        sequence's length are scored on its full canvas (callers mask them). The causal decoder needs one pass;
        the canvas decoder scores the ``N (L_max + 1)`` canvases in passes of at most ``chunk_size``."""
        rows = self._check_orders(batch, orders)
        width = orders.shape[1]
        steps = torch.arange(width + 1, device=orders.device).expand(orders.shape[0], width + 1)
        if self.decoder == "causal":
            return history_steps(self, batch, rows, orders, steps.clamp(max=rows.lengths.unsqueeze(-1)))

        stop, insert, go = (torch.full(shape, -math.inf, dtype=torch.get_default_dtype(), device=orders.device)
                            for shape in ((orders.shape[0], width + 1), (orders.shape[0], width + 1, width),
                                          (orders.shape[0], width + 1)))
        for index, step, scores in self._canvas_prefixes(batch, rows, orders, chunk_size, by_canvas_size=True):
            stop, insert, go = (field.to(score.dtype).index_put((index, step), score)
                                for field, score in zip((stop, insert, go), scores))
        last = rows.lengths.unsqueeze(-1).expand_as(steps)  # past the end: the full canvas's scores
        past = steps > last
        stop, go = (torch.where(past, field.gather(1, last), field) for field in (stop, go))
        insert = torch.where(past.unsqueeze(-1), insert.gather(1, last.unsqueeze(-1).expand_as(insert)), insert)
        return StepLogProbs(stop, insert, go)

    def _canvas_prefixes(self, batch: Batch, rows: Batch, orders: torch.Tensor, chunk_size: int,
                         by_canvas_size: bool):
        """Canvas decoder: yield ``(row index [n], step [n], StepLogProbs)`` for every prefix ``t = 0..L_n`` of
        every order (rows aligned with ``rows``), in passes of at most ``chunk_size`` canvases. ``by_canvas_size``
        sorts the canvases by their number of tokens and starts a new pass where the size grows (once a pass holds
        ``MIN_CANVASES_PER_PASS``), so a canvas of ``t`` tokens is padded to about ``t``, not to the longest."""
        if not is_count(chunk_size):
            raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer (canvases per decoder pass)")
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
        cache = self._prompt_cache(self.network, batch)  # prefix attention: the prompts are encoded once
        for begin, end in passes:
            index, step = row_index[begin:end], steps[begin:end]
            part = rows[index]
            inserted = (ranks[index] < step.unsqueeze(-1)) & part.mask
            yield index, step, self._score_canvases(self.network, part.tokens, part.lengths, part.prompt,
                                                    part.prompt_lengths, inserted, cache,
                                                    None if cache is None else index % batch.batch_size)

    @pyro_method
    def log_joint(self, batch: Batch, orders: torch.Tensor, *, chunk_size: int = 8192,
                  by_canvas_size: bool = True) -> torch.Tensor:
        """``log p(x, sigma)`` ``[N]`` for orders ``[N, L_max]`` (rows aligned with ``batch.repeat(N // B)``).

        The causal decoder scores every step of an order in one pass (at most ``chunk_size`` orders per pass). The
        canvas decoder scores every prefix of every order (``sum_n (L_n + 1)`` canvases) in passes of at most
        ``chunk_size`` canvases, sorted by size unless ``by_canvas_size=False`` (benchmarks).
        """
        rows = self._check_orders(batch, orders)
        if not is_count(chunk_size):
            raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer (canvases per decoder pass)")
        if self.decoder == "causal":
            spans = [(begin, min(begin + chunk_size, len(orders))) for begin in range(0, len(orders), chunk_size)]
            parts = [history_log_joint(self, batch, rows[begin:end], orders[begin:end], begin) for begin, end in spans]
            return torch.cat(parts) if parts else torch.zeros(0, device=orders.device)
        total = torch.zeros(orders.shape[0], dtype=torch.get_default_dtype(), device=orders.device)
        for index, step, scores in self._canvas_prefixes(batch, rows, orders, chunk_size, by_canvas_size):
            term = scores.of_orders(orders[index], step, rows.lengths[index])
            total = total.to(term.dtype).index_add(0, index, term)
        return total

    # ------------------------------------------------------------------------------------------ the program
    def _session(self, batch_prompt, prompt_lengths, rows: int, device, cache=None):
        """Step-by-step decoding of ``rows`` sequences (a canvas re-encoded per step, or the causal KV cache, which
        starts from the prompt ``cache``: the causal decoder always has one)."""
        if self.decoder == "causal":
            return HistorySession(self, cache)
        uncached = cache is None
        return CanvasSession(self, rows, batch_prompt if uncached else None, prompt_lengths if uncached else None,
                             cache, device)

    def forward(self, batch: Batch) -> Batch:
        """The Pyro program. Returns the built sequences as a :class:`Batch` (tokens, lengths)."""
        check_batch(batch, self.vocab_size, self.max_length, need_tokens=False, module=self)
        size, device = batch.batch_size, batch.device
        observed = batch.tokens is not None
        horizon = (int(batch.lengths.max()) if size else 0) if observed else self.max_length
        active = torch.ones(size, dtype=torch.bool, device=device)
        session = self._session(batch.prompt, batch.prompt_lengths, size, device,
                                self._prompt_cache(self.network, batch))
        with pyro.plate("data", size):
            for t in pyro.markov(range(horizon + 1)):
                output = session.output()
                stop_obs = (batch.lengths == t).to(output.stop_logits.dtype) if observed else None
                with poutine.mask(mask=active):
                    stop = pyro.sample(f"stop_{t}", dist.Bernoulli(logits=output.stop_logits), obs=stop_obs)
                growing = active & (stop == 0)
                if not bool(growing.any()):
                    break
                with poutine.mask(mask=growing):
                    slot = pyro.sample(f"slot_{t}", dist.Categorical(logits=output.slot_logits))
                    slot_index = slot.long().view(size, 1, 1).expand(size, 1, output.token_logits.shape[-1])
                    token_logits = output.token_logits.gather(1, slot_index).squeeze(1)
                    token = pyro.sample(f"token_{t}", dist.Categorical(logits=token_logits))
                session.insert(slot.long(), token.long(), growing)
                active = growing
            canvas, canvas_lengths = session.canvas, session.lengths
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
               greedy: bool = False, max_length: Optional[int] = None, insertions_per_step: int = 1,
               top_k: Optional[int] = None, top_p: Optional[float] = None, return_log_probs: bool = False,
               progress=None):
        """Draw sequences (:mod:`ip_pyro.models.sampler`), one decoder step for all unfinished sequences at a time.

        :param num_samples: how many sequences (per prompt when ``prompt`` is given; default 1 per prompt).
        :param prompt: optional list of prompts (lists of ids) or a :class:`Batch` carrying ``prompt``; required
            when the model is ``conditional``, refused when it is not. A prompt longer than ``max_length`` is
            legal (only the target is bounded; absolute positions, when used, must cover both).
        :param temperature: divides every logit (stop, slot and token).
        :param greedy: take the most probable decision at each step (stop if ``p_stop > 0.5``, else the most
            probable (slot, token) pair); ``top_k``/``top_p`` do not apply.
        :param max_length: stop every sequence at this length (at most the model's ``max_length``).
        :param insertions_per_step: parallel decoding (Insertion-Transformer style, canvas decoder only): after
            each decoder pass that does not stop, insert into up to ``k`` distinct slots at once (the ``k`` most
            probable slots when greedy, else ``k`` slots drawn without replacement), each with its own token drawn
            from ``p(token | slot)``. ``1`` (default) samples the model exactly; ``k > 1`` is an approximation that
            needs about ``k`` times fewer passes.
        :param top_k: draw each slot among the ``k`` most probable slots and each token among the ``k`` most
            probable tokens at the drawn slot (the slot, then its token).
        :param top_p: nucleus sampling of slot and token alike: draw among the smallest set of choices holding
            probability ``top_p``.
        :param return_log_probs: also return each sequence's ``log p(x, sigma | prompt)`` under the model
            (temperature 1, untruncated) of the trajectory drawn, e.g. to keep the best of several draws.
        :param progress: a bar over finished sequences (``None``: on a terminal, once the call has run two
            seconds; ``False``: never).
        :returns: one flat list of sequences (with ``return_log_probs``: ``(sequences, log_probs)``, a list of
            floats); with prompts it is prompt-major: sample ``i`` of prompt ``p`` is entry ``p * num_samples + i``
            (``[out[p * k:(p + 1) * k] for p in range(len(prompt))]`` groups them).
        """
        if not is_count(insertions_per_step):
            raise ValueError(f"insertions_per_step={insertions_per_step!r} must be a positive integer")
        if insertions_per_step > 1 and self.decoder == "causal":
            raise ValueError("insertions_per_step > 1 saves decoder passes of the canvas decoder only: the causal "
                             "decoder already pays one cached item per insertion; use insertions_per_step=1")
        check_truncation(top_k, top_p)
        if insertions_per_step > 1 and (top_k is not None or top_p is not None or return_log_probs):
            raise ValueError("top_k, top_p and return_log_probs need exact decoding: use insertions_per_step=1")
        device = next(self.parameters()).device
        prompt_ids, prompt_lengths, total, limit = sampling_plan(self, device, num_samples, prompt, temperature,
                                                                 greedy, max_length)
        with evaluating(self):
            # the prompt encoded once for the whole decoding; its rows follow the live rows (compacted only when
            # some sequences stop, not gathered again at every step)
            cache = (self.network.encode_prompt(prompt_ids, prompt_lengths, rows=total)
                     if self.prompt_attention == "prefix" else None)
            session = self._session(prompt_ids, prompt_lengths, total, device, cache)
            results, log_probs = draw(self, session, total, limit, greedy=greedy, temperature=temperature,
                                      insertions_per_step=insertions_per_step, top_k=top_k, top_p=top_p,
                                      track_log_probs=return_log_probs, progress=progress)
        return (results, log_probs.tolist()) if return_log_probs else results
