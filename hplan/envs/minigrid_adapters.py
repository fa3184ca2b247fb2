"""MiniGrid FourRooms, DoorKey and LavaCrossing behind the hplan environment contract.

Why an adapter rather than minigrid's wrappers: planners need a *fully observed*, small, fast
image (minigrid's RGB renderer draws 32-pixel tiles with anti-aliasing, ~ms per frame), a state
vector for probes, the true agent state in ``info`` and a goal observation. Here each grid cell is
drawn as 2×2 sub-cells from a flat colour table (the facing half of the agent's cell in a darker
shade shows its direction) and scaled to ``image_size`` by nearest-neighbour index lookup.

* Actions: ``Discrete(3)`` = left, right, forward (FourRooms, LavaCrossing); DoorKey adds pickup
  and toggle (``Discrete(5)``). Drop/done are left out: they never help these tasks.
* State observation (float32, 8): ``[x, y, dir_right, dir_down, dir_left, dir_up, carrying_key,
  door_open]`` in grid cells (the last two are 0 where the task has no key/door).
* ``info["true_state"]``: ``[x, y, dir, carrying_key, door_open]``; ``pos`` the agent cell,
  ``goal`` the goal cell. Violations: LavaCrossing has ``lava`` (stepping onto lava, which also
  ends the episode, cost 1.0); FourRooms and DoorKey have none.
* ``goal_obs``: the observation of the solved task — agent on the goal facing right, and for
  DoorKey the key carried and the door open.
* The step budget is the scenario's (``TimeLimit``); minigrid's own limit is disabled.
  All randomness is minigrid's own ``np_random``, seeded by ``reset(seed=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from hplan.errors import HplanError

DEFAULT_COLORS: dict[str, tuple[int, int, int]] = {
    "floor": (20, 20, 20), "wall": (120, 120, 120), "goal": (40, 200, 60), "agent": (230, 50, 40),
    "key": (240, 200, 30), "door": (160, 100, 40), "lava": (250, 110, 0),
}
OPEN_DOOR_SHADE = 0.45
HEADING_SHADE = 0.55
_NO_LIMIT = 10**9
_DIR_SUBCELLS = {0: ((0, 1), (1, 1)), 1: ((1, 0), (1, 1)), 2: ((0, 0), (1, 0)), 3: ((0, 0), (0, 1))}
"""Direction (0 right, 1 down, 2 left, 3 up) → the (row, col) sub-cells of the facing half."""


class MiniGridAdapter(gym.Env):
    """Base adapter; subclasses name the minigrid env, its actions and violations."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    state_names = ("x", "y", "dir", "carrying_key", "door_open")
    violation_names: ClassVar[tuple[str, ...]] = ()
    actions: ClassVar[tuple[int, ...]] = (0, 1, 2)  # minigrid Actions: left, right, forward

    def __init__(self, obs_mode: str = "image", image_size: int = 64, colors: dict[str, Sequence[int]] | None = None,
                 render_mode: str | None = None) -> None:
        if obs_mode not in ("state", "image", "both"):
            raise HplanError(f"obs_mode must be state, image or both, got {obs_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise HplanError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self._env = self._make_minigrid()
        self.obs_mode = obs_mode
        self.image_size = int(image_size)
        self.render_mode = render_mode
        self._colors = _palette(colors)
        width, height = self._env.width, self._env.height
        self._width, self._height = width, height
        scale = self.image_size / (2 * max(width, height))
        pixels = np.arange(self.image_size)
        self._rows = np.minimum((pixels / scale).astype(np.int64), 2 * height - 1)
        self._cols = np.minimum((pixels / scale).astype(np.int64), 2 * width - 1)
        self._outside = (pixels / scale) >= 2 * np.array([[height], [width]])  # (2, S): rows / cols off-grid
        self.action_space = gym.spaces.Discrete(len(self.actions))
        state = gym.spaces.Box(low=np.zeros(8, dtype=np.float32),
                               high=np.array([width, height, 1, 1, 1, 1, 1, 1], dtype=np.float32), dtype=np.float32)
        image = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8)
        self.observation_space = {"state": state, "image": image,
                                  "both": gym.spaces.Dict({"state": state, "image": image})}[obs_mode]
        self._static: np.ndarray | None = None
        self._goal = np.zeros(2, dtype=np.float32)
        self._key_pos: tuple[int, int] | None = None
        self._door: Any = None
        self._goal_obs: Any = None

    # ------------------------------------------------------------------ subclass hooks
    def _make_minigrid(self) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._env.reset(seed=seed)
        self._scan_grid()
        self._goal_obs = self._observe(pos=tuple(int(v) for v in self._goal), direction=0,
                                       carrying=self._key_pos is not None, door_open=self._door is not None,
                                       key_on_grid=False)
        return self._current_obs(), self._info(lava=False)

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        if not self.action_space.contains(int(action)):
            raise HplanError(f"action must be in 0..{self.action_space.n - 1}, got {action!r}")
        _, _, terminated, _, _ = self._env.step(self.actions[int(action)])
        cell = self._env.grid.get(*self._env.agent_pos)
        lava = cell is not None and cell.type == "lava"
        info = self._info(lava=lava)
        return self._current_obs(), float(info["success"]), bool(terminated), False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._image(*self._dynamic_state())

    # ------------------------------------------------------------------ contract extras
    def set_goal(self, pos: Sequence[int]) -> None:
        """Stress hook: move the goal square to an empty floor cell ``(x, y)``."""
        from minigrid.core.world_object import Goal

        x, y = (int(v) for v in pos)
        if not (0 <= x < self._width and 0 <= y < self._height) or self._env.grid.get(x, y) is not None:
            raise HplanError(f"goal {list(pos)} is not an empty floor cell")
        old = tuple(int(v) for v in self._goal)
        self._env.grid.set(*old, None)
        self._env.grid.set(x, y, Goal())
        self._scan_grid()
        self._goal_obs = self._observe(pos=(x, y), direction=0, carrying=self._key_pos is not None,
                                       door_open=self._door is not None, key_on_grid=False)

    # ------------------------------------------------------------------ internals
    def _scan_grid(self) -> None:
        """Cache the static cell colours and where the goal, key and door are (once per reset)."""
        colors = self._colors
        static = np.empty((self._height, self._width, 3), dtype=np.uint8)
        static[...] = colors["floor"]
        self._key_pos, self._door = None, None
        for index, obj in enumerate(self._env.grid.grid):
            if obj is None:
                continue
            x, y = index % self._width, index // self._width
            if obj.type in ("wall", "goal", "lava"):
                static[y, x] = colors[obj.type]
            if obj.type == "goal":
                self._goal = np.array([x, y], dtype=np.float32)
            elif obj.type == "key":
                self._key_pos = (x, y)
            elif obj.type == "door":
                self._door = (x, y, obj)
        self._static = static

    def _dynamic_state(self) -> tuple[tuple[int, int], int, bool, bool, bool]:
        pos = (int(self._env.agent_pos[0]), int(self._env.agent_pos[1]))
        carrying = self._env.carrying is not None and self._env.carrying.type == "key"
        door_open = self._door is not None and bool(self._door[2].is_open)
        key_on_grid = self._key_pos is not None and self._env.grid.get(*self._key_pos) is not None
        return pos, int(self._env.agent_dir), carrying, door_open, key_on_grid

    def _current_obs(self) -> Any:
        pos, direction, carrying, door_open, key_on_grid = self._dynamic_state()
        return self._observe(pos, direction, carrying, door_open, key_on_grid)

    def _observe(self, pos: tuple[int, int], direction: int, carrying: bool, door_open: bool,
                 key_on_grid: bool) -> Any:
        state = image = None
        if self.obs_mode in ("state", "both"):
            state = np.zeros(8, dtype=np.float32)
            state[0:2] = pos
            state[2 + direction] = 1.0
            state[6], state[7] = float(carrying), float(door_open)
        if self.obs_mode in ("image", "both"):
            image = self._image(pos, direction, carrying, door_open, key_on_grid)
        if self.obs_mode == "both":
            return {"state": state, "image": image}
        return state if self.obs_mode == "state" else image

    def _image(self, pos: tuple[int, int], direction: int, carrying: bool, door_open: bool,
               key_on_grid: bool) -> np.ndarray:
        cells = self._static.copy()
        if key_on_grid and self._key_pos is not None:
            cells[self._key_pos[1], self._key_pos[0]] = self._colors["key"]
        if self._door is not None:
            door = np.array(self._colors["door"], dtype=np.float64)
            cells[self._door[1], self._door[0]] = (door * OPEN_DOOR_SHADE if door_open else door).astype(np.uint8)
        fine = np.repeat(np.repeat(cells, 2, axis=0), 2, axis=1)
        agent = np.array(self._colors["agent"], dtype=np.float64)
        fine[2 * pos[1]:2 * pos[1] + 2, 2 * pos[0]:2 * pos[0] + 2] = agent.astype(np.uint8)
        heading = (agent * HEADING_SHADE).astype(np.uint8)
        if carrying:  # a carried key shows as the key colour in the agent's back half
            for dr, dc in _DIR_SUBCELLS[(direction + 2) % 4]:
                fine[2 * pos[1] + dr, 2 * pos[0] + dc] = self._colors["key"]
        for dr, dc in _DIR_SUBCELLS[direction]:
            fine[2 * pos[1] + dr, 2 * pos[0] + dc] = heading
        image = fine[self._rows[:, None], self._cols[None, :]]
        image[self._outside[0]] = 0
        image[:, self._outside[1]] = 0
        return image

    def _info(self, *, lava: bool) -> dict[str, Any]:
        pos, direction, carrying, door_open, _ = self._dynamic_state()
        violations = {name: bool(lava) for name in self.violation_names}
        success = bool(pos[0] == int(self._goal[0]) and pos[1] == int(self._goal[1]))
        goal_obs = self._goal_obs
        goal_obs = {k: v.copy() for k, v in goal_obs.items()} if isinstance(goal_obs, dict) else goal_obs.copy()
        return {
            "true_state": np.array([pos[0], pos[1], direction, carrying, door_open], dtype=np.float32),
            "pos": np.array(pos, dtype=np.float32),
            "goal": self._goal.copy(),
            "cost": 1.0 if any(violations.values()) else 0.0,
            "violations": violations,
            "success": success,
            "goal_obs": goal_obs,
        }


def _palette(colors: dict[str, Sequence[int]] | None) -> dict[str, tuple[int, int, int]]:
    palette = dict(DEFAULT_COLORS)
    for name, rgb in (colors or {}).items():
        if name not in palette:
            raise HplanError(f"colors: unknown part {name!r} (known: {', '.join(palette)})")
        if len(rgb) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in rgb):
            raise HplanError(f"colors.{name} must be three integers in [0, 255], got {list(rgb)!r}")
        palette[name] = (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    return palette


class MiniGridFourRooms(MiniGridAdapter):
    """FourRooms (19×19): random start and goal in the four rooms."""

    def _make_minigrid(self) -> Any:
        from minigrid.envs import FourRoomsEnv

        return FourRoomsEnv(max_steps=_NO_LIMIT)


class MiniGridDoorKey(MiniGridAdapter):
    """DoorKey: the goal is behind a locked door; the key (a subgoal) opens it."""

    actions = (0, 1, 2, 3, 5)  # left, right, forward, pickup, toggle

    def __init__(self, size: int = 6, **kwargs: Any) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 5:
            raise HplanError(f"size must be an integer >= 5, got {size!r}")
        self.size = size
        super().__init__(**kwargs)

    def _make_minigrid(self) -> Any:
        from minigrid.envs import DoorKeyEnv

        return DoorKeyEnv(size=self.size, max_steps=_NO_LIMIT)


class MiniGridLavaCrossing(MiniGridAdapter):
    """LavaCrossing: rivers of lava with one gap each; touching lava is the violation."""

    violation_names = ("lava",)

    def __init__(self, size: int = 9, num_crossings: int = 1, **kwargs: Any) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 5 or size % 2 == 0:
            raise HplanError(f"size must be an odd integer >= 5, got {size!r}")
        if isinstance(num_crossings, bool) or not isinstance(num_crossings, int) or num_crossings < 1:
            raise HplanError(f"num_crossings must be an integer >= 1, got {num_crossings!r}")
        if num_crossings > size - 4:
            raise HplanError(f"num_crossings={num_crossings} does not fit a size-{size} grid (at most {size - 4})")
        self.size, self.num_crossings = size, num_crossings
        super().__init__(**kwargs)

    def _make_minigrid(self) -> Any:
        from minigrid.core.world_object import Lava
        from minigrid.envs import CrossingEnv

        return CrossingEnv(size=self.size, num_crossings=self.num_crossings, obstacle_type=Lava, max_steps=_NO_LIMIT)
