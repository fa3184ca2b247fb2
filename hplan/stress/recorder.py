"""The stress suite's step hook: per-step ground truth for guardrail, recovery and surprise metrics.

Attached to ``hplan.runner.run_episode`` (the runner's ``on_reset`` / ``on_step`` hooks), it records
for every step what the agent predicted (``PlanInfo.guardrail_probs``, ``predicted_risk``,
``surprise``) next to what really happened (``info["violations"]``), the geodesic distance to the
goal (recovery time) and whether the transition was impossible (kidnap: surprise labels).

**Branched ground truth.** The real step only tells what the *executed* action did. To judge the
heads on what the planner was about to do, the recorder keeps a copy of the environment as it was
before each step and, after the agent has chosen, executes the *planned action sequence* in a
fresh copy of that snapshot. That gives, per head, the outcome of the planned first action
(``yb:<head>``; differs from the real step under actuator shifts) and whether the whole plan runs
into any violation (``plan_violation``), scored against the plan's predicted risk. Branches run in
the unwrapped environment: its physics include factor shifts (they are env attributes) but not
wrapper noise — the question is what the plan does in the true world. Copies share the static map
(``world``) with the original, so a branch costs a few small arrays, not a map rebuild.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from hplan.stress.geometry import distances_from, has_map

PlanSource = Callable[[Any], "np.ndarray | None"]


def branch_copy(env: Any) -> Any | None:
    """A deep copy of the unwrapped env sharing its static world; None when it cannot be copied
    (PyBullet worlds live in a physics server and are not copyable)."""
    base = env.unwrapped
    if any(type(value).__module__.split(".")[0] == "pybullet_utils" or type(value).__module__ == "pybullet"
           for value in vars(base).values()):
        # deepcopy "succeeds" but the copy shares the physics server: stepping it would move the real world
        return None
    memo: dict[int, Any] = {}
    world = getattr(base, "world", None)
    if world is not None:
        memo[id(world)] = world
    try:
        return copy.deepcopy(base, memo)
    except (TypeError, pickle.PicklingError, NotImplementedError, AttributeError):
        return None


def agent_plan(agent: Any) -> PlanSource:
    """Where the planned action sequence comes from: ``PlanInfo.extra["planned_actions"]`` if the
    agent fills it, else the agent's last ``PlanStep.result.actions`` (``(H, A)``; discrete plans
    are one-hot rows, returned as action indices)."""

    def source(plan_info: Any) -> np.ndarray | None:
        extra = getattr(plan_info, "extra", None) or {}
        actions = extra.get("planned_actions")
        if actions is None:
            step = getattr(agent, "last_step", None)
            actions = getattr(getattr(step, "result", None), "actions", None)
        if actions is None:
            return None
        if hasattr(actions, "detach"):
            actions = actions.detach().cpu().numpy()
        actions = np.asarray(actions)
        if getattr(agent, "discrete", False) and actions.ndim == 2:
            return actions.argmax(axis=1)
        return actions

    return source


class StressRecorder:
    """Step hook collecting one row per step (see the module docstring for the columns)."""

    def __init__(self, *, plan_source: PlanSource | None = None, branch: bool = True, branch_every: int = 1) -> None:
        self.plan_source = plan_source
        self.branch = branch
        self.branch_every = max(1, int(branch_every))
        self.rows: list[dict[str, Any]] = []
        self.env: Any = None
        self.snapshot: Any = None
        self.reset_distance = float("nan")
        self.branch_available = branch

    # -- hooks ------------------------------------------------------------------------------------
    def on_reset(self, env: Any, obs: Any, info: Mapping[str, Any]) -> None:
        self.env = env
        self.rows = []
        self.has_map = has_map(env)
        self.reset_distance = self._distance(info)
        self.snapshot = self._snapshot(0)

    def on_step(self, event: Any) -> None:
        info = event.info
        plan_info = event.plan_info
        row: dict[str, Any] = {
            "t": int(event.t),
            "cost": float(info.get("cost", 0.0)),
            "distance": self._distance(info),
            "surprise": _float(getattr(plan_info, "surprise", None)),
            "impossible": bool(info.get("impossible_transition", False)),
            "perturbation_onset": int(info.get("perturbation_onset", -1)),
            "plan_risk": _float(getattr(plan_info, "predicted_risk", None)),
        }
        violations = dict(info.get("violations", {}))
        probs = dict(getattr(plan_info, "guardrail_probs", None) or {})
        for head, prob in probs.items():
            row[f"p:{head}"] = float(prob)
            row[f"y:{head}"] = bool(violations.get(head, False))
        if self.snapshot is not None and self.plan_source is not None:
            plan = self.plan_source(plan_info)
            if plan is not None and len(plan):
                first, any_violation = self._run_branch(self.snapshot, plan)
                for head in probs:
                    row[f"yb:{head}"] = bool(first.get(head, False))
                row["plan_violation"] = any_violation
        self.rows.append(row)
        self.snapshot = self._snapshot(event.t + 1)

    # -- helpers ----------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def _snapshot(self, t: int) -> Any:
        if not self.branch_available or t % self.branch_every:
            return None
        snap = branch_copy(self.env)
        if snap is None:
            self.branch_available = False
        return snap

    @staticmethod
    def _run_branch(snapshot: Any, plan: np.ndarray) -> tuple[dict[str, bool], bool]:
        env = copy.deepcopy(snapshot, {id(getattr(snapshot, "world", None)): getattr(snapshot, "world", None)})
        first: dict[str, bool] = {}
        any_violation = False
        for k, action in enumerate(plan):
            action = int(action) if np.ndim(action) == 0 and np.issubdtype(np.asarray(action).dtype, np.integer) \
                else np.asarray(action, dtype=np.float32)
            _, _, terminated, truncated, info = env.step(action)
            flags = {str(name): bool(v) for name, v in dict(info.get("violations", {})).items()}
            if k == 0:
                first = flags
            any_violation |= any(flags.values())
            if terminated or truncated:
                break
        return first, any_violation

    def _distance(self, info: Mapping[str, Any]) -> float:
        if not self.has_map or info.get("pos") is None or info.get("goal") is None:
            return float("nan")
        return float(distances_from(self.env, np.asarray(info["goal"]), np.asarray(info["pos"])[None])[0])


def _float(value: Any) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
