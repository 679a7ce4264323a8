"""Maze navigation data: one fixed maze per dataset, prompts of ordered subgoals, targets of cell paths.

The maze is a ``side x side`` grid of cells (cell id = ``row * side + column``; the ids are the tokens) with walls
between neighbouring cells, built by recursive division (a perfect maze: one path between any two cells), then

* ``imperfect``: a fraction ``open_fraction`` of the remaining inner walls is opened at random (cycles appear);
* ``braided``: every dead end gets a wall opened (to another dead end where possible), so no dead ends remain.

An example draws ``subgoals + 2`` distinct cells (start, intermediate cells, goal); the target is the shortest path
visiting them in order (breadth-first search between consecutive cells; ties broken by a fixed neighbour order),
kept only if it is at most ``max_path`` cells long. Tiers (side, intermediate subgoals, longest path):
easy 6 / 1 / 24, medium 8 / 2 / 32, hard 10 / 3 / 48.
"""
from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

__all__ = ["MazeConfig", "MAZE_TASKS", "build_maze", "maze_example", "maze_success", "maze_metrics",
           "sequence_match"]


@dataclass(frozen=True)
class MazeConfig:
    kind: str
    side: int
    subgoals: int
    max_path: int
    open_fraction: float = 0.15

    def validate(self) -> None:
        if self.kind not in ("braided", "imperfect"):
            raise ValueError(f"maze kind {self.kind!r} must be 'braided' or 'imperfect'")
        if self.side < 2 or self.subgoals < 0 or self.subgoals + 2 > self.side * self.side:
            raise ValueError(f"a {self.side}x{self.side} maze cannot hold {self.subgoals + 2} distinct subgoals")
        if self.max_path < self.subgoals + 2:
            raise ValueError(f"max_path={self.max_path} is shorter than the {self.subgoals + 2} subgoals")

    @property
    def vocab_size(self) -> int:
        return self.side * self.side

    @property
    def max_target_length(self) -> int:
        return self.max_path

    @property
    def max_prompt_length(self) -> int:
        return self.subgoals + 2


_TIERS = {"easy": (6, 1, 24), "medium": (8, 2, 32), "hard": (10, 3, 48)}
MAZE_TASKS = {f"maze-{kind}-{tier}": MazeConfig(kind, side, subgoals, max_path)
              for kind in ("braided", "imperfect") for tier, (side, subgoals, max_path) in _TIERS.items()}


def _neighbours(cell: int, side: int) -> list:
    row, column = divmod(cell, side)
    found = []
    for d_row, d_column in ((-1, 0), (0, 1), (1, 0), (0, -1)):
        r, c = row + d_row, column + d_column
        if 0 <= r < side and 0 <= c < side:
            found.append(r * side + c)
    return found


def build_maze(config: MazeConfig, seed: int) -> set:
    """The open passages of the dataset's maze: a set of ``frozenset({a, b})`` for neighbouring cells."""
    config.validate()
    rng = random.Random(f"maze:{config.kind}:{config.side}:{seed}")
    side = config.side
    walls = set()

    def divide(top, left, height, width):
        if height < 2 or width < 2:
            return
        horizontal = height > width if height != width else rng.random() < 0.5
        if horizontal:
            row = top + rng.randrange(height - 1)  # wall between row and row + 1
            gap = left + rng.randrange(width)
            walls.update(frozenset({row * side + c, (row + 1) * side + c}) for c in range(left, left + width)
                         if c != gap)
            divide(top, left, row - top + 1, width)
            divide(row + 1, left, top + height - row - 1, width)
        else:
            column = left + rng.randrange(width - 1)
            gap = top + rng.randrange(height)
            walls.update(frozenset({r * side + column, r * side + column + 1}) for r in range(top, top + height)
                         if r != gap)
            divide(top, left, height, column - left + 1)
            divide(top, column + 1, height, left + width - column - 1)

    divide(0, 0, side, side)
    every = {frozenset({a, b}) for a in range(side * side) for b in _neighbours(a, side) if a < b}
    passages = every - walls
    if config.kind == "imperfect":
        closed = sorted(walls, key=sorted)
        passages |= set(rng.sample(closed, int(config.open_fraction * len(closed))))
    else:
        for cell in range(side * side):
            around = [n for n in _neighbours(cell, side) if frozenset({cell, n}) in passages]
            if len(around) == 1:
                options = [n for n in _neighbours(cell, side) if frozenset({cell, n}) not in passages]
                dead_ends = [n for n in options if sum(frozenset({n, m}) in passages
                                                       for m in _neighbours(n, side)) == 1]
                passages.add(frozenset({cell, rng.choice(dead_ends or options)}))
    return passages


def _shortest(start: int, goal: int, passages: set, side: int) -> list:
    previous = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        for neighbour in _neighbours(cell, side):
            if neighbour not in previous and frozenset({cell, neighbour}) in passages:
                previous[neighbour] = cell
                queue.append(neighbour)
    path, cell = [], goal
    while cell is not None:
        path.append(cell)
        cell = previous[cell]
    return path[::-1]


def maze_example(rng: random.Random, config: MazeConfig, passages: set) -> dict:
    """One example: ``prompt`` (ordered subgoals), ``target`` (path of cells) and ``subgoals``."""
    for _ in range(1000):
        subgoals = rng.sample(range(config.side * config.side), config.subgoals + 2)
        path = [subgoals[0]]
        for begin, end in zip(subgoals, subgoals[1:]):
            path += _shortest(begin, end, passages, config.side)[1:]
        if len(path) <= config.max_path:
            return {"prompt": subgoals, "target": path, "subgoals": subgoals}
    raise ValueError(f"could not draw subgoals with a path of at most {config.max_path} cells; raise max_path")


def maze_success(path: list, subgoals: list, passages: set, side: int) -> bool:
    """Every cell in the grid, every move between connected 4-neighbours, subgoals visited in order, ends at goal."""
    if not path or path[0] != subgoals[0] or path[-1] != subgoals[-1]:
        return False
    if any(not 0 <= cell < side * side for cell in path):
        return False
    if any(frozenset({a, b}) not in passages or b not in _neighbours(a, side) for a, b in zip(path, path[1:])):
        return False
    index = 0
    for cell in path:
        if index < len(subgoals) and cell == subgoals[index]:
            index += 1
    return index == len(subgoals)


def sequence_match(target: list, prediction: list) -> dict:
    """``exact_match`` and ``token_accuracy`` (position-wise matches over the longer of the two)."""
    matches = sum(int(a == b) for a, b in zip(prediction, target))
    return {"exact_match": float(prediction == target),
            "token_accuracy": matches / max(len(target), len(prediction), 1)}


def maze_metrics(example: dict, prediction: list, passages: set, side: int) -> dict:
    moves = list(zip(prediction, prediction[1:]))
    return {**sequence_match(example["target"], prediction),
            "success": float(maze_success(prediction, example["subgoals"], passages, side)),
            "valid_moves": (sum(frozenset(m) in passages for m in moves) / len(moves)) if moves else 0.0}
