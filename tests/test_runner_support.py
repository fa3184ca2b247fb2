"""Test doubles shared by the runner and replay tests (no tests here).

``GreedyAgent`` satisfies the agent contract on state observations: it steers towards the goal
observation's position with seeded noise, so episodes depend on the seed and on observations only.
``tiny_checkpoint`` writes an untrained but real ``LatentWorldModel`` run directory, so the real
agent, checkpoint loader and replay can be exercised end to end in seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

import numpy as np

from hplan.config import ScenarioConfig, load_scenario
from hplan.planning.agent import PlanInfo


@dataclass
class GreedyAgent:
    """Proportional controller towards the goal position, plus seeded noise."""

    gain: float = 2.0
    noise: float = 0.3
    calls: list[str] = field(default_factory=list)
    goals: list[Any] = field(default_factory=list)

    def reset(self, goal_obs: Any, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.goal = np.asarray(goal_obs, dtype=np.float64)
        self.t = 0
        self.calls.append("reset")
        self.goals.append(self.goal.copy())

    def set_goal(self, goal_obs: Any) -> None:
        self.goal = np.asarray(goal_obs, dtype=np.float64)
        self.calls.append("set_goal")
        self.goals.append(self.goal.copy())

    def act(self, obs: Any) -> tuple[np.ndarray, PlanInfo]:
        obs = np.asarray(obs, dtype=np.float64)
        direction = self.goal[:2] - obs[:2]
        action = np.clip(self.gain * direction + self.noise * self.rng.standard_normal(2), -1, 1).astype(np.float32)
        self.t += 1
        self.calls.append("act")
        info = PlanInfo(guardrail_probs={"wall_contact": float(self.rng.uniform()), "restricted_zone": 0.01},
                            predicted_cost=float(np.linalg.norm(direction)), subgoal_latent=[0.5, -0.25],
                            subgoal_index=self.t // 4, plan_ms=0.1, model_evals=64, replanned_high=self.t % 4 == 1,
                            surprise=0.0)
        return action, info


def make_greedy_agent(model: Any, planner: Any, guardrails: Any, seed: int, device: Any) -> GreedyAgent:
    return GreedyAgent()


def two_rooms(max_steps: int = 25, **extra: Any) -> ScenarioConfig:
    """The built-in two-room scenario with state observations and a short step budget."""
    overrides = {"env": {"max_steps": max_steps, "obs_mode": "state"}, **extra}
    return load_scenario("point_two_rooms", overrides=overrides)


def tiny_checkpoint(run_dir: Path, scenario: ScenarioConfig) -> Path:
    """An untrained LatentWorldModel for ``scenario``'s env saved as ``run_dir/model.pt`` (with 16
    waypoints, latents of random states, so the ``landmarks`` high level can run on it)."""
    import torch

    from hplan.envs.factory import make_env
    from hplan.models.checkpoint import save_world_model
    from hplan.models.world_model import LatentWorldModel
    from hplan.vocabulary.protocol import ActionSpec

    torch.manual_seed(0)
    env = make_env(scenario)
    try:
        shape = tuple(env.observation_space.shape)
        names = tuple(env.unwrapped.violation_names)
    finally:
        env.close()
    model = LatentWorldModel(scenario.model, obs_kind="state", obs_shape=shape, action_spec=ActionSpec(dim=2),
                             guardrail_names=names, env_id=scenario.env.id)
    if model.cfg.landmarks:  # waypoints as training would keep them (no experience graph: untrained)
        states = torch.rand(16, *model.input_shape, generator=torch.Generator().manual_seed(0)) * 4.0
        with torch.no_grad():
            model.set_waypoints(model.eval().encode(states))
    save_world_model(model, Path(run_dir) / "model.pt")
    return Path(run_dir)


@pytest.fixture(autouse=False)
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine run ~8x faster on one thread (no spin-waiting)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TINY_PLANNER = {"horizon": 4, "device": "cpu", "search": {"population": 16, "elites": 4, "iterations": 1},
                "codes": {"population": 16, "elites": 4, "iterations": 1, "horizon": 2}}
"""A planner small enough for tests (one step well under 10 ms on CPU)."""


def toml_lines(table: dict[str, Any]) -> str:
    """``table`` as the lines of a TOML section's body, sub-tables inline (``search = {population = 16}``),
    for ``cli_support.TINY_TWO_ROOMS_TOML``'s ``{planner}``."""
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return json.dumps(v)

    return "\n".join(f"{k} = {value(v)}" for k, v in table.items())
