"""A small mutation check of the estimators, run by hand (not part of the suite):

    python tests/mutants.py            # every mutant; about 15 minutes on 2 CPU cores
    python tests/mutants.py --list     # the mutants and the tests that must catch them
    python tests/mutants.py 3 7        # only some

Each mutant is one deliberate bug in ``ip_pyro/infer/``, ``ip_pyro/distributions.py``, ``ip_pyro/orders.py`` or the
pointer guide. The script copies the tracked files of the repository to a temporary folder, applies one mutant there,
runs the test files that should catch it, and reports the mutant as *killed* (some test failed) or *survived*. Survivors are
listed with their reason in ``docs/testing.md`` (the one survivor is an equivalent mutant, marked as such).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ESTIMATOR_TESTS = ["tests/test_elbo.py", "tests/test_estimator_statistics.py", "tests/test_numerics.py"]
RWS_TESTS = ["tests/test_rws.py"]
ORDER_TESTS = ["tests/test_orders.py", "tests/test_plackett_luce.py", "tests/test_model.py"]
POINTER_TESTS = ["tests/test_pointer_guide.py"]

# (what the bug is, file, exact text, replacement, tests that must catch it)
MUTANTS = [
    ("RLOO baseline sign flipped", "ip_pyro/infer/elbo.py", "score = (rewards - baseline).detach()",
     "score = (rewards + baseline).detach()", ESTIMATOR_TESTS),
    ("no baseline", "ip_pyro/infer/elbo.py", "baseline = self._leave_one_out(rewards)",
     "baseline = torch.zeros_like(rewards)", ESTIMATOR_TESTS),
    ("K > 1 steps fixed to 0..K-1 instead of drawn", "ip_pyro/infer/elbo.py",
     "return keys.argsort(-1)[:, :count].T",
     "return torch.arange(count, device=lengths.device).unsqueeze(-1).expand(count, lengths.shape[0]).clone()",
     ESTIMATOR_TESTS),
    ("K = 1 never draws the stop step t = L", "ip_pyro/infer/elbo.py",
     "(torch.rand(lengths.shape, device=lengths.device) * (lengths + 1))",
     "(torch.rand(lengths.shape, device=lengths.device) * lengths)", ESTIMATOR_TESTS),
    ("entropy weight ignored without the closed form", "ip_pyro/infer/elbo.py",
     "- self.entropy_weight * step_log_q.gather(1, index)", "- step_log_q.gather(1, index)", ESTIMATOR_TESTS),
    ("closed form drops the guide's entropy", "ip_pyro/infer/elbo.py",
     "(weights * (safe_insert - self.entropy_weight * safe_log_q)).sum(-1)", "(weights * safe_insert).sum(-1)",
     ESTIMATOR_TESTS),
    ("step weight (L + 1) / min(K, L + 1) replaced by (L + 1) / K", "ip_pyro/infer/elbo.py",
     "weight = (lengths + 1).to(step_log_q.dtype) / counted",
     "weight = (lengths + 1).to(step_log_q.dtype) / steps.shape[0]", ESTIMATOR_TESTS),
    ("given steps clamped instead of refused", "ip_pyro/infer/elbo.py",
     "                check_steps(steps, live, lengths)\n", "                steps = torch.minimum(steps, lengths)\n",
     ESTIMATOR_TESTS),
    ("IWAE without the - log K", "ip_pyro/infer/rws.py", "iwae = log_total - math.log(particles)",
     "iwae = log_total", RWS_TESTS),
    ("model gradient with uniform instead of normalised weights", "ip_pyro/infer/rws.py",
     "surrogate = iwae + (normalised * (carrier - carrier.detach())).sum(0)",
     "surrogate = iwae + (carrier - carrier.detach()).mean(0)", RWS_TESTS),
    ("wake-phi with uniform weights", "ip_pyro/infer/rws.py",
     "surrogate = surrogate + (normalised * (log_q - log_q.detach())).sum(0)",
     "surrogate = surrogate + (log_q - log_q.detach()).mean(0)", RWS_TESTS),
    ("sampled-step gradient not scaled by (L + 1) / S", "ip_pyro/infer/rws.py",
     "return term.sum(0) * (lengths + 1).to(term.dtype) / counted", "return term.sum(0)", RWS_TESTS),
    ("weights not detached from the guide", "ip_pyro/infer/rws.py", "log_weights = log_p - log_q.detach()",
     "log_weights = log_p - log_q", RWS_TESTS),
    ("slot of a position counts itself (equivalent: differs only at inserted positions, which are masked)",
     "ip_pyro/orders.py", "return counts - inserted.long()", "return counts", ORDER_TESTS),
    ("canvas after t insertions holds t + 1 positions", "ip_pyro/orders.py", "(ranks < steps.unsqueeze(-1))",
     "(ranks <= steps.unsqueeze(-1))", ESTIMATOR_TESTS + ORDER_TESTS),
    ("Plackett-Luce normaliser over the prefix instead of the rest", "ip_pyro/distributions.py",
     "remaining = chosen.flip(-1).logcumsumexp(-1).flip(-1)", "remaining = chosen.logcumsumexp(-1)", ORDER_TESTS),
    ("Gumbel noise at half scale", "ip_pyro/distributions.py", "self.logits.detach() + gumbel",
     "self.logits.detach() + 0.5 * gumbel", ORDER_TESTS),
    ("pointer stream not causal (a step reads the order's later items)", "ip_pyro/networks/pointer.py",
     "items = block(items, cos, sin, None, True)", "items = block(items, cos, sin, None, False)", POINTER_TESTS),
    ("pointer sampler never marks a written position", "ip_pyro/networks/pointer.py",
     "state.written = state.written.scatter(1, positions.unsqueeze(-1), 1.0)", "state.written = state.written",
     POINTER_TESTS),
    ("pointer sampler may draw a written position again", "guides/pointer.py",
     "closed = closed.scatter(1, position.unsqueeze(-1), -math.inf)", "closed = closed", POINTER_TESTS),
    ("pointer step reads another sequence's items (rows not particle-major)", "ip_pyro/networks/pointer.py",
     "state.item_rows = (rows % batch) * (width * 4)", "state.item_rows = (rows // 4 % batch) * (width * 4)",
     POINTER_TESTS),
    ("pointer sampler's stream positions all 0", "ip_pyro/networks/pointer.py", "state.items += 1",
     "state.items += 0", POINTER_TESTS),
    ("pointer written mask includes the step's own position", "ip_pyro/networks/pointer.py",
     "return ranks.unsqueeze(-2) < steps.view(-1, 1)", "return ranks.unsqueeze(-2) <= steps.view(-1, 1)",
     POINTER_TESTS),
    ("pointer sampler's Gumbel noise at half scale", "guides/pointer.py", "(scores + gumbel[:, step])",
     "(scores + 0.5 * gumbel[:, step])", POINTER_TESTS),
]


def tracked_copy(destination: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run(index: int, quiet: bool) -> bool:
    """Apply mutant ``index`` in a fresh copy and run its tests; returns whether it was killed."""
    what, name, old, new, tests = MUTANTS[index]
    with tempfile.TemporaryDirectory(prefix="ip-pyro-mutant-") as folder:
        copy = Path(folder)
        tracked_copy(copy)
        path = copy / name
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"mutant {index} ({what}): the text to replace occurs {text.count(old)} times in {name}")
        path.write_text(text.replace(old, new))
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                                cwd=copy, capture_output=True, text=True)
        killed = result.returncode != 0
        verdict = "killed" if killed else "SURVIVED"
        print(f"[{index:2d}] {verdict:8s} {what}  ({time.perf_counter() - started:.0f} s)", flush=True)
        if not quiet and killed:
            failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
            print("       " + (failed[0] if failed else result.stdout.strip().splitlines()[-1]))
        return killed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", type=int, help="mutant numbers (default: all)")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for index, (what, name, _, _, tests) in enumerate(MUTANTS):
            print(f"[{index:2d}] {what} ({name}; {' '.join(tests)})")
        return 0
    chosen = args.only or range(len(MUTANTS))
    survivors = [index for index in chosen if not run(index, args.quiet)]
    print(f"{len(list(chosen)) - len(survivors)} killed, {len(survivors)} survived"
          + (f": {survivors}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
