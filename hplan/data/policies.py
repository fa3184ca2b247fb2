"""Exploration policies for offline data collection, batched over ``N`` environments.

A world model can only learn what the data shows, so the policies are chosen for *coverage*:

* ``random``: uniform over the action space. Cheap, but a continuous point mass under uniform
  random forces mostly jitters in place and rarely leaves its room.
* ``momentum``: a persistent heading with occasional turns (a run-and-tumble walk): each step a
  new heading is drawn with probability ``turn_prob`` or when the last step hit a wall. Straight
  runs of ~``1/turn_prob`` steps carry the agent across rooms and through doorways. For discrete
  actions it repeats the last action and switches with probability ``turn_prob``. Where the env
  has an object to manipulate (the pusher's block), a new heading points at it with probability
  ``seek_prob``: a uniform walk would almost never touch a small block, so the data would hold
  no pushes (and no contact-force violations) for the model to learn from.
* ``minigrid_explore``: a forward-biased random walk over MiniGrid's turn/forward actions that
  picks up a key or toggles a door when it faces one, and turns away from lava (each with
  probability ``interact_prob``), so DoorKey data contains opened doors and the rooms behind
  them, and LavaCrossing walks reach the far side of a river as well as falling in.

Determinism: every episode owns a ``numpy.random.Generator`` seeded from its episode seed, and all
the randomness a policy needs for that episode is drawn from it up front (:meth:`begin`). An
episode's actions therefore depend only on its own seed and observations — not on which slot of
which batch it ran in — which is what makes resumed collections identical to uninterrupted ones.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from hplan.errors import HplanError

# MiniGrid's action enum (minigrid.core.actions.Actions), fixed by the library.
MINIGRID_LEFT, MINIGRID_RIGHT, MINIGRID_FORWARD, MINIGRID_PICKUP, MINIGRID_TOGGLE = 0, 1, 2, 3, 5


@dataclass(frozen=True)
class PolicyContext:
    """What a collector tells a policy about the last step (all arrays have a leading ``N`` axis).

    ``blocked``: the last step hit a wall (``wall_contact``), or None when the env has no such flag.
    ``interact``: per env, the action that interacts with the object in front (MiniGrid pickup /
    toggle), or -1 when there is nothing useful to interact with; None when not applicable.
    ``seek``: per env, the action-space direction from the agent to the object it should
    manipulate (pusher: block minus pusher position); None when the env has no such object.
    ``pos``: per env, the agent's position (to tell sliding along a wall from being stuck).
    ``expert``: per env, the unit action direction the env's own oracle would take (OGBench
    mazes: toward the next cell on a shortest path to the episode's goal); None elsewhere.
    """

    t: int
    blocked: np.ndarray | None = None
    interact: np.ndarray | None = None
    seek: np.ndarray | None = None
    pos: np.ndarray | None = None
    expert: np.ndarray | None = None


class ExplorationPolicy(ABC):
    """Batched, per-episode-seeded action sampler for one action space."""

    name: str = ""

    def __init__(self, space: gym.Space, *, turn_prob: float = 0.05, interact_prob: float = 0.8,
                 seek_prob: float = 0.0, action_noise: float = 0.0) -> None:
        self.space = space
        self.action_noise = float(action_noise)
        self.turn_prob = float(turn_prob)
        self.interact_prob = float(interact_prob)
        self.seek_prob = float(seek_prob)
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(space, gym.spaces.Box):
            raise HplanError(f"policy {self.name!r}: unsupported action space {space}")
        self._noise: dict[str, np.ndarray] = {}
        self._steps = 0

    def begin(self, rngs: Sequence[np.random.Generator], steps: int) -> None:
        """Start ``len(rngs)`` episodes of ``steps`` steps; draws each episode's noise from its own generator."""
        self._steps = steps
        blocks = [self._draw(rng, steps) for rng in rngs]
        self._noise = {key: np.stack([b[key] for b in blocks]) for key in blocks[0]} if blocks else {}
        self._start(len(rngs))

    def act(self, ctx: PolicyContext) -> np.ndarray:
        """Actions for step ``ctx.t``: ``(N, *shape)`` float32 for boxes, ``(N,)`` int64 for discrete."""
        if not 0 <= ctx.t < self._steps:
            raise IndexError(f"step {ctx.t} outside the episode length {self._steps}")
        return self._act(ctx)

    # -- per-policy parts
    @abstractmethod
    def _draw(self, rng: np.random.Generator, steps: int) -> dict[str, np.ndarray]:
        """All noise one episode needs, as arrays with a leading time axis."""

    def _start(self, n: int) -> None:
        """Reset per-episode state for ``n`` new episodes."""

    @abstractmethod
    def _act(self, ctx: PolicyContext) -> np.ndarray: ...

    # -- helpers
    @property
    def _n_actions(self) -> int:
        return int(self.space.n)

    def _discrete_from_uniform(self, u: np.ndarray) -> np.ndarray:
        return (self.space.start + np.minimum((u * self._n_actions).astype(np.int64), self._n_actions - 1)).astype(
            np.int64)

    def _box_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.where(np.isfinite(self.space.low), self.space.low, -1.0).astype(np.float64)
        high = np.where(np.isfinite(self.space.high), self.space.high, 1.0).astype(np.float64)
        return low, high


class UniformRandom(ExplorationPolicy):
    """Uniform over the action space (unbounded box dimensions are treated as [-1, 1])."""

    name = "random"

    def _draw(self, rng: np.random.Generator, steps: int) -> dict[str, np.ndarray]:
        shape = () if self.discrete else self.space.shape
        return {"u": rng.random((steps, *shape))}

    def _act(self, ctx: PolicyContext) -> np.ndarray:
        u = self._noise["u"][:, ctx.t]
        if self.discrete:
            return self._discrete_from_uniform(u)
        low, high = self._box_bounds()
        return (low + u * (high - low)).astype(np.float32)


class MomentumWalk(ExplorationPolicy):
    """Persistent heading, re-drawn with probability ``turn_prob`` per step or when stuck at a wall.

    "Stuck" means the last step hit a wall *and* moved less than :attr:`STUCK_DISTANCE` (when the
    collector reports positions; otherwise any wall contact counts). A point that hits a wall at an
    angle slides along it, and sliding is what finds doorways: turning at every contact instead
    cut the share of 100-step four-room episodes that cross a doorway from ~50 % to ~36 %.

    Continuous: the action is ``centre + half_range · strength · heading`` with a unit ``heading``
    (uniform on the sphere; with probability ``seek_prob`` the direction of ``ctx.seek`` plus a
    little noise instead) and ``strength`` uniform in [0.5, 1], clipped to the box. Discrete: the
    previous action is repeated; a turn picks a uniformly random action.

    ``action_noise`` adds fresh Gaussian noise (in half-ranges) to every continuous action. Why:
    with a persistent heading the action is almost a function of the velocity, so a predictor
    that sees the velocity (a frame history) can ignore the action and still fit the data — and
    then every candidate a planner scores predicts the same future (measured on PointRooms: with
    ``action_noise = 0`` the trained P_lo moved the point by < 0.05 cells over 6 steps whatever
    the action). Per-step noise makes the action's effect on the next step visible in the data.
    """

    name = "momentum"
    STUCK_DISTANCE = 0.1
    """Displacement (world units; PointRooms cells) under which a wall contact counts as stuck."""
    SEEK_NOISE = 0.3
    """Scale of the random part added to a seeking heading (so pushes hit the block off-centre too)."""

    def _draw(self, rng: np.random.Generator, steps: int) -> dict[str, np.ndarray]:
        noise = {"turn": rng.random(steps)}
        if self.discrete:
            noise["choice"] = rng.random(steps)
        else:
            dim = int(np.prod(self.space.shape))
            noise["heading"] = rng.standard_normal((steps, dim))
            noise["strength"] = rng.uniform(0.5, 1.0, steps)
            noise["seek"] = rng.random(steps)
            if self.action_noise > 0:  # drawn last and only when used: other streams stay as they were
                noise["jitter"] = rng.standard_normal((steps, dim))
        return noise

    def _start(self, n: int) -> None:
        self._current = np.zeros(n, dtype=np.int64)
        dim = 1 if self.discrete else int(np.prod(self.space.shape))
        self._heading = np.zeros((n, dim))
        self._strength = np.zeros(n)
        self._last_pos: np.ndarray | None = None

    def _turns(self, ctx: PolicyContext) -> np.ndarray:
        turn = self._noise["turn"][:, ctx.t] < self.turn_prob
        if ctx.t == 0:
            turn[:] = True
        if ctx.blocked is not None:
            stuck = np.asarray(ctx.blocked, dtype=bool)
            if ctx.pos is not None and self._last_pos is not None:
                moved = np.linalg.norm(np.asarray(ctx.pos, dtype=np.float64) - self._last_pos, axis=1)
                stuck = stuck & (moved < self.STUCK_DISTANCE)
            turn |= stuck
        self._last_pos = None if ctx.pos is None else np.asarray(ctx.pos, dtype=np.float64).copy()
        return turn

    def _act(self, ctx: PolicyContext) -> np.ndarray:
        turn = self._turns(ctx)
        if self.discrete:
            fresh = self._discrete_from_uniform(self._noise["choice"][:, ctx.t])
            self._current = np.where(turn, fresh, self._current)
            return self._current.copy()
        heading = self._noise["heading"][:, ctx.t]
        if ctx.seek is not None and self.seek_prob > 0:
            seek = np.asarray(ctx.seek, dtype=np.float64).reshape(len(turn), -1)
            toward = seek / np.maximum(np.linalg.norm(seek, axis=1, keepdims=True), 1e-9)
            use = (self._noise["seek"][:, ctx.t] < self.seek_prob)[:, None]
            heading = np.where(use, toward + self.SEEK_NOISE * _unit(heading), heading)
        self._heading = np.where(turn[:, None], _unit(heading), self._heading)
        self._strength = np.where(turn, self._noise["strength"][:, ctx.t], self._strength)
        low, high = (b.reshape(-1) for b in self._box_bounds())
        push = self._strength[:, None] * self._heading
        if self.action_noise > 0:
            push = push + self.action_noise * self._noise["jitter"][:, ctx.t]
        action = np.clip((low + high) / 2 + (high - low) / 2 * push, low, high)
        return action.reshape(len(turn), *self.space.shape).astype(np.float32)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class MiniGridExplore(ExplorationPolicy):
    """Forward-biased walk (forward 60 %, left 20 %, right 20 %) that interacts with keys and doors.

    Interaction needs ``ctx.interact`` (from the collector, which reads the cell in front of the
    agent); without it this is the plain forward-biased walk.
    """

    name = "minigrid_explore"
    WALK = ((MINIGRID_FORWARD, 0.6), (MINIGRID_LEFT, 0.2), (MINIGRID_RIGHT, 0.2))

    def __init__(self, space: gym.Space, **kwargs: float) -> None:
        super().__init__(space, **kwargs)
        if not self.discrete or self._n_actions < 3:
            raise HplanError(f"policy 'minigrid_explore' needs MiniGrid's discrete actions, got {space}")
        self._walk_actions = np.array([a for a, _ in self.WALK], dtype=np.int64)
        self._walk_cdf = np.cumsum([p for _, p in self.WALK])

    def _draw(self, rng: np.random.Generator, steps: int) -> dict[str, np.ndarray]:
        return {"walk": rng.random(steps), "interact": rng.random(steps)}

    def _act(self, ctx: PolicyContext) -> np.ndarray:
        index = np.searchsorted(self._walk_cdf, self._noise["walk"][:, ctx.t], side="right")
        action = self._walk_actions[np.minimum(index, len(self._walk_actions) - 1)]
        if ctx.interact is not None:
            interact = np.asarray(ctx.interact, dtype=np.int64)
            use = (interact >= 0) & (interact < self._n_actions) & (self._noise["interact"][:, ctx.t] < self.interact_prob)
            action = np.where(use, interact, action)
        return action.astype(np.int64)


class NoisyExpert(ExplorationPolicy):
    """The env's oracle direction plus fresh Gaussian noise of scale ``action_noise`` per step,
    clipped to the box: OGBench's rule for its point-maze datasets (noise 0.5). The oracle walks
    shortest paths between goals the env draws, so the data cover long, purposeful routes — what a
    model needs to learn distances across a large maze — while the noise shows every action's effect."""

    name = "expert"

    def __init__(self, space: gym.Space, **kwargs: float) -> None:
        super().__init__(space, **kwargs)
        if self.discrete:
            raise HplanError(f"policy 'expert' needs a continuous action space, got {space}")

    def _draw(self, rng: np.random.Generator, steps: int) -> dict[str, np.ndarray]:
        return {"jitter": rng.standard_normal((steps, int(np.prod(self.space.shape))))}

    def _act(self, ctx: PolicyContext) -> np.ndarray:
        if ctx.expert is None:
            raise HplanError("policy 'expert' needs an env that reports info['expert_direction'] (OGBench mazes)")
        low, high = (b.reshape(-1) for b in self._box_bounds())
        push = np.asarray(ctx.expert, dtype=np.float64).reshape(-1, len(low))
        push = push + self.action_noise * self._noise["jitter"][:, ctx.t]
        action = np.clip((low + high) / 2 + (high - low) / 2 * push, low, high)
        return action.reshape(len(push), *self.space.shape).astype(np.float32)


POLICIES: dict[str, Callable[..., ExplorationPolicy]] = {
    UniformRandom.name: UniformRandom,
    MomentumWalk.name: MomentumWalk,
    MiniGridExplore.name: MiniGridExplore,
    NoisyExpert.name: NoisyExpert,
}
"""Registry: the names a scenario's ``[collect] policy`` may use."""


def make_policy(name: str, space: gym.Space, *, turn_prob: float = 0.05, interact_prob: float = 0.8,
                seek_prob: float = 0.0, action_noise: float = 0.0) -> ExplorationPolicy:
    """Build a registered policy for ``space``; unknown names and unsupported spaces raise HplanError."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise HplanError(f"unknown exploration policy {name!r} (known: {', '.join(POLICIES)})") from None
    return cls(space, turn_prob=turn_prob, interact_prob=interact_prob, seek_prob=seek_prob, action_noise=action_noise)


def policy_for(collect: Any, space: gym.Space) -> ExplorationPolicy:
    """The policy a scenario's ``[collect]`` section asks for (a :class:`hplan.config.CollectConfig`)."""
    return make_policy(collect.policy, space, turn_prob=collect.turn_prob, interact_prob=collect.interact_prob,
                       seek_prob=collect.seek_prob, action_noise=collect.action_noise)
