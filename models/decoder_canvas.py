"""The canvas decoder: the whole canvas re-encoded at every step (:class:`ip_pyro.networks.InsertionDecoder`), so
a step depends on the canvas alone; scoring one order costs ``L + 1`` passes, sampling one pass per insertion."""
from __future__ import annotations

import math

import torch

from ip_pyro.canvas import gather_canvas, insert_tokens
from ip_pyro.models.decoder_base import DecoderScoring, register_decoder
from ip_pyro.models.insertion_steps import StepLogProbs, finish_output, step_scores
from ip_pyro.networks import DecoderOutput, InsertionDecoder
from ip_pyro.orders import orders_to_ranks
from ip_pyro.utils import is_count

__all__ = ["CanvasScoring", "CanvasSession", "canvas_passes", "MIN_CANVASES_PER_PASS"]

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


class CanvasScoring(DecoderScoring):
    name = "canvas"

    def build_network(self, vocab_size, d_model, n_layers, n_heads, dropout, *, prompt_attention, options, **sizes):
        return InsertionDecoder(vocab_size, d_model, n_layers, n_heads, dropout, prompt_attention=prompt_attention,
                                **sizes)

    def decode(self, model, canvas, canvas_lengths, prompt, prompt_lengths, prompt_cache=None,
               prompt_index=None) -> DecoderOutput:
        """The finished scores of canvases ``[N, T]`` (with the prompt ids, or the prompt ``cache`` rows
        ``prompt_index``)."""
        if prompt_cache is None:
            output = model.network(canvas, canvas_lengths, prompt, prompt_lengths)
        else:
            output = model.network(canvas, canvas_lengths, prompt_cache=prompt_cache, prompt_index=prompt_index)
        return finish_output(output, canvas_lengths, model)

    def prompt_cache(self, model, batch):
        """Prefix attention: the batch's prompt encoded once; else ``None`` (the prompt is read with each canvas)."""
        if model.prompt_attention != "prefix" or batch.prompt is None:
            return None
        return model.network.encode_prompt(batch.prompt, batch.prompt_lengths)

    def score_canvases(self, model, tokens, lengths, prompt, prompt_lengths, inserted, prompt_cache=None,
                       prompt_index=None) -> StepLogProbs:
        canvas, canvas_lengths = gather_canvas(tokens, inserted)
        output = self.decode(model, canvas, canvas_lengths, prompt, prompt_lengths, prompt_cache, prompt_index)
        return step_scores(output, tokens, lengths, inserted, canvas_lengths, model.max_length)

    def step_log_probs(self, model, batch, rows, inserted, orders):
        cache = self.prompt_cache(model, batch)  # prefix attention: once for all k * B canvases
        index = None if cache is None else torch.arange(inserted.shape[0], device=batch.device) % batch.batch_size
        return self.score_canvases(model, rows.tokens, rows.lengths, rows.prompt, rows.prompt_lengths, inserted,
                                   cache, index)

    def prefixes(self, model, batch, rows, orders, chunk_size: int, by_canvas_size: bool):
        """Yield ``(row index [n], step [n], StepLogProbs)`` for every prefix ``t = 0..L_n`` of every order (rows
        aligned with ``rows``), in passes of at most ``chunk_size`` canvases. ``by_canvas_size`` sorts the
        canvases by their number of tokens and starts a new pass where the size grows (once a pass holds
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
        cache = self.prompt_cache(model, batch)  # prefix attention: the prompts are encoded once
        for begin, end in passes:
            index, step = row_index[begin:end], steps[begin:end]
            part = rows[index]
            inserted = (ranks[index] < step.unsqueeze(-1)) & part.mask
            yield index, step, self.score_canvases(model, part.tokens, part.lengths, part.prompt,
                                                   part.prompt_lengths, inserted, cache,
                                                   None if cache is None else index % batch.batch_size)

    def all_step_log_probs(self, model, batch, rows, orders, chunk_size: int):
        width = orders.shape[1]
        steps = torch.arange(width + 1, device=orders.device).expand(orders.shape[0], width + 1)
        stop, insert, go = (torch.full(shape, -math.inf, dtype=torch.get_default_dtype(), device=orders.device)
                            for shape in ((orders.shape[0], width + 1), (orders.shape[0], width + 1, width),
                                          (orders.shape[0], width + 1)))
        for index, step, scores in self.prefixes(model, batch, rows, orders, chunk_size, by_canvas_size=True):
            stop, insert, go = (field.to(score.dtype).index_put((index, step), score)
                                for field, score in zip((stop, insert, go), scores))
        last = rows.lengths.unsqueeze(-1).expand_as(steps)  # past the end: the full canvas's scores
        past = steps > last
        stop, go = (torch.where(past, field.gather(1, last), field) for field in (stop, go))
        insert = torch.where(past.unsqueeze(-1), insert.gather(1, last.unsqueeze(-1).expand_as(insert)), insert)
        return StepLogProbs(stop, insert, go)

    def log_joint(self, model, batch, rows, orders, chunk_size: int, by_canvas_size: bool):
        total = torch.zeros(orders.shape[0], dtype=torch.get_default_dtype(), device=orders.device)
        for index, step, scores in self.prefixes(model, batch, rows, orders, chunk_size, by_canvas_size):
            term = scores.of_orders(orders[index], step, rows.lengths[index])
            total = total.to(term.dtype).index_add(0, index, term)
        return total

    def session(self, model, prompt, prompt_lengths, rows: int, device, cache=None):
        uncached = cache is None
        return CanvasSession(model, self, rows, prompt if uncached else None, prompt_lengths if uncached else None,
                             cache, device)


class CanvasSession:
    """Step-by-step decoding that re-encodes the canvas ``[n, t]`` at every step."""

    def __init__(self, model, scoring: CanvasScoring, rows: int, prompt, prompt_lengths, prompt_cache, device):
        self.model, self.scoring = model, scoring
        self.prompt, self.prompt_lengths, self.cache = prompt, prompt_lengths, prompt_cache
        self.canvas = torch.zeros(rows, 0, dtype=torch.long, device=device)
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)

    def output(self) -> DecoderOutput:
        """The finished scores of the current step: stop ``[n]``, slots ``[n, T+1]``, tokens ``[n, T+1, V]``."""
        return self.scoring.decode(self.model, self.canvas, self.lengths, self.prompt, self.prompt_lengths,
                                   self.cache)

    def insert(self, slots, tokens, growing) -> None:
        self.canvas, self.lengths = insert_tokens(self.canvas, self.lengths, slots, tokens, growing)

    def keep(self, rows) -> None:
        """Only ``rows`` (bool mask) go on."""
        self.canvas, self.lengths = self.canvas[rows], self.lengths[rows]
        if self.cache is not None:
            self.cache = self.cache.rows(rows.nonzero()[:, 0])
        elif self.prompt is not None:
            self.prompt, self.prompt_lengths = self.prompt[rows], self.prompt_lengths[rows]


register_decoder("canvas", CanvasScoring)
