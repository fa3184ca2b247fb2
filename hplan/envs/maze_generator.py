"""Seeded random room-mazes: a PointRooms layout source for "layouts it has never seen".

A maze is a ``rows × cols`` grid of square rooms (``room`` free cells a side, walls one cell
thick). The doorways form a random spanning tree of the rooms (randomised depth-first search, so
every room is reachable and long dead-end corridors of rooms are common), plus, for each wall
between two rooms the tree left closed, one more doorway with probability ``loops`` (loops make
shortcuts, so the way is not unique). Each doorway is ``door`` cells wide at a random place along
its wall, at least one wall cell from either corner, so :mod:`hplan.envs.layouts` finds it as a
doorway and the map parses into exactly ``rows · cols`` rooms (tested for every spec).

The same ``(spec, seed)`` gives the same map on every machine (numpy's PCG64). Which seed an
episode's map comes from is the env's business (:class:`hplan.envs.point_rooms.PointRoomsEnv`:
the reset seed, or the ``layout_seed`` reset option); collection and evaluation draw their reset
seeds from disjoint streams (:mod:`hplan.seeding`), so evaluation mazes are not training mazes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hplan.configio import from_mapping, meta
from hplan.envs.layouts import MAX_DOOR_WIDTH
from hplan.errors import ConfigError, HplanError

GENERATED = "generated"
"""The ``layout`` value that asks for a new maze per episode (shape in the ``maze`` setting)."""


@dataclass(frozen=True)
class MazeSpec:
    """Shape of the generated mazes (``[env.kwargs.maze]`` of a PointRooms scenario)."""

    rows: int = field(default=3, metadata=meta("rooms down", ge=1, le=12))
    cols: int = field(default=3, metadata=meta("rooms across", ge=1, le=12))
    room: int = field(default=5, metadata=meta("free cells along a room's side", ge=MAX_DOOR_WIDTH + 1, le=16))
    door: int = field(default=2, metadata=meta("doorway width in cells", ge=1, le=MAX_DOOR_WIDTH))
    loops: float = field(default=0.2, metadata=meta(
        "probability that a wall the spanning tree left closed gets a doorway too", ge=0.0, le=1.0))

    def __post_init__(self) -> None:
        if self.rows * self.cols < 2:
            raise HplanError("maze: needs at least two rooms (rows * cols >= 2)")
        if self.door > self.room - 2:
            raise HplanError(f"maze.door: {self.door} cells leave no wall beside the doorway in a room of "
                             f"{self.room} (door <= room - 2)")

    @property
    def width(self) -> int:
        return self.cols * (self.room + 1) + 1

    @property
    def height(self) -> int:
        return self.rows * (self.room + 1) + 1


def _spanning_tree(spec: MazeSpec, rng: np.random.Generator) -> set[tuple[int, int]]:
    """Pairs of room indices joined by the tree (randomised depth-first search from a random room)."""
    count = spec.rows * spec.cols
    start = int(rng.integers(count))
    seen, stack, joined = {start}, [start], set()
    while stack:
        here = stack[-1]
        r, c = divmod(here, spec.cols)
        options = [(r + dr) * spec.cols + (c + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))
                   if 0 <= r + dr < spec.rows and 0 <= c + dc < spec.cols and (r + dr) * spec.cols + (c + dc) not in seen]
        if not options:
            stack.pop()
            continue
        nxt = options[int(rng.integers(len(options)))]
        joined.add((min(here, nxt), max(here, nxt)))
        seen.add(nxt)
        stack.append(nxt)
    return joined


def generate_room_maze(spec: MazeSpec, seed: int) -> str:
    """The ASCII map (``#`` wall, ``.`` floor) of maze ``seed`` of shape ``spec``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & (2**63 - 1), 0x6D617A65]))
    grid = np.where(always_free(spec), ".", "#")
    step = spec.room + 1
    joined = _spanning_tree(spec, rng)
    for a in range(spec.rows * spec.cols):
        r, c = divmod(a, spec.cols)
        for b in ((r + 1) * spec.cols + c if r + 1 < spec.rows else -1, a + 1 if c + 1 < spec.cols else -1):
            if b < 0:
                continue
            if (a, b) not in joined and not rng.random() < spec.loops:
                continue
            offset = 1 + int(rng.integers(spec.room - spec.door - 1))  # one wall cell from either corner
            if b == a + 1:  # the vertical wall right of room a
                col = (c + 1) * step
                grid[1 + r * step + offset:1 + r * step + offset + spec.door, col] = "."
            else:  # the horizontal wall below room a
                row = (r + 1) * step
                grid[row, 1 + c * step + offset:1 + c * step + offset + spec.door] = "."
    return "\n".join("".join(line) for line in grid)


def maze_spec(layout: str, maze: object) -> MazeSpec | None:
    """The spec of a generated-maze env (``layout = "generated"``), None for a fixed layout; a
    ``maze`` setting beside a fixed layout, or a bad one, is an error naming the field."""
    if layout != GENERATED:
        if maze is not None:
            raise HplanError(f'maze: only used with layout = "{GENERATED}" (layout is {str(layout)[:40]!r})')
        return None
    try:
        return from_mapping(MazeSpec, {} if maze is None else maze, source="env.kwargs", section="maze")
    except ConfigError as err:
        raise HplanError(f"{err.field}: {err.message}") from None


def always_free(spec: MazeSpec) -> np.ndarray:
    """``(H, W)`` cells that are floor in every maze of ``spec`` (the rooms' insides)."""
    grid = np.full((spec.height, spec.width), False)
    step = spec.room + 1
    for r in range(spec.rows):
        for c in range(spec.cols):
            grid[1 + r * step:1 + r * step + spec.room, 1 + c * step:1 + c * step + spec.room] = True
    return grid
