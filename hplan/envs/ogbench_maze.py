"""OGBench's point mazes behind the hplan environment contract.

OGBench (``pip install 'hplan[ogbench]'``) is the community benchmark for offline goal-conditioned
navigation; running hplan on its mazes, with its goals and its success rule, is what makes hplan's
numbers comparable with QRL, HIQL, GCIVL and graph-search baselines. This adapter keeps
OGBench's own simulator (MuJoCo, the ``point`` agent: each action moves the ball by 0.2 · a,
walls stop it), maze maps, evaluation tasks and success rule (within 1.0 of the goal), and adds
what hplan needs:

* **Seeded episodes.** OGBench draws its start and goal noise from numpy's *global* generator;
  here a ``reset(seed=…)`` fixes the episode (uniform noise of ±1 around the cell centres, as
  OGBench's ``add_noise``) and leaves the global generator as it was.
* **Tasks.** ``task_id`` 1–5 is one of OGBench's five evaluation tasks of the maze (fixed start
  and goal cells); ``task_id = 0`` draws a start and a goal cell from the free cells (distinct).
* **The contract.** State observation ``[x, y]`` (OGBench's ``states`` observation);
  ``info``: ``true_state`` / ``pos`` the ball's position, ``goal``, ``goal_obs`` (the observation
  at the goal: its position), ``success``, ``cost`` 0 and no violations (the maze has none).
* **Collection.** ``info["expert_direction"]``: the unit vector toward OGBench's oracle subgoal
  (the next cell on a BFS path to the goal; the goal itself once in its cell), which the
  ``expert`` exploration policy follows with Gaussian noise — OGBench's rule for its point-maze
  datasets. With ``wander = true`` (what the collector sets, :attr:`EnvEntry.collect_kwargs`) a
  reached goal is replaced by a fresh random cell instead of ending the episode, so one
  episode visits many goals as OGBench's ``navigate`` datasets do.

Adding another suite: write an adapter like this one (a ``gym.Env`` that fills the contract in
``docs/architecture.md``), add a row to :data:`hplan.envs.registry.ENVS` with ``requires`` naming
its package, and a scenario file.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from hplan.envs.render import PointRenderer
from hplan.errors import HplanError

MAZES = ("arena", "medium", "large", "giant")
"""OGBench point-maze layouts this adapter offers (``teleport`` moves the agent by itself: left out)."""
RENDER_SIZE = 256
GOAL_COLOR = (40, 180, 70)
NOISE_CELLS = 0.25
"""Start and goal noise as a fraction of a maze cell on each axis (OGBench: ±1 with 4-unit cells)."""


def _ogbench_maze_class() -> Any:
    try:
        from ogbench.locomaze.maze import make_maze_env
    except ImportError as err:  # the registry checks ``requires`` first; this is the fallback
        raise HplanError(f"the ogbench package is needed (pip install 'hplan[ogbench]'): {err}") from None
    return make_maze_env


class OGBenchPointMaze(gym.Env):
    """One OGBench point maze, seeded per episode, with hplan's ``info`` contract."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    state_names = ("x", "y")
    violation_names: tuple[str, ...] = ()

    def __init__(self, obs_mode: str = "state", maze: str = "medium", task_id: int = 0, wander: bool = False,
                 goal_tolerance: float | None = None, render_mode: str | None = None) -> None:
        if obs_mode != "state":
            raise HplanError(f"obs_mode: OGBench point mazes are state-observed here, got {obs_mode!r}")
        if maze not in MAZES:
            raise HplanError(f"maze must be one of {', '.join(MAZES)}, got {maze!r}")
        self._sim = _ogbench_maze_class()("point", "maze", maze_type=maze, terminate_at_goal=False,
                                          ob_type="states", add_noise_to_goal=False)
        self.maze = maze
        tasks = self._sim.task_infos
        if not 0 <= int(task_id) <= len(tasks):
            raise HplanError(f"task_id must be 0 (random cells) or an OGBench task 1-{len(tasks)}, got {task_id!r}")
        self.task_id, self.wander, self.render_mode = int(task_id), bool(wander), render_mode
        self.goal_tolerance = float(goal_tolerance) if goal_tolerance is not None else float(self._sim._goal_tol)
        self.unit = float(self._sim._maze_unit)
        self.free_cells = np.argwhere(self._sim.maze_map == 0)
        rows, cols = self._sim.maze_map.shape  # the map's outer edge bounds every position
        low = np.array([-self._sim._offset_x, -self._sim._offset_y]) - self.unit / 2
        high = low + self.unit * np.array([cols, rows])
        self.observation_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._rng = np.random.default_rng()
        self._goal = np.zeros(2)
        self._bfs: dict[tuple[int, int], dict[tuple[int, int], int]] = {}
        walls = self._sim.maze_map == 1
        self._renderer = PointRenderer(walls, np.zeros_like(walls), image_size=RENDER_SIZE)

    # -- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._rng = self.np_random  # gymnasium's: re-seeded by a seed, continued by a reset without one
        if self.task_id:
            task = self._sim.task_infos[self.task_id - 1]
            start_cell, goal_cell = np.asarray(task["init_ij"]), np.asarray(task["goal_ij"])
        else:
            start_cell, goal_cell = self.free_cells[self._rng.choice(len(self.free_cells), 2, replace=False)]
        start, goal = self._near(start_cell), self._near(goal_cell)
        saved = np.random.get_state()  # OGBench's reset draws from numpy's global generator
        try:
            self._sim.reset(seed=seed, options={"task_info": {"init_ij": tuple(start_cell), "goal_ij": tuple(goal_cell)}})
        finally:
            np.random.set_state(saved)
        self._sim.set_xy(start)
        self._set_goal(goal)
        return self._obs(), self._info(success=False)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        self._sim.step(action)
        success = self._reached()
        if success and self.wander:
            self._set_goal(self._near(self.free_cells[self._rng.integers(len(self.free_cells))]))
        return self._obs(), float(success), bool(success and not self.wander), False, self._info(success=success)

    def render(self) -> np.ndarray:
        """A top-down map (walls, the ball, the goal in green) drawn without OpenGL, so it works on
        headless machines where MuJoCo's renderer cannot start."""
        cells = np.stack([self._cell_coords(self._sim.get_xy()), self._cell_coords(self._goal)])
        frame = self._renderer.render(cells[:1])
        return self._renderer.stamp(frame, cells[1:], GOAL_COLOR)[0]

    def close(self) -> None:
        self._sim.close()

    def __deepcopy__(self, memo: dict) -> "OGBenchPointMaze":
        """Not copyable: OGBench's MuJoCo env rebuilds itself from constructor arguments it does
        not keep (its copy fails deep inside). The stress suite's counterfactual branches, which
        need a copy, label violations; these mazes have none, so the suite simply skips them."""
        raise NotImplementedError("OGBench mazes cannot be copied (and have no violations to branch for)")

    # -- hooks used by the stress suite and the collector
    def set_goal(self, pos: np.ndarray) -> None:
        self._set_goal(np.asarray(pos, dtype=np.float64))

    def teleport(self, pos: np.ndarray) -> None:
        self._sim.set_xy(np.asarray(pos, dtype=np.float64))

    def expert_direction(self) -> np.ndarray:
        """Unit vector toward OGBench's oracle subgoal for the current goal: the centre of the
        neighbouring free cell fewest cells from the goal's (the goal itself once in its cell)."""
        xy = self._sim.get_xy()
        here, goal = self._sim.xy_to_ij(xy), self._sim.xy_to_ij(self._goal)
        target = self._goal
        if here != goal:
            steps = self._cells_to(goal)
            best = here
            for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):  # OGBench's order: ties go the same way
                cell = (here[0] + di, here[1] + dj)
                if steps.get(cell, np.inf) < steps.get(best, np.inf):
                    best = cell
            target = np.asarray(self._sim.ij_to_xy(best))
        delta = np.asarray(target, dtype=np.float64) - xy
        norm = float(np.linalg.norm(delta))
        if norm < 1e-9:  # on the target: no direction (dividing by a floor gave a tiny, arbitrary one)
            return np.zeros(2, dtype=np.float32)
        return (delta / norm).astype(np.float32)

    # -- helpers
    def _cells_to(self, goal: tuple[int, int]) -> dict[tuple[int, int], int]:
        """Breadth-first cell counts to ``goal`` over free cells, cached per goal cell (goals change
        rarely; the search per step was 40 % of a collection step)."""
        if goal not in self._bfs:
            free = {tuple(int(v) for v in cell) for cell in self.free_cells}
            steps, frontier = {goal: 0}, [goal]
            while frontier:
                nxt = []
                for i, j in frontier:
                    for cell in ((i - 1, j), (i, j - 1), (i + 1, j), (i, j + 1)):
                        if cell in free and cell not in steps:
                            steps[cell] = steps[(i, j)] + 1
                            nxt.append(cell)
                frontier = nxt
            self._bfs[goal] = steps
        return self._bfs[goal]

    def _near(self, cell: np.ndarray) -> np.ndarray:
        centre = np.asarray(self._sim.ij_to_xy(tuple(int(c) for c in cell)), dtype=np.float64)
        return centre + self._rng.uniform(-NOISE_CELLS, NOISE_CELLS, 2) * self.unit

    def _cell_coords(self, xy: np.ndarray) -> np.ndarray:
        """World position → continuous (column, row) in maze cells, the renderer's units."""
        offset = np.array([self._sim._offset_x, self._sim._offset_y], dtype=np.float64)
        return (np.asarray(xy, dtype=np.float64) + offset) / self.unit + 0.5

    def _set_goal(self, goal: np.ndarray) -> None:
        self._goal = np.asarray(goal, dtype=np.float64).copy()
        self._sim.set_goal(goal_xy=self._goal)

    def _reached(self) -> bool:
        return bool(np.linalg.norm(self._sim.get_xy() - self._goal) <= self.goal_tolerance)

    def _obs(self) -> np.ndarray:
        return self._sim.get_xy().astype(np.float32)

    def _info(self, success: bool) -> dict[str, Any]:
        xy = self._sim.get_xy().astype(np.float32)
        return {"true_state": xy.copy(), "pos": xy.copy(), "goal": self._goal.astype(np.float32),
                "goal_obs": self._goal.astype(np.float32), "success": success, "cost": 0.0, "violations": {},
                "expert_direction": self.expert_direction()}
