import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import edge_lookup  # noqa: E402


def test_edge_lookup_batches_hold_the_answer_as_the_query_partner():
    import torch

    prompts, targets = edge_lookup.lookup_batch(32, 5, 20, torch.Generator().manual_seed(0))
    for prompt, (answer,) in zip(prompts, targets):
        edges, query = prompt[:-1], prompt[-1]
        pairs = {frozenset(edges[i: i + 2]) for i in range(0, len(edges), 2)}
        assert len(set(edges)) == 10 and frozenset((query, answer)) in pairs


@pytest.mark.parametrize("variant", sorted(edge_lookup.VARIANTS))
def test_edge_lookup_runs_every_variant(variant, tmp_path):
    args = edge_lookup.parse_args(["--steps", "2", "--eval-every", "1", "--d-model", "16", "--layers", "1",
                                   "--edges", "4", "--variants", variant, "--json", str(tmp_path / "out.json")])
    (result,) = edge_lookup.main(args)
    assert result["positions"] == edge_lookup.VARIANTS[variant][0]
    assert [point["step"] for point in result["curve"]] == [1, 2]
    assert all(0.0 <= point["accuracy"] <= 1.0 for point in result["curve"])
    assert (tmp_path / "out.json").exists()
