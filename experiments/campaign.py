"""Run the payoff campaign's studies and write each finished run's record to ``results/<study>.jsonl``.

    python -m experiments.campaign list                        # studies, arms, and which records exist
    python -m experiments.campaign run qm9-map --jobs 2        # every arm x seed: train, eval, diagnose, record
    python -m experiments.campaign run qm9-40min --arms fo-arm causal-pointer-rws --seeds 0
    python -m experiments.campaign record qm9-map              # rewrite the records of runs already evaluated

A run folder ``runs/<study>/<arm>-s<seed>`` is resumed (``ip-pyro train --resume``, bit-exact) when it holds a
checkpoint, so an interrupted campaign continues where it stopped; a finished run is not trained again, and an
evaluated one not evaluated again (``--force-eval`` redoes it). Each run uses one torch thread, and ``--jobs``
runs go side by side (at most two on a 2-core machine); the record names what else was running (``--load``).
``--device cuda`` trains, evaluates and diagnoses on a GPU; a run folder keeps the device and the machine it
started on (``run.json``), so its record names that machine and its commands carry that device.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from experiments.studies import STUDIES, Study, study

ROOT = Path(__file__).resolve().parents[1]
MACHINE = "2-core x86_64 CPU, 24 GB (this project's development and CI machine)"


def git_commit() -> str:
    """HEAD's hash, ``+dirty`` when tracked files other than records, docs and Markdown differ from it (the code a
    run used, as far as git knows; the records other runs are writing, and the pages about them, are not code)."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!docs", ":!*.md"],
                           cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def run_folder(chosen: Study, arm_name: str, seed: int) -> Path:
    return Path("runs") / chosen.name / f"{arm_name}-s{seed}"


def describe_machine(device: str) -> str:
    """The machine a run on ``device`` uses, in words: this project's CPU machine, or the GPU's name and the host."""
    if not device.startswith("cuda"):
        return MACHINE
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: torch sees no CUDA device here; run on a GPU machine or drop --device")
    index = int(device.split(":")[1]) if ":" in device else 0
    return f"{torch.cuda.get_device_name(index)} GPU on a {os.cpu_count()}-core {platform.machine()} host"


def run_settings(folder: Path, device: str) -> dict:
    """``{"device", "machine"}`` of a run folder: what ``run.json`` says it started on; a folder that holds a run
    but no ``run.json`` (a run begun before the campaign wrote one) ran on this project's CPU machine; else
    ``device`` here."""
    path = folder / "run.json"
    if path.is_file():
        return json.loads(path.read_text())
    if (folder / "checkpoint.pt").is_file() or (folder / "train_commit.txt").is_file():
        return {"device": "cpu", "machine": MACHINE}
    return {"device": device, "machine": describe_machine(device)}


def commands(chosen: Study, arm_name: str, seed: int, device: str = "cpu") -> dict:
    """The shell commands of one run on ``device``: ``data`` (planning), ``train``, ``eval`` and, for a learned
    guide, ``diagnose`` — exactly what the record stores."""
    arm, folder = chosen.arm(arm_name), run_folder(chosen, arm_name, seed)
    data = f" --data data/{chosen.task}" if chosen.data else ""
    on = "" if device == "cpu" else f" --device {device}"
    limit = f" --time-limit {chosen.minutes:g}" if chosen.minutes else ""
    out = {"train": f"ip-pyro train {chosen.common}{data} {arm.flags} --steps {arm.steps}{limit} --seed {seed} "
                    f"--threads 1 --no-progress{on} --out {folder}"}
    if chosen.data:
        out = {"data": f"ip-pyro data {chosen.task} --out data/{chosen.task}", **out}
    fo_arm = "--model fo-arm" in arm.flags
    nll = "" if fo_arm else f" --nll-samples {chosen.nll_orders}"
    out["eval"] = f"ip-pyro eval --checkpoint {folder}/checkpoint.pt {chosen.eval_flags}{nll}{data}{on}"
    if not fo_arm and any(f"--guide {name}" in arm.flags for name in ("pl", "pointer", "sequential")):
        test = f"data/{chosen.task}/test.jsonl --domain path" if chosen.data else \
            f"runs/{chosen.name}/test64.smi --domain smiles"
        out["diagnose"] = (f"ip-pyro diagnose {folder}/checkpoint.pt --data {test} {chosen.diagnose_flags}{on} "
                           f"--out {folder}/diagnose")
    return out


def finished(folder: Path) -> bool:
    """Whether the run's last log line says it ended (its schedule or its time limit), not that it was cut."""
    log = folder / "metrics.jsonl"
    if not (folder / "checkpoint.pt").is_file() or not log.is_file():
        return False
    from ip_pyro.checkpoint import read_checkpoint

    state = read_checkpoint(folder / "checkpoint.pt")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return state["step"] >= state["config"]["steps"] or any(line.get("stopped") == "time limit" for line in lines)


def shell(command: str, log: Path) -> None:
    """Run ``command`` (one torch thread), appending its output to ``log``; a one-line error if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(log, "a") as stream:
        stream.write(f"$ {command}\n")
        stream.flush()
        code = subprocess.run(shlex.split(command), stdout=stream, stderr=subprocess.STDOUT, env=environment,
                              cwd=ROOT).returncode
    if code:
        raise RuntimeError(f"`{command}` failed (exit {code}); see {log}")


def write_test_smiles(chosen: Study) -> None:
    """``runs/<study>/test64.smi``: the first 64 test molecules of the task's split (what diagnose reads)."""
    path = ROOT / "runs" / chosen.name / "test64.smi"
    if path.is_file():
        return
    from ip_pyro.data.molecules import load_smiles_task

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(load_smiles_task(chosen.task).smiles["test"][:64]) + "\n")


def run_one(chosen: Study, arm_name: str, seed: int, *, force_eval: bool, load: str, device: str = "cpu") -> str:
    """Train (resuming), evaluate, diagnose and record one arm x seed on ``device`` (a folder that holds a run
    keeps the device it started on); returns a one-line account."""
    folder = ROOT / run_folder(chosen, arm_name, seed)
    settings = run_settings(folder, device)
    lines = commands(chosen, arm_name, seed, settings["device"])
    log = folder.parent / f"{folder.name}.log"
    if "data" in lines and not (ROOT / "data" / chosen.task / "manifest.json").is_file():
        shell(lines["data"], log)
    if not (folder / "train_commit.txt").is_file():  # the code the training started with (kept across resumes)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train_commit.txt").write_text(git_commit() + "\n")
    if not (folder / "run.json").is_file():
        (folder / "run.json").write_text(json.dumps(settings) + "\n")
    commit = (folder / "train_commit.txt").read_text().strip()
    if not finished(folder):
        resume = " --resume" if (folder / "checkpoint.pt").is_file() else ""
        shell(lines["train"] + resume, log)
    if force_eval or not (folder / "eval_test.json").is_file():
        (folder / "eval_commit.txt").write_text(git_commit() + "\n")
        shell(lines["eval"], log)
    if "diagnose" in lines and (force_eval or not (folder / "diagnose" / "summary.txt").is_file()):
        shell(lines["diagnose"], log)
    return write_run_record(chosen, arm_name, seed, commit=commit, load=load, device=device)


def write_run_record(chosen: Study, arm_name: str, seed: int, *, commit: str, load: str, device: str = "cpu") -> str:
    from ip_pyro.results import record_from_run, write_record

    folder = ROOT / run_folder(chosen, arm_name, seed)
    settings = run_settings(folder, device)
    lines = commands(chosen, arm_name, seed, settings["device"])
    fo_arm = "--model fo-arm" in chosen.arm(arm_name).flags
    date = datetime.date.fromtimestamp((folder / "eval_test.json").stat().st_mtime).isoformat()
    record = record_from_run(folder, study=chosen.name, label=arm_name, command=list(lines.values()), commit=commit,
                             date=date, machine=settings["machine"], threads=1, load=load,
                             nll_kind="exact" if fo_arm else f"iwae-{chosen.nll_orders}")
    write_record(ROOT / "results" / f"{chosen.name}.jsonl", record)
    shown = ", ".join(f"{key} {value:.3f}" for key, value in record["metrics"].items())
    return f"{chosen.name} {arm_name} s{seed}: {record['steps']} steps, {record['wall_seconds'] / 60:.1f} min; {shown}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", help="studies, arms and which records exist")
    for name in ("run", "record"):
        verb = verbs.add_parser(name, help="train, evaluate, diagnose and record" if name == "run" else
                                "rewrite the records of evaluated runs (no training)")
        verb.add_argument("study", help="one of " + ", ".join(STUDIES))
        verb.add_argument("--arms", nargs="+", default=None, help="arm names (default: every arm)")
        verb.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the study's)")
        verb.add_argument("--load", default="", help="what else runs on the machine, stated in each record")
        verb.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N for runs that start here (a run "
                          "folder keeps the device it started on)")
        if name == "run":
            verb.add_argument("--jobs", type=int, default=1, help="runs side by side, one torch thread each")
            verb.add_argument("--force-eval", action="store_true", help="evaluate and diagnose again")
    args = parser.parse_args(argv)
    if args.verb == "list":
        return list_studies()
    chosen = study(args.study)
    pairs = [(arm, seed) for seed in (args.seeds or chosen.seeds)
             for arm in (args.arms or [arm.name for arm in chosen.arms])]
    for arm, _ in pairs:
        chosen.arm(arm)  # a one-line error for an unknown arm before anything runs
    if args.verb == "record":
        for arm, seed in pairs:
            marker = ROOT / run_folder(chosen, arm, seed) / "train_commit.txt"
            commit = marker.read_text().strip() if marker.is_file() else git_commit()
            print(write_run_record(chosen, arm, seed, commit=commit, load=args.load, device=args.device), flush=True)
        return 0
    if not chosen.data:
        write_test_smiles(chosen)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, chosen, arm, seed, force_eval=args.force_eval, load=args.load,
                               device=args.device) for arm, seed in pairs]
        failed = 0
        for future in futures:
            try:
                print(future.result(), flush=True)
            except RuntimeError as error:
                failed += 1
                print(f"error: {error}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def list_studies() -> int:
    from ip_pyro.results import read_records

    for chosen in STUDIES.values():
        path = ROOT / "results" / f"{chosen.name}.jsonl"
        done = {(r["label"], r["seed"]) for r in read_records([path])} if path.is_file() else set()
        print(f"{chosen.name} ({chosen.task}; {chosen.about})")
        for arm in chosen.arms:
            seeds = " ".join(f"s{seed}{'*' if (arm.name, seed) in done else ''}" for seed in chosen.seeds)
            print(f"  {arm.name:<22} {seeds}   {arm.flags}")
    print("(* = recorded in results/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
