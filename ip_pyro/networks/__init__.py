"""Transformer networks: the shared stack, the IP's two decoders (canvas re-encoding, insertion-causal), the order
scorer and pointer (the guides) and the causal decoder (the left-to-right FO-ARM baseline)."""
from ip_pyro.networks.causal import CausalDecoder
from ip_pyro.networks.decoder import PROMPT_ATTENTION, DecoderOutput, InsertionDecoder, PromptCache
from ip_pyro.networks.insertion_causal import InsertionCausalDecoder
from ip_pyro.networks.pointer import OrderPointer
from ip_pyro.networks.scorer import OrderScorer
from ip_pyro.networks.stack import (RMSNorm, TransformerStack, check_max_positions, check_network_sizes,
                                    positions_needed)

__all__ = ["TransformerStack", "RMSNorm", "InsertionDecoder", "InsertionCausalDecoder", "DecoderOutput", "PromptCache",
           "PROMPT_ATTENTION", "OrderScorer", "OrderPointer", "CausalDecoder", "check_network_sizes", "check_max_positions",
           "positions_needed"]
