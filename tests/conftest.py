import pyro
import pytest
import torch

from ip_pyro.guides import PlackettLuceGuide
from ip_pyro.models import InsertionProcess


DECODERS = ["canvas", "causal"]  # the IP's two decoders (parametrize the model-level proofs over both)


@pytest.fixture(autouse=True)
def fresh_state():
    """Every test starts from a fixed seed and an empty param store."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def roughen(module: torch.nn.Module, scale: float = 0.5, seed: int = 1) -> torch.nn.Module:
    """Re-draw every parameter from N(0, scale^2) so that a tiny random network has sharp, varied outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * scale)
    return module


def tiny_model(vocab_size=3, max_length=6, seed=1, scale=0.5, **kwargs) -> InsertionProcess:
    sizes = dict(d_model=8, n_layers=1, n_heads=2)
    sizes.update(kwargs)
    model = InsertionProcess(vocab_size, max_length=max_length, **sizes)
    return roughen(model.to(torch.get_default_dtype()), scale, seed)


def tiny_pl_guide(vocab_size=3, max_length=6, seed=2, scale=0.5) -> PlackettLuceGuide:
    guide = PlackettLuceGuide(vocab_size, d_model=8, n_layers=1, n_heads=2, max_length=max_length)
    return roughen(guide.to(torch.get_default_dtype()), scale, seed)
