"""The insertion-causal decoder (``decoder="causal"``): one pass = the KV cache = the Pyro program, no leakage of
later insertions or of final positions, an exact sampler (chi-square), and the inference built on ``log_joint``.

(The proofs shared with the canvas decoder -- normalisation, program = ``log_joint``, unbiased ELBO in both step
modes, RWS = enumeration = Pyro's ReweightedWakeSleep, sampler vs exact likelihood -- run for both decoders in
test_model.py, test_elbo.py and test_rws.py.)
"""
import collections
import itertools
import math

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, TraceGraph_ELBO
from scipy import stats

from conftest import tiny_model, tiny_pl_guide
from ip_pyro import collate
from ip_pyro.checkpoint import load_checkpoint, save_checkpoint
from ip_pyro.distributions import PlackettLuce
from ip_pyro.guides import ExactPosteriorGuide, UniformOrderGuide
from ip_pyro.infer import (InsertionELBO, OrderMH, enumerated_log_likelihood, exact_log_likelihood,
                           importance_log_likelihood, subset_messages)
from ip_pyro.models import InsertionProcess
from ip_pyro.networks.insertion_causal import offset_buckets
from ip_pyro.orders import orders_to_slots


def causal_model(**kwargs):
    return tiny_model(decoder="causal", **kwargs).eval()


def one_pass_scores(model, tokens, keys, prompt=None):
    """Stop, slot and every gap's token logits of every step of the written histories ``tokens`` ``[N, S]``."""
    network = model.network
    prompt_lengths = None if prompt is None else torch.tensor([len(p) for p in prompt])
    prompt_ids = None if prompt is None else torch.tensor(prompt)
    cache = network.encode_prompt(prompt_ids, prompt_lengths, rows=tokens.shape[0])
    history = network.encode(tokens, keys, cache)
    stop, slots = network.step_logits(history)
    steps = tokens.shape[1] + 1
    pair_steps = torch.arange(steps).repeat_interleave(steps).expand(tokens.shape[0], -1)
    pair_slots = torch.minimum(torch.arange(steps).repeat(steps), torch.arange(steps).repeat_interleave(steps))
    token = network.token_logits(history, pair_steps, pair_slots.expand(tokens.shape[0], -1))
    return stop, slots, token.view(tokens.shape[0], steps, steps, -1)


@pytest.mark.parametrize("termination", ["stop", "eos"])
@pytest.mark.parametrize("with_prompt", [False, True])
def test_one_pass_log_joint_equals_the_kv_cached_program_to_1e9(termination, with_prompt, float64):
    """log_joint (one pass) = the Pyro program's log-probability of the same trajectory (which decodes with the KV
    cache), per sequence, with mixed lengths, padding, prompts and both terminations; and = the sum of
    all_step_log_probs' chosen terms."""
    from test_model import conditioned_trace_log_prob

    model = causal_model(vocab_size=4, max_length=7, termination=termination)
    sequences = [[0, 3, 1, 1], [2], [], [3, 3, 0, 1, 2, 0, 1], [1, 2, 0]]
    prompts = [[1, 2], [], [3], [0, 0, 0], [2]] if with_prompt else None
    batch = collate(sequences, prompts)
    orders = PlackettLuce(torch.randn(5, 7), batch.lengths).sample()
    joint = model.log_joint(batch, orders)
    every = model.all_step_log_probs(batch, orders)
    for row in range(5):
        expected, _ = conditioned_trace_log_prob(model, batch[row], orders[row: row + 1])
        assert abs(joint[row].item() - expected.item()) < 1e-9
        length = int(batch.lengths[row])
        summed = sum(float(every.go[row, t] + every.insert[row, t, orders[row, t]]) for t in range(length))
        assert abs(summed + float(every.stop[row, length]) - joint[row].item()) < 1e-9
    assert abs(model.log_joint(batch, orders, chunk_size=2).sum().item() - joint.sum().item()) < 1e-9


@pytest.mark.parametrize("termination", ["stop", "eos"])
@pytest.mark.parametrize("with_prompt", [False, True])
@pytest.mark.parametrize("guide", ["pl", "l2r"])
def test_token_logits_at_the_read_gaps_only_equal_every_gap(termination, with_prompt, guide, monkeypatch, float64):
    """all_step_log_probs (and step_log_probs) with token logits only at the gaps a candidate goes into equal the
    plain path that computes them at every gap of every step, for every candidate position; a left-to-right
    order reads one gap per step, its last (where EOS goes), against the plain path's 36."""
    import ip_pyro.models.decoder_causal as causal

    model = causal_model(vocab_size=4, max_length=7, termination=termination)
    batch = collate([[0, 3, 1, 1], [2], [], [3, 3, 0, 1, 2, 0, 1], [1, 2, 0]],
                    [[1, 2], [], [3], [0, 0, 0], [2]] if with_prompt else None)
    steps = torch.arange(8).expand(5, 8).clamp(max=batch.lengths.unsqueeze(-1))
    if guide == "l2r":
        orders = torch.arange(7).expand(5, 7).clone()
        reads = causal.needed_gaps(orders, batch.lengths, steps, termination == "eos")
        assert reads.shape[1] == 7 + (termination == "eos")  # gap t at step t: the canvas's end, where EOS goes
    else:
        orders = PlackettLuce(torch.randn(5, 7), batch.lengths).sample()
    fast = model.all_step_log_probs(batch, orders)
    inserted = torch.zeros(5, 7, dtype=torch.bool).scatter(1, orders[:, :2], True) & (batch.lengths > 1)[:, None]
    inserted |= torch.zeros(5, 7, dtype=torch.bool).scatter(1, orders[:, :1], True) & (batch.lengths > 0)[:, None]
    one_step = model.step_log_probs(batch, inserted, orders=orders)
    every = torch.arange(8 * 8).expand(5, -1)
    monkeypatch.setattr(causal, "needed_gaps", lambda orders, lengths, steps, eos: every[:, :steps.shape[1] * 8])
    plain, plain_step = model.all_step_log_probs(batch, orders), model.step_log_probs(batch, inserted, orders=orders)
    for got, want in ((fast, plain), (one_step, plain_step)):
        for field in ("stop", "insert", "go"):
            assert torch.equal(getattr(got, field).isinf(), getattr(want, field).isinf())
            finite = getattr(want, field).isfinite()
            assert torch.allclose(getattr(got, field)[finite], getattr(want, field)[finite], atol=1e-12)


@pytest.mark.parametrize("gap_context", [1, 2, 3])
@pytest.mark.parametrize("termination", ["stop", "eos"])
@pytest.mark.parametrize("with_prompt", [False, True])
@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "no-grad buffers"])
def test_kv_cache_equals_the_one_pass_scores_at_every_step(termination, with_prompt, gap_context, grad, float64):
    """The cached scores at every step equal the one-pass scores: with autograd (states rebuilt each step) and
    without (the doubling buffers of item sides and key columns)."""
    torch.set_grad_enabled(grad)
    try:
        _kv_cache_against_one_pass(termination, with_prompt, gap_context)
    finally:
        torch.set_grad_enabled(True)


def _kv_cache_against_one_pass(termination, with_prompt, gap_context):
    model = causal_model(vocab_size=4, max_length=6, termination=termination, gap_context=gap_context)
    network = model.network
    orders = torch.tensor([[2, 0, 4, 1, 3], [0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    tokens = torch.tensor([[3, 1, 0, 0, 2], [1, 1, 1, 1, 1], [0, 2, 3, 1, 2]])
    slots = orders_to_slots(orders, torch.full((3,), 5))
    prompt = [[1, 2, 3], [0, 0, 0], [2, 1, 0]] if with_prompt else None
    stop, slot_logits, token_logits = one_pass_scores(model, tokens, orders, prompt)
    prompt_ids = None if prompt is None else torch.tensor(prompt)
    state = network.start(network.encode_prompt(prompt_ids, None if prompt is None else torch.full((3,), 3), rows=3))
    for step in range(6):
        cached = network.scores(state)
        assert torch.allclose(cached.stop_logits, stop[:, step], atol=1e-10)
        assert torch.allclose(cached.slot_logits, slot_logits[:, step, :step + 1], atol=1e-10)
        assert torch.allclose(cached.token_logits, token_logits[:, step, :step + 1], atol=1e-10)
        assert torch.isinf(slot_logits[:, step, step + 1:]).all()
        if step < 5:
            state = network.write(state, slots[:, step], tokens[:, step])
    assert state.item_at[:, 1:-1].tolist() == (torch.argsort(orders, -1) + 1).tolist()  # canvas order of items


@pytest.mark.parametrize("gap_context", [1, 2])
def test_earlier_steps_do_not_see_later_insertions(gap_context, float64):
    """Step t's scores depend on the first t insertions only: change what is written later (tokens, where it
    lands, how many tokens follow) and every earlier step's stop, slot and token scores stay the same."""
    model = causal_model(vocab_size=4, max_length=8, gap_context=gap_context)
    # the same history for the first 3 steps (write 1, then 2 right of it, then 0 left of both) ...
    tokens = torch.tensor([[1, 2, 0, 3, 3, 1], [1, 2, 0, 1, 0, 2]])
    # ... with different final positions for it: 4 tokens land between the first two items in row 0, none in row 1
    orders = torch.tensor([[1, 6, 0, 2, 3, 4], [1, 3, 0, 2, 5, 4]])
    stop, slots, token = one_pass_scores(model, tokens, orders)
    for step in range(4):  # canvases after 0..3 insertions
        assert torch.allclose(stop[0, step], stop[1, step], atol=1e-12)
        assert torch.allclose(slots[0, step], slots[1, step], atol=1e-12)
        assert torch.allclose(token[0, step, :step + 1], token[1, step, :step + 1], atol=1e-12)
    assert not torch.allclose(stop[0, 5], stop[1, 5])  # later steps do differ (the test can fail)


def test_only_the_relative_order_of_written_items_enters(float64):
    """Any keys with the same order among written items give the same scores: final positions, stretched
    positions and current canvas ranks alike (so the gaps a sampler cannot know never reach a score)."""
    model = causal_model(vocab_size=4, max_length=6)
    tokens = torch.tensor([[3, 1, 0, 2, 2]])
    orders = torch.tensor([[2, 0, 4, 1, 3]])
    reference = one_pass_scores(model, tokens, orders)
    for keys in (orders * 7 + 3, orders ** 2, torch.tensor([[10, 2, 90, 5, 50]])):
        for a, b in zip(reference, one_pass_scores(model, tokens, keys)):
            assert torch.allclose(a, b, atol=1e-12)


def test_the_history_order_matters():
    """Not canvas-Markov: the same canvas written in two orders gets different next-step scores."""
    model = causal_model(vocab_size=4, max_length=6)
    tokens = torch.tensor([[1, 2], [2, 1]])
    keys = torch.tensor([[0, 1], [1, 0]])  # canvas (1, 2) both times
    stop, _, _ = one_pass_scores(model, tokens, keys)
    assert not torch.allclose(stop[0, 2], stop[1, 2])
    assert not model.canvas_markov and tiny_model().canvas_markov


def test_offset_buckets_are_exact_near_zero_signed_and_monotone():
    offsets = torch.arange(-300, 301)
    buckets = offset_buckets(offsets, 64, 256)
    assert buckets.min() >= 0 and buckets.max() < 64
    assert len(set(buckets[(offsets >= 0) & (offsets < 16)].tolist())) == 16  # exact
    assert torch.equal(causal_model().network._buckets(offsets), buckets)  # the lookup table agrees
    assert not set(buckets[offsets >= 0].tolist()) & set(buckets[offsets < 0].tolist())  # signed
    positive = buckets[offsets >= 0]
    assert bool((positive[1:] >= positive[:-1]).all())


def _chi_square_p(samples, probabilities, keys):
    counts = collections.Counter(tuple(sample) for sample in samples)
    observed = np.array([counts[key] for key in keys], dtype=float)
    expected = np.asarray(probabilities) * len(samples)
    assert sum(counts.values()) == observed.sum()  # nothing outside the enumerated support
    return stats.chisquare(observed, expected).pvalue


@pytest.mark.parametrize("with_prompt", [False, True])
def test_sampler_matches_exp_log_p_by_chi_square(with_prompt, monkeypatch):
    """20,000 KV-cached samples against ``exp(log p)`` of every sequence up to length 3 (V = 2); a sampler that
    drops the token factor or the stop factor (the cached scores patched) is rejected by the same test."""
    model = causal_model(vocab_size=2, max_length=3, scale=0.8)
    sequences = [list(s) for n in range(4) for s in itertools.product(range(2), repeat=n)]
    prompt = [1, 0] if with_prompt else None
    batch = collate(sequences, None if prompt is None else [prompt] * len(sequences))
    with torch.no_grad():
        probabilities = exact_log_likelihood(model, batch).double().exp().numpy()
    assert abs(probabilities.sum() - 1) < 1e-5
    keys = [tuple(s) for s in sequences]

    def p_value():
        torch.manual_seed(0)
        return _chi_square_p(model.sample(20000, prompt=None if prompt is None else [prompt]),
                             probabilities / probabilities.sum(), keys)
    assert p_value() > 1e-3
    network = model.network
    scores, gap_tokens = network.scores, network.gap_token_logits
    monkeypatch.setattr(network, "gap_token_logits", lambda *args: torch.zeros_like(gap_tokens(*args)))
    assert p_value() < 1e-6  # tokens drawn uniformly: the token factor dropped
    monkeypatch.setattr(network, "gap_token_logits", gap_tokens)

    def without_stop_factor(state, gaps=None):
        output = scores(state, gaps)
        output.stop_logits = torch.zeros_like(output.stop_logits)
        return output
    monkeypatch.setattr(network, "scores", without_stop_factor)
    assert p_value() < 1e-6  # stopping with probability 1/2: the stop factor dropped


def test_exact_likelihood_sums_orders_and_the_subset_recursion_refuses(float64):
    model = causal_model(vocab_size=3, max_length=6)
    batch = collate([[0, 1, 2, 2], [1], []])
    exact = exact_log_likelihood(model, batch)
    assert torch.allclose(exact, enumerated_log_likelihood(model, batch), atol=1e-12)
    iwae = importance_log_likelihood(model, UniformOrderGuide(), batch, num_samples=2000)
    assert bool((iwae <= exact + 1e-9).all()) and float((exact - iwae).max().detach()) < 0.1
    with pytest.raises(ValueError, match="depend on the order written"):
        subset_messages(model, batch)
    with pytest.raises(ValueError, match="depend on the order written"):
        ExactPosteriorGuide(model).order_distribution(batch)
    with pytest.raises(ValueError, match="refuses length 8 > 7"):
        exact_log_likelihood(model, collate([[0] * 8]), max_length=10)


def test_step_log_probs_needs_the_order_and_refuses_a_mismatched_one(float64):
    model = causal_model(vocab_size=3, max_length=6)
    batch = collate([[0, 1, 2, 2]])
    orders = torch.tensor([[2, 0, 3, 1]])
    inserted = torch.tensor([[True, False, True, False]])  # the first two steps of the order
    with pytest.raises(ValueError, match="pass orders="):
        model.step_log_probs(batch, inserted)
    with pytest.raises(ValueError, match="first inserted.sum"):
        model.step_log_probs(batch, torch.tensor([[True, True, False, False]]), orders)
    scores = model.step_log_probs(batch, inserted, orders)
    every = model.all_step_log_probs(batch, orders)
    assert torch.allclose(scores.insert[0], every.insert[0, 2]) and torch.allclose(scores.go[0], every.go[0, 2])
    joint = sum(float(every.go[0, t] + every.insert[0, t, orders[0, t]]) for t in range(4)) + float(every.stop[0, 4])
    assert abs(joint - float(model.log_joint(batch, orders)[0])) < 1e-10


def test_svi_steps_with_the_all_steps_elbo_and_with_tracegraph():
    """(TraceGraph_ELBO's value = log_joint - log q on this decoder: tests/test_svi.py, parametrized.)"""
    model, guide = tiny_model(decoder="causal"), tiny_pl_guide()
    batch = collate([[0, 1, 2], [2], [], [1, 1, 0, 2]])
    tracegraph = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=TraceGraph_ELBO())
    assert math.isfinite(tracegraph.step(batch))
    before = [p.detach().clone() for p in model.parameters()]
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=InsertionELBO(2, step_sampling="all"))
    assert math.isfinite(svi.step(batch))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_order_mh_targets_the_causal_posterior(float64):
    """OrderMH on the causal model: its target is log_joint; the chain's insertion-step marginals approach the
    exact posterior's (by enumeration of all orders)."""
    model = causal_model(vocab_size=3, max_length=6, scale=0.8)
    batch = collate([[0, 1, 2, 1]])
    orders = torch.tensor(list(itertools.permutations(range(4))))
    with torch.no_grad():
        posterior = model.log_joint(batch, orders).softmax(0)
    ranks = torch.argsort(orders, -1)
    exact = torch.stack([(posterior.unsqueeze(-1) * (ranks == s)).sum(0) for s in range(4)], -1).numpy()
    pyro.set_rng_seed(1)
    mcmc = pyro.infer.MCMC(OrderMH(model, UniformOrderGuide()), num_samples=1000, warmup_steps=200, num_chains=4,
                           disable_progbar=True)
    mcmc.run(batch)
    steps = mcmc.get_samples()["insertion_step"].numpy()
    empirical = np.stack([(steps == s).mean(0) for s in range(4)], axis=-1)
    assert (0.5 * np.abs(empirical - exact).sum(-1)).max() < 0.1


def test_checkpoint_round_trip_keeps_the_decoder(tmp_path, float64):
    model = causal_model(vocab_size=3, max_length=6, termination="eos")
    path = tmp_path / "causal.pt"
    save_checkpoint(path, model)
    loaded, _, _ = load_checkpoint(path)
    assert isinstance(loaded, InsertionProcess) and loaded.decoder == "causal"
    batch = collate([[0, 1, 2], [2, 2]])
    orders = PlackettLuce(torch.randn(2, 3), batch.lengths).sample()
    assert torch.allclose(model.log_joint(batch, orders), loaded.to(torch.float64).log_joint(batch, orders))


@pytest.mark.parametrize("kwargs,message", [
    ({"decoder": "lstm"}, "unknown decoder 'lstm'; choose from canvas, causal"),
    ({"decoder": "causal", "prompt_attention": "full"}, "the causal decoder encodes the prompt once"),
    ({"decoder": "causal", "gap_context": 0}, "context=0 must be a positive number of canvas neighbours"),
])
def test_bad_decoder_options_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InsertionProcess(3, d_model=8, n_layers=1, n_heads=2, **kwargs)


def test_parallel_decoding_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="already pays one cached item per insertion"):
        causal_model().sample(2, insertions_per_step=2)
