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
``p(slot = t) p(EOS | slot = t)``; :func:`ip_pyro.models.insertion_steps.finish_output` rewrites this as the
equivalent stop / slot / token factors (``p(slot | go on)`` takes the remaining mass of slot ``t``,
``p(token | slot, go on)`` the content tokens renormalised), so the program, the sampler and the ELBO are the same
code for both variants.

Decoders. How a step is scored is the decoder's (``decoder=``): each is one module with a
:class:`ip_pyro.models.decoder_base.DecoderScoring` registered in :data:`DECODERS`, picked once in ``__init__``
(``models/decoder_canvas.py``, ``models/decoder_causal.py``); the model holds no decoder-specific code.

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
from ip_pyro.models import decoder_canvas, decoder_causal  # noqa: F401 (each registers its decoder)
from ip_pyro.models.decoder_base import DECODERS as DECODER_SCORINGS
from ip_pyro.models.decoder_canvas import canvas_passes  # noqa: F401 (importable from here as before)
from ip_pyro.models.insertion_steps import StepLogProbs
from ip_pyro.models.sampler import check_truncation, draw
from ip_pyro.networks import check_max_positions, check_network_sizes
from ip_pyro.sampling import check_conditional, sampling_plan
from ip_pyro.utils import evaluating, is_count, unique_pyro_name

__all__ = ["InsertionProcess", "StepLogProbs", "TERMINATIONS", "DECODERS", "canvas_passes"]

TERMINATIONS = ("stop", "eos")
DECODERS = DECODER_SCORINGS  # the registry: canvas (re-encode the canvas every step), causal (one pass per order)


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
        if decoder not in DECODER_SCORINGS:
            raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODER_SCORINGS)}")
        scoring = DECODER_SCORINGS[decoder]()
        prompt_attention = scoring.resolve_prompt_attention(prompt_attention)
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
        options = {"gap_context": gap_context, "max_length": max_length}  # what a decoder may read (see its options)
        self.config.update({name: options[name] for name in scoring.options})
        self.conditional = check_conditional(conditional)
        if conditional is not None:
            self.config["conditional"] = conditional
        token_classes = vocab_size + 1 if termination == "eos" else vocab_size
        sizes = dict(token_classes=token_classes, max_positions=max_positions, prompt_group=prompt_group,
                     embed_std=embed_std)
        self.scoring = scoring  # the decoder's scoring (models/decoder_*.py), chosen once
        self.network = scoring.build_network(vocab_size, d_model, n_layers, n_heads, dropout,
                                             prompt_attention=prompt_attention, options=options, **sizes)

    @property
    def canvas_markov(self) -> bool:
        """Whether a step's scores depend on the canvas alone (the canvas decoder), not on the order written."""
        return self.scoring.canvas_markov

    # ----------------------------------------------------------------------------------------------- scoring
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
        if self.scoring.needs_orders and orders is not None:
            self._check_orders(batch, orders)
        rows = batch.repeat(inserted.shape[0] // batch.batch_size)
        return self.scoring.step_log_probs(self, batch, rows, inserted, orders)

    @pyro_method
    def all_step_log_probs(self, batch: Batch, orders: torch.Tensor, *, chunk_size: int = 8192) -> StepLogProbs:
        """Every step of every order: ``stop`` ``[N, L_max+1]``, ``insert`` ``[N, L_max+1, L_max]`` (row ``n``,
        step ``t``: the canvas after ``t`` steps of ``orders[n]``), ``go`` ``[N, L_max+1]``; steps past a
        sequence's length are scored on its full canvas (callers mask them). The causal decoder needs one pass;
        the canvas decoder scores the ``N (L_max + 1)`` canvases in passes of at most ``chunk_size``."""
        return self.scoring.all_step_log_probs(self, batch, self._check_orders(batch, orders), orders, chunk_size)

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
        return self.scoring.log_joint(self, batch, rows, orders, chunk_size, by_canvas_size)

    # ------------------------------------------------------------------------------------------ the program
    def forward(self, batch: Batch) -> Batch:
        """The Pyro program. Returns the built sequences as a :class:`Batch` (tokens, lengths)."""
        check_batch(batch, self.vocab_size, self.max_length, need_tokens=False, module=self)
        size, device = batch.batch_size, batch.device
        observed = batch.tokens is not None
        horizon = (int(batch.lengths.max()) if size else 0) if observed else self.max_length
        active = torch.ones(size, dtype=torch.bool, device=device)
        session = self.scoring.session(self, batch.prompt, batch.prompt_lengths, size, device,
                                       self.scoring.prompt_cache(self, batch))
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
    @torch.inference_mode()
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
        if insertions_per_step > 1 and not self.scoring.parallel_decoding:
            raise ValueError(f"insertions_per_step > 1 saves decoder passes of the canvas decoder only: the "
                             f"{self.decoder} decoder already pays one cached item per insertion; use "
                             "insertions_per_step=1")
        check_truncation(top_k, top_p)
        if insertions_per_step > 1 and (top_k is not None or top_p is not None or return_log_probs):
            raise ValueError("top_k, top_p and return_log_probs need exact decoding: use insertions_per_step=1")
        device = next(self.parameters()).device
        prompt_ids, prompt_lengths, total, limit = sampling_plan(self, device, num_samples, prompt, temperature,
                                                                 greedy, max_length)
        with evaluating(self):
            # the prompt encoded once for the whole decoding; its rows follow the live rows (compacted only when
            # some sequences stop, not gathered again at every step)
            cache = self.scoring.sampling_cache(self, prompt_ids, prompt_lengths, total)
            session = self.scoring.session(self, prompt_ids, prompt_lengths, total, device, cache)
            results, log_probs = draw(self, session, total, limit, greedy=greedy, temperature=temperature,
                                      insertions_per_step=insertions_per_step, top_k=top_k, top_p=top_p,
                                      track_log_probs=return_log_probs, progress=progress)
        return (results, log_probs.tolist()) if return_log_probs else results
