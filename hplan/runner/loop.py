"""The episode loop: the one place an environment and an agent meet.

Evaluation hygiene lives here. The agent is handed observations and goal observations only —
never ``info``, the true state, the real cost or the success flag — so a planner cannot be steered
by ground truth (a known flaw of a public latent planner). Everything the environment reveals
beyond the observation is read by the runner for records and metrics, after the agent has acted.

Metrics and loggers attach as step hooks (``on_reset`` / ``on_step`` / optional
``on_episode_end``) instead of being written into the loop, so the stress suite and replay
recorders add what they need without touching it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from hplan.errors import HplanError


@runtime_checkable
class Agent(Protocol):
    """What the runner needs from an agent (see docs/architecture.md, "Agent contract")."""

    def reset(self, goal_obs: Any, seed: int) -> None: ...

    def set_goal(self, goal_obs: Any) -> None: ...

    def act(self, obs: Any) -> tuple[Any, Any]: ...


@dataclass(frozen=True)
class StepEvent:
    """What a step hook sees after each environment step.

    ``obs`` is the observation *after* the step, ``action`` the one the agent chose for it and
    ``plan_info`` the agent's ``PlanInfo`` for that choice. ``goal_changed`` is True when the
    environment's ``goal_obs`` changed on this step (and the agent was told via ``set_goal``).
    ``act_ms`` is the wall time of ``agent.act``; ``act_cpu_ms`` the CPU time of the calling thread
    during it (the honest number on a busy machine when torch runs on one thread).
    """

    t: int
    obs: Any
    action: Any
    reward: float
    info: Mapping[str, Any]
    plan_info: Any
    terminated: bool = False
    truncated: bool = False
    goal_changed: bool = False
    act_ms: float = 0.0
    act_cpu_ms: float = 0.0


class StepHook(Protocol):
    """A step hook; ``on_episode_end(record)`` may also be defined and is then called last."""

    def on_reset(self, env: Any, obs: Any, info: Mapping[str, Any]) -> None: ...

    def on_step(self, event: StepEvent) -> None: ...


@dataclass(frozen=True)
class StepRecord:
    """One step as the episode log stores it (JSON-friendly values only).

    ``true_state``/``pos``/``cost``/``violations`` come from the environment's ``info`` and are
    for metrics and replay checks; none of them was shown to the agent.
    """

    t: int
    action: int | list[float]
    reward: float
    cost: float
    violations: dict[str, bool]
    success: bool
    terminated: bool
    truncated: bool
    true_state: list[float]
    pos: list[float] | None
    obs_sha256: str
    goal_changed: bool
    act_ms: float
    plan: dict[str, Any]
    act_cpu_ms: float = 0.0


@dataclass
class EpisodeRecord:
    """Everything one episode produced: per-step records plus what the reset revealed."""

    seed: int
    reset_obs_sha256: str
    reset_true_state: list[float]
    goal_obs_sha256: str
    steps: list[StepRecord] = field(default_factory=list)
    violation_names: tuple[str, ...] = ()
    final_geodesic: float | None = None
    start_geodesic: float | None = None
    start_geodesic_steps: int | None = None

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def success(self) -> bool:
        return bool(self.steps) and self.steps[-1].success

    @property
    def violation_steps(self) -> int:
        """Steps with at least one real violation (``info["cost"] > 0``)."""
        return sum(1 for s in self.steps if s.cost > 0)

    def violations_by_kind(self) -> dict[str, int]:
        """Per violation name, the number of steps on which it was flagged."""
        names = self.violation_names or tuple(sorted({k for s in self.steps for k in s.violations}))
        return {name: sum(1 for s in self.steps if s.violations.get(name, False)) for name in names}

    @property
    def total_return(self) -> float:
        return float(sum(s.reward for s in self.steps))

    def mean(self, key: str) -> float:
        values = [s.plan.get(key) for s in self.steps if s.plan.get(key) is not None]
        return float(np.mean(values)) if values else float("nan")

    def total(self, key: str) -> float:
        return float(sum(s.plan.get(key) or 0 for s in self.steps))


def run_episode(env: Any, agent: Agent, seed: int, *, max_steps: int,
                hooks: Sequence[StepHook] = ()) -> EpisodeRecord:
    """Run one seeded episode of ``agent`` in ``env`` and return its record.

    Stops on ``terminated``, ``truncated``, ``info["success"]`` or after ``max_steps``. When the
    environment's ``goal_obs`` changes mid-episode (a shift moved the goal), the agent is told
    with ``set_goal`` before its next action.
    """
    if max_steps < 1:
        raise HplanError(f"max_steps must be >= 1, got {max_steps}")
    obs, info = env.reset(seed=int(seed))
    goal_obs = _require_goal(info)
    agent.reset(goal_obs, int(seed))
    violation_names = tuple(getattr(env.unwrapped, "violation_names", ()) or ())
    record = EpisodeRecord(seed=int(seed), reset_obs_sha256=obs_digest(obs),
                           reset_true_state=_floats(info.get("true_state")),
                           goal_obs_sha256=obs_digest(goal_obs), violation_names=violation_names)
    record.start_geodesic, record.start_geodesic_steps = _geodesic(env, info, steps=True)
    for hook in hooks:
        hook.on_reset(env, obs, info)
    for t in range(max_steps):
        start, start_cpu = time.perf_counter(), time.thread_time()
        action, plan_info = agent.act(obs)
        act_ms = (time.perf_counter() - start) * 1000.0
        act_cpu_ms = (time.thread_time() - start_cpu) * 1000.0
        obs, reward, terminated, truncated, info = env.step(action)
        goal_changed = False
        new_goal = info.get("goal_obs", goal_obs)
        if new_goal is not goal_obs and not obs_equal(new_goal, goal_obs):
            agent.set_goal(new_goal)
            goal_changed = True
        goal_obs = new_goal
        success = bool(info.get("success", False))
        record.steps.append(StepRecord(
            t=t, action=action_to_json(action), reward=float(reward), cost=float(info.get("cost", 0.0)),
            violations={str(k): bool(v) for k, v in dict(info.get("violations", {})).items()},
            success=success, terminated=bool(terminated), truncated=bool(truncated),
            true_state=_floats(info.get("true_state")),
            pos=_floats(info["pos"]) if info.get("pos") is not None else None,
            obs_sha256=obs_digest(obs), goal_changed=goal_changed, act_ms=round(act_ms, 4),
            plan=plan_info_to_json(plan_info), act_cpu_ms=round(act_cpu_ms, 4)))
        event = StepEvent(t=t, obs=obs, action=action, reward=float(reward), info=info, plan_info=plan_info,
                          terminated=bool(terminated), truncated=bool(truncated), goal_changed=goal_changed,
                          act_ms=act_ms, act_cpu_ms=act_cpu_ms)
        for hook in hooks:
            hook.on_step(event)
        if terminated or truncated or success:
            break
    record.final_geodesic, _ = _geodesic(env, info, steps=False)
    for hook in hooks:
        end = getattr(hook, "on_episode_end", None)
        if end is not None:
            end(record)
    return record


def _require_goal(info: Mapping[str, Any]) -> Any:
    if "goal_obs" not in info:
        raise HplanError("environment's reset info has no 'goal_obs': the agent cannot be given a goal "
                         "(every hplan env must provide it, see docs/architecture.md)")
    return info["goal_obs"]


def _geodesic(env: Any, info: Mapping[str, Any], *, steps: bool) -> tuple[float | None, int | None]:
    """Shortest-path distance (and steps) from the agent to the goal on the true map, if the env has one."""
    base = env.unwrapped
    measure = getattr(base, "geodesic_distance", None)
    if measure is None or info.get("pos") is None or info.get("goal") is None:
        return None, None
    pos, goal = np.asarray(info["pos"]), np.asarray(info["goal"])
    distance = float(measure(pos, goal))
    if not np.isfinite(distance):  # a point off the floor (e.g. a shifted goal): no distance to report
        return None, None
    count = None
    if steps and getattr(base, "geodesic_steps", None) is not None:
        count = int(base.geodesic_steps(pos, goal))
    return distance, count


def obs_digest(obs: Any) -> str:
    """sha256 of an observation's dtype, shape and bytes (dict observations: keys in sorted order)."""
    digest = hashlib.sha256()
    _feed(digest, obs)
    return digest.hexdigest()


def _feed(digest: Any, obs: Any) -> None:
    if isinstance(obs, Mapping):
        for key in sorted(obs):
            digest.update(f"[{key}]".encode())
            _feed(digest, obs[key])
        return
    array = np.ascontiguousarray(np.asarray(obs))
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())


def obs_equal(a: Any, b: Any) -> bool:
    """Content equality for (dict) observations."""
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or set(a) != set(b):
            return False
        return all(obs_equal(a[k], b[k]) for k in a)
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    return a_arr.shape == b_arr.shape and a_arr.dtype == b_arr.dtype and bool(np.array_equal(a_arr, b_arr))


def action_to_json(action: Any) -> int | list[float]:
    """An int for discrete actions, a list of floats (exact, float32 values survive) otherwise."""
    if isinstance(action, (int, np.integer)) and not isinstance(action, bool):
        return int(action)
    array = np.asarray(action)
    if array.ndim == 0 and np.issubdtype(array.dtype, np.integer):
        return int(array)
    return [float(v) for v in array.ravel()]


def _floats(value: Any) -> list[float]:
    if value is None:
        return []
    return [float(v) for v in np.asarray(value, dtype=np.float64).ravel()]


SUBGOAL_DECIMALS = 4
PROB_DECIMALS = 6


def plan_info_to_json(plan_info: Any) -> dict[str, Any]:
    """The logged part of a ``PlanInfo`` (rounded so logs stay small and comparisons stable)."""
    if plan_info is None:
        return {}
    latent = getattr(plan_info, "subgoal_latent", None)
    if latent is not None:
        latent = [round(float(v), SUBGOAL_DECIMALS) for v in _to_numpy(latent).ravel()]
    probs = getattr(plan_info, "guardrail_probs", None) or {}
    index = getattr(plan_info, "subgoal_index", None)
    return {
        "subgoal_index": None if index is None else int(index),
        "subgoal_latent": latent,
        "guardrail_probs": {str(k): round(float(v), PROB_DECIMALS) for k, v in dict(probs).items()},
        "predicted_cost": _opt_round(getattr(plan_info, "predicted_cost", None), PROB_DECIMALS),
        "plan_ms": _opt_round(getattr(plan_info, "plan_ms", None), 4),
        "model_evals": _opt_int(getattr(plan_info, "model_evals", None)),
        "replanned_high": bool(getattr(plan_info, "replanned_high", False)),
        "surprise": _opt_round(getattr(plan_info, "surprise", None), PROB_DECIMALS),
        "plan_reason": getattr(plan_info, "plan_reason", None),
        "predicted_risk": _opt_round(getattr(plan_info, "predicted_risk", None), PROB_DECIMALS),
        "lagrange_multiplier": _opt_round(getattr(plan_info, "lagrange_multiplier", None), PROB_DECIMALS),
        "compute": {str(k): round(float(v), 4) for k, v in dict(getattr(plan_info, "compute", None) or {}).items()},
    }


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _opt_round(value: Any, decimals: int) -> float | None:
    if value is None:
        return None
    value = float(_to_numpy(value).reshape(-1)[0]) if not isinstance(value, (int, float)) else float(value)
    if not np.isfinite(value):
        return None
    return round(value, decimals)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
