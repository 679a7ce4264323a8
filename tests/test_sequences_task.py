"""A user's own sequences through the CLI (``--task sequences --data FILE``): text and JSONL files, the vocabulary
built from the training split and saved, held-out splits, and train / eval / sample / diagnose end to end, printing
tokens as the user wrote them."""
import json
import random
import warnings

import pytest

from ip_pyro.cli import main
from ip_pyro.data.sequences import TokenVocabulary, load_sequence_task, read_sequences

SMALL = ["--steps", "4", "--batch-size", "8", "--d-model", "16", "--layers", "1", "--heads", "2",
         "--guide-d-model", "8", "--guide-layers", "1", "--eval-every", "2", "--no-progress"]


def brackets(count: int, seed: int = 0) -> list:
    """Balanced bracket strings over ( ) [ ] as token lists."""
    rng = random.Random(seed)
    strings = []
    for _ in range(count):
        stack, out = [], []
        for _ in range(rng.randint(1, 4)):
            opening = rng.choice("([")
            out.append(opening)
            stack.append(")" if opening == "(" else "]")
            if rng.random() < 0.5:
                out.append(stack.pop())
        out.extend(reversed(stack))
        strings.append(out)
    return strings


def write_text(path, prompted: bool, count: int = 60):
    lines = []
    for tokens in brackets(count):
        lines.append(f"len{len(tokens)}\t{' '.join(tokens)}" if prompted else " ".join(tokens))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_text_and_jsonl_files_read_the_same_and_split_deterministically(tmp_path):
    text = write_text(tmp_path / "b.txt", prompted=True)
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text("".join(json.dumps({"prompt": p, "target": t}) + "\n" for p, t in read_sequences(text)))
    assert read_sequences(text) == read_sequences(jsonl)
    first, second = load_sequence_task(text, seed=3), load_sequence_task(jsonl, seed=3)
    assert first.splits == second.splits and first.vocabulary.tokens == second.vocabulary.tokens
    assert [len(first.splits[n]) for n in ("train", "valid", "test")] == [51, 3, 6]  # 5 % / 10 % held out
    assert first.prompted and set(first.vocabulary.tokens) >= {"(", ")", "[", "]"}
    assert load_sequence_task(text, seed=4).splits != first.splits


def test_held_out_tokens_outside_the_training_vocabulary_are_counted_not_mapped(tmp_path):
    lines = ["a b"] * 30 + ["a z"]  # z appears once; wherever it lands outside training it cannot be encoded
    path = tmp_path / "rare.txt"
    path.write_text("\n".join(lines))
    found = False
    for seed in range(20):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            task = load_sequence_task(path, seed=seed)
        if "z" not in task.vocabulary.tokens:
            assert sum(task.skipped.values()) == 1
            found = True
            break
    assert found
    unseen = r"skipped 1 of \d+ (test|valid) sequences with tokens outside the training vocabulary"
    with pytest.warns(UserWarning, match=unseen):
        load_sequence_task(path, seed=seed)
    with pytest.raises(ValueError, match="token 'q' is not in the vocabulary"):
        TokenVocabulary(["a", "b"]).encode(["a", "q"])


@pytest.mark.parametrize("kind", ["text-prompted", "jsonl-unprompted"])
def test_train_eval_sample_diagnose_end_to_end(kind, tmp_path, capsys):
    if kind == "text-prompted":
        data = write_text(tmp_path / "brackets.txt", prompted=True)
    else:
        data = tmp_path / "brackets.jsonl"
        data.write_text("".join(json.dumps({"target": t}) + "\n" for t in brackets(60)))
    run = tmp_path / "run"
    assert main(["train", "--task", "sequences", "--data", str(data), "--out", str(run), "--guide", "pointer"]
                + SMALL) == 0
    said = capsys.readouterr().out
    assert "51 train / 3 valid / 6 test sequences" in said
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("valid_nll" in record for record in records)
    checkpoint = str(run / "checkpoint.pt")
    assert main(["eval", "--checkpoint", checkpoint, "--nll-samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "evaluating the test split of" in out and "6 sequences" in out
    results = json.loads((run / "eval_test.json").read_text())
    assert results["num_examples"] == 6 and results["nll"] > 0
    if kind == "text-prompted":
        assert "exact_match" in results and "=>" in out and "len" in out  # prompts printed as written
    assert main(["sample", "--checkpoint", checkpoint, "-n", "3"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("decoding the first")]
    assert len(lines) == 3
    assert set(" ".join(lines).split()) - {"ok", "=>", "(empty)"} <= {"(", ")", "[", "]"} | {f"len{n}" for n in
                                                                                            range(20)}
    assert main(["diagnose", checkpoint, "--out", str(tmp_path / "diag"), "--draws", "5", "--chains", "1",
                 "--mcmc-samples", "0", "--num-sequences", "4"]) == 0
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("content,message", [
    ("", "holds no sequences"),
    ("a b\nc d\n", "cannot hold 1 test and 1 validation sequences plus a training split"),
])
def test_bad_sequence_files_are_one_line_errors(content, message, tmp_path, capsys):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    assert main(["train", "--task", "sequences", "--data", str(path), "--out", str(tmp_path / "r")] + SMALL) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_sequences_without_data_and_bad_jsonl_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--task", "sequences", "--out", str(tmp_path / "r")] + SMALL) == 2
    assert "--task sequences needs --data FILE" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"target": ["a"]}\n{"prompt": "x", "target": ["b"]}\n')
    assert main(["train", "--task", "sequences", "--data", str(bad), "--out", str(tmp_path / "r")] + SMALL) == 2
    assert "bad.jsonl:2 needs" in capsys.readouterr().err
