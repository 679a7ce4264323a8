"""Inference for the Insertion Process: the ELBO, the importance-weighted (RWS) objective and likelihood estimators."""
from ip_pyro.infer.elbo import ELBOEstimate, InsertionELBO
from ip_pyro.infer.likelihood import (enumerated_log_likelihood, exact_log_likelihood, importance_log_likelihood,
                                      log_importance_weights, subset_messages)
from ip_pyro.infer.mcmc import OrderMH
from ip_pyro.infer.rws import InsertionRWS, RWSEstimate

__all__ = ["InsertionELBO", "ELBOEstimate", "InsertionRWS", "RWSEstimate", "exact_log_likelihood",
           "enumerated_log_likelihood", "importance_log_likelihood", "log_importance_weights", "subset_messages",
           "OrderMH"]
