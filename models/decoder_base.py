"""The interface between :class:`ip_pyro.models.InsertionProcess` and its decoders, and their registry.

A decoder is one module with one :class:`DecoderScoring` subclass, registered in :data:`DECODERS`; the model picks
it once, in ``__init__``, and asks it for everything that depends on how steps are scored:

* ``build_network(...)``: the network (kept as ``model.network``, so checkpoints name the same weights);
* ``prompt_cache(model, batch)``: the prompt encoded once where the decoder can, else ``None``;
* ``step_log_probs(model, batch, rows, inserted, orders)``, ``all_step_log_probs(model, batch, rows, orders,
  chunk_size)``, ``log_joint(model, batch, rows, orders, chunk_size, by_canvas_size)``: the scores behind the
  model's methods of those names (arguments checked by the model; ``rows = batch.repeat(N // B)``);
* ``session(model, prompt, prompt_lengths, rows, device, cache)``: step-by-step decoding for the Pyro program and
  the sampler (``output()``, ``insert(slots, tokens, growing)``, ``keep(rows)``, ``canvas``, ``lengths``; a session
  that can score one gap's tokens at a time also has ``output_without_tokens()`` and ``token_logits(slots)``).

The step factors themselves (stop, slot and token, the EOS rewrite, the certain stop at ``max_length``) are
:mod:`ip_pyro.models.insertion_steps`, shared by every decoder.
"""
from __future__ import annotations

from typing import Optional

__all__ = ["DecoderScoring", "DECODERS", "register_decoder"]


class DecoderScoring:
    """One decoder's way of scoring the Insertion Process (see the module docstring). Stateless: every method
    takes the model."""

    name = ""
    canvas_markov = True  # a step's scores depend on the canvas alone (not on the order that wrote it)
    needs_orders = False  # step_log_probs needs the orders that wrote each canvas
    parallel_decoding = True  # the sampler may insert several tokens per pass (insertions_per_step > 1)
    default_prompt_attention = "full"
    prompt_attentions = ("full", "prefix")
    prompt_attention_error = ""  # the one-line error for another prompt attention (default: a generic one)
    options: tuple = ()  # constructor options the decoder keeps in the model's config (e.g. gap_context)

    def resolve_prompt_attention(self, prompt_attention: Optional[str]) -> str:
        """``prompt_attention`` or the decoder's default; a one-line error for one it cannot do."""
        chosen = self.default_prompt_attention if prompt_attention is None else prompt_attention
        if chosen not in self.prompt_attentions:
            raise ValueError(self.prompt_attention_error or
                             f"prompt_attention={chosen!r}; choose from {', '.join(self.prompt_attentions)}")
        return chosen

    def build_network(self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, dropout: float, *,
                      prompt_attention: str, options: dict, **sizes):
        raise NotImplementedError

    def prompt_cache(self, model, batch):
        raise NotImplementedError

    def step_log_probs(self, model, batch, rows, inserted, orders):
        raise NotImplementedError

    def all_step_log_probs(self, model, batch, rows, orders, chunk_size: int):
        raise NotImplementedError

    def log_joint(self, model, batch, rows, orders, chunk_size: int, by_canvas_size: bool):
        raise NotImplementedError

    def session(self, model, prompt, prompt_lengths, rows: int, device, cache=None):
        raise NotImplementedError

    def sampling_cache(self, model, prompt_ids, prompt_lengths, rows: int):
        """The prompts of ``rows`` samples encoded once for the whole decoding under prefix attention (rows follow
        the live samples), else ``None``."""
        if model.prompt_attention != "prefix":
            return None
        return model.network.encode_prompt(prompt_ids, prompt_lengths, rows=rows)


DECODERS: dict = {}


def register_decoder(name: str, scoring: type) -> type:
    """Make ``InsertionProcess(decoder=name)`` use ``scoring`` (a :class:`DecoderScoring` subclass); returns it."""
    if not (isinstance(scoring, type) and issubclass(scoring, DecoderScoring)):
        raise ValueError(f"a decoder is a DecoderScoring subclass, not {scoring!r}")
    DECODERS[name] = scoring
    return scoring
