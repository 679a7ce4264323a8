"""Pyro models: the Insertion Process and the left-to-right autoregressive baseline."""
from ip_pyro.models.autoregressive import LeftToRightLM
from ip_pyro.models.decoder_base import DECODERS, DecoderScoring, register_decoder
from ip_pyro.models.insertion import InsertionProcess, StepLogProbs
from ip_pyro.models.registry import FAMILIES, build_model

__all__ = ["InsertionProcess", "StepLogProbs", "LeftToRightLM", "FAMILIES", "build_model", "DECODERS",
           "DecoderScoring", "register_decoder"]
