"""The importance weights score each distinct canvas (canvas decoder) or order (causal decoder) once: the weights
equal scoring every order with ``model.log_joint``, on ragged batches, prompts, empty and long sequences."""
import pyro
import pytest
import torch

from conftest import DECODERS, tiny_model, tiny_pl_guide
from ip_pyro import collate
from ip_pyro.infer import importance_log_likelihood, log_importance_weights
from ip_pyro.infer.distinct import BITS_PER_WORD, _set_keys, _unpack, distinct_log_joint


def _orders(guide, batch, draws):
    with torch.no_grad():
        return guide.order_distribution(batch).sample((draws,))


def _plain(model, batch, orders):
    draws = orders.shape[0]
    with torch.no_grad():
        return model.log_joint(batch.repeat(draws), orders.reshape(draws * batch.batch_size, -1)).view(draws, -1)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("conditional", [False, True])
def test_distinct_scoring_equals_log_joint_of_every_order(float64, decoder, conditional):
    model, guide = tiny_model(decoder=decoder), tiny_pl_guide()
    sequences = [[0, 1, 2, 1, 0], [2], [], [1, 1, 0, 2, 2, 1], [0, 2]]
    prompts = [[1, 2], [0], [2, 2, 1], [1], [0, 0]] if conditional else None
    batch = collate(sequences, prompts, vocab_size=3)
    orders = _orders(guide, batch, 40)
    with torch.no_grad():
        shared = distinct_log_joint(model, batch, orders, chunk_size=7)  # small passes: the scatter across passes
    assert torch.allclose(shared, _plain(model, batch, orders), atol=1e-10, rtol=0)


def test_repeated_orders_are_scored_once(float64):
    """Duplicated orders and shared canvases are scored once: counted through the model's own entry point."""
    model, guide = tiny_model(), tiny_pl_guide()
    batch = collate([[0, 1, 2]], vocab_size=3)
    orders = _orders(guide, batch, 200)  # 200 orders of 3 positions: 6 distinct, 2^3 = 8 distinct canvases
    scored = []
    original = model.step_log_probs

    def counting(part, inserted, *rest, **options):
        scored.append(inserted.shape[0])
        return original(part, inserted, *rest, **options)

    model.step_log_probs = counting
    with torch.no_grad():
        distinct_log_joint(model, batch, orders)
    assert sum(scored) == 8


def test_set_keys_pack_and_unpack_beyond_one_word():
    """Sets over more positions than one key word holds round-trip through the packing."""
    width = BITS_PER_WORD + 9
    generator = torch.Generator().manual_seed(0)
    orders = torch.stack([torch.randperm(width, generator=generator) for _ in range(3)]).unsqueeze(0)  # [1, 3, L]
    keys = _set_keys(orders)  # [1, 3, L + 1, W]
    assert keys.shape == (1, 3, width + 1, 2)
    ranks = orders.argsort(-1)
    for step in (0, 1, BITS_PER_WORD, width):
        expected = ranks < step  # [1, 3, L]
        assert torch.equal(_unpack(keys[0, :, step], width), expected[0])


@pytest.mark.parametrize("decoder", DECODERS)
def test_importance_weights_equal_the_plain_path_and_draw_the_same_orders(decoder):
    model, guide = tiny_model(decoder=decoder), tiny_pl_guide()
    batch = collate([[0, 1, 2, 1], [2, 0], [1]], vocab_size=3)
    pyro.set_rng_seed(3)
    shared = log_importance_weights(model, guide, batch, 30, chunk_size=8, canvas_budget=100)  # several groups
    pyro.set_rng_seed(3)
    plain = log_importance_weights(model, guide, batch, 30, chunk_size=8, distinct=False)
    assert shared.shape == (30, 3)
    assert torch.allclose(shared, plain, atol=1e-5, rtol=0)
    pyro.set_rng_seed(3)
    bound = importance_log_likelihood(model, guide, batch, 30, chunk_size=8)
    assert torch.allclose(bound, shared.logsumexp(0) - torch.log(torch.tensor(30.0)), atol=1e-6)


def test_an_all_empty_batch_only_stops(float64):
    model, guide = tiny_model(), tiny_pl_guide()
    batch = collate([[], []], vocab_size=3)
    orders = _orders(guide, batch, 5)
    with torch.no_grad():
        assert torch.allclose(distinct_log_joint(model, batch, orders), _plain(model, batch, orders))


def test_orders_of_the_wrong_shape_are_refused():
    model = tiny_model()
    batch = collate([[0, 1]], vocab_size=3)
    with pytest.raises(ValueError, match="orders must be"):
        distinct_log_joint(model, batch, torch.zeros(4, 2, dtype=torch.long))


@pytest.mark.parametrize("decoder", DECODERS)
def test_prompted_batches_are_scored_in_one_log_joint_call_over_the_whole_batch(decoder):
    """With prompts the model encodes each prompt once per call: one ``log_joint`` over the batch as given, not
    sub-batches of distinct canvases that would encode a prompt again for each."""
    model, guide = tiny_model(decoder=decoder), tiny_pl_guide()
    batch = collate([[0, 1], [2]], [[1], [2, 0]], vocab_size=3)
    orders = _orders(guide, batch, 6)
    calls = []
    original = model.log_joint

    def counting(part, flat, **options):
        calls.append(part.batch_size)
        return original(part, flat, **options)

    model.log_joint = counting
    with torch.no_grad():
        distinct_log_joint(model, batch, orders)
    assert calls == [2]
