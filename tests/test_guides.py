import itertools
import math

import pyro
import pytest
import torch
from pyro import poutine

from conftest import roughen, tiny_model
from ip_pyro.guides import BinaryTreeGuide, OutsideInGuide, RightToLeftGuide, SequentialGuide
from ip_pyro.guides.binary_tree import middle_out_order
from ip_pyro import collate
from ip_pyro.infer import InsertionELBO
from test_elbo import assert_unbiased


def tiny_sequential(seed=3):
    guide = SequentialGuide(3, d_model=8, n_layers=1, n_heads=2, max_length=6)
    return roughen(guide.to(torch.get_default_dtype()), 0.5, seed)


@pytest.mark.parametrize("length,expected", [(0, ()), (1, (0,)), (3, (1, 0, 2)), (5, (2, 0, 3, 1, 4)),
                                             (6, (2, 0, 4, 1, 3, 5)), (7, (3, 1, 5, 0, 2, 4, 6))])
def test_middle_out_order(length, expected):
    assert middle_out_order(length) == expected
    assert sorted(middle_out_order(length)) == list(range(length))


def test_binary_tree_guide_emits_the_middle_first():
    batch = collate([[5, 6, 7, 8, 9], [1, 2]], vocab_size=10)
    q = BinaryTreeGuide().order_distribution(batch)
    assert q.sample().tolist() == [[2, 0, 3, 1, 4], [0, 1, 2, 3, 4]]


def test_right_to_left_guide_inserts_at_the_front():
    batch = collate([[5, 6, 7, 8], [1, 2], []], vocab_size=10)
    q = RightToLeftGuide().order_distribution(batch)
    assert q.sample().tolist() == [[3, 2, 1, 0], [1, 0, 2, 3], [0, 1, 2, 3]]
    assert q.log_prob(q.sample()).tolist() == [0.0, 0.0, 0.0]
    from ip_pyro import orders_to_slots
    assert orders_to_slots(q.sample(), batch.lengths)[0].tolist() == [0, 0, 0, 0]


def test_outside_in_guide_alternates_between_the_ends():
    batch = collate([[5, 6, 7, 8, 9], [5, 6, 7, 8], [1, 2], [3], []], vocab_size=10)
    q = OutsideInGuide().order_distribution(batch)
    assert q.sample().tolist() == [[0, 4, 1, 3, 2], [0, 3, 1, 2, 4], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4],
                                   [0, 1, 2, 3, 4]]
    assert q.log_prob(q.sample()).tolist() == [0.0] * 5
    from ip_pyro import orders_to_slots
    assert orders_to_slots(q.sample(), batch.lengths)[0].tolist() == [0, 1, 1, 2, 2]


@pytest.mark.parametrize("length", [1, 3, 4])
def test_sequential_guide_is_a_normalised_distribution(length, float64):
    guide = tiny_sequential()
    batch = collate([[(2 * i + 1) % 3 for i in range(length)]])
    q = guide.order_distribution(batch)
    orders = torch.tensor(list(itertools.permutations(range(length)))).unsqueeze(1)
    assert abs(q.log_prob(orders).logsumexp(0).item()) < 1e-10
    chained = torch.zeros(orders.shape[0])
    for step in range(length):  # the next-index conditionals chain to the same log-probabilities
        ranks = torch.argsort(orders[:, 0], dim=-1)
        inserted = ranks < step
        chained += q.next_index_log_probs(inserted).gather(1, orders[:, 0, step: step + 1]).squeeze(-1)
    assert torch.allclose(chained, q.log_prob(orders)[:, 0], atol=1e-10)
    draws = q.sample((4000,))[:, 0]
    assert draws.shape == (4000, length) and bool((draws.sort(-1).values == torch.arange(length)).all())
    empirical = torch.stack([(draws == order).all(-1).double().mean() for order in orders[:, 0]])
    assert 0.5 * (empirical - q.log_prob(orders)[:, 0].exp()).abs().sum() < 0.05


@pytest.mark.parametrize("particles,step_sampling", [(2, "uniform"), (3, "all")])
def test_estimator_is_unbiased_with_the_sequential_guide(particles, step_sampling, float64):
    model, guide = tiny_model(vocab_size=3, max_length=6), tiny_sequential()
    assert_unbiased(model, guide, InsertionELBO(num_particles=particles, step_sampling=step_sampling), [2, 0, 1])


@pytest.mark.parametrize("guide_factory", [BinaryTreeGuide, RightToLeftGuide, OutsideInGuide, tiny_sequential])
def test_new_guides_train_with_svi_and_tracegraph(guide_factory):
    model = tiny_model()
    guide = guide_factory()
    batch = collate([[0, 1, 2, 1], [2], [], [1, 1, 0]])
    for loss in (InsertionELBO(2), pyro.infer.TraceGraph_ELBO()):
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=loss)
        assert math.isfinite(svi.step(batch))
    trace = poutine.trace(guide).get_trace(batch)
    assert trace.nodes["order"]["infer"]["is_auxiliary"]
