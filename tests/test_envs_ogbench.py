"""OGBench point mazes through hplan's adapter: seeded episodes, OGBench's tasks and success rule,
the oracle the collector follows, and the scenario checks around the optional package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ogbench")

import hplan.envs  # noqa: E402,F401
from hplan.config import CollectConfig, EnvConfig, ScenarioConfig, TaskConfig  # noqa: E402
from hplan.data.collect import collect  # noqa: E402
from hplan.data.shards import load_episodes  # noqa: E402
from hplan.data.validate import validate_scenario  # noqa: E402
from hplan.envs.factory import make_env, resolve_env  # noqa: E402
from hplan.errors import ConfigError  # noqa: E402

MEDIUM = "ogbench/pointmaze-medium-v0"
ROOT = Path(__file__).resolve().parents[1]


def _maze(**kwargs) -> gym.Env:
    return gym.make(MEDIUM, **kwargs).unwrapped


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_a_seed_fixes_the_episode_and_leaves_numpys_global_generator_alone(seed: int) -> None:
    env = _maze()
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    first = env.reset(seed=seed)
    assert np.random.random() == expected  # OGBench's own reset drew from it; the adapter restores it
    second = env.reset(seed=seed)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1]["goal"], second[1]["goal"])
    assert env.free_cells.tolist().count(list(env._sim.xy_to_ij(first[0]))) == 1  # starts on a free cell


@pytest.mark.parametrize("task_id", [1, 2, 3, 4, 5])
def test_evaluation_tasks_start_and_end_in_ogbenchs_cells(task_id: int) -> None:
    env = _maze(task_id=task_id)
    task = env._sim.task_infos[task_id - 1]
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        start, goal = np.asarray(env._sim.ij_to_xy(task["init_ij"])), np.asarray(env._sim.ij_to_xy(task["goal_ij"]))
        assert np.abs(obs - start).max() <= 1.0 + 1e-6 and np.abs(info["goal"] - goal).max() <= 1.0 + 1e-6
        np.testing.assert_array_equal(info["goal_obs"], info["goal"])  # the goal observation is its position
        assert not info["success"]


def test_success_within_one_unit_ends_the_episode_unless_the_goals_wander() -> None:
    env = _maze(task_id=1)
    _, info = env.reset(seed=0)
    env.teleport(info["goal"] + np.array([0.5, 0.5]))  # 0.71 from the goal: inside OGBench's 1.0
    _, reward, terminated, _, info = env.step(np.zeros(2))
    assert info["success"] and terminated and reward == 1.0
    env.teleport(info["goal"] + np.array([1.2, 0.0]))
    assert not env.step(np.zeros(2))[4]["success"]

    wandering = _maze(task_id=1, wander=True)
    _, info = wandering.reset(seed=0)
    wandering.teleport(info["goal"])
    _, _, terminated, _, after = wandering.step(np.zeros(2))
    assert after["success"] and not terminated
    assert np.linalg.norm(after["goal"] - info["goal"]) > 0  # a new goal to walk to


@pytest.mark.parametrize("task_id", [1, 2, 4])
def test_following_the_oracle_reaches_every_goal(task_id: int) -> None:
    env = _maze(task_id=task_id)
    _, info = env.reset(seed=task_id)
    for _ in range(1000):
        _, _, terminated, _, info = env.step(info["expert_direction"])
        if terminated:
            break
    assert info["success"]


def test_the_scenario_checks_the_optional_package_and_the_expert_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    report = validate_scenario(ROOT / "scenarios" / "ogbench_pointmaze_medium.toml")
    assert report.scenario.env.id == MEDIUM
    scenario = ScenarioConfig(name="t", source="scen.toml", env=EnvConfig(id="hplan/PointRooms-v0", obs_mode="state"),
                              collect=CollectConfig(policy="expert"))
    from hplan.data.validate import check_collect_fits
    env = make_env(scenario)
    with pytest.raises(ConfigError, match="collect.policy.*ogbench/pointmaze"):
        check_collect_fits(scenario, env.action_space, env.unwrapped.state_names)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ogbench" else real(name, *a))
    ogbench = ScenarioConfig(name="t", source="scen.toml", env=EnvConfig(id=MEDIUM, obs_mode="state"))
    with pytest.raises(ConfigError, match=r"scen.toml.*env.id.*hplan\[ogbench\]"):
        resolve_env(ogbench)


def test_collection_follows_ogbenchs_rule_and_is_reproducible(tmp_path: Path) -> None:
    """Random start cells, the noisy oracle, goals replaced when reached: episodes cross the maze."""
    scenario = ScenarioConfig(name="t", source="scen.toml", env=EnvConfig(id=MEDIUM, obs_mode="state", max_steps=100),
                              task=TaskConfig(task_id=1),  # the evaluation task must not pin the data's starts
                              collect=CollectConfig(episodes=6, steps_per_episode=150, policy="expert", action_noise=0.5,
                                                    start="task", num_envs=3, episodes_per_shard=3))
    for name in ("a", "b"):
        collect(scenario, tmp_path / name)
    a, b = load_episodes(tmp_path / "a"), load_episodes(tmp_path / "b")
    np.testing.assert_array_equal(a["obs"], b["obs"])
    assert a["obs"].shape == (6, 151, 2) and a["valid"].all()
    starts = {tuple(np.round(a["obs"][e, 0])) for e in range(6)}
    assert len(starts) == 6
    travelled = np.linalg.norm(a["obs"][:, -1] - a["obs"][:, 0], axis=1)
    assert np.median(travelled) > 4.0  # more than a cell: the oracle leads somewhere, noise does not cancel it
    assert np.abs(a["action"]).max() <= 1.0


def test_evaluation_tasks_share_one_dataset_and_model_in_the_results_cache(tmp_path: Path) -> None:
    """Arms that differ only in OGBench's task train nothing new: the collector ignores the task."""
    from hplan.config import load_scenario
    from hplan.results.measure import Paths

    paths = Paths(tmp_path)
    base = load_scenario("ogbench_pointmaze_medium")
    for task in (2, 5):
        sets = (f"task.task_id={task}",)
        assert paths.data(load_scenario("ogbench_pointmaze_medium", sets=sets), sets) == paths.data(base, ())
        assert paths.model(paths.data(base, ()), sets, 0) == paths.model(paths.data(base, ()), (), 0)
    rooms = ("task.min_rooms_apart=2",)  # PointRooms: a task field that shapes the data keeps its own cache
    assert paths.data(load_scenario("point_two_rooms", sets=rooms), rooms) != paths.data(load_scenario("point_two_rooms"), ())


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_expert_direction_is_ogbenchs_oracle_subgoal(data: st.DataObject) -> None:
    """The adapter's cached search points where OGBench's own ``get_oracle_subgoal`` does."""
    env = _maze()
    env.reset(seed=0)
    cells = env.free_cells
    here = cells[data.draw(st.integers(0, len(cells) - 1))]
    goal = cells[data.draw(st.integers(0, len(cells) - 1))]
    xy = np.asarray(env._sim.ij_to_xy(tuple(here))) + np.array(
        [data.draw(st.floats(-1.9, 1.9)), data.draw(st.floats(-1.9, 1.9))])
    env.teleport(xy)
    env.set_goal(np.asarray(env._sim.ij_to_xy(tuple(goal)), dtype=np.float64))
    mine = env.expert_direction()
    if tuple(here) == tuple(goal):
        target = env._goal
    else:
        target, _ = env._sim.get_oracle_subgoal(xy, env._goal)
    delta = np.asarray(target) - xy
    if np.linalg.norm(delta) < 1e-9:  # on the goal: no direction to go
        assert not mine.any()
    else:
        np.testing.assert_allclose(mine, delta / np.linalg.norm(delta), atol=1e-5)


def test_the_expert_direction_is_zero_on_its_target() -> None:
    """A ball a hair (4e-20) from the goal has no direction to go. It once got ``delta / 1e-9``, a
    tiny vector of arbitrary direction (hypothesis found it, at random, against the oracle test)."""
    env = _maze()
    env.reset(seed=0)
    goal = np.asarray(env._sim.ij_to_xy(tuple(env.free_cells[0])), dtype=np.float64)
    env.teleport(goal + np.array([0.0, 4.4617537584830535e-20]))
    env.set_goal(goal)
    assert not env.expert_direction().any()


def test_a_dataset_collected_for_one_task_serves_every_task(tmp_path: Path) -> None:
    """The collector draws random cells whatever the evaluation task: its fingerprint leaves the task
    out, so the per-task arms reopen one dataset (and a manifest that recorded it still matches)."""
    import json

    from hplan.data.manifest import open_existing, settings_fingerprint

    def maze(task: int) -> ScenarioConfig:
        return ScenarioConfig(name="t", source="scen.toml", env=EnvConfig(id=MEDIUM, obs_mode="state", max_steps=50),
                              task=TaskConfig(task_id=task),
                              collect=CollectConfig(episodes=2, steps_per_episode=20, policy="expert", start="task",
                                                    num_envs=2, episodes_per_shard=2))

    collect(maze(1), tmp_path)
    assert open_existing(tmp_path, settings_fingerprint(maze(4)))["complete"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["settings"]["task"]["task_id"] = 1  # as a manifest written before the fingerprint left it out
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert open_existing(tmp_path, settings_fingerprint(maze(5)))["complete"]


def test_the_generic_stress_shifts_apply_and_branching_is_skipped() -> None:
    """Observation / actuator noise and delay wrap the adapter like any env; the suite's
    counterfactual branches (violation labels) need a copy, which OGBench's env cannot give."""
    from hplan.stress.recorder import branch_copy
    from hplan.stress.shifts import SHIFTS

    for name in ("none", "obs_noise", "action_noise", "action_delay"):
        assert MEDIUM in SHIFTS[name].applies_to
    assert MEDIUM not in SHIFTS["kidnap"].applies_to
    env = gym.make(MEDIUM)
    env.reset(seed=0)
    assert branch_copy(env) is None
