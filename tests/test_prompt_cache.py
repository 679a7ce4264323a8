"""Prefix attention with a shared prompt cache: the cached pass equals the uncached prefix-LM pass for ragged
prompts and canvases, the model stays normalised and its sampler exact, the option survives a checkpoint, and a
task without a prompt gives the same model as full attention."""
import collections

import pytest
import torch

from conftest import roughen
from ip_pyro import collate
from ip_pyro.checkpoint import load_checkpoint, save_checkpoint
from ip_pyro.guides import PlackettLuceGuide
from ip_pyro.infer import InsertionELBO, InsertionRWS, exact_log_likelihood, importance_log_likelihood
from ip_pyro.models import InsertionProcess
from ip_pyro.networks import InsertionDecoder
from test_model import all_sequences


def prefix_model(vocab_size=3, max_length=5, seed=1, **options):
    torch.manual_seed(seed)
    model = InsertionProcess(vocab_size, d_model=16, n_layers=2, n_heads=2, max_length=max_length,
                             prompt_attention="prefix", **options)
    return roughen(model.to(torch.get_default_dtype()), 0.5, seed)


@pytest.mark.parametrize("options", [{}, {"prompt_group": 2, "max_positions": 16}])
def test_cached_prompt_equals_the_uncached_prefix_pass(options, float64):
    torch.manual_seed(0)
    decoder = InsertionDecoder(5, 16, 2, 2, 0.0, prompt_attention="prefix", **options).double()
    roughen(decoder, 0.5)
    prompts = collate([[1, 2, 3], [], [4, 0, 1, 1, 2], [3]])  # ragged, one empty
    canvas = collate([[0, 1], [2], [], [4, 4, 4]])  # ragged canvases, padded
    full = decoder(canvas.tokens, canvas.lengths, prompts.tokens, prompts.lengths, use_cache=False)
    cached = decoder(canvas.tokens, canvas.lengths, prompts.tokens, prompts.lengths)
    # the cache of 4 prompts shared by 8 canvases (two per prompt, particle-major)
    cache = decoder.encode_prompt(prompts.tokens, prompts.lengths)
    index = torch.arange(8) % 4
    twice = decoder(canvas.tokens.repeat(2, 1), canvas.lengths.repeat(2), prompt_cache=cache, prompt_index=index)
    used = torch.isfinite(full.slot_logits)  # the slots of each canvas; the rest are never read
    assert torch.equal(used, torch.isfinite(cached.slot_logits))
    for name, where in (("stop_logits", torch.ones_like(full.stop_logits, dtype=torch.bool)), ("slot_logits", used),
                        ("token_logits", used)):
        a, b, c = getattr(full, name)[where], getattr(cached, name)[where], getattr(twice, name)[4:][where]
        assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5), name
    # prefix attention really differs from full attention: the prompt no longer reads the canvas
    decoder.prompt_attention = "full"
    assert not torch.allclose(decoder(canvas.tokens, canvas.lengths, prompts.tokens, prompts.lengths).stop_logits,
                              full.stop_logits, atol=1e-3)


def test_model_scores_share_one_prompt_encoding_and_match_the_reference(float64, monkeypatch):
    model = prefix_model()
    guide = PlackettLuceGuide(3, d_model=8, n_layers=1, n_heads=2, max_length=5).double()
    batch = collate([[0, 1, 2], [2, 2], [1]], [[1, 2], [0], [2, 1, 1]])
    orders = guide.order_distribution(batch).sample((4,)).reshape(12, -1)
    calls = []
    original = model.network.encode_prompt
    monkeypatch.setattr(model.network, "encode_prompt", lambda *a, **k: calls.append(1) or original(*a, **k))
    cached = model.log_joint(batch, orders)
    assert len(calls) == 1  # one prompt encoding for 4 orders x (L + 1) canvases
    reference = model.log_joint
    monkeypatch.setattr(model.scoring, "prompt_cache", lambda model, batch: None)
    monkeypatch.setattr(model.network, "forward", lambda *a, **k: InsertionDecoder.forward(model.network, *a,
                                                                                           use_cache=False, **k))
    assert torch.allclose(reference(batch, orders), cached, atol=1e-8)


def test_prefix_model_is_normalised_and_its_sampler_exact(float64):
    model = prefix_model(vocab_size=2, max_length=4)
    prompt = [1, 0, 1]
    sequences = all_sequences(2, 4)
    probabilities = exact_log_likelihood(model, collate(sequences, [prompt] * len(sequences))).exp().detach()
    assert abs(float(probabilities.sum()) - 1.0) < 1e-8
    torch.manual_seed(0)
    samples = model.float().sample(20000, prompt=[prompt])
    counts = collections.Counter(tuple(sample) for sample in samples)
    empirical = torch.tensor([counts[tuple(sequence)] / len(samples) for sequence in sequences])
    assert 0.5 * float((empirical - probabilities.float()).abs().sum()) < 0.02


def test_objectives_train_and_the_option_survives_a_checkpoint(tmp_path):
    model = prefix_model().float()
    guide = PlackettLuceGuide(3, d_model=8, n_layers=1, n_heads=2, max_length=5)
    batch = collate([[0, 1, 2], [2, 2]], [[1, 2], [0]])
    for objective in (InsertionELBO(2), InsertionRWS(2), InsertionRWS(2, model_gradient="steps")):
        loss = objective.differentiable_loss(model, guide, batch)
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.isfinite(importance_log_likelihood(model, guide, batch, num_samples=4)).all()
    save_checkpoint(tmp_path / "prefix.pt", model, guide)
    loaded, _, _ = load_checkpoint(tmp_path / "prefix.pt")
    assert loaded.prompt_attention == "prefix" and loaded.network.prompt_attention == "prefix"
    with torch.no_grad():
        assert torch.allclose(loaded.log_joint(batch, torch.tensor([[0, 1, 2], [1, 0, 2]])),
                              model.log_joint(batch, torch.tensor([[0, 1, 2], [1, 0, 2]])), atol=1e-6)


def test_without_a_prompt_prefix_and_full_are_the_same_model(float64):
    prefix = prefix_model()
    full = InsertionProcess(3, d_model=16, n_layers=2, n_heads=2, max_length=5).double()
    full.load_state_dict(prefix.state_dict())
    batch = collate([[0, 1, 2], [2, 2], []])
    orders = torch.tensor([[2, 0, 1], [1, 0, 2], [0, 1, 2]])
    assert torch.allclose(prefix.log_joint(batch, orders), full.log_joint(batch, orders), atol=1e-8)


def test_unknown_prompt_attention_is_one_line():
    with pytest.raises(ValueError, match="prompt_attention='both'; choose from full, prefix"):
        InsertionProcess(3, d_model=16, n_layers=1, n_heads=2, max_length=4, prompt_attention="both")


@pytest.mark.parametrize("prompt_attention", ["prefix", "full"])
def test_sampling_many_prompts_at_once_equals_sampling_each_alone(prompt_attention):
    """Rows that stop early leave the batch (and, with prefix attention, the prompt cache): every remaining row
    must keep decoding against its own prompt."""
    torch.manual_seed(3)
    model = InsertionProcess(6, d_model=16, n_layers=2, n_heads=2, max_length=7, prompt_attention=prompt_attention)
    roughen(model, 1.0, 3)
    prompts = [[1, 2, 3], [5], [0, 4, 4, 1, 2], [], [3, 3], [2, 0, 1, 5]]
    together = model.sample(prompt=prompts, greedy=True)
    alone = [model.sample(prompt=[prompt], greedy=True)[0] for prompt in prompts]
    assert together == alone
    assert len({len(sequence) for sequence in together}) >= 2  # rows did stop at different steps


@pytest.mark.parametrize("prompt_attention", ["full", "prefix"])
def test_sampling_passes_the_prompt_ids_only_when_no_cache_holds_the_prompt(prompt_attention, monkeypatch):
    """With prefix attention the cache replaces the prompt ids at every insertion (no per-step gather)."""
    torch.manual_seed(0)
    model = InsertionProcess(6, d_model=16, n_layers=1, n_heads=2, max_length=4, prompt_attention=prompt_attention)
    calls = []
    decode = model.scoring.decode

    def spy(model, canvas, lengths, prompt, prompt_lengths, cache=None, *rest):
        calls.append((prompt is None, cache is None))
        return decode(model, canvas, lengths, prompt, prompt_lengths, cache, *rest)
    monkeypatch.setattr(model.scoring, "decode", spy)
    model.sample(prompt=[[1, 2], [3]], greedy=True)
    expected = (True, False) if prompt_attention == "prefix" else (False, True)
    assert calls and set(calls) == {expected}
