"""PointRoomsVec: ``N`` PointRooms episodes stepped at once with numpy, for fast data collection.

Same map, same physics code (:func:`hplan.envs.point_physics.step_points`), same sampling and
rendering (:class:`hplan.envs.world.PointWorld`) as :class:`~hplan.envs.point_rooms.PointRoomsEnv`:
env ``i`` reset with seed ``s_i`` follows exactly the trajectory of a single env reset with
``s_i`` under the same actions (tested). Physics factors are attributes and may be scalars or
``(N,)`` arrays, so a collection can randomise dynamics per env.

Differences from the single env, on purpose: observations, rewards and ``info`` entries are
batched arrays (``info["violations"][name]`` is ``(N,)`` bool); there is no auto-reset — a
terminated env keeps being simulated until the next :meth:`reset` (collectors mark those steps
invalid), because fixed-length episode blocks are what the shard format stores. ``info["goal_obs"]``
is the same read-only array on every step until the goals change (copying ``N`` goal images per
step would halve image throughput).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

from hplan.envs.point_physics import PointPhysics, step_points
from hplan.envs.point_rooms import NOMINAL_MAX_SPEED, WorldSource, check_physics
from hplan.envs.world import STATE_NAMES, VIOLATION_NAMES
from hplan.errors import HplanError


class PointRoomsVec:
    """Batched PointRooms; constructor keywords are those of ``PointRoomsEnv`` plus ``num_envs``."""

    state_names = STATE_NAMES
    violation_names = VIOLATION_NAMES

    def __init__(self, num_envs: int, layout: str = "four_rooms", obs_mode: str = "state", image_size: int | None = None,
                 friction: float | np.ndarray = 0.25, mass: float | np.ndarray = 1.0,
                 action_gain: float | np.ndarray = 0.12, max_speed: float | np.ndarray = NOMINAL_MAX_SPEED,
                 goal_tolerance: float = 0.5, min_rooms_apart: int = 0, start_room: int | None = None,
                 goal_room: int | None = None, zones: Sequence[Sequence[int]] = (),
                 colors: dict[str, Sequence[int]] | None = None, terminate_on_success: bool = True,
                 maze: dict[str, Any] | None = None) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise HplanError(f"num_envs must be a positive integer, got {num_envs!r}")
        for values in np.broadcast_arrays(friction, mass, action_gain, max_speed):
            if values.ndim and values.shape != (num_envs,):
                raise HplanError(f"per-env physics arrays must have shape ({num_envs},), got {values.shape}")
        f, m, g, s = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (friction, mass, action_gain, max_speed))
        for values in zip(*np.broadcast_arrays(f, m, g, s)):
            check_physics(*(float(v) for v in values))
        self.num_envs = num_envs
        self.worlds = WorldSource(layout, maze, obs_mode=obs_mode, image_size=image_size,
                                  goal_tolerance=goal_tolerance, min_rooms_apart=min_rooms_apart,
                                  start_room=start_room, goal_room=goal_room, zones=zones, colors=colors)
        self.world = self.worlds.first
        self.friction, self.mass, self.action_gain, self.max_speed = friction, mass, action_gain, max_speed
        self.obs_mode = obs_mode
        self.terminate_on_success = terminate_on_success
        self.single_observation_space = self.world.observation_space
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._rngs: list[np.random.Generator] = [seeding.np_random(None)[0] for _ in range(num_envs)]
        self._pos = np.zeros((num_envs, 2))
        self._vel = np.zeros((num_envs, 2))
        self._goal = np.zeros((num_envs, 2))
        self._goal_obs: Any = None

    @property
    def physics(self) -> PointPhysics:
        return PointPhysics(self.friction, self.mass, self.action_gain, self.max_speed)

    def reset(self, *, seed: int | Sequence[int] | None = None,
              options: dict[str, np.ndarray] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset every env. ``seed``: one int (env ``i`` gets ``seed + i``) or one seed per env.

        ``options`` may hold ``start`` and/or ``goal`` as ``(N, 2)`` arrays of free points. With
        ``layout = "generated"`` every env of the batch plays the maze of ``options["layout_seed"]``
        (default: the first env's seed), as a single env reset with that layout seed does.
        """
        options = options or {}
        unknown = set(options) - {"start", "goal", "layout_seed"}
        if unknown:
            raise HplanError(f"reset options: unknown key(s) {sorted(unknown)} (known: start, goal, layout_seed)")
        seeds = None
        if seed is not None:
            seeds = [int(seed) + i for i in range(self.num_envs)] if np.ndim(seed) == 0 else [int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise HplanError(f"reset: got {len(seeds)} seeds for {self.num_envs} envs")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        if self.worlds.generated:
            default = seeds[0] if seeds is not None else int(self._rngs[0].integers(2**31))
            self.world = self.worlds.world(int(options.get("layout_seed", default)))
        starts, goals = zip(*(self.world.sample_start_goal(rng) for rng in self._rngs))
        pos, goal = np.stack(starts), np.stack(goals)
        if "start" in options:
            pos = self._free_points(options["start"], "reset option start")
        if "goal" in options:
            goal = self._free_points(options["goal"], "reset option goal")
        self._pos, self._vel = pos, np.zeros((self.num_envs, 2))
        self.set_goals(goal)
        contact = np.zeros(self.num_envs, dtype=bool)
        return self.world.observe(self._pos, self._vel), self._info(contact, self._success())

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all envs with ``actions`` (N, 2); returns batched obs, reward, terminated, truncated, info."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, 2):
            raise HplanError(f"actions must have shape ({self.num_envs}, 2), got {actions.shape}")
        self._pos, self._vel, contact = step_points(self.world.walls_padded, self._pos, self._vel, actions,
                                                    self.physics)
        success = self._success()
        terminated = success & self.terminate_on_success
        truncated = np.zeros(self.num_envs, dtype=bool)
        obs = self.world.observe(self._pos, self._vel)
        return obs, success.astype(np.float32), terminated, truncated, self._info(contact, success)

    def set_goals(self, goals: np.ndarray) -> None:
        """Move every env's goal (``(N, 2)`` free points) and re-render the goal observations."""
        self._goal = self._free_points(goals, "goal")
        goal_obs = self.world.observe(self._goal, np.zeros((self.num_envs, 2)))
        for array in goal_obs.values() if isinstance(goal_obs, dict) else (goal_obs,):
            array.setflags(write=False)
        self._goal_obs = goal_obs

    def rooms_of(self, pos: np.ndarray) -> np.ndarray:
        """Room index of each point (``-1`` on walls)."""
        return self.world.rooms_of(np.asarray(pos, dtype=np.float64).reshape(-1, 2))

    def _free_points(self, points: np.ndarray, what: str) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (self.num_envs, 2):
            raise HplanError(f"{what} must have shape ({self.num_envs}, 2), got {points.shape}")
        for point in points:
            self.world.check_free(point, what)
        return points.copy()

    def _success(self) -> np.ndarray:
        gap = self._pos - self._goal
        return np.sqrt((gap * gap).sum(axis=1)) <= self.world.goal_tolerance

    def _info(self, contact: np.ndarray, success: np.ndarray) -> dict[str, Any]:
        violations = self.world.violations(self._pos, contact)
        any_violation = np.zeros(self.num_envs, dtype=bool)
        for name in VIOLATION_NAMES:
            any_violation |= violations[name]
        return {
            "true_state": np.concatenate([self._pos, self._vel], axis=1).astype(np.float32),
            "pos": self._pos.astype(np.float32),
            "goal": self._goal.astype(np.float32),
            "cost": any_violation.astype(np.float32),
            "violations": violations,
            "success": success,
            "goal_obs": self._goal_obs,
            "room": self.world.rooms_of(self._pos),
        }
