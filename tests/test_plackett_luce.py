import math

import pytest
import torch

from ip_pyro.distributions import FixedOrder, PlackettLuce
from ip_pyro.orders import identity_orders


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5, 6])
def test_probabilities_sum_to_one(length, float64):
    logits = torch.randn(3, length) * 2
    distribution = PlackettLuce(logits)
    support = distribution.enumerate_support()  # [L!, 3, L]
    assert support.shape == (math.factorial(length), 3, length)
    total = distribution.log_prob(support).logsumexp(0)
    assert torch.allclose(total, torch.zeros(3), atol=1e-10)


@pytest.mark.parametrize("length,padded", [(3, 5), (4, 6), (1, 3), (0, 2)])
def test_padding_adds_nothing(length, padded, float64):
    """A padded row gives the same probabilities as the unpadded one, whatever the padding logits are."""
    logits = torch.randn(length)
    plain = PlackettLuce(logits.unsqueeze(0))
    padded_logits = torch.cat([logits, torch.randn(padded - length) * 100]).unsqueeze(0)
    ragged = PlackettLuce(padded_logits, torch.tensor([length]))
    orders = plain.enumerate_support().squeeze(1) if length else torch.zeros(1, 0, dtype=torch.long)
    tails = torch.arange(length, padded).expand(orders.shape[0], padded - length)
    padded_orders = torch.cat([orders, tails], dim=1)
    assert torch.allclose(ragged.log_prob(padded_orders), plain.log_prob(orders), atol=1e-12)
    assert torch.allclose(ragged.log_prob(padded_orders).logsumexp(0), torch.zeros(()), atol=1e-10)
    samples = ragged.sample((50,))
    assert torch.equal(samples[..., length:], tails[:1].expand(50, 1, padded - length))


def test_gumbel_top_k_matches_log_prob():
    logits = torch.tensor([1.5, -0.5, 0.3, 0.0])
    distribution = PlackettLuce(logits)
    draws = distribution.sample((20000,))
    support = PlackettLuce(logits.unsqueeze(0)).enumerate_support().squeeze(1)
    exact = distribution.log_prob(support).exp()
    codes = (draws * torch.tensor([64, 16, 4, 1])).sum(-1)
    support_codes = (support * torch.tensor([64, 16, 4, 1])).sum(-1)
    empirical = (codes.unsqueeze(-1) == support_codes).float().mean(0)
    total_variation = 0.5 * (empirical - exact).abs().sum()
    assert total_variation < 0.02


@pytest.mark.parametrize("length", [1, 3, 7])
def test_equal_logits_are_uniform(length):
    distribution = PlackettLuce(torch.zeros(length))
    orders = distribution.sample((5,))
    assert torch.allclose(distribution.log_prob(orders), torch.full((5,), -math.lgamma(length + 1)), atol=1e-5)


def test_stable_for_huge_logits_and_long_sequences():
    logits = (torch.rand(2, 512) * 2 - 1) * 1e4
    logits.requires_grad_(True)
    distribution = PlackettLuce(logits, torch.tensor([512, 300]))
    orders = distribution.sample((3,))
    log_prob = distribution.log_prob(orders)
    assert torch.isfinite(log_prob).all()
    log_prob.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # an independent float64 reference: sum_t (w_t - log sum_{u >= t} exp(w_u)) with an explicit max shift
    for row, length in enumerate([512, 300]):
        chosen = logits.detach()[row].double()[orders[0, row, :length]].tolist()
        reference = 0.0
        for step in range(length):
            rest = chosen[step:]
            peak = max(rest)
            reference += chosen[step] - (peak + math.log(sum(math.exp(value - peak) for value in rest)))
        assert abs(log_prob[0, row].item() - reference) < 1e-3 * max(1.0, abs(reference))


def test_next_index_log_probs_chain_to_log_prob(float64):
    logits = torch.randn(2, 5)
    lengths = torch.tensor([5, 3])
    distribution = PlackettLuce(logits, lengths)
    orders = distribution.sample()
    total = torch.zeros(2)
    ranks = torch.empty_like(orders).scatter_(1, orders, torch.arange(5).expand(2, 5))
    for step in range(5):
        inserted = (ranks < step) & (torch.arange(5) < lengths.unsqueeze(-1))
        next_log_probs = distribution.next_index_log_probs(inserted)
        live = step < lengths
        assert torch.isinf(next_log_probs[inserted]).all()
        picked = next_log_probs.gather(1, orders[:, step: step + 1]).squeeze(-1)
        total = total + torch.where(live, picked, torch.zeros_like(picked))
        assert torch.allclose(next_log_probs[live].logsumexp(-1), torch.zeros(int(live.sum())), atol=1e-12)
    assert torch.allclose(total, distribution.log_prob(orders), atol=1e-12)
    # each step's probability from an explicit product: exp(w_chosen) / sum of exp(w) over the positions left
    steps = distribution.log_prob_steps(orders)
    for sequence in range(orders.shape[0]):
        length = int(lengths[sequence])
        scores = logits[sequence, :length].double()
        left = list(range(length))
        for step in range(orders.shape[-1]):
            if step >= length:
                assert steps[sequence, step] == 0
                continue
            chosen = int(orders[sequence, step])
            expected = scores[chosen].exp() / scores[left].exp().sum()
            assert abs(steps[sequence, step].exp().item() - expected.item()) < 1e-10
            left.remove(chosen)


def test_next_index_accepts_particle_major_rows():
    distribution = PlackettLuce(torch.randn(3, 4))
    inserted = torch.zeros(6, 4, dtype=torch.bool)
    inserted[4, 1] = True
    result = distribution.next_index_log_probs(inserted)
    assert result.shape == (6, 4)
    assert torch.allclose(result[0], result[3]) and torch.isinf(result[4, 1])


def test_fixed_order_is_a_point_mass():
    lengths = torch.tensor([4, 2])
    orders = identity_orders(lengths, 4)
    distribution = FixedOrder(orders, lengths)
    assert torch.equal(distribution.sample((2,)), orders.expand(2, 2, 4))
    assert distribution.log_prob(orders).tolist() == [0.0, 0.0]
    swapped = orders.clone()
    swapped[0, :2] = torch.tensor([1, 0])
    assert distribution.log_prob(swapped)[0] == -math.inf
    inserted = torch.tensor([[True, True, False, False], [True, False, False, False]])
    next_log_probs = distribution.next_index_log_probs(inserted)
    assert next_log_probs[0].tolist() == [-math.inf, -math.inf, 0.0, -math.inf]
    assert next_log_probs[1].tolist() == [-math.inf, 0.0, -math.inf, -math.inf]


def test_argument_validation():
    with pytest.raises(ValueError, match="finite"):
        PlackettLuce(torch.tensor([0.0, math.inf]))
    with pytest.raises(ValueError, match="lengths must be integers"):
        PlackettLuce(torch.zeros(2, 3), torch.tensor([4, 1]))
    with pytest.raises(ValueError, match="enumeration is limited"):
        PlackettLuce(torch.zeros(9)).enumerate_support()
    with pytest.raises(ValueError, match="full length"):
        PlackettLuce(torch.zeros(2, 3), torch.tensor([3, 2])).enumerate_support()
    with pytest.raises(ValueError):
        PlackettLuce(torch.zeros(3), validate_args=True).log_prob(torch.tensor([0, 0, 1]))
