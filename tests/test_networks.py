import pytest
import torch

from ip_pyro import collate
from ip_pyro.networks import CausalDecoder
from ip_pyro.networks import InsertionDecoder, OrderScorer


def random_canvases(rows=16, width=10, vocab=5, prompt_width=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, width + 1, (rows,), generator=generator)
    lengths[0] = width
    canvas = torch.randint(0, vocab, (rows, width), generator=generator)
    canvas = canvas.masked_fill(torch.arange(width) >= lengths.unsqueeze(-1), 0)
    prompt_lengths = torch.randint(0, prompt_width + 1, (rows,), generator=generator)
    prompt = torch.randint(0, vocab, (rows, prompt_width), generator=generator)
    return canvas, lengths, prompt, prompt_lengths


@pytest.mark.parametrize("with_prompt", [False, True])
def test_packed_and_unpacked_decoders_agree(with_prompt, monkeypatch):
    torch.manual_seed(0)
    decoder = InsertionDecoder(5, 16, 2, 2, 0.0).double()
    canvas, lengths, prompt, prompt_lengths = random_canvases()
    if not with_prompt:
        prompt = prompt_lengths = None
    packed_calls = []
    original = decoder.stack.forward_masked
    monkeypatch.setattr(decoder.stack, "forward_masked",
                        lambda *args, **kwargs: packed_calls.append(1) or original(*args, **kwargs))
    packed = decoder(canvas, lengths, prompt, prompt_lengths)
    assert packed_calls, "the packed path was not taken"
    decoder.pack = False
    plain = decoder(canvas, lengths, prompt, prompt_lengths)
    real_slots = torch.arange(canvas.shape[1] + 1) <= lengths.unsqueeze(-1)  # others carry no probability
    assert torch.allclose(packed.stop_logits, plain.stop_logits, atol=1e-10)
    assert torch.equal(torch.isinf(packed.slot_logits), ~real_slots)
    assert torch.allclose(packed.slot_logits[real_slots], plain.slot_logits[real_slots], atol=1e-10)
    assert torch.allclose(packed.token_logits[real_slots], plain.token_logits[real_slots], atol=1e-10)


def test_slot_logits_mask_exactly_the_missing_slots():
    decoder = InsertionDecoder(5, 16, 1, 2, 0.0)
    canvas, lengths, _, _ = random_canvases()
    output = decoder(canvas, lengths)
    assert output.slot_logits.shape == (16, 11) and output.token_logits.shape == (16, 11, 5)
    assert torch.equal(torch.isfinite(output.slot_logits), torch.arange(11) <= lengths.unsqueeze(-1))


def test_decoder_never_sees_final_positions():
    """The decoder's output for a canvas depends on the canvas alone, not on where its tokens end up."""
    decoder = InsertionDecoder(5, 16, 2, 2, 0.0)
    canvas = torch.tensor([[1, 2, 3]])
    one = decoder(canvas, torch.tensor([3]))
    two = decoder(torch.cat([canvas, torch.zeros(1, 4, dtype=torch.long)], 1), torch.tensor([3]))
    assert torch.allclose(one.token_logits, two.token_logits[:, :4], atol=1e-6)
    assert torch.allclose(one.stop_logits, two.stop_logits, atol=1e-6)


def test_empty_inputs_stay_finite_with_finite_gradients():
    scorer = OrderScorer(4, 16, 1, 2, 0.0)
    batch = collate([[], [1, 2]])
    scores = scorer(batch.tokens, batch.lengths)
    (scores[1].sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in scorer.parameters() if p.grad is not None)
    causal = CausalDecoder(4, 16, 1, 2, 0.0)
    prompted = collate([[1], []], prompts=[[], [2, 3, 1]])
    logits = causal(prompted.tokens, prompted.prompt, prompted.prompt_lengths)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in causal.parameters())


def test_prompt_groups_embed_exactly_the_other_members():
    """Group 2 over the prompt [a b c d e]: a sees b, b sees a, ..., the lone e and every body token see nothing."""
    torch.manual_seed(0)
    stack = InsertionDecoder(9, 16, 1, 2, 0.0, prompt_group=2).stack
    ids = torch.tensor([[1, 2, 3, 4, 5, 9, 6, 7, 10]])  # prompt a..e, BOS, canvas, END
    positions = torch.arange(9).unsqueeze(0)
    segments = (positions >= 5).long()
    members = stack._group_members(ids, positions, segments)
    embed = stack.embed.weight
    expected = torch.stack([embed[2], embed[1], embed[4], embed[3]] + [torch.zeros(16)] * 5)
    assert torch.allclose(members[0], expected)
    three = InsertionDecoder(9, 16, 1, 2, 0.0, prompt_group=3).stack
    members = three._group_members(ids, positions, segments)
    embed = three.embed.weight
    assert torch.allclose(members[0, 0], embed[2] + embed[3]) and torch.allclose(members[0, 4], embed[4])


def test_prompt_groups_agree_packed_and_unpacked_and_see_the_partner():
    torch.manual_seed(0)
    decoder = InsertionDecoder(5, 16, 2, 2, 0.0, prompt_group=2).double()
    canvas, lengths, prompt, prompt_lengths = random_canvases()
    packed = decoder(canvas, lengths, prompt, prompt_lengths)
    decoder.pack = False
    plain = decoder(canvas, lengths, prompt, prompt_lengths)
    real_slots = torch.arange(canvas.shape[1] + 1) <= lengths.unsqueeze(-1)
    assert torch.allclose(packed.token_logits[real_slots], plain.token_logits[real_slots], atol=1e-10)
    # the same multiset of prompt tokens, paired differently: only the group embedding can tell them apart
    canvas, lengths = torch.tensor([[1, 2]]), torch.tensor([2])
    paired = [decoder(canvas, lengths, torch.tensor([order]), torch.tensor([4])).token_logits
              for order in ([0, 1, 2, 3], [0, 2, 1, 3])]
    assert not torch.allclose(*paired)
    rotary_only = InsertionDecoder(5, 16, 2, 2, 0.0, pack=False).double()
    rotary_only.load_state_dict({k: v for k, v in decoder.state_dict().items() if "group_mix" not in k})
    with torch.no_grad():
        decoder.stack.group_mix.weight.zero_()  # a zero mix adds nothing: the rest is the plain network
    assert torch.allclose(decoder(canvas, lengths, torch.tensor([[0, 1, 2, 3]]), torch.tensor([4])).token_logits,
                          rotary_only(canvas, lengths, torch.tensor([[0, 1, 2, 3]]), torch.tensor([4])).token_logits)


@pytest.mark.parametrize("network", [InsertionDecoder, OrderScorer, CausalDecoder])
def test_embed_std_sets_the_initial_token_embeddings_only(network):
    torch.manual_seed(0)
    default = network(7, 64, 1, 2, 0.0)
    torch.manual_seed(0)
    same = network(7, 64, 1, 2, 0.0, embed_std=0.02)
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), same.state_dict().values()))
    assert abs(default.stack.embed.weight.std().item() - 0.02) < 0.005
    wide = network(7, 64, 1, 2, 0.0, embed_std=1.0)
    assert abs(wide.stack.embed.weight.std().item() - 1.0) < 0.2
    assert wide.stack.segment.weight.std().item() < 0.05


@pytest.mark.parametrize("network", [OrderScorer, CausalDecoder])
def test_prompt_groups_ignore_prompt_padding(network):
    """An odd-length prompt padded beside a longer one must not pair its last token with the padding."""
    torch.manual_seed(0)
    net = network(6, 16, 1, 2, 0.0, prompt_group=2, embed_std=1.0).double()
    if network is OrderScorer:
        torch.nn.init.normal_(net.score.weight)  # the zero-initialised score head would hide every difference
    tokens = torch.tensor([[1, 2], [3, 4]])
    prompts = [[5, 1, 2], [0, 3, 4, 5]]
    padded = collate([[1, 2], [3, 4]], prompts)
    alone = collate([[1, 2]], prompts[:1])
    if network is OrderScorer:
        both = net(tokens, torch.tensor([2, 2]), padded.prompt, padded.prompt_lengths)[0]
        single = net(tokens[:1], torch.tensor([2]), alone.prompt, alone.prompt_lengths)[0]
    else:
        both = net(tokens, padded.prompt, padded.prompt_lengths)[0]
        single = net(tokens[:1], alone.prompt, alone.prompt_lengths)[0]
    assert torch.allclose(both, single, atol=1e-10)


def test_gather_rows_equals_gather_forward_and_backward():
    import torch

    from ip_pyro.networks.stack import gather_rows

    generator = torch.Generator().manual_seed(0)
    source = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 5, (3, 7), generator=generator)
    weights = torch.randn(3, 7, 4, generator=generator, dtype=torch.float64)
    expected = source.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), source)
    taken = gather_rows(source, index)
    (grad_taken,) = torch.autograd.grad((taken * weights).sum(), source)
    assert torch.equal(taken, expected) and torch.allclose(grad_taken, grad_expected, atol=1e-12)


@pytest.mark.parametrize("grad", [False, True])
def test_block_step_with_a_fixed_capacity_cache_equals_the_plain_cached_forward(grad):
    """``Block.step`` (rotation folded into the projection, residuals into the output products, a KV cache of fixed
    capacity written in place when no gradient is recorded) gives the plain block's cached forward, token by token."""
    from ip_pyro.networks.stack import Block, rotated_qkv

    torch.manual_seed(0)
    block = Block(16, 2, 0.0).double()
    for parameter in block.parameters():  # away from the initial ones (norm weights of 1)
        parameter.data.add_(0.3 * torch.randn_like(parameter))
    steps, rows = 6, 5
    tokens = torch.randn(rows, steps, 16, dtype=torch.float64)
    angles = torch.arange(steps, dtype=torch.float64).unsqueeze(-1) * (1.0 / 10000 ** (torch.arange(0, 8, 2) / 8))
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    weights = rotated_qkv(block.attn, cos, sin)
    plain, fused = {}, {"capacity": steps}
    with torch.set_grad_enabled(grad):
        for step in range(steps):
            expected = block(tokens[:, step:step + 1], cos[step:step + 1], sin[step:step + 1], None, False, plain)
            got = block.step(tokens[:, step], weights[step], fused)
            assert torch.allclose(got, expected[:, 0], atol=1e-12)
    assert ("k_buffer" in fused) != grad  # in place without a gradient, concatenated with one
    with pytest.raises(ValueError, match="the KV cache holds (6|0) steps"):
        with torch.no_grad():
            block.step(tokens[:, 0], weights[0], fused if not grad else {"capacity": 0})
