"""Numerics without traps and bad input refused, not absorbed: extreme logits in both terminations, given steps
that are out of range or repeated, padding that breaks the conventions, and tables sized by true lengths."""
import math

import pytest
import torch

from conftest import tiny_model, tiny_pl_guide
from ip_pyro import Batch, collate
from ip_pyro.distributions import PlackettLuce, _very_negative
from ip_pyro.infer import InsertionELBO, InsertionRWS, exact_log_likelihood, subset_messages


@pytest.mark.parametrize("termination", ["stop", "eos"])
@pytest.mark.parametrize("bias", [-30.0, 30.0])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_extreme_termination_logits_keep_loss_and_gradients_finite(termination, bias, precision):
    model = tiny_model(vocab_size=3, max_length=6, scale=0.1, termination=termination)
    guide = tiny_pl_guide(vocab_size=3, max_length=6, scale=0.1)
    with torch.no_grad():
        if termination == "eos":
            model.network.token_head.bias[3] = bias  # the end token's logit
        else:
            model.network.stop_head.bias.fill_(bias)
    batch = collate([[0, 1, 2], [2], [], [1, 1, 0, 2]])
    for objective in (InsertionELBO(2), InsertionELBO(2, step_sampling="all"), InsertionRWS(2)):
        model.zero_grad()
        guide.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = objective.differentiable_loss(model, guide, batch)
        loss.backward()
        assert torch.isfinite(loss), (type(objective).__name__, loss)
        bad = [name for name, p in list(model.named_parameters()) + list(guide.named_parameters())
               if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, bad


def test_log1mexp_is_finite_with_finite_gradients_near_zero():
    from ip_pyro.models.insertion_steps import _log1mexp

    log_p = torch.tensor([-1e-9, -3e-8, -1e-3, -0.69, -0.7, -5.0, -80.0, 0.0], requires_grad=True)
    value = _log1mexp(log_p)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(log_p.grad).all()
    exact = torch.log(-torch.expm1(log_p.detach()[:-1].double()))
    assert torch.allclose(value[:-1].double(), exact, rtol=1e-5)


@pytest.mark.parametrize("steps,match", [
    (torch.tensor([4]), "0..L"),  # L = 3: steps are 0..3
    (torch.tensor([-1]), "0..L"),
    (torch.tensor([[1], [1]]), "distinct"),
    (torch.tensor([0.5]), "integers"),
])
def test_elbo_refuses_given_steps_out_of_range_or_repeated(steps, match):
    model, guide = tiny_model(), tiny_pl_guide()
    batch = collate([[0, 1, 2]])
    with pytest.raises(ValueError, match=match) as error:
        InsertionELBO(2, num_steps=steps.shape[0] if steps.dim() > 1 else 1).estimate(model, guide, batch,
                                                                                      steps=steps)
    assert "\n" not in str(error.value)


def test_elbo_ignores_only_the_steps_past_l_plus_one():
    """With K > L + 1 the entries after the first L + 1 are documented as ignored: any value there gives the same
    estimate."""
    model, guide = tiny_model(), tiny_pl_guide()
    batch = collate([[0, 1]])
    orders = torch.tensor([[[1, 0]], [[0, 1]]])
    elbo = InsertionELBO(2, num_steps=5)
    first = elbo.estimate(model, guide, batch, orders=orders, steps=torch.tensor([[0], [1], [2], [0], [0]]))
    second = elbo.estimate(model, guide, batch, orders=orders, steps=torch.tensor([[0], [1], [2], [9], [-3]]))
    assert torch.equal(first.elbo, second.elbo)


def test_padding_with_ids_outside_the_vocabulary_is_refused_in_one_line():
    model = tiny_model(vocab_size=3)
    tokens = torch.tensor([[0, 1, 7], [2, 5, 5]])  # padding holds 7 and 5 (>= V = 3)
    batch = Batch(tokens=tokens, lengths=torch.tensor([2, 1]))
    with pytest.raises(ValueError, match="the padding of batch.tokens holds ids outside 0..2; pad with 0"):
        model.step_log_probs(batch, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch.tokens holds ids outside the model.s 0..2; re-encode"):
        model.log_joint(Batch(tokens=torch.tensor([[0, 4]]), lengths=torch.tensor([2])), torch.tensor([[0, 1]]))


def test_plackett_luce_validation_refuses_orders_that_break_the_padding_convention():
    q = PlackettLuce(torch.zeros(2, 4), torch.tensor([2, 4]), validate_args=True)
    good = torch.tensor([[1, 0, 2, 3], [3, 1, 0, 2]])
    assert torch.allclose(q.log_prob(good), torch.tensor([-math.log(2), -math.log(24)]))
    with pytest.raises(ValueError, match="padding step t >= L at position t"):
        q.log_prob(torch.tensor([[2, 0, 1, 3], [3, 1, 0, 2]]))  # a padding position inserted first
    with pytest.raises(ValueError):
        q.log_prob(torch.tensor([[0, 0, 2, 3], [3, 1, 0, 2]]))  # not a permutation


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_masking_constant_lies_far_below_the_supported_logit_range(dtype):
    assert _very_negative(dtype) < -1e4 * 2
    assert math.isfinite(_very_negative(dtype))
    logits = torch.tensor([[1e4, -1e4, 0.0, 5.0]], dtype=dtype)
    q = PlackettLuce(logits, torch.tensor([3]))
    log_prob = q.log_prob(torch.tensor([[0, 2, 1, 3]]))
    assert torch.isfinite(log_prob).all()


def test_exact_likelihood_sizes_its_tables_by_the_true_lengths(float64):
    model = tiny_model(vocab_size=3, max_length=30)
    short = collate([[0, 1, 2], [2, 1]])
    padded = Batch(tokens=torch.nn.functional.pad(short.tokens, (0, 21)), lengths=short.lengths)  # width 24
    messages = subset_messages(model, padded)
    assert messages.go.shape == (2, 2 ** 3)  # not 2^24 per sequence
    assert torch.allclose(exact_log_likelihood(model, padded), exact_log_likelihood(model, short), atol=1e-10)
