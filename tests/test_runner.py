"""The runner: episode loop, hooks, goal changes, evaluation hygiene, results table, determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_runner_support import (TINY_PLANNER, GreedyAgent, make_greedy_agent, one_torch_thread,  # noqa: F401
                                 tiny_checkpoint, two_rooms)

from hplan.envs.factory import make_env
from hplan.errors import HplanError
from hplan.planning.config import GuardrailConfig
from hplan.runner import StepEvent, obs_digest, run_episode, run_episodes, summarize
from hplan.runner.episodes import EPISODES_TABLE, RUN_SUMMARY, episode_log_path
from hplan.runner.settings import resolve_guardrails
from hplan.seeding import eval_episode_seed


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingHook:
    def __init__(self) -> None:
        self.resets = 0
        self.events: list[StepEvent] = []
        self.ended: list[Any] = []

    def on_reset(self, env: Any, obs: Any, info: Any) -> None:
        self.resets += 1

    def on_step(self, event: StepEvent) -> None:
        self.events.append(event)

    def on_episode_end(self, record: Any) -> None:
        self.ended.append(record)


def test_episode_record_matches_what_the_env_reported() -> None:
    scenario = two_rooms(max_steps=60)
    env = make_env(scenario)
    hook = CountingHook()
    agent = GreedyAgent()
    record = run_episode(env, agent, seed=3, max_steps=60, hooks=[hook])
    assert hook.resets == 1 and hook.ended == [record]
    assert [e.t for e in hook.events] == list(range(record.num_steps))
    assert record.violation_steps == sum(1 for e in hook.events if e.info["cost"] > 0)
    walls = sum(1 for e in hook.events if e.info["violations"]["wall_contact"])
    assert record.violations_by_kind()["wall_contact"] == walls
    assert [s.obs_sha256 for s in record.steps] == [obs_digest(e.obs) for e in hook.events]
    assert [s.true_state for s in record.steps] == [[float(v) for v in e.info["true_state"]] for e in hook.events]
    # It stops at the first successful step, and nowhere before an ending.
    endings = [s.success or s.terminated or s.truncated for s in record.steps]
    assert not any(endings[:-1])
    assert endings[-1] or record.num_steps == 60
    # PointRooms hands out a fresh copy of the same goal_obs every step: not a goal change.
    assert "set_goal" not in agent.calls
    assert agent.calls.count("act") == record.num_steps


def test_budget_ends_the_episode_and_timelimit_truncates() -> None:
    scenario = two_rooms(max_steps=7)

    class Still(GreedyAgent):
        def act(self, obs: Any) -> tuple[np.ndarray, Any]:
            _, info = super().act(obs)
            return np.zeros(2, dtype=np.float32), info

    record = run_episode(make_env(scenario), Still(), seed=0, max_steps=7)
    assert record.num_steps == 7 and not record.success
    assert record.steps[-1].truncated and not any(s.truncated for s in record.steps[:-1])
    short = run_episode(make_env(scenario), Still(), seed=0, max_steps=3)
    assert short.num_steps == 3 and not short.steps[-1].truncated
    with pytest.raises(HplanError):
        run_episode(make_env(scenario), Still(), seed=0, max_steps=0)


class MoveGoal(gym.Wrapper):
    """Moves the goal once, at step ``at`` (as a goal-shift would)."""

    def __init__(self, env: gym.Env, at: int, goal: tuple[float, float]) -> None:
        super().__init__(env)
        self.at, self.new_goal, self.t = at, goal, 0

    def reset(self, **kwargs: Any) -> Any:
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> Any:
        if self.t == self.at:
            self.env.unwrapped.set_goal(self.new_goal)
        self.t += 1
        return self.env.step(action)


def test_goal_change_mid_episode_is_passed_to_the_agent_once() -> None:
    scenario = two_rooms(max_steps=12)
    env = MoveGoal(make_env(scenario), at=4, goal=(2.5, 2.5))
    agent = GreedyAgent(gain=0.0, noise=0.1)  # wanders: will not reach either goal in 12 steps
    record = run_episode(env, agent, seed=1, max_steps=12)
    assert [s.t for s in record.steps if s.goal_changed] == [4]
    assert agent.calls.count("set_goal") == 1
    # set_goal comes after the 5th act (step 4 moved the goal) and before the 6th.
    assert agent.calls.index("set_goal") == 1 + 5
    assert np.allclose(agent.goals[-1][:2], [2.5, 2.5])
    assert not np.allclose(agent.goals[0][:2], [2.5, 2.5])


# ------------------------------------------------------------------------------- evaluation hygiene
class TrackingInfo(dict):
    """An info dict that records which keys are read while the agent is inside a call."""

    agent_active = False
    reads_during_agent: list[str] = []

    def __getitem__(self, key: str) -> Any:
        if TrackingInfo.agent_active:
            TrackingInfo.reads_during_agent.append(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        if TrackingInfo.agent_active:
            TrackingInfo.reads_during_agent.append(key)
        return super().get(key, default)


class PoisonInfo(gym.Wrapper):
    """Replaces every ground-truth value in ``info`` with sentinels drawn from its own seed."""

    def __init__(self, env: gym.Env, poison_seed: int) -> None:
        super().__init__(env)
        self.rng = np.random.default_rng(poison_seed)

    def _poison(self, info: dict[str, Any]) -> TrackingInfo:
        info = TrackingInfo(info)
        info["true_state"] = self.rng.normal(size=4).astype(np.float32) * 1e6
        info["pos"] = self.rng.normal(size=2).astype(np.float32) * 1e6
        info["goal"] = self.rng.normal(size=2).astype(np.float32)
        info["cost"] = float(self.rng.integers(0, 2))
        info["violations"] = {"wall_contact": bool(self.rng.integers(0, 2)), "restricted_zone": True}
        info["room"] = int(self.rng.integers(-5, 5))
        info["success"] = False  # the runner stops on success: keep lengths equal across poisons
        return info

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        return obs, self._poison(info)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._poison(info)


class SpyAgent:
    """Wraps an agent; records every argument it is given and flags info reads during its calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.received: list[Any] = []

    def _call(self, name: str, *args: Any) -> Any:
        self.received.extend(args)
        TrackingInfo.agent_active = True
        try:
            return getattr(self.inner, name)(*args)
        finally:
            TrackingInfo.agent_active = False

    def reset(self, goal_obs: Any, seed: int) -> None:
        self._call("reset", goal_obs, seed)

    def set_goal(self, goal_obs: Any) -> None:
        self._call("set_goal", goal_obs)

    def act(self, obs: Any) -> Any:
        return self._call("act", obs)


def _poisoned_actions(make_agent: Any, poison_seed: int, max_steps: int) -> tuple[list[Any], SpyAgent, list[str]]:
    scenario = two_rooms(max_steps=max_steps, planner=TINY_PLANNER)
    env = PoisonInfo(make_env(scenario), poison_seed)
    spy = SpyAgent(make_agent())
    TrackingInfo.reads_during_agent = []
    record = run_episode(env, spy, seed=11, max_steps=max_steps)
    return [s.action for s in record.steps], spy, list(TrackingInfo.reads_during_agent)


def _only_observations(spy: SpyAgent) -> bool:
    """Everything the agent received is an int seed or a float32 state observation (never a dict)."""
    for value in spy.received:
        if isinstance(value, int):
            continue
        if isinstance(value, dict) or np.asarray(value).shape != (4,):
            return False
    return True


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**16), st.integers(0, 2**16))
def test_agent_actions_do_not_depend_on_info(poison_a: int, poison_b: int) -> None:
    actions_a, spy_a, reads_a = _poisoned_actions(GreedyAgent, poison_a, max_steps=15)
    actions_b, _, reads_b = _poisoned_actions(GreedyAgent, poison_b, max_steps=15)
    assert actions_a == actions_b
    assert reads_a == [] and reads_b == []
    assert _only_observations(spy_a)


def test_real_agent_is_blind_to_poisoned_info(tmp_path: Path) -> None:
    from hplan.models.checkpoint import load_world_model
    from hplan.planning.agent import make_agent

    scenario = two_rooms(max_steps=8, planner=TINY_PLANNER)
    model = load_world_model(tiny_checkpoint(tmp_path / "ckpt", scenario), device="cpu")

    def factory() -> Any:
        return make_agent(model, scenario.planner, GuardrailConfig(mode="penalty"), 11, "cpu")

    actions_a, spy, reads_a = _poisoned_actions(factory, 1, max_steps=8)
    actions_b, _, reads_b = _poisoned_actions(factory, 2, max_steps=8)
    assert actions_a == actions_b and len(actions_a) == 8
    assert reads_a == [] and reads_b == []
    assert _only_observations(spy)


# ------------------------------------------------------------------------------- run_episodes
def test_run_episodes_table_logs_and_seeds(tmp_path: Path) -> None:
    scenario = two_rooms(max_steps=40)
    frame = run_episodes(scenario, None, planner_kind="flat", guardrails="off", episodes=4, seed=5,
                         log_dir=tmp_path, make_agent=make_greedy_agent)
    assert list(frame["episode"]) == [0, 1, 2, 3]
    assert list(frame["seed"]) == [eval_episode_seed(5, "test", i) for i in range(4)]
    assert set(frame["split"]) == {"test"}
    assert set(frame["planner"]) == {"flat"} and set(frame["guardrails"]) == {"off"}
    assert (frame["violation"] == (frame["violations"] > 0)).all()
    assert (frame["violations"] >= frame["violations_wall_contact"]).all()
    assert (frame["model_evals"] == 64 * frame["steps"]).all()
    stored = pd.read_parquet(tmp_path / EPISODES_TABLE)
    pd.testing.assert_frame_equal(stored, frame)
    run = json.loads((tmp_path / RUN_SUMMARY).read_text())
    assert run["summary"] == pytest.approx(summarize(frame))
    assert run["planner"]["kind"] == "flat" and run["guardrails"]["mode"] == "off"
    for i, row in frame.iterrows():
        lines = episode_log_path(tmp_path, i).read_text().splitlines()
        header, summary = json.loads(lines[0]), json.loads(lines[-1])
        assert header["seed"] == row["seed"] and header["episode"] == i
        assert header["scenario"]["name"] == "point_two_rooms" and header["guardrails"]["mode"] == "off"
        assert summary["success"] == row["success"] and summary["steps"] == row["steps"] == len(lines) - 3


TIMING_KEYS = {"act_ms", "act_cpu_ms", "plan_ms", "chain"}


def _strip_timing(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_timing(v) for k, v in obj.items()
                if k not in TIMING_KEYS and not k.endswith("_ms") and k != "log"}
    return obj


def test_same_seed_gives_identical_logs_with_the_real_agent(tmp_path: Path) -> None:
    from hplan.models.checkpoint import load_world_model

    scenario = two_rooms(max_steps=6, planner=TINY_PLANNER)
    ckpt = tiny_checkpoint(tmp_path / "ckpt", scenario)
    model = load_world_model(ckpt, device="cpu")
    logs = []
    for name in ("a", "b"):
        run_episodes(scenario, model, planner_kind="hier", guardrails="penalty", episodes=2, seed=9,
                     log_dir=tmp_path / name, checkpoint=ckpt, device="cpu")
        logs.append([[_strip_timing(json.loads(line)) for line in episode_log_path(tmp_path / name, i).read_text().splitlines()]
                     for i in range(2)])
    assert logs[0] == logs[1]
    steps = [line for line in logs[0][0] if line["type"] == "step"]
    assert len(steps) == 6 and all(s["plan"]["subgoal_index"] is not None for s in steps)
    assert logs[0][0][0]["checkpoint_sha256"] and logs[0][0] != logs[0][1]  # different episodes differ


def test_summarize_uses_documented_definitions() -> None:
    frame = pd.DataFrame({"success": [True, False], "steps": [10, 30], "violations": [1, 0],
                          "violation": [True, False], "act_ms": [2.0, 4.0], "act_cpu_ms": [1.0, 3.0],
                          "model_evals": [100, 500]})
    summary = summarize(frame)
    assert summary["success_rate"] == 0.5 and summary["violation_rate"] == 0.5
    assert summary["mean_steps"] == 20.0
    assert summary["violations_per_1000_steps"] == pytest.approx(1000 * 1 / 40)
    assert summary["ms_per_step"] == pytest.approx((2 * 10 + 4 * 30) / 40)
    assert summary["cpu_ms_per_step"] == pytest.approx((1 * 10 + 3 * 30) / 40)
    assert summary["model_evals_per_step"] == pytest.approx(600 / 40)


def test_summarize_reports_each_guardrail_on_its_own() -> None:
    frame = pd.DataFrame({"success": [True, False, True], "steps": [10, 30, 60], "violations": [5, 2, 0],
                          "violation": [True, True, False], "act_ms": [1.0] * 3, "model_evals": [1] * 3,
                          "violations_wall_contact": [5, 0, 0], "violations_restricted_zone": [0, 2, 0]})
    summary = summarize(frame)
    assert summary["wall_contact_rate"] == pytest.approx(1 / 3)
    assert summary["wall_contact_per_1000_steps"] == pytest.approx(1000 * 5 / 100)
    assert summary["restricted_zone_rate"] == pytest.approx(1 / 3)
    assert summary["restricted_zone_per_1000_steps"] == pytest.approx(1000 * 2 / 100)


@pytest.mark.parametrize(("file_mode", "choice", "expected"), [
    ("penalty", "on", "penalty"), ("hard", "on", "hard"), ("off", "on", "penalty"), ("penalty", "off", "off"),
    ("off", "lagrangian", "lagrangian"), ("hard", None, "hard"),
])
def test_guardrail_choice_resolution(file_mode: str, choice: str | None, expected: str) -> None:
    base = GuardrailConfig(mode=file_mode, weight=3.0)
    resolved = resolve_guardrails(base, choice)
    assert resolved.mode == expected and resolved.weight == 3.0


def test_unknown_guardrail_choice_is_a_user_error() -> None:
    with pytest.raises(HplanError, match="unknown guardrail setting 'maybe'"):
        resolve_guardrails(GuardrailConfig(), "maybe")
