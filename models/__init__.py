"""Pyro models: the Insertion Process and the left-to-right autoregressive baseline."""
from models.autoregressive import LeftToRightLM
from models.insertion import InsertionProcess, StepLogProbs

__all__ = ["InsertionProcess", "StepLogProbs", "LeftToRightLM"]
