"""PointRooms: a continuous 2-D point mass in rooms joined by doorways — the long-horizon workhorse.

The agent pushes a point mass (action ``Box(-1, 1, (2,))``, a force direction) around an ASCII
map (see :mod:`hplan.envs.layouts`); dynamics in :mod:`hplan.envs.point_physics`. Nominal physics
make a five-cell room take ~13 steps to cross at full action and diagonally opposite rooms of
``four_rooms`` ~40-55 steps apart, so "several rooms apart" is beyond a flat planner's horizon.

Observations (``obs_mode``):

* ``state``: float32 ``[x, y, vx, vy]`` in *raw* world units (cells; velocity in cells/step) —
  the model normalises;
* ``image``: uint8 ``(S, S, 3)`` top-down view, walls and restricted zones drawn, agent as a
  disc; the goal is not drawn (it is given by ``info["goal_obs"]``);
* ``both``: ``{"state": ..., "image": ...}``.

Reward is sparse (1.0 on the step the goal is reached); episodes terminate on success unless
``terminate_on_success=False``. ``info`` follows the environment contract in docs/architecture.md.

``layout = "generated"`` draws a new random room-maze for every episode (shape in the ``maze``
setting, :class:`hplan.envs.maze_generator.MazeSpec`) from the reset seed, or from the
``layout_seed`` reset option: the agent has to see the walls to plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from hplan.envs.maze_generator import always_free, generate_room_maze, maze_spec
from hplan.envs.point_physics import MAX_SPEED_LIMIT, PointPhysics, step_points
from hplan.envs.render import Palette, PointRenderer
from hplan.envs.world import STATE_NAMES, VIOLATION_NAMES, PointWorld
from hplan.errors import HplanError

NOMINAL_MAX_SPEED = 0.4
GOAL_COLOR = (40, 180, 60)
"""Goal marker colour in human renders (never drawn in observations)."""


def make_world(layout: str, obs_mode: str, image_size: int | None, goal_tolerance: float, min_rooms_apart: int,
               start_room: int | None, goal_room: int | None, zones: Sequence[Sequence[int]],
               colors: dict[str, Sequence[int]] | None) -> PointWorld:
    """The shared static world of both PointRooms envs (single and vectorised)."""
    return PointWorld(layout=layout, obs_mode=obs_mode, image_size=image_size, goal_tolerance=goal_tolerance,
                      min_rooms_apart=min_rooms_apart, start_room=start_room, goal_room=goal_room,
                      zones=zones, palette=make_palette(colors), nominal_max_speed=NOMINAL_MAX_SPEED)


class WorldSource:
    """The world of each episode, for both envs: the one fixed layout, or with
    ``layout = "generated"`` the maze of each layout seed (:mod:`hplan.envs.maze_generator`),
    built on first use and kept for the last :data:`WORLD_CACHE` seeds."""

    def __init__(self, layout: str, maze: dict[str, Any] | None, **world: Any) -> None:
        self.spec = maze_spec(layout, maze)
        self._world = world
        self._cache: dict[int, PointWorld] = {}
        self.first = make_world(layout if self.spec is None else generate_room_maze(self.spec, 0), **world)

    @property
    def generated(self) -> bool:
        return self.spec is not None

    @property
    def always_free(self) -> np.ndarray:
        """``(H, W)`` cells that are walkable, unrestricted floor in every world this source gives."""
        world = self.first
        free = ~world.layout.wall & ~world.restricted
        return free if self.spec is None else free & always_free(self.spec)

    def world(self, layout_seed: int) -> PointWorld:
        """The world of ``layout_seed`` (the fixed world when the layout is not generated)."""
        if self.spec is None:
            return self.first
        seed = int(layout_seed)
        if seed not in self._cache:
            if len(self._cache) >= WORLD_CACHE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[seed] = make_world(generate_room_maze(self.spec, seed), **self._world)
        return self._cache[seed]


WORLD_CACHE = 64
"""Generated worlds kept per env (a world holds its renderer background and geodesic cache)."""


def make_palette(colors: dict[str, Sequence[int]] | None) -> Palette:
    """A palette with some colours replaced, e.g. ``{"wall": [90, 30, 30]}``."""
    if not colors:
        return Palette()
    fields = Palette.__dataclass_fields__
    values: dict[str, tuple[int, int, int]] = {}
    for name, rgb in colors.items():
        if name not in fields:
            raise HplanError(f"colors: unknown colour {name!r} (known: {', '.join(fields)})")
        if (len(rgb) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in rgb)):
            raise HplanError(f"colors.{name} must be three integers in [0, 255], got {list(rgb)!r}")
        values[name] = (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    return Palette(**values)


def check_physics(friction: float, mass: float, action_gain: float, max_speed: float) -> None:
    """Reject physics that break the dynamics' assumptions (ranges for shifts live in factors.py)."""
    if not 0.0 <= friction < 1.0:
        raise HplanError(f"friction must be in [0, 1), got {friction!r}")
    if not mass > 0.0:
        raise HplanError(f"mass must be > 0, got {mass!r}")
    if not action_gain >= 0.0:
        raise HplanError(f"action_gain must be >= 0, got {action_gain!r}")
    if not 0.0 < max_speed <= MAX_SPEED_LIMIT:
        raise HplanError(f"max_speed must be in (0, {MAX_SPEED_LIMIT}], got {max_speed!r}")


class PointRoomsEnv(gym.Env):
    """Point mass in rooms; see the module docstring. Physics factors are plain attributes."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}
    state_names = STATE_NAMES
    violation_names = VIOLATION_NAMES

    def __init__(self, layout: str = "four_rooms", obs_mode: str = "state", image_size: int | None = None,
                 friction: float = 0.25, mass: float = 1.0, action_gain: float = 0.12,
                 max_speed: float = NOMINAL_MAX_SPEED, goal_tolerance: float = 0.5, min_rooms_apart: int = 0,
                 start_room: int | None = None, goal_room: int | None = None,
                 zones: Sequence[Sequence[int]] = (), colors: dict[str, Sequence[int]] | None = None,
                 terminate_on_success: bool = True, render_mode: str | None = None,
                 render_size: int = 256, maze: dict[str, Any] | None = None) -> None:
        check_physics(friction, mass, action_gain, max_speed)
        if render_mode not in (None, "rgb_array"):
            raise HplanError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.worlds = WorldSource(layout, maze, obs_mode=obs_mode, image_size=image_size,
                                  goal_tolerance=goal_tolerance, min_rooms_apart=min_rooms_apart,
                                  start_room=start_room, goal_room=goal_room, zones=zones, colors=colors)
        self.world = self.worlds.first
        self.friction, self.mass, self.action_gain, self.max_speed = friction, mass, action_gain, max_speed
        self.obs_mode = obs_mode
        self.terminate_on_success = terminate_on_success
        self.render_mode = render_mode
        self.render_size = render_size
        self.observation_space = self.world.observation_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._pos = np.zeros((1, 2))
        self._vel = np.zeros((1, 2))
        self._goal = np.zeros(2)
        self._goal_obs: Any = None
        self._human_renderer: PointRenderer | None = None

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"start", "goal", "layout_seed"}
        if unknown:
            raise HplanError(f"reset options: unknown key(s) {sorted(unknown)} (known: start, goal, layout_seed)")
        if self.worlds.generated:  # a new maze per episode: the reset seed's, unless one is given
            layout_seed = options.get("layout_seed", seed if seed is not None else int(self.np_random.integers(2**31)))
            world = self.worlds.world(layout_seed)
            if world is not self.world:
                self.world, self._human_renderer = world, None
        start, goal = self.world.sample_start_goal(self.np_random)
        if "start" in options:
            start = self.world.check_free(options["start"], "reset option start")
        if "goal" in options:
            goal = self.world.check_free(options["goal"], "reset option goal")
        self._pos = start.reshape(1, 2).copy()
        self._vel = np.zeros((1, 2))
        self._set_goal(goal)
        contact = np.zeros(1, dtype=bool)
        return self._obs(), self._info(contact, success=self._success())

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float64).reshape(1, 2)
        self._pos, self._vel, contact = step_points(self.world.walls_padded, self._pos, self._vel, action,
                                                    self.physics)
        success = self._success()
        info = self._info(contact, success=success)
        terminated = bool(success and self.terminate_on_success)
        return self._obs(), float(success), terminated, False, info

    def render(self) -> np.ndarray | None:
        """``rgb_array``: a larger top-down frame for humans, with the goal drawn in green."""
        if self.render_mode != "rgb_array":
            return None
        if self._human_renderer is None:
            world = self.world
            self._human_renderer = PointRenderer(world.layout.wall, world.restricted, self.render_size, world.palette)
        renderer = self._human_renderer
        frame = renderer.background[None].copy()
        renderer.stamp(frame, self._goal.reshape(1, 2), GOAL_COLOR)
        renderer.stamp(frame, self._pos, self.world.palette.agent)
        return frame[0]

    # ------------------------------------------------------------------ contract extras
    @property
    def physics(self) -> PointPhysics:
        return PointPhysics(self.friction, self.mass, self.action_gain, self.max_speed)

    @property
    def pos(self) -> np.ndarray:
        return self._pos[0].copy()

    @property
    def goal(self) -> np.ndarray:
        return self._goal.copy()

    def room_of(self, pos: Sequence[float]) -> int | None:
        """Room index of a world point (rooms numbered in reading order of the map), None on a wall."""
        return self.world.room_of(pos)

    def geodesic_distance(self, p: Sequence[float], q: Sequence[float]) -> float:
        """Shortest path between two points on the true map, world units (``inf`` off the floor)."""
        return self.world.geodesic_distance(p, q)

    def geodesic_steps(self, p: Sequence[float], q: Sequence[float]) -> int:
        """:meth:`geodesic_distance` in steps at the nominal max speed (what H50 tiers use)."""
        return self.world.geodesic_steps(p, q)

    def teleport(self, pos: Sequence[float]) -> None:
        """Stress hook (kidnap): move the agent to a free point and stop it."""
        self._pos = self.world.check_free(pos, "teleport target").reshape(1, 2).copy()
        self._vel = np.zeros((1, 2))

    def push(self, velocity_delta: Sequence[float]) -> None:
        """Stress hook: add a velocity kick (clipped to max speed on the next step)."""
        delta = np.asarray(velocity_delta, dtype=np.float64).reshape(1, 2)
        self._vel = self._vel + delta

    def set_goal(self, pos: Sequence[float]) -> None:
        """Stress hook: move the goal; ``goal_obs`` in the next ``info`` shows the new goal."""
        self._set_goal(self.world.check_free(pos, "goal"))

    # ------------------------------------------------------------------ internals
    def _set_goal(self, goal: np.ndarray) -> None:
        self._goal = np.asarray(goal, dtype=np.float64).copy()
        goal_obs = self.world.observe(self._goal.reshape(1, 2), np.zeros((1, 2)))
        self._goal_obs = _first(goal_obs)

    def _success(self) -> bool:
        return bool(np.hypot(*(self._pos[0] - self._goal)) <= self.world.goal_tolerance)

    def _obs(self) -> Any:
        return _first(self.world.observe(self._pos, self._vel))

    def _info(self, contact: np.ndarray, *, success: bool) -> dict[str, Any]:
        flags = self.world.violations(self._pos, contact)
        violations = {name: bool(flags[name][0]) for name in VIOLATION_NAMES}
        room = self.world.rooms_of(self._pos)[0]
        return {
            "true_state": np.concatenate([self._pos[0], self._vel[0]]).astype(np.float32),
            "pos": self._pos[0].astype(np.float32),
            "goal": self._goal.astype(np.float32),
            "cost": 1.0 if any(violations.values()) else 0.0,
            "violations": violations,
            "success": success,
            "goal_obs": _copy(self._goal_obs),
            "room": int(room),
        }


def _copy(obs: Any) -> Any:
    """A fresh copy per info dict: callers may keep or mutate what an env returns."""
    if isinstance(obs, dict):
        return {key: value.copy() for key, value in obs.items()}
    return obs.copy()


def _first(obs: Any) -> Any:
    """Drop the batch axis of a batched observation (array or dict of arrays)."""
    if isinstance(obs, dict):
        return {key: value[0] for key, value in obs.items()}
    return obs[0]
