"""Batch sources: ``N`` environments behind one reset/step interface, for the collector.

Two back-ends, chosen by env id (:data:`VECTOR_BACKENDS`):

* PointRooms runs on :class:`hplan.envs.vector.PointRoomsVec` — all episodes of a batch advance in
  one numpy call, which is what makes collecting image datasets fast;
* every other env is a list of gymnasium envs built by :func:`hplan.envs.factory.make_env` and
  stepped in a loop (MiniGrid, PyBullet and CartPole are cheap per step; the loop keeps their
  own seeding semantics intact).

Both return a :class:`StepBatch` of plain arrays, so the collector never touches ``info`` dicts.
Episodes are fixed-length blocks: a source never auto-resets; the collector stops stepping an env
(loop back-end) or ignores it (vector back-end) once it has terminated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from hplan.config import ScenarioConfig
from hplan.data.minigrid_probes import ROOM_MAPS, interaction_probe

POINT_ROOMS_ID = "hplan/PointRooms-v0"
START_MARGIN = 0.1
"""Starts sampled "anywhere" keep this distance (world units) from their cell's edges."""


@dataclass
class StepBatch:
    """One step (or the reset) of ``n`` envs as arrays with a leading ``n`` axis."""

    obs: np.ndarray
    state_obs: np.ndarray | None
    reward: np.ndarray
    done: np.ndarray
    true_state: np.ndarray
    pos: np.ndarray | None
    cost: np.ndarray
    violations: np.ndarray
    room: np.ndarray | None = None
    interact: np.ndarray | None = None
    expert: np.ndarray | None = None

    def blocked(self, violation_names: Sequence[str]) -> np.ndarray | None:
        """The ``wall_contact`` flags, for policies that turn when they hit a wall."""
        if "wall_contact" not in violation_names:
            return None
        return self.violations[:, list(violation_names).index("wall_contact")]


class BatchSource(ABC):
    """``num_envs`` environments of one scenario, reset and stepped together."""

    num_envs: int
    observation_space: gym.Space
    action_space: gym.Space
    violation_names: tuple[str, ...]
    state_names: tuple[str, ...]
    num_rooms: int | None = None
    supports_anywhere: bool = False

    @abstractmethod
    def reset(self, seeds: Sequence[int], starts: np.ndarray | None = None) -> StepBatch:
        """Start ``len(seeds) <= num_envs`` episodes; ``starts`` (n, 2) overrides start positions."""

    @abstractmethod
    def step(self, actions: np.ndarray, active: np.ndarray) -> StepBatch:
        """Step the ``n`` episodes of the last reset; rows where ``active`` is False may be stale."""

    def sample_anywhere(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random start on the free (non-restricted) floor of the whole map."""
        raise NotImplementedError(f"{type(self).__name__} cannot place starts anywhere")

    def seek_vector(self, batch: StepBatch) -> np.ndarray | None:
        """Direction from the agent to the object it manipulates, from the true state (see
        :data:`SEEK_TARGETS`); None for envs without such an object."""
        indices = seek_indices(self.state_names)
        if indices is None:
            return None
        agent, target = indices
        return batch.true_state[:, target] - batch.true_state[:, agent]

    def close(self) -> None:
        """Release simulator resources (PyBullet clients)."""


# --------------------------------------------------------------------------- PointRooms (vectorised)
class PointRoomsVecSource(BatchSource):
    """PointRooms through ``PointRoomsVec``; goal termination is off so every step is valid data."""

    supports_anywhere = True

    def __init__(self, scenario: ScenarioConfig, num_envs: int) -> None:
        from hplan.envs.factory import make_vec_env

        self.vec = make_vec_env(scenario, num_envs, terminate_on_success=False)
        self.num_envs = num_envs
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.violation_names = tuple(self.vec.violation_names)
        self.state_names = tuple(self.vec.state_names)
        world = self.vec.world
        self.num_rooms = int(world.layout.num_rooms)
        self._free_cells = np.argwhere(self.vec.worlds.always_free)  # starts valid in every maze a batch may get
        self._n = num_envs

    def reset(self, seeds: Sequence[int], starts: np.ndarray | None = None) -> StepBatch:
        self._n = len(seeds)
        pad = self.num_envs - self._n
        full_seeds = list(seeds) + [int(seeds[-1])] * pad
        options = None
        if starts is not None:
            options = {"start": np.concatenate([starts, np.repeat(starts[-1:], pad, axis=0)])}
        obs, info = self.vec.reset(seed=full_seeds, options=options)
        return self._batch(obs, np.zeros(self.num_envs, np.float32), np.zeros(self.num_envs, bool), info)

    def step(self, actions: np.ndarray, active: np.ndarray) -> StepBatch:
        pad = self.num_envs - self._n
        full = np.concatenate([actions, np.zeros((pad, *actions.shape[1:]), actions.dtype)]) if pad else actions
        obs, reward, terminated, truncated, info = self.vec.step(full)
        return self._batch(obs, reward, terminated | truncated, info)

    def sample_anywhere(self, rng: np.random.Generator) -> np.ndarray:
        row, col = self._free_cells[int(rng.integers(len(self._free_cells)))]
        offset = rng.uniform(START_MARGIN, 1.0 - START_MARGIN, size=2)
        return np.array([col + offset[0], row + offset[1]], dtype=np.float64)

    def _batch(self, obs: Any, reward: np.ndarray, done: np.ndarray, info: dict[str, Any]) -> StepBatch:
        n = self._n
        image, state = _split_obs(obs)
        violations = np.stack([np.asarray(info["violations"][k], bool) for k in self.violation_names], axis=1)
        return StepBatch(obs=image[:n], state_obs=None if state is None else state[:n],
                         reward=np.asarray(reward, np.float32)[:n], done=np.asarray(done, bool)[:n],
                         true_state=np.asarray(info["true_state"], np.float32)[:n],
                         pos=np.asarray(info["pos"], np.float32)[:n], cost=np.asarray(info["cost"], np.float32)[:n],
                         violations=violations[:n], room=np.asarray(info["room"])[:n])


# --------------------------------------------------------------------------- any gymnasium env (loop)
class GymLoopSource(BatchSource):
    """A list of gymnasium envs from the scenario factory, stepped one after another."""

    def __init__(self, scenario: ScenarioConfig, num_envs: int, steps: int) -> None:
        from hplan.envs.factory import make_env
        from hplan.envs.registry import env_entry

        # Collection episodes are fixed-length blocks: the time limit must not cut them short.
        max_steps = max(scenario.env.max_steps, steps)
        collect_kwargs = env_entry(scenario.env.id).collect_kwargs
        self.envs = [make_env(scenario, max_steps=max_steps, **collect_kwargs) for _ in range(num_envs)]
        first = self.envs[0].unwrapped
        self.num_envs = num_envs
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.violation_names = tuple(getattr(first, "violation_names", ()))
        self.state_names = tuple(getattr(first, "state_names", ()))
        room_map = ROOM_MAPS.get(scenario.env.id)
        self._room_grid_of, self.num_rooms = (room_map if room_map is not None else (None, _num_rooms(first)))
        self._room_grids: list[np.ndarray | None] = []
        self._interaction = interaction_probe(first)
        self._last: list[dict[str, Any]] = []
        self._n = 0

    def reset(self, seeds: Sequence[int], starts: np.ndarray | None = None) -> StepBatch:
        if starts is not None:
            raise NotImplementedError("GymLoopSource places starts through the env's own task sampling")
        self._n = len(seeds)
        self._last = []
        self._room_grids = []
        for env, seed in zip(self.envs, seeds):
            obs, info = env.reset(seed=int(seed))
            self._last.append({"obs": obs, "reward": 0.0, "done": False, "info": info})
            self._room_grids.append(None if self._room_grid_of is None else self._room_grid_of(env.unwrapped))
        return self._batch()

    def step(self, actions: np.ndarray, active: np.ndarray) -> StepBatch:
        for i in range(self._n):
            if not active[i]:
                continue
            action = int(actions[i]) if isinstance(self.action_space, gym.spaces.Discrete) else actions[i]
            obs, reward, terminated, truncated, info = self.envs[i].step(action)
            self._last[i] = {"obs": obs, "reward": float(reward), "done": bool(terminated or truncated), "info": info}
        return self._batch()

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def _batch(self) -> StepBatch:
        rows = self._last[: self._n]
        images, states = zip(*(_split_obs(r["obs"]) for r in rows))
        infos = [r["info"] for r in rows]
        violations = np.array([[bool(info.get("violations", {}).get(k, False)) for k in self.violation_names]
                               for info in infos], dtype=bool).reshape(self._n, len(self.violation_names))
        pos = [info.get("pos") for info in infos]
        room = [info.get("room") for info in infos]
        if room[0] is None and self._room_grid_of is not None:
            room = [int(grid[int(p[1]), int(p[0])]) for grid, p in zip(self._room_grids, pos)]
        return StepBatch(
            obs=np.stack(images), state_obs=None if states[0] is None else np.stack(states),
            reward=np.array([r["reward"] for r in rows], np.float32),
            done=np.array([r["done"] for r in rows], bool),
            true_state=np.stack([np.asarray(info["true_state"], np.float32) for info in infos]),
            pos=None if pos[0] is None else np.stack([np.asarray(p, np.float32) for p in pos]),
            cost=np.array([float(info.get("cost", 0.0)) for info in infos], np.float32),
            violations=violations,
            room=None if room[0] is None else np.array([-1 if r is None else int(r) for r in room]),
            interact=None if self._interaction is None else np.array(
                [self._interaction(env.unwrapped) for env in self.envs[: self._n]], np.int64),
            expert=None if infos[0].get("expert_direction") is None else np.stack(
                [np.asarray(info["expert_direction"], np.float32) for info in infos]),
        )


def _split_obs(obs: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The stored observation and, for ``obs_mode="both"``, the state vector stored beside it."""
    if isinstance(obs, dict):
        return np.asarray(obs["image"]), np.asarray(obs["state"])
    return np.asarray(obs), None


def _num_rooms(env: Any) -> int | None:
    world = getattr(env, "world", None)
    layout = getattr(world, "layout", None)
    if layout is not None:
        return int(layout.num_rooms)
    count = getattr(env, "num_rooms", None)
    return int(count) if count is not None else None


SEEK_TARGETS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("pusher_x", "pusher_y"): ("block_x", "block_y"),
}
"""Agent state names → the state names of the object a seeking exploration heads for."""


def seek_indices(state_names: Sequence[str]) -> tuple[list[int], list[int]] | None:
    """Indices into the true state of (agent position, object position), or None."""
    names = list(state_names)
    for agent, target in SEEK_TARGETS.items():
        if set(agent) <= set(names) and set(target) <= set(names):
            return [names.index(n) for n in agent], [names.index(n) for n in target]
    return None


VECTOR_BACKENDS: dict[str, Callable[[ScenarioConfig, int], BatchSource]] = {
    POINT_ROOMS_ID: PointRoomsVecSource,
}
"""Env ids with a vectorised back-end; every other id uses :class:`GymLoopSource`."""


def open_source(scenario: ScenarioConfig, num_envs: int, steps: int) -> BatchSource:
    """The batch source for a scenario's env (vectorised where one exists)."""
    backend = VECTOR_BACKENDS.get(scenario.env.id)
    if backend is not None:
        return backend(scenario, num_envs)
    return GymLoopSource(scenario, num_envs, steps)
