import pytest

from experiments import edge_lookup


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


def test_order_fit_scores_every_family_and_matches_the_log_joint(tmp_path):
    import itertools
    import json

    import torch

    from experiments import order_fit
    from ip_pyro.guides import PlackettLuceGuide, RightToLeftGuide
    from ip_pyro import collate
    from ip_pyro.checkpoint import save_checkpoint
    from ip_pyro.models import InsertionProcess

    torch.manual_seed(0)
    model = InsertionProcess(5, d_model=16, n_layers=1, n_heads=2, max_length=6)
    guide = PlackettLuceGuide(5, d_model=8, n_layers=1, n_heads=2, max_length=6)
    save_checkpoint(tmp_path / "checkpoint.pt", model, guide)
    records = [{"prompt": [1, 2], "target": [0, 3, 4, 1]}, {"prompt": [4], "target": [2, 2]}]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    results = order_fit.main(order_fit.parse_args([str(tmp_path / "checkpoint.pt"), "--data",
                                                   str(tmp_path / "data.jsonl"), "--samples", "3"]))
    assert set(results) == {"left to right", "right to left", "outside in", "middle out (tree)", "uniform random",
                            "the checkpoint's guide (PlackettLuceGuide)"}
    assert results["uniform random"]["beats_uniform"] == 0.0  # strictly better than itself: never
    batch = collate([r["target"] for r in records], [r["prompt"] for r in records])
    orders = RightToLeftGuide().order_distribution(batch).sample()
    with torch.no_grad():
        per_sequence = model.eval().log_joint(batch, orders)
        expected = per_sequence.mean().item()
        # the uniform reference by brute force: the mean of log p(x, sigma) over every order of each sequence
        uniform = []
        for record, row in zip(records, range(batch.batch_size)):
            length = len(record["target"])
            perms = torch.tensor(list(itertools.permutations(range(length))))
            perms = torch.cat([perms, torch.arange(length, batch.max_length).expand(len(perms), -1)], 1)
            single = batch[torch.tensor([row])].repeat(len(perms))
            uniform.append(model.log_joint(single, perms).mean().item())
    assert abs(results["right to left"]["mean"] - expected) < 1e-4
    assert abs(results["uniform random"]["mean"] - sum(uniform) / len(uniform)) < 0.6  # 3 draws of up to 24 orders
    beats = sum(float(a > b) for a, b in zip(per_sequence.tolist(), uniform)) / len(uniform)
    assert abs(results["right to left"]["beats_uniform"] - beats) <= 0.5  # sampled reference: one row may flip


def test_guide_learning_runs_elbo_and_rws_arms_with_seeds_and_a_time_limit(tmp_path):
    from experiments import guide_learning

    args = guide_learning.parse_args(["--steps", "3", "--num-train", "64", "--num-test", "8", "--seeds", "0", "1",
                                      "--settings", "ELBO, left to right", "RWS K=2", "RWS K=4, sampled-step gradient",
                                      "RWS K=4, sequential guide", "RWS K=4, pointer guide",
                                      "--json", str(tmp_path / "out.json")])
    results = guide_learning.main(args)
    assert results["ELBO, left to right"]["relative_order_entropy"]["max"] == 0.0
    for entry in results.values():
        assert [run["seed"] for run in entry["runs"]] == [0, 1] and entry["steps"]["mean"] == 3
        assert entry["exact_nll"]["min"] <= entry["exact_nll"]["mean"] <= entry["exact_nll"]["max"]
    timed = guide_learning.main(guide_learning.parse_args(["--steps", "100000", "--time-limit", "0.5", "--num-train",
                                                           "64", "--num-test", "8", "--settings", "RWS K=2"]))
    assert 0 < timed["RWS K=2"]["steps"]["mean"] < 100000  # stopped by the clock, not the step cap


def test_smiles_table_groups_seeds_into_mean_and_range(tmp_path, capsys):
    import json

    from scripts import smiles_table

    def run(name, validity, entropy, objectives, summary=None):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"step": i + 1, "loss": 1.0, "elapsed_s": 6.0 * (i + 1), "objective": o} for i, o in enumerate(objectives)]
        rows.append({"step": len(objectives), "valid_validity": validity, "order_entropy": entropy})
        (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (folder / "eval_test.json").write_text(json.dumps({"validity": validity, "unique@10k": 1.0, "novelty": 0.5}))
        if summary:
            (folder / "diagnose").mkdir()
            (folder / "diagnose" / "summary.txt").write_text(summary)
        return str(folder)

    summary = ("guide entropy over orders: 0.40 of the uniform order's log L! on average\n"
               "preferred order: mostly left to right: mean rank correlation of position and insertion step +0.70, of")
    folders = [run("ip-pl-rws-s0", 0.5, 0.9, ["elbo", "rws", "rws"], summary), run("ip-pl-rws-s1", 0.7, 0.6, ["elbo"] * 3),
               run("ao-ip-s0", 0.4, 1.0, ["elbo"]),
               run("ip-r2l-s0", 0.9, 0.9, ["elbo"], summary.replace("0.40 of", "0.00 of"))]
    smiles_table.main(smiles_table.parse_args(folders + ["--seeds"]))
    lines = capsys.readouterr().out.splitlines()
    rws = next(line for line in lines if line.startswith("| ip-pl-rws |"))
    assert "| 2 | 3 (2 RWS) / 3 |" in rws and "0.600 [0.500, 0.700]" in rws  # validity over the two seeds
    assert "0.300 [0.250, 0.350]" in rws  # V×U×N = validity x unique x novelty (0.5 x 1 x 0.5, 0.7 x 1 x 0.5)
    assert "0.50 [0.40, 0.60]" in rws  # diagnose's 0.40 for seed 0, the last validation's 0.60 for seed 1
    assert "+0.70" not in rws and "0.70 " in rws and "mostly left to right / –" in rws
    assert any(line.startswith("| ao-ip | 1 | 1 |") and "0.400 |" in line for line in lines)
    r2l = next(line for line in lines if line.startswith("| ip-r2l |"))
    assert "| 0.00 | 0.70 |" in r2l  # diagnose's exact 0 entropy (one fixed order), not the validation's 0.9


def test_order_learning_figure_reads_guide_learning_json_and_run_folders(tmp_path):
    import json

    from scripts import order_learning_figure

    mirror = tmp_path / "mirror.json"
    mirror.write_text(json.dumps({"RWS K=2": {"runs": [{"exact_nll": 4.2, "relative_order_entropy": 0.7, "seed": 0},
                                                       {"exact_nll": 4.4, "relative_order_entropy": 0.5, "seed": 1}]}}))
    assert order_learning_figure.mirror_points([mirror]) == {"RWS K=2": [(0.7, 4.2), (0.5, 4.4)]}
    run = tmp_path / "ip-pl-rws-s0"
    run.mkdir()
    rows = [{"step": 1, "loss": 2.0, "elapsed_s": 30.0}, {"step": 2, "loss": 1.0, "elapsed_s": 60.0},
            {"step": 2, "valid_exact_match": 0.25, "order_entropy": 0.8}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves = order_learning_figure.run_curves(run)
    assert curves["entropy"] == [(1.0, 0.8)] and curves["score"] == [(1.0, 0.25)]
    out = tmp_path / "figure.png"
    order_learning_figure.main(order_learning_figure.parse_args(["--mirror", str(mirror), "--runs", str(run),
                                                                 "--out", str(out)]))
    assert out.stat().st_size > 10_000
    with pytest.raises(SystemExit, match="give --mirror"):
        order_learning_figure.main(order_learning_figure.parse_args([]))


def _planning_run(tmp_path, name, test, valid, objectives=("elbo",), summary=None):
    """A run folder as ``ip-pyro train`` / ``eval`` / ``diagnose`` leave it: one step record per objective (6 s
    each), then validation records ``(step, {key: value})`` after their step."""
    import json

    folder = tmp_path / name
    folder.mkdir()
    rows = []
    for step, objective in enumerate(objectives, 1):
        rows.append({"step": step, "loss": 1.0, "elapsed_s": 6.0 * step, "objective": objective})
        rows += [{"step": step, **values} for at, values in valid if at == step]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "eval_test.json").write_text(json.dumps(test))
    if summary:
        (folder / "diagnose").mkdir()
        (folder / "diagnose" / "summary.txt").write_text(summary)
    return str(folder)


def test_run_folders_reads_curves_at_training_minutes_and_the_diagnose_report(tmp_path):
    from scripts import run_folders

    summary = ("guide entropy over orders: 0.31 of the uniform order's log L! on average\n"
               "preferred order: mostly right to left: mean rank correlation of position and insertion step -0.85, of")
    folder = _planning_run(tmp_path, "ip-pl-rws-s3", {"exact_match": 0.5}, [(2, {"valid_exact_match": 0.25}),
                           (4, {"valid_exact_match": 0.75, "order_entropy": 0.4})], ["elbo", "elbo", "rws", "rws"],
                           summary)
    run = run_folders.read_run(folder)
    assert run["steps"] == 4 and run["rws_steps"] == 2 and run["minutes"] == 0.4
    assert run["valid"]["valid_exact_match"] == [(2, 0.2, 0.25), (4, 0.4, 0.75)]
    assert run_folders.valid_at_step(run, "valid_exact_match", 2) == 0.25
    assert run_folders.valid_at_step(run, "valid_exact_match", 3) is None
    assert run["order"] == {"entropy": 0.31, "rank_corr": -0.85, "words": "mostly right to left"}
    assert run_folders.order_entropy(run) == 0.31 and run_folders.arm_name(run["name"]) == "ip-pl-rws"
    assert run_folders.spread([0.5, None, 0.7]) == "0.600 [0.500, 0.700]" and run_folders.spread([None]) == "–"
    assert run_folders.spread([0.001, -0.001], 2) == "0.00 [0.00, 0.00]"  # no "-0.00"


@pytest.mark.parametrize("task", ["maze", "star"])
def test_collect_runs_groups_seeds_with_the_task_s_columns_and_an_equal_steps_column(task, tmp_path, capsys):
    from scripts import collect_runs

    score = "success" if task == "maze" else "exact_match"
    extra = {"valid_moves": 0.9} if task == "maze" else {"edges_in_graph": 0.95}
    folders = [_planning_run(tmp_path, f"ao-ip-s{seed}", {"exact_match": value / 2, score: value, "nll": 1.0, **extra},
                             [(2, {f"valid_{score}": value / 4}), (3, {f"valid_{score}": value})], ["elbo"] * 3)
               for seed, value in [(0, 0.4), (1, 0.8)]]
    folders.append(_planning_run(tmp_path, "fo-arm-s0", {score: 0.9, "nll": 0.5, **extra},
                                 [(2, {f"valid_{score}": 0.3})], ["nll"] * 2))
    collect_runs.main(collect_runs.parse_args(folders + ["--seeds", "--at-step", "2"]))
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert ("test success" in header and "valid moves" in header) == (task == "maze")
    assert ("edges in graph" in header) == (task == "star")
    assert f"validation {score.replace('_', ' ')} at step 2" in header
    ao = next(line for line in lines if line.startswith("| ao-ip |"))
    assert "| 2 | 3 / 3 | 0.3 [0.3, 0.3] | 0.600 [0.400, 0.800] |" in ao and "| 0.150 [0.100, 0.200] |" in ao
    assert next(line for line in lines if line.startswith("| fo-arm |")).startswith("| fo-arm | 1 | 2 | 0.2 | 0.900 |")
    collect_runs.main(collect_runs.parse_args(folders + ["--plot", str(tmp_path / "curves.png")]))
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="no run folders"):
        collect_runs.main(collect_runs.parse_args([str(tmp_path / "missing")]))


def test_benchmark_scoring_section_times_both_canvas_layouts():
    import argparse

    from benchmarks import run

    args = argparse.Namespace(batch_size=4, d_model=16, layers=1, heads=2, rounds=1, repeats=1, device="cpu")
    result = run.scoring_section(args)
    assert set(result) == {"star-medium", "smiles-shaped"}
    for entry in result.values():
        assert set(entry["seconds"]) == {"no_grad_row_order", "no_grad_by_size", "grad_row_order", "grad_by_size"}
        assert entry["by_size_speedup_no_grad"] > 0 and entry["by_size_speedup_grad"] > 0
        assert entry["canvases"] == 4 * (4 * entry["target_tokens_mean"] + 4)


def test_decoders_section_times_every_arm_and_reports_ratios_per_scored_order():
    from benchmarks import decoders

    args = decoders.configure(decoders.parse_args(["--quick", "--batch-size", "4", "--d-model", "16", "--layers",
                                                   "1", "--heads", "2", "--guide-d-model", "8", "--guide-layers",
                                                   "1", "--device", "cpu"]))
    args.decoder_settings.update(rounds=1, repeats=1, samples=3, sampling_rounds=1, lengths=[6], growth_batch=2,
                                 growth_repeats=1)
    result = decoders.run(args)
    for shape in ("qm9", "star-hard"):
        entry = result[shape]
        assert set(entry["seconds_per_step"]) == set(decoders.ARMS)
        assert entry["step_over_fo_arm"]["fo_arm"] == 1.0
        for name in decoders.ARMS:
            per_order = entry["step_over_fo_arm"][name] / decoders.ORDERS_SCORED[name]
            assert abs(entry["step_over_fo_arm_per_scored_order"][name] - per_order) < 1e-12
            assert entry["saved_activation_mib"][name] > 0
        rates = entry["sampling_tokens_per_s"]
        assert abs(entry["sampling_causal_over_fo_arm"] - rates["causal"] / rates["fo_arm_kv_cache"]) < 1e-12
        flops = entry["sampling_flops"]
        assert flops["causal"] > 0 and flops["fo_arm_kv_cache"] > 0
        assert entry["sampling_causal_flop_bound"] == flops["fo_arm_kv_cache"] / flops["causal"]
        assert entry["step_flops_over_fo_arm"]["fo_arm"] == 1.0
        assert entry["step_flops_over_fo_arm"]["causal_rws_k4"] > entry["step_flops_over_fo_arm"]["causal_elbo_m2"]
    assert set(result["growth"]) == {6} and set(result["growth"][6]["seconds"]) == {"fo_arm", "canvas", "causal"}
    decoders.report(result)


def test_guide_cost_section_times_every_guide_against_plackett_luce():
    from benchmarks import guide_cost

    args = guide_cost.parse_args(["--quick", "--batch-size", "2", "--guide-d-model", "16", "--guide-layers", "1"])
    args.guide_settings = dict(rounds=1, repeats=1)
    result = guide_cost.run(args)
    for shape in ("qm9", "star-hard"):
        entry = result[shape]
        assert set(entry["seconds"]) == {f"{g}/{op}" for g in guide_cost.GUIDES
                                         for op in ("rws_k4", "elbo_m2", "sample_k4")}
        assert entry["over_pl"]["pl/rws_k4"] == 1.0 and all(value > 0 for value in entry["seconds"].values())
        assert entry["rws_k4_flops_over_pl"]["pl"] == 1.0
        assert entry["rws_k4_flops_over_pl"]["pointer"] > 1.0  # the stream over the orders is extra arithmetic
    guide_cost.report(result)



def test_likelihood_section_times_exact_and_both_iwae_paths():
    from benchmarks import likelihood

    args = likelihood.parse_args(["--quick", "--orders", "3", "--plain", "--d-model", "16", "--layers", "1",
                                  "--heads", "2", "--guide-d-model", "8", "--guide-layers", "1"])
    result = likelihood.section(args)
    for decoder in ("canvas", "causal"):
        assert set(result[decoder]["seconds"]) == {"exact", "iwae", "iwae_plain"}
        assert result[decoder]["iwae_over_exact"] > 0 and result[decoder]["plain_over_iwae"] > 0
    likelihood.report(result)


def test_profile_section_tables_each_path():
    from benchmarks import profile

    args = profile.parse_args(["--calls", "1", "--rows", "2", "--batch-size", "2", "--d-model", "16", "--layers",
                               "1", "--heads", "2", "--guide-d-model", "8", "--guide-layers", "1"])
    result = profile.section(args)
    assert set(result) == set(profile.PATHS)
    for entry in result.values():
        assert entry["wall_ms"] > 0 and 0.0 <= entry["overhead"] <= 1.0 and len(entry["top"]) == 2
    profile.report(result)
