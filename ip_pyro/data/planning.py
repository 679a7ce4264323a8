"""Goal-conditioned planning data: star graphs and mazes, written as JSONL with a checksummed manifest.

Mazes live in :mod:`ip_pyro.data.mazes`; this module holds the star graphs, the task registry
(:func:`task_config`, :func:`make_dataset`, :func:`example_metrics`) and the JSONL files.

A star graph has ``degree`` arms (chains of nodes) sharing one centre node. Prompt = the shuffled edge list
(``u v u v ...``, each edge in a random direction) then ``source goal``; target = the path from source to goal
written as its consecutive edges, flattened (``a b b c c d ...``). Node ids are the token ids.

Tiers (``TASKS``):

* ``star-easy``: ILM's ``star_small`` (``simple_star_graph`` with degree 3, ``pathlength`` 5, 20 node ids): degree
  3, every arm 4 nodes beyond the centre (5 counting it), the source is the centre and the goal the end of one arm
  (the path has 4 edges, the target 8 tokens), and, as there, every edge is written pointing away from the source.
* ``star-easy-v0``: the star-easy of earlier releases (arms of 5 nodes beyond the centre, edges in random
  directions); kept so that the numbers reported for it can be reproduced.
* ``star-medium`` / ``star-hard``: ``degree`` arms, each a chain of ``l`` nodes (``l`` uniform in
  ``[l_min, l_max]`` per arm); the centre is the node at a random index in ``[0, l - p)`` of every arm (``p`` =
  minimum plan length); source and goal are the two ends of arm 0, so the path runs source -> ... -> centre -> ...
  -> goal. medium: degree 3, ``l`` in 3..6, 20 node ids, ``p = 2``; hard: degree 5, ``l`` in 6..12, 56 node ids,
  ``p = 5``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ip_pyro.checkpoint import atomic_write
from ip_pyro.data.mazes import MAZE_TASKS, MazeConfig, build_maze, maze_example, maze_metrics, sequence_match

__all__ = ["StarConfig", "TASKS", "star_graph", "make_dataset", "write_dataset", "load_dataset", "task_config",
           "path_metrics", "example_metrics", "task_names"]


@dataclass(frozen=True)
class StarConfig:
    degree: int
    arm_min: int
    arm_max: int
    num_nodes: int
    plan: int
    centre_is_source: bool = False
    outward_edges: bool = False  # write every edge (parent, child) from the source, as ILM does; else random
    def validate(self) -> None:
        if self.degree < 1 or self.arm_min < 1 or self.arm_max < self.arm_min or self.num_nodes < 2:
            raise ValueError(f"star graph sizes must be positive with arm_min <= arm_max, got {self}")
        if not self.centre_is_source and self.arm_min <= self.plan:
            raise ValueError(f"arms of {self.arm_min} nodes cannot hold a plan of {self.plan} edges past the centre; "
                             "raise arm_min above plan")
        needed = 1 + self.degree * (self.arm_max if self.centre_is_source else self.arm_max - 1)
        if needed > self.num_nodes:
            raise ValueError(f"{needed} arm nodes do not fit in {self.num_nodes} node ids; raise num_nodes or "
                             "shorten the arms")

    @property
    def vocab_size(self) -> int:
        return self.num_nodes

    @property
    def max_target_length(self) -> int:
        return 2 * (self.arm_max if self.centre_is_source else self.arm_max - 1)

    @property
    def max_prompt_length(self) -> int:
        edges = self.degree * (self.arm_max if self.centre_is_source else self.arm_max - 1)
        return 2 * edges + 2


TASKS = {
    "star-easy": StarConfig(degree=3, arm_min=4, arm_max=4, num_nodes=20, plan=4, centre_is_source=True,
                            outward_edges=True),
    "star-easy-v0": StarConfig(degree=3, arm_min=5, arm_max=5, num_nodes=20, plan=5, centre_is_source=True),
    "star-medium": StarConfig(degree=3, arm_min=3, arm_max=6, num_nodes=20, plan=2),
    "star-hard": StarConfig(degree=5, arm_min=6, arm_max=12, num_nodes=56, plan=5),
}
SPLITS = {"train": 50_000, "valid": 500, "test": 5_000}
# a renamed tier draws from its old name's random stream, so `ip-pyro data` writes the same graphs under either name
SEED_NAMES = {"star-easy-v0": "star-easy"}
# models get this many tokens beyond the longest target, so that stopping is the model's choice (a model that
# runs on is caught by the termination rate) rather than forced at the target's length
LENGTH_SLACK = 2


def task_names() -> list:
    return list(TASKS) + list(MAZE_TASKS)


def task_config(task: str):
    """The :class:`StarConfig` or :class:`~ip_pyro.data.mazes.MazeConfig` of a task name."""
    if task in TASKS:
        return TASKS[task]
    if task in MAZE_TASKS:
        return MAZE_TASKS[task]
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(task_names())}")


@functools.lru_cache(maxsize=16)
def _maze(task: str, seed: int) -> frozenset:
    return frozenset(build_maze(MAZE_TASKS[task], seed))


def star_graph(rng: random.Random, config: StarConfig) -> dict:
    """One example: ``prompt``, ``target`` and the raw ``edges``, ``source``, ``goal``, ``path``, ``centre``."""
    if config.centre_is_source:
        ids = rng.sample(range(config.num_nodes), 1 + config.degree * config.arm_max)
        centre = ids[0]
        arms = [[centre] + ids[1 + k * config.arm_max: 1 + (k + 1) * config.arm_max] for k in range(config.degree)]
        path = arms[rng.randrange(config.degree)]
    else:
        lengths = [rng.randint(config.arm_min, config.arm_max) for _ in range(config.degree)]
        ids = rng.sample(range(config.num_nodes), 1 + sum(length - 1 for length in lengths))
        centre, fresh = ids[0], iter(ids[1:])
        arms = []
        for length in lengths:
            index = rng.randrange(0, length - config.plan)
            arms.append([centre if k == index else next(fresh) for k in range(length)])
        path = arms[0]
    edges = [(arm[k], arm[k + 1]) for arm in arms for k in range(len(arm) - 1)]
    if not config.outward_edges:  # arms are written from the centre (star-easy) or from the source (the others)
        edges = [(v, u) if rng.random() < 0.5 else (u, v) for u, v in edges]
    rng.shuffle(edges)
    source, goal = path[0], path[-1]
    prompt = [node for edge in edges for node in edge] + [source, goal]
    target = [node for k in range(len(path) - 1) for node in (path[k], path[k + 1])]
    return {"prompt": prompt, "target": target, "edges": edges, "source": source, "goal": goal, "path": path,
            "centre": centre}


def _key(example: dict) -> tuple:
    if "subgoals" in example:
        return tuple(example["subgoals"])
    return tuple(sorted(map(tuple, (sorted(edge) for edge in example["edges"])))), example["source"], example["goal"]


def make_dataset(task: str, *, seed: int = 0, sizes: Optional[dict] = None) -> dict:
    """``{split: [example, ...]}``, deterministic in ``seed``.

    Validation and test examples are drawn first, all distinct; training examples never repeat one of them (they
    may repeat each other only where the task has fewer distinct examples than asked for, e.g. small mazes). The
    test split is therefore the same whatever the training size.
    """
    config = task_config(task)
    config.validate()
    sizes = dict(SPLITS if sizes is None else sizes)
    rng = random.Random(f"{SEED_NAMES.get(task, task)}:{seed}")
    if isinstance(config, MazeConfig):
        passages = _maze(task, seed)

        def draw():
            return dict(maze_example(rng, config, passages), maze_seed=seed)
    else:
        def draw():
            return star_graph(rng, config)
    splits, held_out = {}, set()
    for split in ("valid", "test", "train"):
        examples, keys, attempts = [], set(), 0
        while len(examples) < sizes.get(split, 0):
            attempts += 1
            if attempts > 50 * sizes[split] + 1000:
                raise ValueError(f"could not draw {sizes[split]} {split} examples of {task} apart from the held-out "
                                 "ones; ask for fewer")
            example = draw()
            key = _key(example)
            if key in held_out or (split != "train" and key in keys):
                continue
            keys.add(key)
            examples.append(example)
        if split != "train":
            held_out |= keys
        splits[split] = examples
    return {split: splits[split] for split in ("train", "valid", "test")}


def _jsonl(examples) -> bytes:
    return "".join(json.dumps(example, separators=(",", ":")) + "\n" for example in examples).encode()


def write_dataset(splits: dict, out_dir, task: str, *, seed: int) -> Path:
    """Write ``{split}.jsonl`` and ``manifest.json`` (task, config, counts, sha256 of each file) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"task": task, "seed": seed, "config": asdict(task_config(task)), "files": {}}
    for split, examples in splits.items():
        payload = _jsonl(examples)
        atomic_write(out / f"{split}.jsonl", lambda stream, data=payload: stream.write(data))
        manifest["files"][split] = {"count": len(examples), "sha256": hashlib.sha256(payload).hexdigest()}
    text = json.dumps(manifest, indent=2).encode()
    atomic_write(out / "manifest.json", lambda stream: stream.write(text))
    return out


def load_dataset(data_dir) -> tuple[dict, dict]:
    """``(splits, manifest)`` from a folder written by :func:`write_dataset`, checking every checksum."""
    folder = Path(data_dir)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ValueError(f"{folder} has no manifest.json; create the data with `ip-pyro data TASK --out {folder}`")
    manifest = json.loads(manifest_path.read_text())
    splits = {}
    for split, entry in manifest["files"].items():
        payload = (folder / f"{split}.jsonl").read_bytes() if (folder / f"{split}.jsonl").is_file() else None
        if payload is None or hashlib.sha256(payload).hexdigest() != entry["sha256"]:
            raise ValueError(f"{folder / (split + '.jsonl')} is missing or does not match its checksum; recreate it "
                             f"with `ip-pyro data {manifest['task']} --out {folder}`")
        splits[split] = [json.loads(line) for line in payload.decode().splitlines() if line]
    return splits, manifest


def example_metrics(task: str, example: dict, prediction: list) -> dict:
    """The task's metrics of one prediction (stars: :func:`path_metrics`; mazes: exact match, token accuracy,
    success and the share of valid moves)."""
    config = task_config(task)
    if isinstance(config, MazeConfig):
        return maze_metrics(example, prediction, _maze(task, example["maze_seed"]), config.side)
    return path_metrics(example, prediction)


def path_metrics(example: dict, prediction: list) -> dict:
    """Exact match, token accuracy, and the share of predicted edges (consecutive pairs) present in the graph."""
    edges = {frozenset(edge) for edge in example["edges"]}
    predicted = [frozenset(prediction[k: k + 2]) for k in range(0, len(prediction) - 1, 2)]
    return {**sequence_match(example["target"], prediction),
            "edges_in_graph": (sum(edge in edges for edge in predicted) / len(predicted)) if predicted else 0.0}
