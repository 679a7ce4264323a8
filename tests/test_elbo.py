"""The estimator, proven by enumeration: its expectation over every particle draw and every sampled step equals
the exact ELBO, and its expected gradient equals the exact ELBO gradient (model and guide parameters)."""
import itertools
import math

import pytest
import torch

from conftest import DECODERS, tiny_model, tiny_pl_guide
from ip_pyro.guides import LeftToRightGuide, UniformOrderGuide
from ip_pyro import Batch, collate
from ip_pyro.infer import InsertionELBO, exact_log_likelihood, importance_log_likelihood


def padded_batch(sequence, padding, copies):
    width = len(sequence) + padding
    tokens = torch.zeros(copies, width, dtype=torch.long)
    tokens[:, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return Batch(tokens=tokens, lengths=torch.full((copies,), len(sequence)))


def all_orders(length, padding):
    perms = torch.tensor(list(itertools.permutations(range(length))), dtype=torch.long)
    perms = perms.reshape(math.factorial(length), length)
    tails = torch.arange(length, length + padding).expand(perms.shape[0], padding)
    return torch.cat([perms, tails], dim=1)


def exact_elbo(model, guide, sequence, padding=0):
    orders = all_orders(len(sequence), padding)
    batch = padded_batch(sequence, padding, 1)
    log_q = guide.order_distribution(batch).log_prob(orders.unsqueeze(1)).squeeze(1)
    log_joint = model.log_joint(batch, orders)
    return (log_q.exp() * (log_joint - log_q)).sum()


def expected_estimator(elbo, model, guide, sequence, padding=0):
    """E[estimate] and the E[surrogate] whose gradient is the expected gradient estimate."""
    length, particles = len(sequence), elbo.num_particles
    orders = all_orders(length, padding)
    log_q = guide.order_distribution(padded_batch(sequence, padding, 1)).log_prob(orders.unsqueeze(1)).squeeze(1)
    combos = torch.tensor(list(itertools.product(range(len(orders)), repeat=particles)))  # [C, M]
    probability = log_q.detach()[combos].sum(-1).exp()  # [C]
    if elbo.step_sampling == "uniform":  # every K-subset of the steps 0..L is equally likely
        subsets = torch.tensor(list(itertools.combinations(range(length + 1), min(elbo.num_steps, length + 1))))
        subsets = torch.cat([subsets, subsets[:, :1].expand(-1, max(elbo.num_steps - length - 1, 0))], 1)
        steps = subsets.repeat(len(combos), 1).T  # [K, rows (combo, subset)]
        combos = combos.repeat_interleave(len(subsets), 0)
        probability = probability.repeat_interleave(len(subsets), 0) / len(subsets)
    else:
        steps = None
    particle_orders = orders[combos].permute(1, 0, 2)  # [M, rows, L]
    batch = padded_batch(sequence, padding, len(combos))
    estimate = elbo.estimate(model, guide, batch, orders=particle_orders, steps=steps)
    return (probability * estimate.elbo).sum(), (probability * estimate.surrogate).sum()


def gradients(value, parameters):
    return torch.cat([grad.flatten() for grad in torch.autograd.grad(value, parameters)])


def assert_unbiased(model, guide, elbo, sequence, padding=1) -> None:
    """The estimator's expectation over every draw equals the exact ELBO, in value and in gradient (1e-6)."""
    parameters = list(model.parameters()) + list(guide.parameters())
    exact = exact_elbo(model, guide, sequence, padding=padding)
    value, surrogate = expected_estimator(elbo, model, guide, sequence, padding=padding)
    assert abs(value.item() - exact.item()) < 1e-9
    exact_grad = gradients(exact, parameters)
    assert ((gradients(surrogate, parameters) - exact_grad).norm() / exact_grad.norm()) < 1e-6


CASES = [  # (particles, step_sampling, closed_form, sequence, padding, steps scored per order)
    (2, "uniform", True, [0, 2, 1, 2], 0, 1),
    (2, "all", True, [1, 0, 2, 2], 1, 1),
    (3, "uniform", True, [2, 0, 1], 2, 1),
    (3, "all", True, [0, 0, 1], 0, 1),
    (2, "uniform", False, [2, 1, 0], 1, 1),
    (1, "uniform", True, [1, 2, 0], 0, 1),
    (2, "uniform", True, [0, 2, 1, 2], 0, 2),  # K random prefixes per order
    (2, "uniform", True, [1, 0, 2], 1, 3),
    (1, "uniform", True, [2, 1, 1], 0, 3),
    (2, "uniform", True, [1, 2], 1, 5),  # K > L + 1: every step, weight 1
]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("particles,step_sampling,closed_form,sequence,padding,num_steps", CASES)
def test_estimator_is_unbiased_for_value_and_gradient(decoder, particles, step_sampling, closed_form, sequence, padding,
                                                      num_steps, float64):
    model = tiny_model(decoder=decoder, vocab_size=3, max_length=6)
    guide = tiny_pl_guide(vocab_size=3, max_length=6)
    elbo = InsertionELBO(num_particles=particles, step_sampling=step_sampling, closed_form=closed_form,
                         num_steps=num_steps)
    parameters = list(model.parameters()) + list(guide.parameters())
    exact = exact_elbo(model, guide, sequence, padding)
    expected_value, expected_surrogate = expected_estimator(elbo, model, guide, sequence, padding)
    assert abs(expected_value.item() - exact.item()) < 1e-9 * max(1.0, abs(exact.item()))
    assert abs(expected_surrogate.item() - exact.item()) < 1e-9 * max(1.0, abs(exact.item()))
    exact_grad = gradients(exact, parameters)
    estimated_grad = gradients(expected_surrogate, parameters)
    relative_error = (estimated_grad - exact_grad).norm() / exact_grad.norm()
    assert relative_error < 1e-6
    guide_part = slice(sum(p.numel() for p in model.parameters()), None)
    assert exact_grad[guide_part].norm() > 1e-3  # the guide really is being tested


@pytest.mark.parametrize("guide_class", [UniformOrderGuide, LeftToRightGuide])
def test_parameter_free_guides_give_the_exact_elbo_in_expectation(guide_class, float64):
    model = tiny_model(vocab_size=3, max_length=6)
    guide = guide_class()
    sequence = [2, 0, 1, 1]
    elbo = InsertionELBO(num_particles=2)
    value, surrogate = expected_estimator(elbo, model, guide, sequence)
    if guide_class is LeftToRightGuide:
        exact = model.log_joint(padded_batch(sequence, 0, 1), torch.arange(4).unsqueeze(0))[0]
    else:
        exact = exact_elbo(model, guide, sequence)
    assert abs(value.item() - exact.item()) < 1e-9
    model_parameters = list(model.parameters())
    assert (gradients(surrogate, model_parameters) - gradients(exact, model_parameters)).norm() < 1e-8


def test_all_steps_mode_is_exact_for_a_fixed_order(float64):
    model = tiny_model()
    batch = collate([[0, 1, 2], [], [2, 2]])
    estimate = InsertionELBO(num_particles=1, step_sampling="all").estimate(model, LeftToRightGuide(), batch)
    expected = model.log_joint(batch, torch.arange(3).expand(3, 3).clone())
    assert torch.allclose(estimate.elbo, expected, atol=1e-10)


@pytest.mark.parametrize("decoder", DECODERS)
def test_elbo_below_likelihood_and_iwae_close(decoder, float64):
    model = tiny_model(decoder=decoder, vocab_size=3, max_length=6)
    guide = tiny_pl_guide(vocab_size=3, max_length=6)
    for sequence in ([0, 1, 2, 2, 1], [2, 2, 0], [1]):
        batch = collate([sequence])
        exact = exact_log_likelihood(model, batch)[0]
        elbo = exact_elbo(model, guide, sequence)
        assert elbo.item() <= exact.item() + 1e-12
        iwae = importance_log_likelihood(model, guide, batch, num_samples=2000, chunk_size=500)[0]
        assert iwae.item() <= exact.item() + 0.05
        assert abs(iwae.item() - exact.item()) < 0.05


def test_loss_is_minus_the_summed_elbo_estimate(float64):
    model, guide = tiny_model(), tiny_pl_guide()
    batch = collate([[0, 1], [2, 2, 1]])
    elbo = InsertionELBO(num_particles=4, step_sampling="all")
    torch.manual_seed(3)
    estimate = elbo.estimate(model, guide, batch)
    torch.manual_seed(3)
    assert abs(elbo.loss(model, guide, batch) + estimate.elbo.sum().item()) < 1e-10
    torch.manual_seed(3)
    assert abs(elbo.differentiable_loss(model, guide, batch).item() + estimate.elbo.sum().item()) < 1e-10


def test_drawn_steps_are_distinct_and_within_each_length():
    elbo = InsertionELBO(num_particles=1, num_steps=3)
    lengths = torch.tensor([0, 1, 2, 5, 7])
    steps = elbo._draw_steps(lengths, 7)
    assert steps.shape == (3, 5)
    for column, length in enumerate(lengths.tolist()):
        live = steps[: min(3, length + 1), column].tolist()
        assert len(set(live)) == len(live) and max(live) <= length


@pytest.mark.parametrize("beta", [0.0, 0.4])
def test_entropy_weight_gives_an_unbiased_estimate_of_the_weighted_objective(beta, float64):
    """E_q[log p(x, sigma) - beta log q(sigma)]: value and gradient, by enumeration (beta = 1 is the ELBO)."""
    model = tiny_model(vocab_size=3, max_length=6)
    guide = tiny_pl_guide(vocab_size=3, max_length=6)
    sequence = [0, 2, 1]
    elbo = InsertionELBO(num_particles=2, entropy_weight=beta)
    orders = all_orders(len(sequence), 0)
    batch = padded_batch(sequence, 0, 1)
    log_q = guide.order_distribution(batch).log_prob(orders.unsqueeze(1)).squeeze(1)
    exact = (log_q.exp() * (model.log_joint(batch, orders) - beta * log_q)).sum()
    expected_value, expected_surrogate = expected_estimator(elbo, model, guide, sequence)
    assert abs(expected_value.item() - exact.item()) < 1e-9 * max(1.0, abs(exact.item()))
    parameters = list(model.parameters()) + list(guide.parameters())
    exact_grad, estimated_grad = gradients(exact, parameters), gradients(expected_surrogate, parameters)
    assert (estimated_grad - exact_grad).norm() / exact_grad.norm() < 1e-6
    with pytest.raises(ValueError, match="entropy_weight=2"):
        InsertionELBO(entropy_weight=2)
