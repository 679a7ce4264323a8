"""The pointer guide, proven: one-pass log q = the step-by-step (KV-cached) product; all L! orders sum to 1; the
sampler draws exp(log q); no step reads a later step, padding or another row; both objectives are unbiased with
it by enumeration; it trains, checkpoints, and goes through OrderMH and the ArviZ adapter."""
import itertools
import math

import pyro
import pytest
import torch

from conftest import roughen, tiny_model
from ip_pyro import collate
from ip_pyro.guides import PointerGuide, build_guide
from ip_pyro.infer import InsertionELBO
from test_elbo import assert_unbiased


def tiny_pointer(vocab_size=3, max_length=7, seed=4, scale=0.5, **sizes):
    guide = PointerGuide(vocab_size, d_model=8, n_layers=1, n_heads=2, max_length=max_length, rank=4, **sizes)
    return roughen(guide.to(torch.get_default_dtype()), scale, seed)


def all_orders(length):
    return torch.tensor(list(itertools.permutations(range(length))), dtype=torch.long).reshape(-1, length)


def test_a_fresh_pointer_guide_is_the_uniform_order():
    guide = PointerGuide(5, d_model=16, n_layers=1, n_heads=2, max_length=8)
    batch = collate([[0, 1, 2, 3], [4, 4]], vocab_size=5)
    q = guide.order_distribution(batch)
    log_q = q.log_prob(q.sample((3,)))
    assert torch.allclose(log_q, -torch.tensor([math.lgamma(5), math.lgamma(3)]).expand(3, 2), atol=1e-5)


@pytest.mark.parametrize("prompted", [False, True])
def test_one_pass_log_q_equals_the_step_by_step_product(prompted, float64):
    guide = tiny_pointer(stream_layers=2)
    prompts = [[1, 0], [2], [0, 0, 1]] if prompted else None
    batch = collate([[0, 1, 2, 1, 0], [2, 1], [1, 1, 0, 2]], prompts, vocab_size=3)
    q = guide.order_distribution(batch)
    orders = q.sample((4,))  # [4, 3, 5], mixed lengths and padding
    one_pass = q.log_prob(orders)
    assert torch.allclose(one_pass, q.log_prob_stepwise(orders), atol=1e-10)
    steps, all_next = q.log_prob_steps_and_next(orders)
    assert torch.allclose(steps.sum(-1), one_pass, atol=1e-12)
    live = torch.arange(5) < batch.lengths.unsqueeze(-1)  # each live step's distribution is normalised
    totals = all_next.logsumexp(-1)
    assert torch.allclose(totals[live.expand_as(totals)], torch.zeros(()), atol=1e-10)


def test_the_fused_stream_step_equals_the_blocks_own_forward(float64):
    """The sampler's stream step (``Block.step``, rotation folded into the projection, a fixed-capacity cache) and
    the path taken under training dropout (the blocks' forward, concatenated cache) read the same orders."""
    guide = tiny_pointer(stream_layers=2)
    batch = collate([[0, 1, 2, 1, 0], [2, 1], [1, 1, 0, 2]], vocab_size=3)
    q = guide.order_distribution(batch)
    orders = q.sample((3,))
    fused = q.log_prob_stepwise(orders)
    guide.pointer.dropout = 0.5  # the blocks were built without dropout: only the path changes
    guide.train()
    plain = q.log_prob_stepwise(orders)
    assert torch.allclose(fused, plain, atol=1e-12) and torch.allclose(fused, q.log_prob(orders), atol=1e-10)


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5])
def test_the_probabilities_of_all_orders_sum_to_one(length, float64):
    guide = tiny_pointer(scale=1.0)
    batch = collate([[(2 * i + 1) % 3 for i in range(length)]], [[2, 0]], vocab_size=3)
    orders = all_orders(length).unsqueeze(1)
    assert abs(guide.order_distribution(batch).log_prob(orders).logsumexp(0).item()) < 1e-10


def test_the_pointer_depends_on_the_order_not_only_the_set(float64):
    """Two orders with the same written set before step 2 give different next-position distributions: the family
    is wider than the set-Markov ones (which is what the stream is for)."""
    guide = tiny_pointer(scale=1.0)
    q = guide.order_distribution(collate([[0, 1, 2, 1]], vocab_size=3))
    all_next = q.all_next_index_log_probs(torch.tensor([[[0, 1, 2, 3]], [[1, 0, 2, 3]]]))
    assert (all_next[0, 0, 2] - all_next[1, 0, 2]).abs()[2:].max() > 1e-3
    with pytest.raises(ValueError, match="depends on the order written so far"):
        q.next_index_log_probs(torch.tensor([[True, True, False, False]]))


def test_the_sampler_draws_exp_log_q():
    """Chi-square over the 24 orders of a length-4 sequence (20,000 draws; the 0.999 quantile of chi2(23) is
    49.7): a wrong mask, normalisation or cache position in the sampler moves it far beyond."""
    torch.manual_seed(0)
    guide = tiny_pointer(scale=0.4, seed=7)
    q = guide.order_distribution(collate([[2, 0, 1, 1]], vocab_size=3))
    orders = all_orders(4)
    with torch.no_grad():
        expected = q.log_prob(orders.unsqueeze(1))[:, 0].exp() * 20000
        draws = q.sample((20000,))[:, 0]
    codes = (draws * torch.tensor([64, 16, 4, 1])).sum(-1)
    counts = torch.stack([(codes == (order * torch.tensor([64, 16, 4, 1])).sum()).sum() for order in orders])
    assert float(expected.min()) > 5 and float(expected.max() / expected.min()) > 3  # a far-from-uniform guide
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 49.7


def test_no_step_reads_a_later_step_padding_or_another_row(float64):
    guide = tiny_pointer(scale=1.0)
    batch = collate([[0, 1, 2, 1, 0], [2, 1, 1]], vocab_size=3)
    q = guide.order_distribution(batch)
    orders = torch.tensor([[[3, 1, 4, 0, 2], [2, 0, 1, 3, 4]]])
    base = q.all_next_index_log_probs(orders)
    later = torch.tensor([[[3, 1, 0, 2, 4], [2, 0, 1, 3, 4]]])  # the first row's suffix after step 1 changes
    changed = q.all_next_index_log_probs(later)
    assert torch.equal(base[:, :, :3], changed[:, :, :3])
    padded = collate([[0, 1, 2, 1, 0], [2, 1, 1]], vocab_size=3)
    padded.tokens[1, 3:] = 2  # what sits in the padding is never read
    assert torch.allclose(guide.order_distribution(padded).all_next_index_log_probs(orders), base, atol=0)
    alone = guide.order_distribution(collate([[2, 1, 1]], vocab_size=3))
    own = alone.all_next_index_log_probs(orders[:, 1:, :3])
    assert torch.allclose(own[0, 0, :3], base[0, 1, :3, :3], atol=1e-12)


def test_greedy_order_takes_the_most_probable_position_at_every_step(float64):
    guide = tiny_pointer(scale=1.5)
    q = guide.order_distribution(collate([[0, 1, 2, 1, 0], [2, 1]], vocab_size=3))
    greedy = q.greedy_order()
    all_next = q.all_next_index_log_probs(greedy)
    for row, length in enumerate([5, 2]):
        assert torch.equal(all_next[row, :length].argmax(-1), greedy[row, :length])


@pytest.mark.parametrize("particles,step_sampling,num_steps", [(2, "uniform", 1), (3, "all", 1), (2, "uniform", 2)])
@pytest.mark.parametrize("decoder", ["canvas", "causal"])
def test_the_elbo_is_unbiased_with_the_pointer_guide(decoder, particles, step_sampling, num_steps, float64):
    model, guide = tiny_model(vocab_size=3, max_length=6, decoder=decoder), tiny_pointer(max_length=6)
    elbo = InsertionELBO(num_particles=particles, step_sampling=step_sampling, num_steps=num_steps)
    assert_unbiased(model, guide, elbo, [2, 0, 1])


def test_rws_with_the_pointer_guide_matches_pyros_reweighted_wake_sleep(float64):
    from ip_pyro.infer import InsertionRWS

    model, guide = tiny_model(vocab_size=3, max_length=6), tiny_pointer(max_length=6)
    batch = collate([[2, 0, 1, 1]], vocab_size=3)
    pyro.set_rng_seed(3)
    ours = InsertionRWS(num_particles=4)
    orders = guide.order_distribution(batch).sample((4,))
    estimate = ours.estimate(model, guide, batch, orders=orders)
    log_weights = model.log_joint(batch, orders[:, 0]) - guide.order_distribution(batch).log_prob(orders)[:, 0]
    assert torch.allclose(estimate.iwae, log_weights.logsumexp(0) - math.log(4), atol=1e-10)


@pytest.mark.parametrize("loss", ["insertion", "rws", "tracegraph"])
def test_the_pointer_guide_trains_with_svi(loss):
    from ip_pyro.infer import InsertionRWS

    model, guide = tiny_model(), tiny_pointer(max_length=6)
    objective = {"insertion": InsertionELBO(2), "rws": InsertionRWS(3), "tracegraph": pyro.infer.TraceGraph_ELBO()}
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=objective[loss])
    batch = collate([[0, 1, 2, 1], [2], [], [1, 1, 0]], vocab_size=3)
    before = [p.detach().clone() for p in guide.pointer.parameters()]
    assert all(math.isfinite(svi.step(batch)) for _ in range(2))
    if loss != "tracegraph":  # the stream learns (its query starts at zero, the rest gets gradients through it)
        assert any(not torch.equal(a, b) for a, b in zip(before, guide.pointer.parameters()))


def test_registry_checkpoint_and_arviz(tmp_path):
    from ip_pyro import diagnostics
    from ip_pyro.checkpoint import load_checkpoint, save_checkpoint

    guide = build_guide("pointer", 3, d_model=8, n_layers=1, n_heads=2, max_length=6, stream_layers=1, rank=4)
    roughen(guide, 0.5, 5)
    model = tiny_model().float()
    batch = collate([[0, 1, 2, 1], [2, 0]], vocab_size=3)
    save_checkpoint(tmp_path / "c.pt", model, guide, step=1)
    _, loaded, _ = load_checkpoint(tmp_path / "c.pt")
    assert isinstance(loaded, PointerGuide) and loaded.config == guide.config
    orders = guide.order_distribution(batch).sample((3,))
    assert torch.equal(loaded.order_distribution(batch).log_prob(orders),
                       guide.order_distribution(batch).log_prob(orders))
    draws = diagnostics.order_draws(model, guide, batch, num_chains=2, num_draws=10)
    idata = diagnostics.to_inference_data(draws, batch)
    assert idata.posterior["insertion_step"].shape == (2, 10, 2, 4)
    assert 0.0 < diagnostics.guide_order_entropy(guide, batch) < 1.0


def test_order_mh_takes_independence_proposals_from_the_pointer_guide():
    """OrderMH is exact given a proposal's sampler and log q agree (its own test, tests/test_diagnostics.py); here
    the pointer guide's do (tests above), so this checks the plumbing: proposals drawn and accepted, permutations
    out, ArviZ in."""
    from ip_pyro import diagnostics
    from ip_pyro.infer import OrderMH

    model = tiny_model(vocab_size=3, max_length=6, scale=0.8)
    guide = tiny_pointer(max_length=6, scale=0.5).float()
    batch = collate([[0, 2, 1, 0]])
    pyro.set_rng_seed(1)
    kernel = OrderMH(model, guide, independence_prob=1.0)
    mcmc = pyro.infer.MCMC(kernel, num_samples=60, warmup_steps=10, num_chains=1, disable_progbar=True)
    mcmc.run(batch)
    assert kernel.acceptance_rates()["independence"] > 0.05
    steps = mcmc.get_samples()["insertion_step"]
    assert bool((steps.sort(-1).values == torch.arange(4)).all())
    assert "insertion_step" in diagnostics.mcmc_to_inference_data(mcmc, batch).posterior
