import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO

from conftest import DECODERS, tiny_model, tiny_pl_guide
from ip_pyro.guides import LeftToRightGuide, PlackettLuceGuide, UniformOrderGuide
from ip_pyro import collate
from ip_pyro.data import iterate_batches, mirror_language
from ip_pyro.infer import InsertionELBO, log_importance_weights
from ip_pyro.models import InsertionProcess, LeftToRightLM

GUIDES = {
    "uniform": lambda vocab, max_length: UniformOrderGuide(),
    "l2r": lambda vocab, max_length: LeftToRightGuide(),
    "pl": lambda vocab, max_length: PlackettLuceGuide(vocab, d_model=16, n_layers=1, n_heads=2,
                                                      max_length=max_length),
}


@pytest.mark.parametrize("decoder", DECODERS)
def test_tracegraph_single_sample_equals_log_joint_minus_log_q(decoder):
    model, guide = tiny_model(decoder=decoder), tiny_pl_guide()
    batch = collate([[0, 1, 2], [2], [], [1, 1, 0, 2]])
    pyro.set_rng_seed(5)
    loss = TraceGraph_ELBO().loss(model, guide, batch)
    pyro.set_rng_seed(5)
    orders = poutine.trace(guide).get_trace(batch).nodes["order"]["value"]
    log_weight = model.log_joint(batch, orders) - guide.order_distribution(batch).log_prob(orders)
    assert abs(loss + log_weight.sum().item()) < 1e-4


@pytest.mark.parametrize("loss", [TraceGraph_ELBO(), InsertionELBO(num_particles=2)])
def test_one_svi_step_changes_model_and_guide(loss):
    model, guide = tiny_model(), tiny_pl_guide()
    batch = collate([[0, 1, 2], [2], [], [1, 1, 0, 2]])
    before = [p.detach().clone() for p in list(model.parameters()) + list(guide.parameters())]
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=loss)
    assert math.isfinite(svi.step(batch))
    after = list(model.parameters()) + list(guide.parameters())
    model_count = len(list(model.parameters()))
    assert any(not torch.equal(b, a) for b, a in zip(before[:model_count], after[:model_count]))
    assert any(not torch.equal(b, a) for b, a in zip(before[model_count:], after[model_count:]))


@pytest.mark.parametrize("guide_name", sorted(GUIDES))
@pytest.mark.parametrize("step_sampling", ["uniform", "all"])
def test_svi_step_with_mixed_lengths_including_zero(guide_name, step_sampling):
    model = InsertionProcess(4, d_model=16, n_layers=1, n_heads=2, max_length=7)
    guide = GUIDES[guide_name](4, 7)
    batch = collate([[], [1], [2, 3], [0, 0, 1], [3, 2, 1, 0], [1] * 5, [0, 1] * 3, [2] * 7])
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=InsertionELBO(2, step_sampling))
    losses = [svi.step(batch) for _ in range(3)]
    assert all(math.isfinite(value) for value in losses)
    for parameter in list(model.parameters()) + list(guide.parameters()):
        assert torch.isfinite(parameter).all()


@pytest.mark.parametrize("guide_name", sorted(GUIDES))
def test_training_raises_the_elbo(guide_name):
    """A few hundred steps on the quickstart's language (mirror strings) raise the ELBO by over a nat."""
    vocab = 4
    data = mirror_language(512, vocab_size=vocab, max_half=3, seed=1)
    model = InsertionProcess(vocab, d_model=32, n_layers=2, n_heads=2, max_length=6)
    guide = GUIDES[guide_name](vocab, 6)
    evaluation = collate(data[:64])

    def mean_elbo():
        with torch.no_grad():
            return log_importance_weights(model, guide, evaluation, num_samples=8).mean().item()

    start = mean_elbo()
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 3e-3}), loss=InsertionELBO(2))
    for epoch in range(19):  # 16 steps an epoch: ~300 steps
        for batch in iterate_batches(data, 32, seed=epoch):
            svi.step(batch)
    assert mean_elbo() > start + 1.0


def test_two_models_in_one_process_do_not_share_weights():
    first, second = InsertionProcess(3, d_model=8, n_layers=1, n_heads=2), InsertionProcess(3, d_model=8,
                                                                                           n_layers=1, n_heads=2)
    batch = collate([[0, 1], [2]])
    guide = UniformOrderGuide()
    svi = SVI(first, guide, pyro.optim.Adam({"lr": 0.1}), loss=InsertionELBO())
    snapshot = [p.detach().clone() for p in second.parameters()]
    svi.step(batch)
    SVI(second, guide, pyro.optim.Adam({"lr": 0.1}), loss=InsertionELBO()).step(batch)
    changed = [not torch.equal(a, b) for a, b in zip(snapshot, second.parameters())]
    assert any(changed)
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def test_left_to_right_baseline_program_and_log_prob_agree():
    model = LeftToRightLM(4, d_model=16, n_layers=1, n_heads=2, max_length=6)
    batch = collate([[0, 1, 2], [], [3, 3, 3, 3, 3, 3]], prompts=[[1], [], [2, 2]])
    trace = poutine.trace(model).get_trace(batch)
    assert abs(trace.log_prob_sum().item() - model.log_prob(batch).sum().item()) < 1e-5
    svi = SVI(model, lambda batch: None, pyro.optim.Adam({"lr": 1e-2}), loss=Trace_ELBO())
    assert math.isfinite(svi.step(batch))
    samples = model.sample(4)
    assert len(samples) == 4 and all(len(sample) <= 6 for sample in samples)
