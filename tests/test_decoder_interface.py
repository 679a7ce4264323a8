"""A decoder is one file and one registry entry: a small test decoder defined here (a bag-of-tokens network behind
the canvas decoder's scoring) plugs into the Insertion Process through :func:`ip_pyro.models.register_decoder`
alone, and the model is then a normalised distribution that trains, samples and round-trips a checkpoint."""
import itertools

import pyro
import pytest
import torch
from pyro.infer import SVI

import ip_pyro
from ip_pyro import collate
from ip_pyro.guides import PlackettLuceGuide
from ip_pyro.infer import InsertionELBO, exact_log_likelihood
from ip_pyro.models import DECODERS, InsertionProcess, register_decoder
from ip_pyro.models.decoder_canvas import CanvasScoring
from ip_pyro.networks import DecoderOutput


class BagNetwork(torch.nn.Module):
    """Scores a canvas from the mean of its token embeddings and each slot's index (no attention at all)."""

    def __init__(self, vocab_size: int, d_model: int, max_length: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, d_model)
        self.slot = torch.nn.Embedding(max_length + 1, d_model)
        self.stop = torch.nn.Linear(d_model, 1)
        self.slot_head = torch.nn.Linear(d_model, 1)
        self.token_head = torch.nn.Linear(d_model, vocab_size)

    def forward(self, canvas, canvas_lengths, prompt=None, prompt_lengths=None, **unused) -> DecoderOutput:
        width = canvas.shape[1]
        valid = torch.arange(width) < canvas_lengths.unsqueeze(-1)
        pooled = (self.embed(canvas) * valid.unsqueeze(-1)).sum(1) / canvas_lengths.clamp(min=1).unsqueeze(-1)
        slots = pooled.unsqueeze(1) + self.slot(torch.arange(width + 1)).unsqueeze(0)  # [N, T+1, D]
        slot_logits = self.slot_head(slots).squeeze(-1).masked_fill(
            torch.arange(width + 1) > canvas_lengths.unsqueeze(-1), -torch.inf)
        return DecoderOutput(self.stop(pooled).squeeze(-1), slot_logits, self.token_head(slots))


class BagScoring(CanvasScoring):
    name = "bag"
    prompt_attentions = ("full",)

    def build_network(self, vocab_size, d_model, n_layers, n_heads, dropout, *, prompt_attention, options, **sizes):
        return BagNetwork(vocab_size, d_model, max_length=options["max_length"])


@pytest.fixture(autouse=True)
def bag_decoder(monkeypatch):
    monkeypatch.setitem(DECODERS, "bag", BagScoring)
    yield


def bag_model(**options):
    torch.manual_seed(0)
    model = InsertionProcess(2, d_model=8, n_layers=1, n_heads=2, max_length=3, decoder="bag", **options)
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, 0.0, 0.7)
    return model


def test_a_registered_decoder_builds_its_own_network():
    model = bag_model()
    assert isinstance(model.network, BagNetwork) and model.config["decoder"] == "bag" and model.canvas_markov


def test_the_new_decoder_gives_a_normalised_model(float64):
    model = bag_model().double()
    sequences = [list(s) for length in range(4) for s in itertools.product(range(2), repeat=length)]
    total = exact_log_likelihood(model, collate(sequences)).exp().sum()
    assert abs(float(total) - 1.0) < 1e-9


def test_the_new_decoder_trains_samples_and_round_trips(tmp_path):
    model = bag_model()
    guide = PlackettLuceGuide(2, d_model=8, n_layers=1, n_heads=2, max_length=3)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=InsertionELBO(num_particles=2))
    batch = collate([[0, 1], [1], [0, 0, 1]])
    assert all(torch.isfinite(torch.tensor(svi.step(batch))) for _ in range(3))
    assert all(len(sequence) <= 3 for sequence in model.sample(10, top_p=0.9))
    ip_pyro.save(tmp_path / "bag.pt", model, guide)
    again, _, _ = ip_pyro.load(tmp_path / "bag.pt")
    assert torch.allclose(exact_log_likelihood(again, batch), exact_log_likelihood(model, batch))


def test_an_unregistered_decoder_and_a_bad_registration_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown decoder 'lstm'; choose from canvas, causal, bag"):
        InsertionProcess(2, max_length=3, decoder="lstm")
    with pytest.raises(ValueError, match="a decoder is a DecoderScoring subclass"):
        register_decoder("nope", object)
