"""The payoff campaign's studies: each a task, a protocol shared by its arms, and arms as named settings.

Every arm's run folder is ``runs/<study>/<arm>-s<seed>``; ``experiments/campaign.py`` trains it (resuming),
evaluates, diagnoses and writes its record to ``results/<study>.jsonl``. Budgets are training minutes on one
torch thread (``--time-limit``); ``steps`` sizes each arm's cosine schedule to what fits the budget on this
project's 2-core CPU (measured step costs in docs/results.md), so a time-limited arm ends near its schedule's end.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Arm", "Study", "STUDIES", "study"]


@dataclass(frozen=True)
class Arm:
    """One setting of a study: ``name`` (the run folder's stem and the record's label), the ``ip-pyro train``
    flags that set it apart, and its schedule length ``steps``."""
    name: str
    flags: str
    steps: int


@dataclass(frozen=True)
class Study:
    """A comparison: ``task``, the train flags every arm shares, the arms, seeds, the budget in training minutes
    (0: the arms' steps decide), and how its runs are evaluated and diagnosed.

    ``nll_orders``: orders per molecule or prompt of the IP's IWAE NLL in ``eval`` (FO-ARM's NLL is exact);
    ``eval_flags``: the rest of ``ip-pyro eval``'s flags; ``diagnose_flags``: ``ip-pyro diagnose``'s, for arms
    with a learned guide (``{test}``: the study's file of test sequences); ``metrics``: the record metrics its
    tables show."""
    name: str
    task: str
    common: str
    arms: tuple
    seeds: tuple = (0,)
    minutes: float = 0.0
    nll_orders: int = 16
    eval_flags: str = ""
    diagnose_flags: str = "--num-sequences 32 --draws 50 --chains 2 --mcmc-samples 0"
    metrics: tuple = ()
    data: bool = False  # planning tasks: `ip-pyro data TASK --out data/TASK` first, and --data on every verb
    about: str = field(default="", compare=False)

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise SystemExit(f"study {self.name} has no arm {name!r}; its arms: {', '.join(a.name for a in self.arms)}")


QM9_COMMON = "--task qm9 --batch-size 64 --d-model 128 --layers 4 --heads 4 --lr 1e-3 --guide-lr 3e-3"
QM9_EVAL = "--num-samples 10000 --nll-limit 500 --seed 0"
QM9_METRICS = ("validity", "unique", "novelty", "vun", "fcd_test", "kl_score", "nll")
RWS4 = "--objective rws --particles 4"
STAR_COMMON = ("--d-model 128 --layers 4 --heads 4 --batch-size 64 --lr 1e-3 --guide-lr 3e-3 --warmup 100 "
               "--ema-decay 0.99 --absolute-positions --prompt-group 2 --embed-std 1")
PLANNING_EVAL = "--split test --nll-limit 500"
STAR_METRICS = ("exact_match", "token_accuracy", "edges_in_graph", "nll")
MAZE_METRICS = ("success", "exact_match", "valid_moves", "nll")


def planning_arms(fo_arm: int, fixed: int, learned: int, causal_fixed: int = 2500) -> tuple:
    """FO-ARM, the uniform order and the fixed orders (canvas decoder, prefix attention), the fixed orders again
    with the causal decoder (the ELBO over every step of the order: the learned arms' decoder without the learned
    order), the learned pointer and Plackett-Luce guides (causal decoder, RWS K = 4), with schedules of
    ``fo_arm``, ``fixed`` (the canvas arms), ``causal_fixed`` and ``learned`` steps."""
    return (Arm("fo-arm", "--model fo-arm", fo_arm),
            Arm("canvas-uniform", "--model ip --guide uniform --prompt-attention prefix", fixed),
            Arm("canvas-r2l", "--model ip --guide r2l --prompt-attention prefix", fixed),
            Arm("canvas-l2r", "--model ip --guide l2r --prompt-attention prefix", fixed),
            Arm("causal-l2r", "--model ip --guide l2r --decoder causal --step-sampling all", causal_fixed),
            Arm("causal-r2l", "--model ip --guide r2l --decoder causal --step-sampling all", causal_fixed),
            Arm("causal-pointer-rws", f"--model ip --guide pointer --decoder causal {RWS4}", learned),
            Arm("causal-pl-rws", f"--model ip --guide pl --decoder causal {RWS4}", learned))


STUDIES = {study.name: study for study in (
    Study("qm9-map", "qm9", QM9_COMMON + " --eval-every 250 --checkpoint-every 250", metrics=QM9_METRICS,
          eval_flags=QM9_EVAL, about="decoder x objective at equal steps (1,000 each; the canvas RWS arm capped "
          "at 10 minutes): which decoder serves which order and objective",
          arms=(Arm("fo-arm", "--model fo-arm", 1000),
                Arm("canvas-uniform", "--model ip --guide uniform", 1000),
                Arm("canvas-l2r", "--model ip --guide l2r", 1000),
                Arm("canvas-pl-rws", f"--model ip --guide pl {RWS4} --rws-gradient steps --time-limit 10", 1000),
                Arm("causal-uniform", "--model ip --guide uniform --decoder causal --step-sampling all", 1000),
                Arm("causal-l2r", "--model ip --guide l2r --decoder causal --step-sampling all", 1000),
                Arm("causal-pl-rws", f"--model ip --guide pl --decoder causal {RWS4}", 1000),
                Arm("causal-pointer-rws", f"--model ip --guide pointer --decoder causal {RWS4}", 1000))),
    Study("qm9-40min", "qm9", QM9_COMMON + " --eval-every 1000 --checkpoint-every 250", minutes=40,
          seeds=(0, 1), metrics=QM9_METRICS, eval_flags=QM9_EVAL,
          about="FO-ARM, AO-IP and the learned order at 40 training minutes",
          arms=(Arm("fo-arm", "--model fo-arm", 20000),
                Arm("canvas-uniform", "--model ip --guide uniform", 16000),
                Arm("causal-pointer-rws", f"--model ip --guide pointer --decoder causal {RWS4} --eval-every 250",
                    2800),
                Arm("causal-l2r", "--model ip --guide l2r --decoder causal --step-sampling all --eval-every 500",
                    5600),
                # the remedy for a guide still spread at 40 minutes: 300 ELBO steps whose guide term weighs the
                # order entropy by 0.3 (a guide rewarded for concentrating), then RWS as the plain arm
                Arm("causal-pointer-rws-sharpened", f"--model ip --guide pointer --decoder causal {RWS4} "
                    "--objective-switch 300 --order-entropy-weight 0.3 --eval-every 250", 2800))),
    Study("star-easy", "star-easy", "--task star-easy " + STAR_COMMON + " --eval-every 250 --checkpoint-every 250",
          minutes=20, seeds=(0, 1, 2), metrics=STAR_METRICS, eval_flags=PLANNING_EVAL, nll_orders=10, data=True,
          about="the pointer guide's seeds at 20 minutes (causal decoder, RWS K = 4)",
          arms=(Arm("causal-pointer-rws", f"--model ip --guide pointer --decoder causal {RWS4}", 1900),)),
    Study("star-medium", "star-medium", "--task star-medium " + STAR_COMMON + " --eval-every 500 "
          "--checkpoint-every 250", minutes=20, seeds=(0, 1), metrics=STAR_METRICS, eval_flags=PLANNING_EVAL,
          nll_orders=10, data=True, about="20 minutes per arm",
          # the remedy for a guide that collapses onto the first order it finds (source first): 500 AO-IP steps
          # (the ELBO, every step of each order, the guide held at the uniform order), then RWS as the plain arm
          arms=planning_arms(6000, 4000, 1500) + (
              Arm("causal-pointer-rws-held", f"--model ip --guide pointer --decoder causal {RWS4} "
                  "--objective-switch 500 --guide-hold 500 --step-sampling all", 1500),)),
    Study("maze-braided-easy", "maze-braided-easy", "--task maze-braided-easy " + STAR_COMMON.replace(
          " --absolute-positions --prompt-group 2 --embed-std 1", "") + " --eval-every 500 --checkpoint-every 250",
          minutes=20, seeds=(0, 1), metrics=MAZE_METRICS, eval_flags=PLANNING_EVAL, nll_orders=10, data=True,
          arms=planning_arms(4900, 3000, 780), about="20 minutes per arm (schedules from step costs of 0.25 s, "
          "0.42 s and 1.6 s measured 2026-12-03, two runs side by side)"),
    Study("star-hard", "star-hard", "--task star-hard " + STAR_COMMON + " --eval-every 250 --checkpoint-every 250",
          minutes=60, seeds=(0, 1), metrics=STAR_METRICS, eval_flags=PLANNING_EVAL, nll_orders=10, data=True,
          arms=tuple(arm for arm in planning_arms(2300, 2300, 1200, causal_fixed=2000) if arm.name in (
              "fo-arm", "canvas-uniform", "causal-r2l", "causal-l2r", "causal-pointer-rws")),
          about="an hour per arm, the paper's headline task (schedules from step costs of 1.7 s, 1.7 s and 3.2 s "
          "measured 2026-12-03, two runs side by side; the causal decoder's fixed orders 1.5 s alone, 2026-12-04)"),
)}


def study(name: str) -> Study:
    if name not in STUDIES:
        raise SystemExit(f"no study {name!r}; choose from {', '.join(STUDIES)}")
    return STUDIES[name]
