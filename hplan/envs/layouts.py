"""PointRooms layouts: ASCII maps parsed into a grid, with rooms found automatically.

A map is a block of equal-length lines, one character per cell (one cell = one world unit):

====  =====================================================================
char  meaning
====  =====================================================================
``#``  wall
``.``  free floor
``x``  restricted zone: walkable, but every step that ends inside it is a violation
``S``  free floor where episodes start (optional; overrides room sampling for the start)
``G``  free floor where goals are placed (optional; overrides room sampling for the goal)
====  =====================================================================

World coordinates: ``x`` grows to the right (column), ``y`` grows downward (row), exactly as the
map reads and as the image is drawn; cell ``(row, col)`` covers ``[col, col+1) × [row, row+1)``.
Anything outside the map counts as wall, so a map need not be closed by a border.

Rooms are what the doorways separate. A *doorway cell* is a free cell in a gap of at most
:data:`MAX_DOOR_WIDTH` cells in a straight wall (the wall continues two cells beyond both ends of
the gap), with free cells on both sides of the gap. Closing the
doorways splits the floor into connected components — the rooms, numbered in reading order of
their top-left cell — and every doorway (or corridor) cell then joins the nearest room. Why
automatic: a user drawing a new maze in a scenario file should not also have to label it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from hplan.errors import HplanError

MAX_DOOR_WIDTH = 3
"""Widest gap in a wall still treated as a doorway (rooms must be wider than this)."""

CELL_CHARS = {"#": "wall", ".": "free", "x": "restricted", "S": "start", "G": "goal"}

# The built-in maps. Rooms are 8×8 (two/four rooms, off-centre doorways as in the classic four-rooms
# domain) or 5×5 (maze) cells; doorways are two cells wide. four_rooms_zones flanks every doorway
# with 2×2 restricted zones, so the shortest path skirts them.
BUILTIN_LAYOUTS: dict[str, str] = {
    "two_rooms": """
###################
#........#........#
#........#........#
#........#........#
#.................#
#.................#
#........#........#
#........#........#
#........#........#
###################
""",
    "four_rooms": """
###################
#........#........#
#.................#
#.................#
#........#........#
#........#........#
#........#........#
#........#........#
#........#........#
######..####..#####
#........#........#
#........#........#
#........#........#
#........#........#
#........#........#
#.................#
#.................#
#........#........#
###################
""",
    "four_rooms_zones": """
###################
#........#........#
#.................#
#.................#
#......xx#xx......#
#......xx#xx......#
#........#........#
#...xx...#....xx..#
#...xx...#....xx..#
######..####..#####
#...xx...#....xx..#
#...xx...#....xx..#
#........#........#
#......xx#xx......#
#......xx#xx......#
#.................#
#.................#
#........#........#
###################
""",
    "maze3x3": """
###################
#.....#.....#.....#
#.....#...........#
#.................#
#...........#.....#
#.....#.....#.....#
##..##########..###
#.....#.....#.....#
#.....#.....#.....#
#.....#...........#
#.....#...........#
#.....#.....#.....#
########..#########
#.....#.....#.....#
#...........#.....#
#.................#
#.....#...........#
#.....#.....#.....#
###################
""",
}


@dataclass(frozen=True)
class Layout:
    """A parsed map: cell grids plus the room structure derived from them."""

    name: str
    text: str
    wall: np.ndarray = field(repr=False)  # (H, W) bool
    restricted: np.ndarray = field(repr=False)  # (H, W) bool
    start_cells: np.ndarray = field(repr=False)  # (K, 2) int rows/cols of S cells
    goal_cells: np.ndarray = field(repr=False)  # (K, 2) int rows/cols of G cells
    room_grid: np.ndarray = field(repr=False)  # (H, W) int, -1 on walls
    room_distance: np.ndarray = field(repr=False)  # (R, R) int, doorways crossed between rooms

    @property
    def height(self) -> int:
        return int(self.wall.shape[0])

    @property
    def width(self) -> int:
        return int(self.wall.shape[1])

    @property
    def num_rooms(self) -> int:
        return int(self.room_distance.shape[0])

    def room_cells(self, room: int, *, allow_restricted: bool = False) -> np.ndarray:
        """(K, 2) row/col of the free cells of ``room`` (without restricted cells by default)."""
        mask = self.room_grid == room
        if not allow_restricted:
            mask &= ~self.restricted
        return np.argwhere(mask)

    def is_free(self, xy: np.ndarray) -> bool:
        """True when world point ``xy`` lies on walkable floor inside the map."""
        col, row = int(np.floor(xy[0])), int(np.floor(xy[1]))
        return 0 <= row < self.height and 0 <= col < self.width and not self.wall[row, col]


def load_layout(spec: str) -> Layout:
    """A built-in layout by name, or an inline multi-line ASCII map; bad maps raise HplanError."""
    if not isinstance(spec, str):
        raise HplanError(f"layout must be a built-in name or an ASCII map string, got {type(spec).__name__}")
    return _load_layout_cached(spec)


@lru_cache(maxsize=64)
def _load_layout_cached(spec: str) -> Layout:
    if "\n" not in spec.strip():
        name = spec.strip()
        if name not in BUILTIN_LAYOUTS:
            raise HplanError(f"unknown layout {name!r}: use one of {', '.join(sorted(BUILTIN_LAYOUTS))} "
                             "or an inline multi-line ASCII map")
        return parse_layout(BUILTIN_LAYOUTS[name], name=name)
    return parse_layout(spec, name="custom")


def parse_layout(text: str, *, name: str = "custom") -> Layout:
    """Parse an ASCII map (see the module docstring); ragged or unknown characters are errors."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    lines = [line.strip() for line in lines]
    lines = [line for line in lines if line]
    if not lines:
        raise HplanError(f"layout {name!r} is empty")
    widths = {len(line) for line in lines}
    if len(widths) != 1:
        bad = next(i for i, line in enumerate(lines) if len(line) != len(lines[0]))
        raise HplanError(f"layout {name!r} is ragged: line {bad + 1} has {len(lines[bad])} cells, "
                         f"line 1 has {len(lines[0])}")
    for i, line in enumerate(lines):
        for j, char in enumerate(line):
            if char not in CELL_CHARS:
                raise HplanError(f"layout {name!r}: unknown character {char!r} at line {i + 1}, column {j + 1} "
                                 f"(allowed: {' '.join(CELL_CHARS)})")
    grid = np.array([list(line) for line in lines])
    wall = grid == "#"
    free = ~wall
    if not free.any():
        raise HplanError(f"layout {name!r} has no free cell")
    if free.sum() < 2:
        raise HplanError(f"layout {name!r} needs at least two free cells (a start and a goal)")
    room_grid = _segment_rooms(free)
    room_distance = _room_distances(room_grid)
    if (room_distance < 0).any():
        raise HplanError(f"layout {name!r}: the floor is split into unconnected parts "
                         "(every free cell must be reachable from every other)")
    arrays = {"wall": wall, "restricted": grid == "x", "start_cells": np.argwhere(grid == "S"),
              "goal_cells": np.argwhere(grid == "G"), "room_grid": room_grid, "room_distance": room_distance}
    for array in arrays.values():
        array.setflags(write=False)  # layouts are cached and shared between envs
    return Layout(name=name, text="\n".join(lines), **arrays)


def _gaps(free: np.ndarray) -> np.ndarray:
    """Doorway cells of gaps in *horizontal* walls (apply to ``free.T`` for vertical walls).

    A run of at most :data:`MAX_DOOR_WIDTH` free cells along a row is a gap when the wall continues
    for two cells beyond both ends of the run (so a narrow room between two walls is not a door)
    and every cell of the run has free floor above and below (a passage through the wall).
    """
    height, width = free.shape
    padded = np.pad(free, 2, constant_values=False)  # outside the map is wall
    doorway = np.zeros(free.shape, dtype=bool)
    for r in range(height):
        c = 0
        while c < width:
            if not free[r, c]:
                c += 1
                continue
            end = c
            while end < width and free[r, end]:
                end += 1
            pr = r + 2
            walls_continue = not (padded[pr, c + 1] or padded[pr, c] or padded[pr, end + 2] or padded[pr, end + 3])
            passage = bool(padded[pr - 1, c + 2:end + 2].all() and padded[pr + 1, c + 2:end + 2].all())
            if end - c <= MAX_DOOR_WIDTH and walls_continue and passage:
                doorway[r, c:end] = True
            c = end
    return doorway


def _segment_rooms(free: np.ndarray) -> np.ndarray:
    doorway = _gaps(free) | _gaps(free.T).T
    core = free & ~doorway
    rooms = np.full(free.shape, -1, dtype=int)
    count = 0
    for r, c in np.argwhere(core | free):  # reading order; cores first, leftovers become rooms too
        if rooms[r, c] >= 0 or not core[r, c]:
            continue
        _flood(core, rooms, (r, c), count)
        count += 1
    # Doorway/corridor cells join the nearest room (multi-source BFS through free cells).
    queue = deque((int(r), int(c)) for r, c in np.argwhere(rooms >= 0))
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < free.shape[0] and 0 <= nc < free.shape[1] and free[nr, nc] and rooms[nr, nc] < 0:
                rooms[nr, nc] = rooms[r, c]
                queue.append((nr, nc))
    # A floor part made only of narrow passages becomes a room of its own.
    for r, c in np.argwhere(free & (rooms < 0)):
        if rooms[r, c] < 0:
            _flood(free, rooms, (r, c), count)
            count += 1
    return _renumber(rooms)


def _flood(mask: np.ndarray, labels: np.ndarray, seed: tuple[int, int], label: int) -> None:
    queue = deque([seed])
    labels[seed] = label
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1] and mask[nr, nc] and labels[nr, nc] < 0:
                labels[nr, nc] = label
                queue.append((nr, nc))


def _renumber(rooms: np.ndarray) -> np.ndarray:
    """Number rooms in reading order of their first cell, so indices match how the map reads."""
    order: dict[int, int] = {}
    for value in rooms.ravel():
        if value >= 0 and value not in order:
            order[int(value)] = len(order)
    out = np.full(rooms.shape, -1, dtype=int)
    for old, new in order.items():
        out[rooms == old] = new
    return out


def _room_distances(rooms: np.ndarray) -> np.ndarray:
    """Rooms apart (doorways crossed) between every pair; -1 where unreachable."""
    count = int(rooms.max()) + 1
    adjacent: list[set[int]] = [set() for _ in range(count)]
    for a, b in ((rooms[:-1, :], rooms[1:, :]), (rooms[:, :-1], rooms[:, 1:])):
        touch = (a >= 0) & (b >= 0) & (a != b)
        for u, v in zip(a[touch], b[touch]):
            adjacent[int(u)].add(int(v))
            adjacent[int(v)].add(int(u))
    dist = np.full((count, count), -1, dtype=int)
    for source in range(count):
        dist[source, source] = 0
        queue = deque([source])
        while queue:
            u = queue.popleft()
            for v in adjacent[u]:
                if dist[source, v] < 0:
                    dist[source, v] = dist[source, u] + 1
                    queue.append(v)
    return dist
