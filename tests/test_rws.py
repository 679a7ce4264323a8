"""InsertionRWS, proven by enumeration over every K-tuple of orders (and every step where steps are sampled):
the expected estimate is E[IWAE_K], the expected model gradient is grad E[IWAE_K] in both gradient modes, the expected
guide gradient is the brute-force wake-phi (or ELBO) gradient; IWAE_K <= log p(x), rising with K; and the losses and
gradients equal those of Pyro's own ReweightedWakeSleep on the same model, guide and orders."""
import itertools
import math

import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, ReweightedWakeSleep

from conftest import DECODERS, tiny_model, tiny_pl_guide
from ip_pyro.guides import LeftToRightGuide, UniformOrderGuide
from ip_pyro import collate
from ip_pyro.infer import InsertionRWS, exact_log_likelihood
from test_elbo import all_orders, exact_elbo, padded_batch


def gradients(value, parameters):
    grads = torch.autograd.grad(value, parameters, retain_graph=True, allow_unused=True)
    return torch.cat([torch.zeros_like(p).flatten() if g is None else g.flatten() for g, p in zip(grads, parameters)])


def enumerated(model, guide, sequence, padding=0):
    """All orders ``[O, L]`` with ``log q`` ``[O]`` and ``log p(x, sigma)`` ``[O]`` (both with gradients)."""
    orders = all_orders(len(sequence), padding)
    batch = padded_batch(sequence, padding, 1)
    log_q = guide.order_distribution(batch).log_prob(orders.unsqueeze(1)).squeeze(1)
    return orders, log_q, model.log_joint(batch, orders)


def brute_force(model, guide, sequence, particles, padding=0):
    """``E[IWAE_K]`` (gradient: the model's IWAE gradient) and the wake-phi objective whose gradient is
    ``E[sum_k w~_k grad log q_k]``, summed over every K-tuple."""
    orders, log_q, log_p = enumerated(model, guide, sequence, padding)
    tuples = torch.tensor(list(itertools.product(range(len(orders)), repeat=particles)))  # [C, K]
    probability = log_q.detach()[tuples].sum(-1).exp()
    log_w = log_p[tuples] - log_q.detach()[tuples]  # [C, K]
    iwae = log_w.logsumexp(-1) - math.log(particles)
    normalised = log_w.detach().softmax(-1)
    wake = (normalised * log_q[tuples]).sum(-1)
    return (probability * iwae).sum(), (probability * wake).sum()


def expected_estimator(objective, model, guide, sequence, padding=0):
    """``E[estimate]`` and ``E[surrogate]`` over every K-tuple of orders, every step set per order (``"steps"``)
    and every ELBO step (``guide_update="elbo"``)."""
    particles, length = objective.num_particles, len(sequence)
    orders, log_q, _ = enumerated(model, guide, sequence, padding)
    tuples = torch.tensor(list(itertools.product(range(len(orders)), repeat=particles)))
    probability = log_q.detach()[tuples].sum(-1).exp()
    steps = guide_steps = None
    if objective.model_gradient == "steps":  # each order its own uniform subset of min(S, L + 1) steps
        count = min(objective.num_steps, length + 1)
        subsets = torch.tensor(list(itertools.combinations(range(length + 1), count)))  # [U, count]
        subsets = torch.cat([subsets, subsets[:, :1].expand(-1, objective.num_steps - count)], 1)
        choice = torch.tensor(list(itertools.product(range(len(subsets)), repeat=particles)))  # [D, K]
        steps = subsets[choice].permute(2, 1, 0)  # [S, K, D]
        steps = steps.repeat(1, 1, len(tuples))  # rows (tuple, choice), choice fastest
        tuples = tuples.repeat_interleave(len(choice), 0)
        probability = probability.repeat_interleave(len(choice), 0) / len(choice)
    if objective.guide_update == "elbo":
        rows = len(tuples)
        guide_steps = torch.arange(length + 1).repeat(rows)
        tuples = tuples.repeat_interleave(length + 1, 0)
        probability = probability.repeat_interleave(length + 1, 0) / (length + 1)
        if steps is not None:
            steps = steps.repeat_interleave(length + 1, 2)
    batch = padded_batch(sequence, padding, len(tuples))
    estimate = objective.estimate(model, guide, batch, orders=orders[tuples].permute(1, 0, 2), steps=steps,
                                  guide_steps=guide_steps)
    return (probability * estimate.iwae).sum(), (probability * estimate.surrogate).sum()


CASES = [  # (K, model_gradient, steps per order, guide_update, sequence, padding)
    (2, "full", 1, "wake", [0, 2, 1], 0),
    (3, "full", 1, "wake", [1, 0, 2], 1),
    (2, "full", 1, "wake", [2, 1, 0, 2], 0),
    (2, "steps", 1, "wake", [0, 2, 1], 0),
    (2, "steps", 1, "wake", [1, 1, 0], 2),
    (2, "steps", 2, "wake", [2, 0, 1], 0),
    (3, "steps", 1, "wake", [0, 1], 1),
    (2, "steps", 4, "wake", [1, 2], 0),  # S > L + 1: every step, weight 1
    (2, "full", 1, "none", [2, 0, 1], 0),
]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("particles,model_gradient,num_steps,guide_update,sequence,padding", CASES)
def test_estimate_and_gradients_match_enumeration(decoder, particles, model_gradient, num_steps, guide_update, sequence,
                                                  padding, float64):
    model = tiny_model(decoder=decoder, vocab_size=3, max_length=6)
    guide = tiny_pl_guide(vocab_size=3, max_length=6)
    objective = InsertionRWS(particles, guide_update=guide_update, model_gradient=model_gradient,
                             num_steps=num_steps)
    exact_iwae, exact_wake = brute_force(model, guide, sequence, particles, padding)
    value, surrogate = expected_estimator(objective, model, guide, sequence, padding)
    scale = max(1.0, abs(exact_iwae.item()))
    assert abs(value.item() - exact_iwae.item()) < 1e-9 * scale
    assert abs(surrogate.item() - exact_iwae.item()) < 1e-9 * scale
    model_parameters, guide_parameters = list(model.parameters()), list(guide.parameters())
    exact_model = gradients(exact_iwae, model_parameters)
    assert (gradients(surrogate, model_parameters) - exact_model).norm() / exact_model.norm() < 1e-6
    guide_gradient = gradients(surrogate, guide_parameters)
    if guide_update == "none":
        assert guide_gradient.norm() == 0
    else:
        exact_guide = gradients(exact_wake, guide_parameters)
        assert exact_guide.norm() > 1e-3  # the guide really is being tested
        assert (guide_gradient - exact_guide).norm() / exact_guide.norm() < 1e-6


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("model_gradient", ["full", "steps"])
def test_elbo_guide_update_gives_the_exact_elbo_gradient(model_gradient, decoder, float64):
    model = tiny_model(vocab_size=3, max_length=6, decoder=decoder)
    guide = tiny_pl_guide(vocab_size=3, max_length=6)
    sequence = [2, 0, 1]
    objective = InsertionRWS(2, guide_update="elbo", model_gradient=model_gradient)
    exact_iwae, _ = brute_force(model, guide, sequence, 2)
    value, surrogate = expected_estimator(objective, model, guide, sequence)
    assert abs(value.item() - exact_iwae.item()) < 1e-9 * max(1.0, abs(exact_iwae.item()))
    guide_parameters = list(guide.parameters())
    exact_guide = gradients(exact_elbo(model, guide, sequence), guide_parameters)
    assert (gradients(surrogate, guide_parameters) - exact_guide).norm() / exact_guide.norm() < 1e-6
    model_parameters = list(model.parameters())
    exact_model = gradients(exact_iwae, model_parameters)
    assert (gradients(surrogate, model_parameters) - exact_model).norm() / exact_model.norm() < 1e-6


@pytest.mark.parametrize("decoder", DECODERS)
def test_iwae_bound_is_below_log_likelihood_and_rises_with_particles(decoder, float64):
    model = tiny_model(decoder=decoder, vocab_size=3, max_length=6)
    guide = tiny_pl_guide(vocab_size=3, max_length=6)
    sequence = [1, 0, 2]
    exact = exact_log_likelihood(model, collate([sequence]))[0].item()
    bounds = [exact_elbo(model, guide, sequence).item()]  # K = 1 is the ELBO
    for particles in (2, 3):
        value, _ = expected_estimator(InsertionRWS(particles), model, guide, sequence)
        bounds.append(value.item())
    assert all(low < high for low, high in zip(bounds, bounds[1:]))  # strictly: this guide is not the posterior
    assert bounds[-1] <= exact + 1e-12


@pytest.mark.parametrize("guide_class", [UniformOrderGuide, LeftToRightGuide])
def test_parameter_free_guides_give_model_only_iwae(guide_class, float64):
    model = tiny_model(vocab_size=3, max_length=6)
    guide = guide_class()
    sequence = [2, 0, 1]
    objective = InsertionRWS(2)
    value, surrogate = expected_estimator(objective, model, guide, sequence) if guide_class is UniformOrderGuide \
        else (None, None)
    if guide_class is UniformOrderGuide:
        exact, _ = brute_force(model, guide, sequence, 2)
        assert abs(value.item() - exact.item()) < 1e-9
    else:  # a point mass: every particle is left to right and IWAE_K = log p(x, l2r)
        batch = padded_batch(sequence, 0, 1)
        estimate = objective.estimate(model, guide, batch)
        exact = model.log_joint(batch, torch.arange(3).unsqueeze(0))
        assert torch.allclose(estimate.iwae, exact, atol=1e-10)
        surrogate = estimate.surrogate.sum()
    model_parameters = list(model.parameters())
    assert (gradients(surrogate, model_parameters) - gradients(exact.sum(), model_parameters)).norm() < 1e-8


class ReplayOrders:
    """A guide that proposes the given orders in turn (one per call), so Pyro's RWS sees the same particles."""

    def __init__(self, guide, orders):
        self.guide, self.orders, self.calls = guide, orders, 0

    def __call__(self, batch):
        order = self.orders[self.calls % len(self.orders)]
        self.calls += 1
        return poutine.condition(self.guide, data={"order": order})(batch)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("sequence,particles", [([0, 2, 1], 2), ([1, 1, 0, 2], 4), ([2], 3)])
def test_losses_and_gradients_equal_pyros_reweighted_wake_sleep(decoder, sequence, particles, float64):
    model = tiny_model(decoder=decoder, vocab_size=3, max_length=6)
    guide = tiny_pl_guide(vocab_size=3, max_length=6)
    batch = collate([sequence])
    torch.manual_seed(5)
    orders = guide.order_distribution(batch).sample((particles,))  # [K, 1, L]
    parameters = list(model.parameters()) + list(guide.parameters())

    pyro_rws = ReweightedWakeSleep(num_particles=particles, vectorize_particles=False)
    theta_loss, phi_loss = pyro_rws._loss(model, ReplayOrders(guide, orders), (batch,), {})
    pyro_grad = gradients(theta_loss + phi_loss, parameters)

    ours = InsertionRWS(particles)
    estimate = ours.estimate(model, guide, batch, orders=orders)
    log_q = guide.order_distribution(batch).log_prob(orders)
    our_phi_loss = -(estimate.log_weights.softmax(0) * log_q).sum()
    assert abs(-estimate.iwae.sum().item() - theta_loss.item()) < 1e-5
    assert abs(our_phi_loss.item() - phi_loss.item()) < 1e-5
    our_grad = gradients(-estimate.surrogate.sum(), parameters)
    assert (our_grad - pyro_grad).norm() / pyro_grad.norm() < 1e-5


def test_svi_step_returns_one_float_and_trains():
    model = tiny_model(vocab_size=3, max_length=6, scale=0.1)
    guide = tiny_pl_guide(vocab_size=3, max_length=6, scale=0.1)
    import pyro.optim
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=InsertionRWS(3, model_gradient="steps"))
    batch = collate([[0, 1, 2], [2, 1], [1]])
    before = [p.detach().clone() for p in guide.parameters()]
    losses = [svi.step(batch) for _ in range(3)]
    assert all(isinstance(loss, float) and math.isfinite(loss) for loss in losses)
    assert any((p.detach() != b).any() for p, b in zip(guide.parameters(), before))
    assert isinstance(svi.evaluate_loss(batch), float)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_particles=1), "at least 2 orders"),
    (dict(num_particles=2, guide_update="sleep"), "guide_update='sleep'"),
    (dict(num_particles=2, model_gradient="half"), "model_gradient='half'"),
    (dict(num_particles=2, num_steps=0), "num_steps=0"),
])
def test_bad_settings_are_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as error:
        InsertionRWS(**kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("steps,match", [
    (torch.tensor([[[4]], [[0]]]).reshape(1, 2, 1), "0..L"),
    (torch.tensor([[[1], [2]], [[1], [0]]]), "distinct"),
])
def test_bad_steps_are_refused_not_clamped(steps, match):
    model, guide = tiny_model(), tiny_pl_guide()
    batch = collate([[0, 1, 2]])
    objective = InsertionRWS(2, model_gradient="steps", num_steps=steps.shape[0])
    with pytest.raises(ValueError, match=match):
        objective.estimate(model, guide, batch, steps=steps)
