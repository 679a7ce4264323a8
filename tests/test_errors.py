"""Every documented bad input gives a ValueError whose message names the problem and the fix.
One row per case: (name, call, pattern the message must match)."""
import pytest
import torch

from ip_pyro.guides import PlackettLuceGuide, UniformOrderGuide
from ip_pyro import Batch, collate, slots_to_orders
from ip_pyro.infer import InsertionELBO, InsertionRWS, exact_log_likelihood, importance_log_likelihood
from ip_pyro.models import InsertionProcess, LeftToRightLM


def model():
    return InsertionProcess(4, d_model=8, n_layers=1, n_heads=2, max_length=5)


def good_batch():
    return collate([[0, 1], [2, 3, 1]])


CASES = [
    ("empty list", lambda: collate([]), r"sequences is empty; pass at least one sequence"),
    ("float id", lambda: collate([[0, 1.5]]), r"sequences\[0\]\[1\] = 1.5 is not an integer id"),
    ("bool id", lambda: collate([[True]]), r"sequences\[0\]\[0\] = True is not an integer id"),
    ("string sequence", lambda: collate(["abc"]), r"sequences\[0\] must be a list of int ids.*encode"),
    ("negative id", lambda: collate([[0], [-1]]), r"sequences\[1\]\[0\] = -1 is out of range"),
    ("id over vocab", lambda: collate([[0, 7]], vocab_size=4), r"= 7 is out of range; ids must lie in 0..3"),
    ("prompt over vocab", lambda: collate([[0]], [[9]], vocab_size=4), r"prompts\[0\]\[0\] = 9 is out of range"),
    ("prompts wrong size", lambda: collate([[0], [1]], [[0]]), r"prompts has 1 entries but sequences has 2"),
    ("float tensor ids", lambda: collate([torch.tensor([0.0, 1.0])]), r"1-D integer tensor"),
    ("model sees id over vocab", lambda: model().step_log_probs(collate([[0, 9]]), torch.zeros(1, 2, dtype=torch.bool)),
     r"ids outside the model.s 0..3; re-encode the data or build the model with a larger vocab_size"),
    ("sequence longer than max_length", lambda: model().log_joint(collate([[0] * 6]), torch.arange(6)[None]),
     r"length 6 > the model.s max_length=5; build the model with a larger max_length"),
    ("float token tensor", lambda: model()(Batch(tokens=torch.zeros(1, 2), lengths=torch.tensor([2]))),
     r"batch.tokens has dtype torch.float32.*torch.long"),
    ("prompt rows mismatch", lambda: model()(Batch(tokens=torch.zeros(2, 1, dtype=torch.long),
                                                   lengths=torch.tensor([1, 1]),
                                                   prompt=torch.zeros(3, 1, dtype=torch.long),
                                                   prompt_lengths=torch.tensor([1, 1, 1]))),
     r"batch.prompt has 3 rows but the batch has 2; pass one prompt per sequence"),
    ("inserted wrong dtype", lambda: model().step_log_probs(good_batch(), torch.zeros(2, 3)),
     r"inserted must be a bool \[N, 3\] mask"),
    ("inserted rows not a multiple", lambda: model().step_log_probs(good_batch(), torch.zeros(3, 3, dtype=torch.bool)),
     r"not a multiple of the batch size 2; rows must align with batch.repeat"),
    ("orders wrong shape", lambda: model().log_joint(good_batch(), torch.zeros(3, 3, dtype=torch.long)),
     r"orders must be \[k \* 2, 3\]"),
    ("exact likelihood too long", lambda: exact_log_likelihood(
        InsertionProcess(4, d_model=8, n_layers=1, n_heads=2, max_length=12), collate([[0] * 9])),
     r"refuses length 9 > 8; use importance_log_likelihood"),
    ("iwae zero samples", lambda: importance_log_likelihood(model(), UniformOrderGuide(), good_batch(), 0),
     r"num_samples=0 must be a positive integer"),
    ("zero width", lambda: InsertionProcess(4, d_model=0), r"d_model=0 must be a positive integer"),
    ("negative vocab", lambda: InsertionProcess(-3), r"vocab_size=-3 must be a positive integer"),
    ("odd head width", lambda: InsertionProcess(4, d_model=12, n_heads=4), r"d_model=12 must split into n_heads=4"),
    ("bad dropout", lambda: PlackettLuceGuide(4, dropout=1.5), r"dropout=1.5 must lie in \[0, 1\)"),
    ("bad particles", lambda: InsertionELBO(num_particles=0), r"num_particles=0 must be a positive integer"),
    ("bad step sampling", lambda: InsertionELBO(step_sampling="some"), r"step_sampling='some' must be 'uniform'"),
    ("guide without tokens", lambda: UniformOrderGuide()(Batch(num_samples=3)), r"a guide needs a batch with tokens"),
    ("guide too long", lambda: PlackettLuceGuide(4, d_model=8, n_layers=1, n_heads=2, max_length=2)
     .order_distribution(good_batch()), r"length 3 > the guide's max_length=2"),
    ("elbo without tokens", lambda: InsertionELBO().loss(model(), UniformOrderGuide(), Batch(num_samples=2)),
     r"InsertionELBO needs a batch with tokens"),
    ("sample nothing asked", lambda: model().sample(), r"pass num_samples .* or prompt"),
    ("sample bad temperature", lambda: model().sample(2, temperature=0), r"temperature=0 must be > 0"),
    ("sample beyond max_length", lambda: model().sample(2, max_length=9), r"max_length=9 must lie in 0..5"),
    ("baseline bad sample count", lambda: LeftToRightLM(4, d_model=8, n_layers=1, n_heads=2).sample(-2),
     r"num_samples=-2 must be a non-negative integer"),
    ("baseline prompt batch without prompt", lambda: LeftToRightLM(4, d_model=8, n_layers=1, n_heads=2).sample(
        prompt=good_batch()), r"the Batch given as prompt carries no prompt"),
    ("baseline bad temperature", lambda: LeftToRightLM(4, d_model=8, n_layers=1, n_heads=2).sample(1, temperature=-1),
     r"temperature=-1 must be > 0"),
    ("invalid slots", lambda: slots_to_orders(torch.tensor([[1]]), torch.tensor([1])), r"slots\[0, 0\] = 1 is invalid"),
    ("empty Batch", lambda: Batch(), r"an empty Batch needs num_samples"),
    ("batch on another device", lambda: model().log_joint(good_batch().to("meta"), torch.zeros(2, 3).long()),
     r"the batch is on meta but the model is on cpu; call batch.to\('cpu'\)"),
    ("guide batch on another device", lambda: PlackettLuceGuide(4, d_model=8, n_layers=1, n_heads=2)
     .order_distribution(good_batch().to("meta")), r"the batch is on meta but the guide is on cpu"),
    ("guide sees id over its vocab", lambda: PlackettLuceGuide(3, d_model=8, n_layers=1, n_heads=2)
     .order_distribution(collate([[0, 3]])), r"ids outside the guide's 0..2; re-encode the data or build the guide"),
    ("guide sees prompt id over its vocab", lambda: PlackettLuceGuide(4, d_model=8, n_layers=1, n_heads=2)
     .order_distribution(collate([[0]], [[7]])), r"batch.prompt holds ids outside the guide's 0..3"),
    ("model and guide vocabularies differ", lambda: InsertionELBO().loss(
        model(), PlackettLuceGuide(6, d_model=8, n_layers=1, n_heads=2), good_batch()),
     r"disagree on the vocabulary \(model vocab_size=4, guide vocab_size=6\)"),
    ("every component too short, in one message", lambda: InsertionRWS(2).loss(
        model(), PlackettLuceGuide(4, d_model=8, n_layers=1, n_heads=2, max_length=4), collate([[0] * 6])),
     r"length 6 > model max_length=5 and guide max_length=4; build with max_length >= 6"),
    ("ids over both vocabularies, in one message", lambda: importance_log_likelihood(
        model(), PlackettLuceGuide(3, d_model=8, n_layers=1, n_heads=2), collate([[0, 5]]), 2),
     r"disagree on the vocabulary .*; id 5 is outside model vocab_size=4 and guide vocab_size=3"),
    ("tokens of the wrong shape", lambda: Batch(tokens=torch.zeros(3, dtype=torch.long), lengths=torch.tensor([3])),
     r"tokens must be a \[B, L_max\] tensor"),
    # a user's second hour: misuse that used to pass silently or fail with a bare library error
    ("prompt to an unconditional model", lambda: InsertionProcess(4, d_model=8, n_layers=1, n_heads=2,
                                                                   conditional=False).sample(2, prompt=[[1]]),
     r"trained without prompts \(conditional=False\): drop prompt="),
    ("conditional model without a prompt", lambda: LeftToRightLM(4, d_model=8, n_layers=1, n_heads=2,
                                                                  conditional=True).sample(3),
     r"trained on prompts \(conditional=True\): pass prompt="),
    ("top-k of zero", lambda: model().sample(2, top_k=0), r"top_k=0 must be a positive integer"),
    ("nucleus above one", lambda: model().sample(2, top_p=1.2), r"top_p=1.2 must lie in \(0, 1\]"),
    ("truncated parallel decoding", lambda: model().sample(2, top_k=2, insertions_per_step=2),
     r"need exact decoding: use insertions_per_step=1"),
    ("psis of a bare 1-D array", lambda: __import__("ip_pyro.diagnostics", fromlist=["x"]).psis_diagnostics(
        torch.zeros(4).numpy()), r"needs log weights of shape \(chain, draw, sequence\)"),
    ("unknown token", lambda: __import__("ip_pyro").Vocabulary(["a"]).encode("a b"),
     r"token 'b' is not in the vocabulary \(1 tokens\)"),
    ("id outside the vocabulary", lambda: __import__("ip_pyro").Vocabulary(["a"]).decode([3]),
     r"id 3 is outside this vocabulary's 0..0"),
    ("exact NLL of a long string", lambda: __import__("ip_pyro.evaluation", fromlist=["x"]).sequence_nll(
        model(), UniformOrderGuide(), [{"target": [0] * 9}], exact=True), r"refuses length 9 > 8"),
    ("trainer without examples", lambda: __import__("ip_pyro").Trainer.from_config(
        __import__("ip_pyro").TrainConfig(), []), r"no training examples"),
]


@pytest.mark.parametrize("name,call,pattern", CASES, ids=[case[0] for case in CASES])
def test_bad_input_gives_a_clear_one_line_error(name, call, pattern):
    with pytest.raises(ValueError, match=pattern) as raised:
        call()
    assert "\n" not in str(raised.value)
