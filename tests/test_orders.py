import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ip_pyro import orders_to_ranks, orders_to_slots, slots_to_orders
from ip_pyro.canvas import gather_canvas, insert_tokens
from ip_pyro.orders import inserted_before, pad_orders, slots_of_positions


def test_worked_example():
    orders = torch.tensor([[2, 0, 1]])
    lengths = torch.tensor([3])
    assert orders_to_slots(orders, lengths).tolist() == [[0, 0, 1]]
    assert slots_to_orders(torch.tensor([[0, 0, 1]]), lengths).tolist() == [[2, 0, 1]]


@pytest.mark.parametrize("length", range(0, 8))
def test_round_trip_every_permutation(length):
    orders = torch.tensor(list(itertools.permutations(range(length))), dtype=torch.long)
    orders = orders.reshape(math.factorial(length), length)
    lengths = torch.full((orders.shape[0],), length)
    slots = orders_to_slots(orders, lengths)
    steps = torch.arange(length)
    assert bool(((slots >= 0) & (slots <= steps)).all())
    # the slot code is a bijection: distinct orders give distinct slot sequences
    assert len({tuple(row) for row in slots.tolist()}) == orders.shape[0]
    assert torch.equal(slots_to_orders(slots, lengths), orders)


def test_slots_match_a_literal_replay():
    """Building the canvas by inserting x[sigma_t] into slot z_t reproduces x, for every order of length 5."""
    tokens = torch.tensor([[4, 1, 4, 2, 3]])
    for order in itertools.permutations(range(5)):
        orders = torch.tensor([order])
        slots = orders_to_slots(orders, torch.tensor([5]))[0].tolist()
        canvas = []
        for step, slot in enumerate(slots):
            canvas.insert(slot, int(tokens[0, order[step]]))
        assert canvas == tokens[0].tolist()


def test_ragged_round_trip_keeps_padding_convention():
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([0, 1, 4, 6, 3])
    keys = torch.rand(5, 6, generator=generator)
    keys = keys.masked_fill(torch.arange(6) >= lengths.unsqueeze(-1), 2.0)  # padding sorts last
    orders = pad_orders(keys.argsort(-1), lengths)
    slots = orders_to_slots(orders, lengths)
    assert bool((slots[torch.arange(6) >= lengths.unsqueeze(-1)] == 0).all())
    assert torch.equal(slots_to_orders(slots, lengths), orders)
    assert torch.equal(orders.gather(1, orders_to_ranks(orders)), torch.arange(6).expand(5, 6))


def test_invalid_slots_are_refused():
    with pytest.raises(ValueError, match=r"slots\[0, 1\] = 2 is invalid"):
        slots_to_orders(torch.tensor([[0, 2, 0]]), torch.tensor([3]))


def test_canvas_helpers_agree_with_the_slot_code():
    tokens = torch.tensor([[5, 6, 7, 8]])
    orders = torch.tensor([[2, 0, 3, 1]])
    lengths = torch.tensor([4])
    canvas = torch.zeros(1, 0, dtype=torch.long)
    canvas_lengths = torch.zeros(1, dtype=torch.long)
    slots = orders_to_slots(orders, lengths)
    for step in range(4):
        inserted = inserted_before(orders, lengths, torch.tensor([step]))
        gathered, gathered_lengths = gather_canvas(tokens, inserted)
        assert gathered[0, : int(gathered_lengths)].tolist() == canvas[0, : int(canvas_lengths)].tolist()
        position = orders[0, step]
        assert int(slots_of_positions(inserted)[0, position]) == int(slots[0, step])
        canvas, canvas_lengths = insert_tokens(canvas, canvas_lengths, slots[:, step], tokens[:, position],
                                               torch.tensor([True]))
    assert canvas.tolist() == tokens.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10 ** 6), max_size=12), min_size=1, max_size=6))
def test_property_any_valid_slot_code_round_trips(raw):
    """Any ragged batch of slot codes with slots[t] in 0..t maps to orders and back unchanged."""
    lengths = torch.tensor([len(row) for row in raw])
    width = int(lengths.max())
    slots = torch.zeros(len(raw), width, dtype=torch.long)
    for row, values in enumerate(raw):
        for step, value in enumerate(values):
            slots[row, step] = value % (step + 1)
    orders = slots_to_orders(slots, lengths)
    assert torch.equal(orders_to_slots(orders, lengths), slots)
    assert torch.equal(orders.sort(-1).values, torch.arange(width).expand(len(raw), width))
