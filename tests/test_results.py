"""Results as data: the record schema, tables built from records, the campaign's commands, and the committed
tables equal to what the committed records give."""
import json
import re
from pathlib import Path

import pytest
import torch

from experiments import campaign
from experiments.studies import STUDIES
from ip_pyro.config import GUIDE_NAMES
from ip_pyro.result_tables import curve_points, render_answers, render_table
from ip_pyro.results import (METRIC_NAMES, arm_family, diagnose_sentence, read_records, record_from_run,
                             validate_record, write_record)
from scripts import results as results_script

ROOT = Path(__file__).resolve().parents[1]


def a_record(**changes):
    record = {"study": "s", "task": "qm9", "label": "causal-pointer-rws", "arm": "learned-pointer",
              "config": {"model": "ip", "guide": "pointer", "decoder": "causal"}, "seed": 0, "wall_seconds": 600.0,
              "steps": 500, "threads": 1, "machine": "2-core CPU", "metrics": {"validity": 0.5, "nll": 20.0},
              "nll_kind": "iwae-16", "order_entropy": 0.5, "order": "atoms last", "curve": {},
              "command": ["ip-pyro train --task qm9"], "commit": "abcdef1", "date": "2026-12-03"}
    record.update(changes)
    return record


@pytest.mark.parametrize("guide", GUIDE_NAMES)
def test_every_registered_guide_has_an_arm_family(guide):
    family = arm_family({"model": "ip", "guide": guide})
    assert family == "uniform" or re.fullmatch(r"(fixed|learned)-" + guide, family)


def test_fo_arm_is_its_own_family_whatever_the_guide_flag_says():
    assert arm_family({"model": "fo-arm", "guide": "pl"}) == "fo-arm"


@pytest.mark.parametrize("change,words", [
    ({"steps": None}, "steps must be a non-negative number"),
    ({"arm": "random"}, "is none of fo-arm, uniform"),
    ({"arm": "learned-pl"}, "does not match its config (learned-pointer)"),
    ({"metrics": {"accuracy": 0.5}}, "unknown metric 'accuracy'"),
    ({"metrics": {"validity": float("nan")}, "nll_kind": "none"}, "must be a finite number"),
    ({"metrics": {"validity": 0.5}}, "nll_kind 'iwae-16' must be exact or iwae-N with an nll metric"),
    ({"nll_kind": "bound"}, "nll_kind 'bound'"),
    ({"command": []}, "command must be a non-empty list"),
    ({"commit": "main"}, "is not a git commit hash"),
    ({"date": "3 Dec 2026"}, "is not YYYY-MM-DD"),
    ({"metrics": {}}, "metrics must be a non-empty flat dict"),
])
def test_a_bad_record_is_refused_in_one_line_naming_the_problem(change, words):
    with pytest.raises(ValueError, match=re.escape(words)) as caught:
        validate_record(a_record(**change), "results/s.jsonl:3")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("results/s.jsonl:3")


def test_a_record_without_a_required_key_names_every_missing_key():
    record = a_record()
    del record["commit"], record["seed"]
    with pytest.raises(ValueError, match="lacks seed, commit"):
        validate_record(record)


def test_write_record_replaces_the_same_run_and_keeps_the_others(tmp_path):
    path = tmp_path / "results" / "s.jsonl"
    write_record(path, a_record(seed=0))
    write_record(path, a_record(seed=1))
    write_record(path, a_record(seed=0, metrics={"validity": 0.9, "nll": 10.0}))
    records = read_records([path.parent])
    assert sorted((r["seed"], r["metrics"]["validity"]) for r in records) == [(0, 0.9), (1, 0.5)]


def test_read_records_names_the_file_and_line_of_a_broken_record(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(a_record()) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"s.jsonl:2 is not valid JSON"):
        read_records([path])


def test_the_table_gives_mean_and_range_over_seeds_and_marks_bounds():
    records = [a_record(seed=0), a_record(seed=1, metrics={"validity": 0.7, "nll": 22.0}, steps=450),
               a_record(label="fo-arm", arm="fo-arm", config={"model": "fo-arm"}, nll_kind="exact",
                        order_entropy=None, order=None, metrics={"validity": 0.97, "nll": 12.5})]
    table = render_table(records, "s", ["validity", "nll"]).splitlines()
    assert table[0] == ("| arm | family | seeds | steps | train min | valid | test NLL (≤: an IWAE-16 bound) "
                        "| guide entropy | order (diagnose) |")
    assert table[3] == ("| causal-pointer-rws | learned-pointer | 0 / 1 | 500 / 450 | 10.0 / 10.0 | "
                        "0.600 [0.500, 0.700] | ≤ 21.00 [20.00, 22.00] | 0.50 [0.50, 0.50] | "
                        "atoms last / atoms last |")
    assert table[2] == "| fo-arm | fo-arm | 0 | 500 | 10.0 | 0.970 | 12.50 | – | – |"  # families in order: FO-ARM first


def test_the_answers_judge_each_metric_named_and_the_seed_range():
    learned = [a_record(seed=0, metrics={"validity": 0.60, "nll": 20.0}),
               a_record(seed=1, metrics={"validity": 0.70, "nll": 21.0})]
    uniform = [a_record(label="canvas-uniform", arm="uniform", seed=seed, order=None,
                        config={"model": "ip", "guide": "uniform"}, metrics={"validity": value, "nll": 19.0 + seed})
               for seed, value in ((0, 0.40), (1, 0.50))]
    text = render_answers(learned + uniform, "s", ["validity", "nll"])
    assert ("On validity, the learned order (causal-pointer-rws, 0.650 [0.600, 0.700]) beats the uniform order "
            "(canvas-uniform, 0.450 [0.400, 0.500]) (beyond the seed range).") in text
    assert "On test NLL, the learned order (causal-pointer-rws, 20.50 [20.00, 21.00]) trails the uniform order" in text
    assert "(within the seed range)" in text and "FO-ARM" not in text  # no FO-ARM record: no such sentence
    assert text.endswith("Orders learned (diagnose, per seed): causal-pointer-rws: atoms last / atoms last.")
    assert render_answers(learned + uniform, "s", "validity").count("On ") == 1


def test_a_seed_stopped_early_drops_out_of_the_curve_instead_of_cutting_the_others_short():
    long = a_record(seed=0, curve={"validity": [[500, 60.0, 0.1], [1000, 120.0, 0.3], [1500, 180.0, 0.5]]})
    short = a_record(seed=1, curve={"validity": [[500, 90.0, 0.2]]})
    steps, minutes, mean, low, high, seeds = curve_points([long, short], "validity")["causal-pointer-rws"]
    assert steps == [500, 1000, 1500] and seeds == [2, 1, 1]
    assert mean == pytest.approx([0.15, 0.3, 0.5]) and low == [0.1, 0.3, 0.5] and high == [0.2, 0.3, 0.5]
    assert minutes == pytest.approx([1.25, 2.0, 3.0])


def test_seeds_whose_validations_fall_at_different_steps_are_aligned_by_step_not_by_index():
    """The last validation of a time-limited seed lands at an odd step (400 here); the other seed's value there
    is read between its validations at 250 and 500, and its point at 500 is not averaged with the 400 one."""
    first = a_record(seed=0, curve={"validity": [[250, 60.0, 0.1], [500, 120.0, 0.3]]})
    second = a_record(seed=1, curve={"validity": [[250, 90.0, 0.2], [400, 300.0, 0.4]]})
    steps, minutes, mean, low, high, seeds = curve_points([first, second], "validity")["causal-pointer-rws"]
    assert steps == [250, 400, 500] and seeds == [2, 2, 1]
    assert mean == pytest.approx([0.15, (0.22 + 0.4) / 2, 0.3]) and low == pytest.approx([0.1, 0.22, 0.3])
    assert minutes == pytest.approx([1.25, (1.6 + 5.0) / 2, 2.0])


def test_curves_aligned_along_minutes_keep_minutes_increasing_where_a_slow_seed_drops_out():
    fast = a_record(seed=0, curve={"validity": [[500, 60.0, 0.2], [1000, 120.0, 0.4], [1500, 180.0, 0.6]]})
    slow = a_record(seed=1, curve={"validity": [[500, 120.0, 0.1], [1000, 300.0, 0.3]]})
    steps, minutes, mean, _, _, seeds = curve_points([fast, slow], "validity", along="minutes")["causal-pointer-rws"]
    assert minutes == pytest.approx([1.0, 2.0, 3.0, 5.0]) and seeds == [1, 2, 2, 1]
    assert mean[1] == pytest.approx((0.4 + 0.1) / 2) and steps[1] == pytest.approx(750)
    by_step = curve_points([fast, slow], "validity")["causal-pointer-rws"][1]
    assert by_step != sorted(by_step)  # along steps, the mean minutes step back where the slow seed drops out
    with pytest.raises(ValueError, match="along='time'"):
        curve_points([fast], "validity", along="time")


def test_time_limited_seeds_ending_a_second_apart_end_together():
    first = a_record(seed=0, curve={"validity": [[250, 600.0, 0.1], [2377, 2400.3, 0.6]]})
    second = a_record(seed=1, curve={"validity": [[250, 700.0, 0.2], [1724, 2400.9, 0.3]]})
    *_, mean, low, high, seeds = curve_points([first, second], "validity", along="minutes")["causal-pointer-rws"]
    assert seeds[-2:] == [2, 2] and mean[-1] == pytest.approx(0.45) and (low[-1], high[-1]) == (0.3, 0.6)


def test_a_table_of_a_study_without_records_is_a_one_line_error():
    with pytest.raises(ValueError, match="no records of study 'missing'"):
        render_table([a_record()], "missing", ["validity"])


def test_diagnose_sentence_reads_the_order_and_the_token_class_timing():
    summary = ("sequences diagnosed: 32\nguide entropy over orders: 0.53 of the uniform order's log L! on average\n"
               "preferred order: no positional order: modal order share 0.02\n"
               "insertion time by token class (0 = first, 1 = last, 0.50 for a random order): branch 0.09, atom 0.71\n")
    entropy, words = diagnose_sentence(summary)
    assert entropy == 0.53
    assert words == "no positional order: modal order share 0.02; branch 0.09, atom 0.71"


def test_record_from_a_real_run_folder(tmp_path):
    """Train a tiny arm for 4 steps with validations, write an eval file as ``ip-pyro eval`` does, and build the
    record: config, budget, curve and metrics come from the folder."""
    from ip_pyro.data.planning import make_dataset, task_config
    from ip_pyro.train import Trainer, TrainConfig, model_and_guide

    task = task_config("star-easy")
    config = TrainConfig(task="star-easy", model="ip", guide="pl", steps=4, batch_size=8, d_model=16, layers=1,
                         heads=2, guide_d_model=8, guide_layers=1, guide_heads=2, warmup=2, ema_start=2,
                         checkpoint_every=100, eval_every=2, out=str(tmp_path / "run"), vocab_size=task.vocab_size,
                         max_length=task.max_target_length + 2, seed=3)
    torch.manual_seed(0)
    model, guide = model_and_guide(config)
    examples = make_dataset("star-easy", seed=0, sizes={"train": 32, "valid": 0, "test": 0})["train"]
    trainer = Trainer(config, model, guide, examples, evaluate=lambda *_: {"valid_exact_match": 0.25})
    trainer.fit(progress=False)
    (tmp_path / "run" / "eval_test.json").write_text(json.dumps(
        {"task": "star-easy", "exact_match": 0.5, "token_accuracy": 0.75, "nll": 3.0, "num_examples": 8}))
    record = record_from_run(tmp_path / "run", study="tiny", label="pl", command=["ip-pyro train"],
                             commit="abcdef1", date="2026-12-03", machine="test", threads=1, nll_kind="iwae-10")
    assert record["arm"] == "learned-pl" and record["seed"] == 3 and record["steps"] == 4
    assert record["metrics"] == {"exact_match": 0.5, "token_accuracy": 0.75, "nll": 3.0}
    assert [point[0] for point in record["curve"]["exact_match"]] == [2, 4]
    assert 0.0 <= record["curve"]["order_entropy"][-1][2] <= 1.0
    assert record["order_entropy"] == record["curve"]["order_entropy"][-1][2]  # no diagnose report: validation's
    assert record["wall_seconds"] > 0 and record["stopped"] == "steps"


def test_campaign_commands_use_one_thread_the_seed_and_the_study_folder():
    lines = campaign.commands(STUDIES["qm9-40min"], "causal-pointer-rws", 1)
    assert "--threads 1" in lines["train"] and "--seed 1" in lines["train"] and "--time-limit 40" in lines["train"]
    assert lines["train"].endswith("--out runs/qm9-40min/causal-pointer-rws-s1")
    assert "--nll-samples 16" in lines["eval"] and "diagnose" in lines
    fo_arm = campaign.commands(STUDIES["qm9-40min"], "fo-arm", 0)
    assert "diagnose" not in fo_arm and "--nll-samples" not in fo_arm["eval"]
    star = campaign.commands(STUDIES["star-easy"], "causal-pointer-rws", 0)
    assert star["data"] == "ip-pyro data star-easy --out data/star-easy" and "--data data/star-easy" in star["eval"]


def test_every_study_arm_is_a_valid_train_command():
    """Each arm's flags parse under ``ip-pyro train`` and name a known model and guide."""
    from ip_pyro.cli import build_parser

    parser = build_parser()
    for chosen in STUDIES.values():
        for arm in chosen.arms:
            argv = campaign.commands(chosen, arm.name, 0)["train"].split()[1:]
            args = parser.parse_args(argv)
            assert arm_family({"model": args.model, "guide": args.guide})


def test_an_unknown_arm_is_a_one_line_error():
    with pytest.raises(SystemExit, match="has no arm 'nope'"):
        campaign.main(["record", "qm9-map", "--arms", "nope"])


def test_committed_records_are_valid_and_every_results_table_is_built_from_them():
    """No headline number without its record: every results block of README.md and docs/results.md is exactly
    what scripts/results.py renders from results/*.jsonl, and docs/results.md has no table outside a block."""
    records = read_records([ROOT / "results"])
    assert records, "results/ holds no records"
    assert all(set(record["metrics"]) <= set(METRIC_NAMES) for record in records)
    assert results_script.stale_blocks(ROOT, records) == []
    page = (ROOT / "docs" / "results.md").read_text()
    outside = results_script.BLOCK.sub("", page)
    assert not [line for line in outside.splitlines() if line.startswith("|")], \
        "docs/results.md has a table that no record backs; put it in a results block"
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Results", 1)[1].split("\n## ", 1)[0]
    assert not [line for line in results_script.BLOCK.sub("", section).splitlines() if line.startswith("|")]


def test_the_check_fails_when_a_block_is_edited_by_hand(tmp_path):
    records = [a_record()]
    page = ("x\n<!-- results: study=s metrics=validity -->\n" + render_table(records, "s", ["validity"]) + "\n"
            "<!-- /results -->\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "results.md").write_text(page)
    assert results_script.stale_blocks(tmp_path, records) == []
    (tmp_path / "docs" / "results.md").write_text(page.replace("0.500", "0.900"))
    assert results_script.stale_blocks(tmp_path, records) == [("docs/results.md", "s")]
    assert results_script.rebuilt(page.replace("0.500", "0.900"), records) == page



def test_a_block_with_arms_shows_those_arms_only_and_names_an_arm_without_records(tmp_path):
    records = [a_record(), a_record(label="causal-pointer-rws-sharpened", metrics={"validity": 0.7, "nll": 19.0}),
               a_record(label="canvas-uniform", arm="uniform", order_entropy=1.0, order="")]
    chosen = results_script.chosen_arms(records, "s", ["canvas-uniform", "causal-pointer-rws"])
    page = ("<!-- results: study=s metrics=validity arms=canvas-uniform,causal-pointer-rws brief -->\n"
            + render_table(chosen, "s", ["validity"], brief=True) + "\n<!-- /results -->\n"
            "<!-- answers: study=s metrics=validity arms=canvas-uniform,causal-pointer-rws -->\n"
            + render_answers(chosen, "s", ["validity"]) + "\n<!-- /answers -->\n")
    assert "sharpened" not in page and "0.700" not in page
    (tmp_path / "README.md").write_text(page)
    assert results_script.stale_blocks(tmp_path, records) == []
    assert "0.700" in results_script.rebuilt(page.replace(",causal-pointer-rws", ",causal-pointer-rws-sharpened"),
                                             records)
    with pytest.raises(ValueError, match="no records of arm 'fo-arm' in study 's'"):
        results_script.rebuilt(page.replace("arms=canvas-uniform", "arms=fo-arm"), records)


def test_campaign_commands_carry_the_device_and_a_run_folder_keeps_the_machine_it_started_on(tmp_path):
    cpu = campaign.commands(STUDIES["star-hard"], "causal-pointer-rws", 0)
    assert not any("--device" in line for line in cpu.values())
    gpu = campaign.commands(STUDIES["star-hard"], "causal-pointer-rws", 0, "cuda")
    assert all("--device cuda" in gpu[verb] for verb in ("train", "eval", "diagnose"))
    assert "--device" not in gpu["data"]
    assert campaign.run_settings(tmp_path, "cpu") == {"device": "cpu", "machine": campaign.MACHINE}
    (tmp_path / "train_commit.txt").write_text("0" * 40 + "\n")  # a run begun before run.json: on the CPU machine
    assert campaign.run_settings(tmp_path, "cuda") == {"device": "cpu", "machine": campaign.MACHINE}
    (tmp_path / "run.json").write_text('{"device": "cuda", "machine": "NVIDIA H200 GPU on a 16-core x86_64 host"}')
    assert campaign.run_settings(tmp_path, "cpu")["machine"].startswith("NVIDIA H200")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_a_cuda_campaign_without_a_gpu_is_a_one_line_error():
    with pytest.raises(SystemExit, match="torch sees no CUDA device here"):
        campaign.describe_machine("cuda")
