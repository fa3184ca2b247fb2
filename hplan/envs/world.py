"""PointWorld: everything about a PointRooms map that does not change during an episode.

The single env (:mod:`hplan.envs.point_rooms`) and the vector env (:mod:`hplan.envs.vector`) both
own one: the parsed layout, wall grid, renderer, geodesic distances, start/goal sampling and the
observation builder live here once, so the two envs cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from hplan.envs.geodesic import GeodesicMap
from hplan.envs.layouts import Layout, load_layout
from hplan.envs.point_physics import padded_walls
from hplan.envs.render import Palette, PointRenderer
from hplan.errors import HplanError

OBS_MODES = ("state", "image", "both")
VIOLATION_NAMES = ("wall_contact", "restricted_zone")
STATE_NAMES = ("x", "y", "vx", "vy")
CELL_MARGIN = 0.1
"""Sampled starts/goals keep this distance (world units) from their cell's edges."""


def apply_zones(layout: Layout, zones: Sequence[Sequence[int]]) -> np.ndarray:
    """Restricted-cell grid: the layout's ``x`` cells plus ``zones`` rectangles ``(col, row, width, height)``."""
    restricted = layout.restricted.copy()
    for i, zone in enumerate(zones):
        if len(zone) != 4 or not all(isinstance(v, (int, np.integer)) for v in zone):
            raise HplanError(f"zones[{i}] must be [col, row, width, height] integers, got {list(zone)!r}")
        col, row, width, height = (int(v) for v in zone)
        if width < 1 or height < 1 or col < 0 or row < 0 or col + width > layout.width or row + height > layout.height:
            raise HplanError(f"zones[{i}] = {list(zone)} does not fit the {layout.width}x{layout.height} layout "
                             f"{layout.name!r}")
        restricted[row:row + height, col:col + width] = True
    return restricted & ~layout.wall


PIXELS_PER_CELL = 64 / 19
"""The pixel density the built-in layouts render at (19 cells across 64 pixels): enough for the
keypoint encoder to place the point to a tenth of a cell. A larger map gets a larger image."""


def auto_image_size(layout: Layout) -> int:
    """The image side that keeps :data:`PIXELS_PER_CELL` along the map's longer side (at least 64,
    a multiple of 4, at most 512). Why: a long, thin map squeezed into 64 pixels gets two pixels
    a cell, and the encoder can no longer locate the point."""
    cells = max(layout.width, layout.height)
    return int(min(512, max(64, 4 * math.ceil(cells * PIXELS_PER_CELL / 4 - 1e-9))))


class PointWorld:
    """Static part of a PointRooms env: map, renderer, geodesics, sampling, observation spaces."""

    def __init__(self, *, layout: str, obs_mode: str, image_size: int | None, goal_tolerance: float,
                 min_rooms_apart: int, start_room: int | None, goal_room: int | None,
                 zones: Sequence[Sequence[int]], palette: Palette, nominal_max_speed: float) -> None:
        if obs_mode not in OBS_MODES:
            raise HplanError(f"obs_mode must be one of {', '.join(OBS_MODES)}, got {obs_mode!r}")
        if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool)
                                       or not 16 <= image_size <= 512):
            raise HplanError(f"image_size must be an integer in [16, 512], got {image_size!r}")
        if not goal_tolerance > 0:
            raise HplanError(f"goal_tolerance must be > 0, got {goal_tolerance!r}")
        self.layout = load_layout(layout)
        image_size = auto_image_size(self.layout) if image_size is None else image_size
        self.obs_mode = obs_mode
        self.image_size = image_size
        self.goal_tolerance = float(goal_tolerance)
        self.nominal_max_speed = float(nominal_max_speed)
        self.restricted = apply_zones(self.layout, zones)
        self.walls_padded = padded_walls(self.layout.wall)
        self.restricted_padded = np.pad(self.restricted, 1, constant_values=False)
        self.room_padded = np.pad(self.layout.room_grid, 1, constant_values=-1)
        self.renderer = PointRenderer(self.layout.wall, self.restricted, image_size, palette)
        self.palette = palette
        self.geodesic = GeodesicMap(self.layout.wall)
        self._start_cells, self._goal_cells, self._pairs = self._task_cells(min_rooms_apart, start_room, goal_room)
        self.observation_space = self._observation_space()

    # ----------------------------------------------------------------------------- spaces
    def _observation_space(self) -> gym.spaces.Space:
        state = gym.spaces.Box(low=np.array([0.0, 0.0, -1.0, -1.0], dtype=np.float32),
                               high=np.array([self.layout.width, self.layout.height, 1.0, 1.0], dtype=np.float32),
                               dtype=np.float32)
        image = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8)
        if self.obs_mode == "state":
            return state
        if self.obs_mode == "image":
            return image
        return gym.spaces.Dict({"state": state, "image": image})

    def observe(self, pos: np.ndarray, vel: np.ndarray) -> Any:
        """Batched observations for ``N`` points: arrays with a leading ``N`` axis (or a dict of them)."""
        state = None
        image = None
        if self.obs_mode in ("state", "both"):
            state = np.concatenate([pos, vel], axis=1).astype(np.float32)
        if self.obs_mode in ("image", "both"):
            image = self.renderer.render(pos)
        if self.obs_mode == "state":
            return state
        if self.obs_mode == "image":
            return image
        return {"state": state, "image": image}

    # ----------------------------------------------------------------------------- queries
    def violations(self, pos: np.ndarray, contact: np.ndarray) -> dict[str, np.ndarray]:
        rows = np.floor(pos[:, 1]).astype(np.int64) + 1
        cols = np.floor(pos[:, 0]).astype(np.int64) + 1
        return {"wall_contact": contact.astype(bool), "restricted_zone": self.restricted_padded[rows, cols]}

    def rooms_of(self, pos: np.ndarray) -> np.ndarray:
        """Room index of each point (``-1`` on a wall or outside the map)."""
        rows = np.clip(np.floor(pos[:, 1]).astype(np.int64) + 1, 0, self.room_padded.shape[0] - 1)
        cols = np.clip(np.floor(pos[:, 0]).astype(np.int64) + 1, 0, self.room_padded.shape[1] - 1)
        return self.room_padded[rows, cols]

    def room_of(self, pos: Sequence[float]) -> int | None:
        room = int(self.rooms_of(np.asarray(pos, dtype=np.float64).reshape(1, 2))[0])
        return None if room < 0 else room

    def geodesic_distance(self, p: Sequence[float], q: Sequence[float]) -> float:
        return self.geodesic.distance(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))

    def geodesic_steps(self, p: Sequence[float], q: Sequence[float]) -> int:
        """Geodesic distance in steps at the *nominal* max speed (a fixed yardstick under shifts)."""
        distance = self.geodesic_distance(p, q)
        if not math.isfinite(distance):
            raise HplanError(f"geodesic_steps: {list(p)} or {list(q)} is not on the floor")
        return int(math.ceil(distance / self.nominal_max_speed - 1e-9))

    def check_free(self, xy: Sequence[float], what: str) -> np.ndarray:
        """``xy`` as a float64 (2,) array, or HplanError when it is not on walkable floor."""
        arr = np.asarray(xy, dtype=np.float64).reshape(-1)
        if arr.shape != (2,) or not np.all(np.isfinite(arr)) or not self.layout.is_free(arr):
            raise HplanError(f"{what} {list(np.atleast_1d(xy))} is not a free point of layout {self.layout.name!r}")
        return arr

    # ----------------------------------------------------------------------------- sampling
    def _task_cells(self, min_rooms_apart: int, start_room: int | None,
                    goal_room: int | None) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], list[tuple[int, int]]]:
        layout = self.layout
        for name, room in (("start_room", start_room), ("goal_room", goal_room)):
            if room is not None and not 0 <= room < layout.num_rooms:
                raise HplanError(f"{name}={room} but layout {layout.name!r} has {layout.num_rooms} rooms "
                                 f"(0..{layout.num_rooms - 1})")
        if min_rooms_apart < 0:
            raise HplanError(f"min_rooms_apart must be >= 0, got {min_rooms_apart}")
        usable = ~layout.wall & ~self.restricted

        def by_room(marked: np.ndarray, fixed: int | None) -> dict[int, np.ndarray]:
            cells = marked if len(marked) and fixed is None else np.argwhere(usable)
            rooms = layout.room_grid[cells[:, 0], cells[:, 1]]
            return {int(r): cells[rooms == r] for r in np.unique(rooms) if fixed is None or r == fixed}

        starts = by_room(layout.start_cells, start_room)
        goals = by_room(layout.goal_cells, goal_room)
        pairs = [(s, g) for s in starts for g in goals if layout.room_distance[s, g] >= min_rooms_apart]
        if not pairs:
            far = int(layout.room_distance.max())
            raise HplanError(f"no start/goal rooms satisfy min_rooms_apart={min_rooms_apart}, start_room={start_room}, "
                             f"goal_room={goal_room} in layout {layout.name!r} (rooms at most {far} apart)")
        return starts, goals, pairs

    def sample_start_goal(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A start and a goal honouring the task constraints, from the env's own generator."""
        start_room, goal_room = self._pairs[int(rng.integers(len(self._pairs)))]
        start = self._point_in(self._start_cells[start_room], rng)
        for _ in range(100):
            goal = self._point_in(self._goal_cells[goal_room], rng)
            if np.hypot(*(goal - start)) > self.goal_tolerance:
                break
        return start, goal

    @staticmethod
    def _point_in(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        row, col = cells[int(rng.integers(len(cells)))]
        offset = rng.uniform(CELL_MARGIN, 1.0 - CELL_MARGIN, size=2)
        return np.array([col + offset[0], row + offset[1]], dtype=np.float64)
