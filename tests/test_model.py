import collections
import itertools
import math

import pytest
import torch
from pyro import poutine

from conftest import DECODERS, tiny_model
from ip_pyro import Batch, collate, orders_to_slots
from ip_pyro.distributions import PlackettLuce
from ip_pyro.infer import exact_log_likelihood
from ip_pyro.models import InsertionProcess


def conditioned_trace_log_prob(model, batch, orders):
    slots = orders_to_slots(orders, batch.lengths)
    tokens_in_order = batch.tokens.gather(1, orders)
    data = {}
    for step in range(batch.max_length):
        data[f"slot_{step}"] = slots[:, step]
        data[f"token_{step}"] = tokens_in_order[:, step]
    trace = poutine.trace(poutine.condition(model, data=data)).get_trace(batch)
    return trace.log_prob_sum(), trace


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("with_prompt", [False, True])
def test_log_joint_equals_the_conditioned_program(decoder, with_prompt, float64):
    model = tiny_model(decoder=decoder, vocab_size=4, max_length=6)
    sequences = [[0, 3, 1, 1], [2], [], [3, 3, 0, 1, 2, 0], [1, 2, 0]]
    prompts = [[1, 2], [], [3], [0, 0, 0], [2]] if with_prompt else None
    batch = collate(sequences, prompts)
    orders = PlackettLuce(torch.randn(5, 6), batch.lengths).sample()
    joint = model.log_joint(batch, orders)
    for row in range(5):
        expected, _ = conditioned_trace_log_prob(model, batch[row], orders[row: row + 1])
        assert abs(joint[row].item() - expected.item()) < 1e-5
    total, trace = conditioned_trace_log_prob(model, batch, orders)
    assert abs(total.item() - joint.sum().item()) < 1e-5
    assert {"stop_0", "slot_0", "token_0", "stop_6", "canvas_matches_data"} <= set(trace.nodes)


@pytest.mark.parametrize("sizes, chunk_size, min_canvases, expected", [
    ([0, 0, 1, 1, 1, 2], 8192, 1, [(0, 2), (2, 5), (5, 6)]),      # a pass per canvas size
    ([0, 0, 1, 1, 1, 2], 8192, 3, [(0, 5), (5, 6)]),              # sizes merged until a pass holds 3
    ([0, 0, 1, 1, 1, 2], 2, 1, [(0, 2), (2, 4), (4, 5), (5, 6)]),  # no pass over chunk_size
    ([3, 3, 3, 3], 8192, 1, [(0, 4)]),
    ([], 8192, 1, []),
])
def test_canvas_passes_split_sorted_canvases_by_size_and_chunk(sizes, chunk_size, min_canvases, expected):
    from ip_pyro.models.insertion import canvas_passes

    assert canvas_passes(torch.tensor(sizes, dtype=torch.long), chunk_size, min_canvases) == expected


@pytest.mark.parametrize("prompt_attention", ["full", "prefix"])
@pytest.mark.parametrize("termination", ["stop", "eos"])
@pytest.mark.parametrize("chunk_size, min_canvases", [(8192, 1), (3, 1), (7, 5), (8192, 256)])
def test_log_joint_by_canvas_size_equals_row_order_in_value_and_gradient(prompt_attention, termination, chunk_size,
                                                                         min_canvases, monkeypatch, float64):
    """Sorting the canvases by size into several passes changes the padding, never the numbers."""
    import ip_pyro.models.decoder_canvas as canvas_module  # where the canvas decoder's passes are planned

    monkeypatch.setattr(canvas_module, "MIN_CANVASES_PER_PASS", min_canvases)
    model = tiny_model(vocab_size=4, max_length=6, termination=termination, prompt_attention=prompt_attention)
    batch = collate([[0, 3, 1, 1], [2], [], [3, 3, 0, 1, 2, 0], [1, 2, 0]], [[1, 2], [], [3], [0, 0, 0], [2]])
    orders = PlackettLuce(torch.randn(3 * 5, 6), batch.lengths.repeat(3)).sample()
    results = []
    for by_size in (False, True):
        model.zero_grad()
        joint = model.log_joint(batch, orders, chunk_size=chunk_size, by_canvas_size=by_size)
        (joint * torch.linspace(0.5, 1.5, len(joint))).sum().backward()
        results.append((joint.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (plain, plain_grads), (sorted_, sorted_grads) = results
    assert torch.allclose(plain, sorted_, atol=1e-10)
    assert len(plain_grads) == len(sorted_grads) > 0
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(plain_grads, sorted_grads))
    expected, _ = conditioned_trace_log_prob(model, batch[3], orders[3: 4])
    assert abs(sorted_[3].item() - expected.item()) < 1e-8
    for by_size in (False, True):
        with pytest.raises(ValueError, match="chunk_size=0 must be a positive integer"):
            model.log_joint(batch, orders, chunk_size=0, by_canvas_size=by_size)


def test_a_wrong_canvas_has_zero_probability():
    model = tiny_model()
    batch = collate([[0, 1, 2]])
    data = {"slot_0": torch.tensor([0]), "token_0": torch.tensor([2]), "slot_1": torch.tensor([0]),
            "token_1": torch.tensor([1]), "slot_2": torch.tensor([0]), "token_2": torch.tensor([0])}
    trace = poutine.trace(poutine.condition(model, data=data)).get_trace(batch)
    assert trace.log_prob_sum().item() > -math.inf  # builds 0 1 2 (right to left)
    data["token_2"] = torch.tensor([1])
    trace = poutine.trace(poutine.condition(model, data=data)).get_trace(batch)
    assert trace.log_prob_sum() == -math.inf


def all_sequences(vocab_size, max_length):
    return [list(sequence) for length in range(max_length + 1)
            for sequence in itertools.product(range(vocab_size), repeat=length)]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("termination", ["stop", "eos"])
def test_exact_likelihoods_sum_to_one(decoder, termination, float64):
    model = tiny_model(decoder=decoder, vocab_size=2, max_length=5, termination=termination)
    sequences = all_sequences(2, 5)
    total = exact_log_likelihood(model, collate(sequences)).logsumexp(0)
    assert abs(total.item()) < 1e-5


@pytest.mark.parametrize("decoder", DECODERS)
def test_normalised_with_a_prompt(decoder, float64):
    model = tiny_model(decoder=decoder, vocab_size=2, max_length=3)
    sequences = all_sequences(2, 3)
    batch = collate(sequences, [[1, 0, 1]] * len(sequences))
    assert abs(exact_log_likelihood(model, batch).logsumexp(0).item()) < 1e-8


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("termination", ["stop", "eos"])
def test_normalised_with_absolute_positions(decoder, termination, float64):
    model = tiny_model(decoder=decoder, vocab_size=2, max_length=3, termination=termination, max_positions=3 + 3 + 2)
    assert model.network.stack.position.num_embeddings == 8
    sequences = all_sequences(2, 3)
    batch = collate(sequences, [[1, 0, 1]] * len(sequences))
    assert abs(exact_log_likelihood(model, batch).logsumexp(0).item()) < 1e-8
    too_long = [[1, 0, 1, 1]] if decoder == "canvas" else [[1, 0, 1, 1, 0, 1, 1, 0]]  # causal: items share one
    with pytest.raises(ValueError, match="position 8 is beyond the 8 absolute positions"):
        exact_log_likelihood(model, collate(sequences, too_long * len(sequences)))


def test_absolute_positions_change_the_scores_and_survive_a_checkpoint(tmp_path, float64):
    from ip_pyro.checkpoint import load_checkpoint, save_checkpoint

    batch = collate([[0, 1, 1], [1, 0]], [[1, 0], [0, 1]])
    absolute = tiny_model(vocab_size=2, max_length=4, seed=3, max_positions=8)
    shared = {name: value for name, value in absolute.state_dict().items() if ".position." not in name}
    rotary = tiny_model(vocab_size=2, max_length=4, seed=3)
    rotary.load_state_dict(shared)  # the same network without the position table
    assert not torch.allclose(exact_log_likelihood(rotary, batch), exact_log_likelihood(absolute, batch))
    with torch.no_grad():
        absolute.network.stack.position.weight.zero_()  # a zero table adds nothing: the rest is unchanged
    assert torch.allclose(exact_log_likelihood(rotary, batch), exact_log_likelihood(absolute, batch))
    absolute = tiny_model(vocab_size=2, max_length=4, seed=3, max_positions=8)
    save_checkpoint(tmp_path / "m.pt", absolute)
    loaded, _, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.config["max_positions"] == 8
    assert torch.allclose(exact_log_likelihood(loaded.double(), batch), exact_log_likelihood(absolute, batch))


@pytest.mark.parametrize("max_positions,message", [(-1, "non-negative integer"), (5, "needs at least prompt")])
def test_bad_max_positions_are_one_line_errors(max_positions, message):
    with pytest.raises(ValueError, match=message):
        InsertionProcess(3, max_length=4, max_positions=max_positions)


@pytest.mark.parametrize("length", [0, 1, 3, 5])
def test_exact_dynamic_programme_equals_brute_force(length, float64):
    model = tiny_model(vocab_size=3, max_length=6)
    batch = collate([[(3 * i + 1) % 3 for i in range(length)], [1] * length])
    size = max(length, 0)
    perms = torch.tensor(list(itertools.permutations(range(size))), dtype=torch.long).reshape(math.factorial(size),
                                                                                             size)
    orders = perms.repeat_interleave(2, 0)  # rows k * 2 + b
    brute = model.log_joint(batch, orders).view(-1, 2).logsumexp(0)
    assert torch.allclose(exact_log_likelihood(model, batch), brute, atol=1e-10)


def test_step_log_probs_are_normalised_over_stop_and_insertions(float64):
    """p(stop) + sum over every (slot, token) of p(go) p(slot, token) = 1, and insert matches those numbers."""
    model = tiny_model(vocab_size=3, max_length=6)
    batch = collate([[0, 1, 2, 2]])
    inserted = torch.tensor([[False, True, False, True]])
    with torch.no_grad():
        scores = model.step_log_probs(batch, inserted)
        output = model.network(torch.tensor([[1, 2]]), torch.tensor([2]))
    stop, insert, go = scores  # unpacks as (stop, insert, go)
    assert abs(float(stop.exp() + go.exp()) - 1.0) < 1e-12
    assert torch.isinf(insert[0, 1]) and torch.isinf(insert[0, 3])
    # brute force (output above): insert x_0 = 0 into slot 0 and x_2 = 2 into slot 1 of the canvas (1, 2)
    joint = output.slot_logits.log_softmax(-1).unsqueeze(-1) + output.token_logits.log_softmax(-1)
    assert abs(float(joint.exp().sum()) - 1.0) < 1e-12
    assert abs(float(insert[0, 0]) - float(joint[0, 0, 0])) < 1e-12
    assert abs(float(insert[0, 2]) - float(joint[0, 1, 2])) < 1e-12


def _bucket(sample):
    """Every sequence of length <= 3 is its own bucket; longer ones are bucketed by their length (4 .. max_length,
    where the forced stop acts), so each length is checked on its own."""
    return tuple(sample) if len(sample) <= 3 else ("length", len(sample))


def empirical_tv(samples, exact_probabilities, keys):
    counts = collections.Counter(_bucket(sample) for sample in samples)
    assert set(counts) <= set(keys), set(counts) - set(keys)  # nothing longer than max_length
    empirical = torch.tensor([counts[key] / len(samples) for key in keys])
    return 0.5 * float((empirical - exact_probabilities).abs().sum())


def exact_distribution(model, prompt=None):
    sequences = all_sequences(model.vocab_size, model.max_length)
    prompts = None if prompt is None else [prompt] * len(sequences)
    probabilities = exact_log_likelihood(model, collate(sequences, prompts)).exp().detach()
    assert abs(float(probabilities.sum()) - 1.0) < 1e-4
    buckets = collections.defaultdict(float)
    for sequence, probability in zip(sequences, probabilities.tolist()):
        buckets[_bucket(sequence)] += probability
    keys = list(buckets)
    return torch.tensor([buckets[key] for key in keys]), keys


@pytest.mark.parametrize("decoder", DECODERS)
def test_sampler_matches_exact_likelihood(decoder):
    model = tiny_model(decoder=decoder, vocab_size=2, max_length=5, scale=0.7)
    probabilities, keys = exact_distribution(model)
    assert probabilities.min() > -1e-6
    samples = model.sample(20000)
    assert empirical_tv(samples, probabilities, keys) < 0.02


@pytest.mark.parametrize("decoder", DECODERS)
def test_sampler_matches_exact_likelihood_with_a_prompt_and_temperature_one(decoder):
    model = tiny_model(decoder=decoder, vocab_size=2, max_length=5, scale=0.7)
    probabilities, keys = exact_distribution(model, prompt=[1, 1, 0])
    samples = model.sample(20000, prompt=[[1, 1, 0]])
    assert empirical_tv(samples, probabilities, keys) < 0.02


@pytest.mark.parametrize("decoder", DECODERS)
def test_pyro_program_draws_from_the_same_distribution(decoder):
    model = tiny_model(decoder=decoder, vocab_size=2, max_length=5, scale=0.7)
    probabilities, keys = exact_distribution(model)
    drawn = model(Batch(num_samples=6000))
    samples = [drawn.tokens[row, : int(drawn.lengths[row])].tolist() for row in range(6000)]
    assert empirical_tv(samples, probabilities, keys) < 0.03


@pytest.mark.parametrize("decoder", DECODERS)
def test_greedy_and_limits(decoder):
    model = tiny_model(decoder=decoder, vocab_size=3, max_length=6)
    first, second = model.sample(2, greedy=True)
    assert first == second
    assert all(len(sample) <= 2 for sample in model.sample(50, max_length=2))
    assert len(model.sample(3, prompt=[[0], [1, 2]])) == 6
    assert model.sample(0) == []


def test_eos_termination_is_the_joint_slot_token_distribution_with_eos_at_the_last_slot(float64):
    """termination="eos": p(stop) = p(slot = t) p(EOS | t); p(go, slot s, token v) = p(s) p(v | s) for content v."""
    model = tiny_model(vocab_size=3, max_length=6, termination="eos")
    batch = collate([[0, 1, 2, 2]])
    inserted = torch.tensor([[False, True, False, True]])  # canvas (1, 2): t = 2, three slots
    with torch.no_grad():
        scores = model.step_log_probs(batch, inserted)
        raw = model.network(torch.tensor([[1, 2]]), torch.tensor([2]))
    slot = raw.slot_logits.log_softmax(-1)[0]  # [3]
    token = raw.token_logits.log_softmax(-1)[0]  # [3, V + 1]
    assert raw.token_logits.shape[-1] == 4
    assert abs(float(scores.stop) - float(slot[2] + token[2, 3])) < 1e-12
    assert abs(float(scores.stop.exp() + scores.go.exp()) - 1.0) < 1e-12
    # x_0 = 0 into slot 0 (an EOS there is impossible, so the content tokens at slots < t share the whole mass)
    content_first = token[0, :3].logsumexp(0)
    assert abs(float(scores.go + scores.insert[0, 0]) - float(slot[0] + token[0, 0] - content_first)) < 1e-12
    # x_2 = 2 into slot 1
    content_mid = token[1, :3].logsumexp(0)
    assert abs(float(scores.go + scores.insert[0, 2]) - float(slot[1] + token[1, 2] - content_mid)) < 1e-12


@pytest.mark.parametrize("decoder", DECODERS)
def test_eos_sampler_matches_exact_likelihood(decoder):
    model = tiny_model(decoder=decoder, vocab_size=2, max_length=5, scale=0.7, termination="eos")
    probabilities, keys = exact_distribution(model)
    assert empirical_tv(model.sample(20000), probabilities, keys) < 0.02


def test_unknown_termination_is_one_line():
    with pytest.raises(ValueError, match="unknown termination 'end'"):
        tiny_model(termination="end")


@pytest.mark.parametrize("with_prompt", [False, True])
def test_left_to_right_kv_cache_gives_the_same_samples(with_prompt):
    from ip_pyro.models import LeftToRightLM

    torch.manual_seed(0)
    model = LeftToRightLM(5, d_model=16, n_layers=2, n_heads=2, max_length=9, max_positions=5 + 9 + 2)
    prompts = [[1, 2, 3], [4], [0, 0, 1, 2, 3], []] * 3 if with_prompt else None
    count = None if with_prompt else 12
    greedy_cached = model.sample(count, prompt=prompts, greedy=True)
    assert greedy_cached == model.sample(count, prompt=prompts, greedy=True, use_cache=False)
    torch.manual_seed(5)
    drawn_cached = model.sample(count, prompt=prompts)
    torch.manual_seed(5)
    assert drawn_cached == model.sample(count, prompt=prompts, use_cache=False)
    assert len({tuple(s) for s in drawn_cached}) > 3  # really random draws, of several lengths


def test_insert_many_equals_one_by_one_insertions_from_the_right():
    from ip_pyro.canvas import insert_many, insert_tokens

    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        width = int(torch.randint(0, 6, (1,), generator=generator))
        count = int(torch.randint(1, width + 2, (1,), generator=generator))
        canvas = torch.randint(0, 9, (1, width), generator=generator)
        slots = torch.randperm(width + 1, generator=generator)[:count].unsqueeze(0)
        tokens = torch.randint(10, 20, (1, count), generator=generator)
        expected, lengths = canvas, torch.tensor([width])
        for slot, token in sorted(zip(slots[0].tolist(), tokens[0].tolist()), reverse=True):
            expected, lengths = insert_tokens(expected, lengths, torch.tensor([slot]), torch.tensor([token]),
                                              torch.tensor([True]))
        assert torch.equal(insert_many(canvas, slots, tokens), expected)


@pytest.mark.parametrize("greedy", [False, True])
def test_parallel_decoding_fills_more_slots_per_pass(greedy):
    model = tiny_model(vocab_size=3, max_length=12, scale=0.7)
    with torch.no_grad():
        model.network.stop_head.bias.fill_(-50.0)  # never stops before max_length
    calls = []
    original = model.network.forward
    model.network.forward = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    with torch.no_grad():
        exact = model.sample(64, greedy=greedy)
        exact_passes, calls[:] = len(calls), []
        parallel = model.sample(64, greedy=greedy, insertions_per_step=4)
    assert exact_passes == 13  # one insertion per pass, then the forced stop
    assert len(calls) == 6  # canvas lengths 0 -> 1 -> 3 -> 7 -> 11 -> 12 (at most t + 1 slots), then the stop
    assert all(len(s) == 12 for s in exact + parallel) and all(0 <= t < 3 for s in parallel for t in s)
    with pytest.raises(ValueError, match="insertions_per_step=0"):
        model.sample(2, insertions_per_step=0)


@pytest.mark.parametrize("decoder", DECODERS)
def test_prompt_groups_and_embed_std_keep_the_model_normalised_and_survive_a_checkpoint(decoder, tmp_path, float64):
    from ip_pyro.checkpoint import load_checkpoint, save_checkpoint

    model = tiny_model(decoder=decoder, vocab_size=2, max_length=3, prompt_group=2, embed_std=1.0)
    sequences = all_sequences(2, 3)
    batch = collate(sequences, [[1, 0, 1]] * len(sequences))
    assert abs(exact_log_likelihood(model, batch).logsumexp(0).item()) < 1e-8
    save_checkpoint(tmp_path / "m.pt", model)
    loaded, _, _ = load_checkpoint(tmp_path / "m.pt")
    assert loaded.config["prompt_group"] == 2 and loaded.config["embed_std"] == 1.0
    assert torch.allclose(exact_log_likelihood(loaded.double(), batch), exact_log_likelihood(model, batch))


@pytest.mark.parametrize("sizes,message", [({"prompt_group": 0}, "prompt_group=0 must be a positive integer"),
                                           ({"embed_std": -1.0}, "embed_std=-1.0 must be a positive number"),
                                           ({"embed_std": True}, "embed_std=True must be a positive number")])
def test_bad_prompt_group_or_embed_std_are_one_line_errors(sizes, message):
    with pytest.raises(ValueError, match=message):
        InsertionProcess(3, max_length=4, **sizes)
