"""The shift library: distribution shifts with a severity scale, 0 (identity) … 3.

Each shift is a :class:`ShiftSpec` in the :data:`SHIFTS` registry (the "Stress contract" of
docs/architecture.md): the env ids it applies to, optional constructor overrides (physics
factors, layouts — validated by :func:`hplan.envs.factors.validate_factor`) and a wrapper built by
``make(env, severity, rng)``. Severity tables sit next to each shift, one value per level, so a
reviewer reads what "severity 2" means in one line.

Why one wrapper class with hooks instead of one class per shift: every shift must annotate
``info`` identically (``shift``, ``severity``, ``perturbation_onset``), reseed from the episode seed
identically, and be *exactly* the identity at severity 0 (the wrapper then calls no hook and draws
no random number, so severity 0 reproduces the nominal episode bit for bit). Randomness comes from
a generator seeded by ``derive_seed(episode_seed, "shift", name)`` on every seeded reset, never
from a global RNG (MiniGrid's ``StochasticActionWrapper`` is the cautionary tale) and never from
the env's own ``np_random`` (which would change the env's start/goal draws).

Perturbations (kidnap, push, goal move) strike at an onset step drawn per episode from
``[onset_min, onset_max]``; kidnap is the one *impossible* transition and marks the step it
happens on with ``info["impossible_transition"] = True`` (the surprise metric's label).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from hplan.config import ScenarioConfig
from hplan.envs.registry import ENVS
from hplan.errors import HplanError
from hplan.seeding import derive_seed
from hplan.stress.geometry import far_point

POINT = "hplan/PointRooms-v0"
FOURROOMS = "hplan/MiniGridFourRooms-v0"
DOORKEY = "hplan/MiniGridDoorKey-v0"
LAVA = "hplan/MiniGridLavaCrossing-v0"
PUSHER = "hplan/Pusher-v0"
CARTPOLE = "hplan/CartPole-v0"
MINIGRID = (FOURROOMS, DOORKEY, LAVA)
ALL_ENVS = tuple(ENVS)
"""Every registered env: the generic shifts (observation and actuator noise, delay) wrap any env
that keeps the contract, adapters of other suites (OGBench) included."""
IMAGE_ENVS = (POINT, *MINIGRID, PUSHER, CARTPOLE)
"""Envs that can render image observations (the scenario's obs_mode decides; see ``check``)."""

MAX_SEVERITY = 3


@dataclass(frozen=True)
class Onset:
    """Perturbation timing for one suite (from its ``[recovery]`` section)."""

    low: int = 10
    high: int = 30


class ShiftWrapper(gym.Wrapper):
    """Applies one shift at one severity; subclasses override the hooks they need.

    Hooks are never called at severity 0. ``self.rng`` is reseeded on every seeded reset;
    ``self.t`` counts steps taken in the episode; ``self.onset`` is the perturbation step (or -1)
    and ``self.struck`` becomes True once it has happened.
    """

    perturbs = False
    impossible = False

    def __init__(self, env: gym.Env, name: str, severity: int, rng: np.random.Generator,
                 onset: Onset = Onset()) -> None:
        super().__init__(env)
        if not 0 <= severity <= MAX_SEVERITY:
            raise HplanError(f"shift {name}: severity {severity} out of range 0..{MAX_SEVERITY}")
        self.shift_name = name
        self.severity = int(severity)
        self.rng = rng
        self.onset_range = onset
        self.t = 0
        self.onset = -1
        self.struck = False

    @property
    def active(self) -> bool:
        return self.severity > 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if seed is not None:
            self.rng = np.random.default_rng(derive_seed(seed, "shift", self.shift_name))
        self.t = 0
        self.struck = False
        self.onset = -1
        if self.active and self.perturbs:
            self.onset = int(self.rng.integers(self.onset_range.low, self.onset_range.high + 1))
        obs, info = self.env.reset(seed=seed, options=options)
        if self.active:
            self.on_reset(info)
            obs = self.observe(obs)
        return obs, self._annotate(info, impossible=False)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        impossible = False
        if self.active:
            if self.perturbs and self.t == self.onset:
                self.perturb()
                self.struck = True
                impossible = self.impossible
            action = self.act(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.active:
            obs = self.observe(obs)
        self.t += 1
        return obs, reward, terminated, truncated, self._annotate(info, impossible=impossible)

    def _annotate(self, info: dict, *, impossible: bool) -> dict:
        info = dict(info)
        info["shift"] = self.shift_name
        info["severity"] = self.severity
        info["perturbation_onset"] = self.onset if self.struck else -1
        info["impossible_transition"] = impossible
        return info

    # hooks (identity by default)
    def on_reset(self, info: dict) -> None:
        """Draw per-episode shift parameters (occluder position, blob paths, ...)."""

    def observe(self, obs: Any) -> Any:
        return obs

    def act(self, action: Any) -> Any:
        return action

    def perturb(self) -> None:
        """Apply the perturbation to the underlying env (before the onset step's action)."""


# ------------------------------------------------------------------------------- observation

def _map_obs(obs: Any, space: gym.Space, image: Callable[[np.ndarray], np.ndarray],
             state: Callable[[np.ndarray, gym.spaces.Box], np.ndarray] | None) -> Any:
    """Apply ``image`` to uint8 image parts and ``state`` to float vector parts of an observation."""
    if isinstance(space, gym.spaces.Dict):
        return {key: _map_obs(obs[key], space[key], image, state) for key in obs}
    array = np.asarray(obs)
    if array.dtype == np.uint8 and array.ndim == 3:
        return image(array)
    if state is not None and isinstance(space, gym.spaces.Box):
        return state(array, space)
    return obs


def _has_image(space: gym.Space) -> bool:
    if isinstance(space, gym.spaces.Dict):
        return any(_has_image(s) for s in space.values())
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def _state_scale(space: gym.spaces.Box) -> np.ndarray:
    """Per-dimension range of a state Box (unbounded dims count as 1)."""
    span = np.asarray(space.high, dtype=np.float64) - np.asarray(space.low, dtype=np.float64)
    return np.where(np.isfinite(span) & (span > 0), span, 1.0)


class ObsNoise(ShiftWrapper):
    """Additive Gaussian sensor noise: σ = fraction of each dimension's range (images: of 255).

    Sensor shifts (noise, occlusion, distractors) touch what the agent *observes*; the goal
    observation in ``info["goal_obs"]`` is the task specification and stays clean."""

    SIGMA = (0.0, 0.02, 0.05, 0.10)

    def observe(self, obs: Any) -> Any:
        sigma = self.SIGMA[self.severity]

        def image(img: np.ndarray) -> np.ndarray:
            noisy = img.astype(np.float64) + self.rng.normal(0.0, sigma * 255.0, img.shape)
            return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

        def state(vec: np.ndarray, space: gym.spaces.Box) -> np.ndarray:
            noise = self.rng.normal(0.0, 1.0, vec.shape) * sigma * _state_scale(space)
            return (vec + noise).astype(vec.dtype)

        return _map_obs(obs, self.observation_space, image, state)


class Occlusion(ShiftWrapper):
    """Pixel dropout (each pixel black with probability p) plus one black occluding square per episode."""

    DROPOUT = (0.0, 0.05, 0.15, 0.30)
    PATCH = (0.0, 0.15, 0.25, 0.35)
    """Side of the occluding square, as a fraction of the image side."""

    def on_reset(self, info: dict) -> None:
        self.patch_origin = self.rng.uniform(0.0, 1.0, size=2)

    def observe(self, obs: Any) -> Any:
        def image(img: np.ndarray) -> np.ndarray:
            out = img.copy()
            h, w = img.shape[:2]
            out[self.rng.random((h, w)) < self.DROPOUT[self.severity]] = 0
            side = max(1, int(round(self.PATCH[self.severity] * min(h, w))))
            r0 = int(self.patch_origin[0] * (h - side))
            c0 = int(self.patch_origin[1] * (w - side))
            out[r0:r0 + side, c0:c0 + side] = 0
            return out

        return _map_obs(obs, self.observation_space, image, None)


class Distractors(ShiftWrapper):
    """Moving coloured discs drawn over image observations, bouncing off the image borders."""

    COUNT = (0, 1, 2, 4)

    def on_reset(self, info: dict) -> None:
        n = self.COUNT[self.severity]
        self.blob_pos = self.rng.uniform(0.1, 0.9, size=(n, 2))
        angle = self.rng.uniform(0.0, 2 * math.pi, size=n)
        self.blob_vel = 0.03 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        self.blob_color = self.rng.integers(40, 256, size=(n, 3)).astype(np.uint8)

    def observe(self, obs: Any) -> Any:
        pos = self.blob_pos + self.blob_vel
        bounce = (pos < 0.05) | (pos > 0.95)
        self.blob_vel = np.where(bounce, -self.blob_vel, self.blob_vel)
        self.blob_pos = np.clip(pos, 0.05, 0.95)

        def image(img: np.ndarray) -> np.ndarray:
            out = img.copy()
            h, w = img.shape[:2]
            radius = max(1.5, min(h, w) / 14.0)
            rows, cols = np.mgrid[0:h, 0:w]
            for (y, x), color in zip(self.blob_pos, self.blob_color):
                out[(rows - y * h) ** 2 + (cols - x * w) ** 2 <= radius ** 2] = color
            return out

        return _map_obs(obs, self.observation_space, image, None)


# ------------------------------------------------------------------------------------ action

class ActionNoise(ShiftWrapper):
    """Actuator noise: Gaussian (σ = fraction of the half-range) or, for discrete actions, a random
    action with probability p — drawn from the shift's generator, not the global RNG."""

    SIGMA = (0.0, 0.10, 0.25, 0.50)
    FLIP = (0.0, 0.10, 0.20, 0.35)

    def act(self, action: Any) -> Any:
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            if self.rng.random() < self.FLIP[self.severity]:
                return int(space.start + self.rng.integers(space.n))
            return action
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        a = np.asarray(action, dtype=np.float64)
        noisy = a + self.rng.normal(0.0, 1.0, a.shape) * self.SIGMA[self.severity] * (high - low) / 2.0
        return np.clip(noisy, low, high).astype(np.asarray(action).dtype if np.asarray(action).dtype.kind == "f"
                                                  else np.float32)


class ActionDelay(ShiftWrapper):
    """The env executes the action chosen ``d`` steps earlier; the first ``d`` steps a null action
    (zeros, or for discrete spaces the env's ``noop_action`` if it has one, else the current action)."""

    DELAY = (0, 1, 2, 4)

    def on_reset(self, info: dict) -> None:
        self.queue: deque[Any] = deque()

    def act(self, action: Any) -> Any:
        self.queue.append(action)
        if len(self.queue) > self.DELAY[self.severity]:
            return self.queue.popleft()
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return getattr(self.env.unwrapped, "noop_action", action)
        return np.zeros(space.shape, dtype=space.dtype)


# ------------------------------------------------------------------------------- perturbations

class Kidnap(ShiftWrapper):
    """Teleport the agent at the onset step to a point ``BAND[s]`` nominal steps away and farther from
    the goal (an impossible transition)."""

    perturbs = True
    impossible = True
    BAND = ((0, 0), (8, 16), (16, 28), (28, 60))

    def perturb(self) -> None:
        lo, hi = self.BAND[self.severity]
        base = self.env.unwrapped
        base.teleport(far_point(self.env, base.pos, lo, hi, self.rng, away_from=base.goal))


class Push(ShiftWrapper):
    """An external shove: a max-speed velocity kick in a random direction, repeated for ``STEPS[s]`` steps."""

    perturbs = True
    STEPS = (0, 2, 4, 8)

    def on_reset(self, info: dict) -> None:
        angle = self.rng.uniform(0.0, 2 * math.pi)
        self.direction = np.array([math.cos(angle), math.sin(angle)])
        self.pushing = 0

    def perturb(self) -> None:
        self.pushing = self.STEPS[self.severity]

    def act(self, action: Any) -> Any:
        if self.pushing > 0:
            base = self.env.unwrapped
            base.push(self.direction * 2.0 * base.max_speed)
            self.pushing -= 1
        return action


class GoalMove(ShiftWrapper):
    """Move the goal at the onset step to a point ``BAND[s]`` nominal steps from the old goal;
    the next ``info["goal_obs"]`` shows it (the runner then tells the agent)."""

    perturbs = True
    BAND = ((0, 0), (8, 16), (16, 28), (28, 60))

    def perturb(self) -> None:
        lo, hi = self.BAND[self.severity]
        base = self.env.unwrapped
        base.set_goal(far_point(self.env, base.goal, lo, hi, self.rng))


# ------------------------------------------------------------------------ env-parameter shifts

FACTOR_FRACTION = (0.0, 0.25, 0.5, 0.75)
"""Factor shifts move a factor this fraction of the way from its nominal value to its bound."""

FACTOR_SHIFTS: dict[str, dict[str, tuple[str, str]]] = {
    # shift name -> env id -> (factor, direction towards which bound)
    "friction": {POINT: ("friction", "high"), PUSHER: ("block_friction", "high")},
    "mass": {POINT: ("mass", "high"), PUSHER: ("block_mass", "high")},
    "action_gain": {POINT: ("action_gain", "low"), PUSHER: ("pusher_speed", "low")},
}


def factor_value(scenario: ScenarioConfig, shift: str, severity: int) -> tuple[str, float]:
    """The (factor name, shifted value) a factor shift sets; validated by ``validate_factor``."""
    from hplan.envs.factors import factor, validate_factor

    name, direction = FACTOR_SHIFTS[shift][scenario.env.id]
    item = factor(scenario.env.id, name)
    nominal = float(scenario.env.kwargs.get(name, item.nominal))
    bound = float(item.high if direction == "high" else item.low)
    value = nominal + FACTOR_FRACTION[severity] * (bound - nominal)
    return name, float(validate_factor(scenario.env.id, name, value))


def _layout_text(scenario: ScenarioConfig) -> tuple[str, np.ndarray]:
    """The scenario's layout as text rows plus its restricted grid (layout ``x`` cells + zones)."""
    from hplan.envs.layouts import load_layout
    from hplan.envs.world import apply_zones

    layout = load_layout(scenario.env.kwargs.get("layout", "four_rooms"))
    restricted = apply_zones(layout, scenario.env.kwargs.get("zones", ()))
    rows = [line.strip() for line in layout.text.strip("\n").splitlines() if line.strip()]
    return "\n".join(rows), restricted


def moved_zone_layout(scenario: ScenarioConfig, severity: int) -> str:
    """The scenario's map with every restricted cell moved ``severity`` cells (first free diagonal/axis move)."""
    text, restricted = _layout_text(scenario)
    grid = [list(row.replace("x", ".")) for row in text.splitlines()]
    height, width = len(grid), len(grid[0])
    s = severity
    offsets = ((s, s), (-s, s), (s, -s), (-s, -s), (0, s), (s, 0), (0, -s), (-s, 0))
    for r, c in np.argwhere(restricted):
        for dr, dc in offsets:
            rr, cc = int(r + dr), int(c + dc)
            if 0 <= rr < height and 0 <= cc < width and grid[rr][cc] == ".":
                grid[rr][cc] = "x"
                break
    return "\n" + "\n".join("".join(row) for row in grid) + "\n"


def _moved_zones_check(scenario: ScenarioConfig) -> str | None:
    _, restricted = _layout_text(scenario)
    return None if restricted.any() else "its layout has no restricted zones to move"


HELD_OUT_LAYOUTS: tuple[str, ...] = (
    "",
    # 1: four rooms, doorways moved
    """
###################
#........#........#
#........#........#
#........#........#
#........#........#
#.................#
#.................#
#........#........#
#........#........#
###..#######..#####
#........#........#
#........#........#
#.................#
#.................#
#........#........#
#........#........#
#........#........#
#........#........#
###################
""",
    # 2: four rooms of unequal size, walls and doorways moved
    """
###################
#.....#...........#
#.....#...........#
#.................#
#.................#
#.....#...........#
#.....#...........#
##..#####..########
#...........#.....#
#...........#.....#
#...........#.....#
#...........#.....#
#.................#
#.................#
#...........#.....#
#...........#.....#
#...........#.....#
#...........#.....#
###################
""",
    # 3: three stacked rooms joined in a snake: a structure never seen in training
    """
###################
#.................#
#.................#
#.................#
#.................#
#.................#
###############..##
#.................#
#.................#
#.................#
#.................#
#.................#
##..###############
#.................#
#.................#
#.................#
#.................#
#.................#
###################
""",
)
"""Held-out 19×19 maps (the size of the built-in four-rooms maps, so the image scale is unchanged)."""


def _unseen_layout_check(scenario: ScenarioConfig) -> str | None:
    from hplan.envs.layouts import load_layout

    current = load_layout(scenario.env.kwargs.get("layout", "four_rooms"))
    for text in HELD_OUT_LAYOUTS[1:]:
        if load_layout(text).text.strip() == current.text.strip():
            return "the scenario already uses a held-out layout"
    return None


# -------------------------------------------------------------------------------- registry

def _image_only(scenario: ScenarioConfig) -> str | None:
    return None if scenario.env.obs_mode in ("image", "both") else f"needs image observations, obs_mode is {scenario.env.obs_mode!r}"


def _factor_check(shift: str) -> Callable[[ScenarioConfig], str | None]:
    def check(scenario: ScenarioConfig) -> str | None:
        try:
            factor_value(scenario, shift, MAX_SEVERITY)
        except HplanError as err:
            return str(err)
        return None
    return check


@dataclass(frozen=True)
class ShiftSpec:
    """A registered shift.

    ``make(env, severity, rng)`` wraps an env (built with ``overrides(scenario, severity)``);
    ``check(scenario)`` returns why the shift cannot run on a scenario (or None) — suite files are
    validated with it before anything runs.
    """

    name: str
    doc: str
    applies_to: tuple[str, ...]
    wrapper: type[ShiftWrapper] = ShiftWrapper
    overrides: Callable[[ScenarioConfig, int], dict[str, Any]] = field(default=lambda scenario, severity: {})
    checker: Callable[[ScenarioConfig], str | None] | None = None
    max_severity: int = MAX_SEVERITY

    @property
    def perturbs(self) -> bool:
        return self.wrapper.perturbs

    def check(self, scenario: ScenarioConfig) -> str | None:
        return self.checker(scenario) if self.checker is not None else None

    def env_overrides(self, scenario: ScenarioConfig, severity: int) -> dict[str, Any]:
        """Constructor keywords for ``make_env`` (empty at severity 0: the nominal env)."""
        self._check_applies(scenario.env.id)
        return {} if severity == 0 else self.overrides(scenario, severity)

    def make(self, env: gym.Env, severity: int, rng: np.random.Generator, onset: Onset = Onset()) -> ShiftWrapper:
        env_id = getattr(getattr(env.unwrapped, "spec", None), "id", None) or getattr(env.unwrapped, "env_id", None)
        if env_id is not None:
            self._check_applies(env_id)
        if not 0 <= severity <= self.max_severity:
            raise HplanError(f"shift {self.name}: severity {severity} out of range 0..{self.max_severity}")
        return self.wrapper(env, self.name, severity, rng, onset)

    def _check_applies(self, env_id: str) -> None:
        if env_id not in self.applies_to:
            raise HplanError(f"shift {self.name!r} does not apply to {env_id} (applies to: {', '.join(self.applies_to)})")


def _factor_spec(name: str, doc: str) -> ShiftSpec:
    def overrides(scenario: ScenarioConfig, severity: int) -> dict[str, Any]:
        factor_name, value = factor_value(scenario, name, severity)
        return {factor_name: value}

    return ShiftSpec(name, doc, tuple(FACTOR_SHIFTS[name]), overrides=overrides, checker=_factor_check(name))


SHIFTS: dict[str, ShiftSpec] = {spec.name: spec for spec in (
    ShiftSpec("none", "no shift: the nominal world (the baseline every shift is compared with)", ALL_ENVS),
    ShiftSpec("obs_noise", f"Gaussian observation noise, sigma = {ObsNoise.SIGMA} of each dimension's range",
              ALL_ENVS, ObsNoise),
    ShiftSpec("occlusion", f"pixel dropout p = {Occlusion.DROPOUT} plus a black square of side {Occlusion.PATCH}",
              IMAGE_ENVS, Occlusion, checker=_image_only),
    ShiftSpec("distractors", f"{Distractors.COUNT} moving coloured discs drawn over the image",
              IMAGE_ENVS, Distractors, checker=_image_only),
    _factor_spec("friction", f"friction moved {FACTOR_FRACTION} of the way to its upper bound"),
    _factor_spec("mass", f"mass moved {FACTOR_FRACTION} of the way to its upper bound"),
    _factor_spec("action_gain", f"actuator gain moved {FACTOR_FRACTION} of the way to its lower bound"),
    ShiftSpec("action_noise", f"actuator noise sigma = {ActionNoise.SIGMA} of the half-range "
              f"(discrete: random action with p = {ActionNoise.FLIP})", ALL_ENVS, ActionNoise),
    ShiftSpec("action_delay", f"actions executed {ActionDelay.DELAY} steps late", ALL_ENVS, ActionDelay),
    ShiftSpec("moved_zones", "every restricted cell moved by `severity` cells", (POINT,),
              overrides=lambda scenario, severity: {"layout": moved_zone_layout(scenario, severity), "zones": []},
              checker=_moved_zones_check),
    ShiftSpec("unseen_layout", "a held-out map per severity (moved doorways, unequal rooms, a three-room snake)",
              (POINT,), overrides=lambda scenario, severity: {"layout": HELD_OUT_LAYOUTS[severity]},
              checker=_unseen_layout_check),
    ShiftSpec("kidnap", f"teleport mid-episode to a point {Kidnap.BAND} nominal steps away", (POINT,), Kidnap),
    ShiftSpec("push", f"external shove: max-speed kicks for {Push.STEPS} steps", (POINT,), Push),
    ShiftSpec("goal_move", f"goal moved mid-episode by {GoalMove.BAND} nominal steps", (POINT,), GoalMove),
)}


def get_shift(name: str) -> ShiftSpec:
    try:
        return SHIFTS[name]
    except KeyError:
        raise HplanError(f"unknown shift {name!r} (known: {', '.join(sorted(SHIFTS))})") from None
