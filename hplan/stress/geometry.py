"""Ground-truth geometry of PointRooms maps for shifts and metrics: geodesic fields and placement.

Metrics need the geodesic distance to the goal at every step and shifts need "a point n steps
away"; asking ``env.geodesic_distance(p, q)`` pair by pair would compute a fresh distance field
for many source cells. Distances are symmetric, so here one field is computed from the fixed
point (the goal, the kidnap origin) and read at all the others.

Also the H50 sweep's placement wrapper: it puts start and goal at a chosen separation.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from hplan.seeding import derive_seed


def has_map(env: gym.Env) -> bool:
    """True for environments with a true map (PointRooms): geodesics, teleport and placement work."""
    base = env.unwrapped
    return hasattr(base, "world") and hasattr(base, "geodesic_distance") and hasattr(base.world, "geodesic")


def distances_from(env: gym.Env, origin: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Geodesic distances (world units) from ``origin`` to each of ``points (N, 2)``; inf off the floor."""
    geo = env.unwrapped.world.geodesic
    res = geo.resolution
    origin = np.asarray(origin, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    cell = (int(math.floor(origin[1] * res)), int(math.floor(origin[0] * res)))
    h, w = geo.free.shape
    if not (0 <= cell[0] < h and 0 <= cell[1] < w) or not geo.free[cell]:
        return np.full(points.shape[0], np.inf)
    field = geo.field(cell)
    rows = np.floor(points[:, 1] * res).astype(np.int64)
    cols = np.floor(points[:, 0] * res).astype(np.int64)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    out = np.full(points.shape[0], np.inf)
    out[inside] = field[rows[inside], cols[inside]]
    euclid = np.hypot(points[:, 0] - origin[0], points[:, 1] - origin[1])
    return np.where(np.isfinite(out), np.maximum(out, euclid), out)


def free_points(env: gym.Env) -> np.ndarray:
    """Centres of the walkable, unrestricted cells (world x, y)."""
    world = env.unwrapped.world
    cells = np.argwhere(~world.layout.wall & ~world.restricted)
    return np.stack([cells[:, 1] + 0.5, cells[:, 0] + 0.5], axis=1)


def nominal_steps(env: gym.Env, distance: np.ndarray) -> np.ndarray:
    """World distance → steps at the nominal max speed (the fixed yardstick of H50 and bands)."""
    return np.ceil(np.asarray(distance) / env.unwrapped.world.nominal_max_speed - 1e-9)


def far_point(env: gym.Env, origin: np.ndarray, lo: int, hi: int, rng: np.random.Generator,
              away_from: np.ndarray | None = None) -> np.ndarray:
    """A free cell centre ``lo..hi`` nominal steps (geodesic) from ``origin``; the farthest if none is.

    With ``away_from`` (the goal), only points farther from it than ``origin`` qualify: a kidnap
    that carries the agent towards its goal would not stress anything.
    """
    points = free_points(env)
    steps = nominal_steps(env, distances_from(env, origin, points))
    if away_from is not None:
        to_goal = distances_from(env, away_from, np.vstack([points, np.asarray(origin)[None]]))
        steps = np.where(to_goal[:-1] > to_goal[-1], steps, -np.inf)
    band = np.nonzero((steps >= lo) & (steps <= hi))[0]
    if band.size == 0:
        finite = np.where(np.isfinite(steps), steps, -1.0)
        return points[int(np.argmax(finite))]
    return points[int(band[rng.integers(band.size)])]


class SeparationPlacement(gym.Wrapper):
    """H50 sweep: on reset, place start and goal ``(lo, hi]`` nominal steps apart (geodesic).

    ``target`` (a bin index) is set by the cell runner before each episode. Positions are drawn
    from a generator seeded by the episode seed, then handed to the env's own ``reset`` through
    its ``start``/``goal`` options — so the same seed gives the same placement under every shift
    (placement is computed on the *shifted* map for layout shifts, which is the point).
    """

    TRIES = 64

    def __init__(self, env: gym.Env, edges: tuple[int, ...]) -> None:
        super().__init__(env)
        self.edges = tuple(int(e) for e in edges)
        self.target = 0

    @property
    def bins(self) -> int:
        return len(self.edges) - 1

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        rng = np.random.default_rng(derive_seed(0 if seed is None else seed, "h50"))
        lo, hi = self.edges[self.target % self.bins], self.edges[self.target % self.bins + 1]
        points = free_points(self.env)
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for _ in range(self.TRIES):
            start = points[int(rng.integers(len(points)))] + rng.uniform(-0.4, 0.4, 2)
            steps = nominal_steps(self.env, distances_from(self.env, start, points))
            band = np.nonzero((steps > lo) & (steps <= hi))[0]
            if band.size:
                goal = points[int(band[rng.integers(band.size)])]
                best = (0.0, start, goal)
                break
            # remember the closest miss so an unreachable bin still gets its nearest separation
            gap = np.where(np.isfinite(steps), np.minimum(np.abs(steps - lo), np.abs(steps - hi)), np.inf)
            k = int(np.argmin(gap))
            if best is None or gap[k] < best[0]:
                best = (float(gap[k]), start, points[k])
        assert best is not None
        merged = dict(options or {})
        merged.update(start=best[1], goal=best[2])
        return self.env.reset(seed=seed, options=merged)
