"""Contract tests for every registered env: env checker, info keys, factors, factory, CLI."""

from __future__ import annotations

import inspect
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

import hplan.envs
from hplan.config import EnvConfig, ScenarioConfig, TaskConfig
from hplan.envs.factors import FACTORS, factors_for, validate_factor
from hplan.envs.factory import make_env, make_vec_env, validate_scenario_env
from hplan.envs.registry import ENVS, registered_ids
from hplan.errors import ConfigError, HplanError

CONTRACT_KEYS = {"true_state", "pos", "goal", "cost", "violations", "success", "goal_obs"}
CASES = [(env_id, mode) for env_id in registered_ids() for mode in ENVS[env_id].obs_modes]


def _scenario(env_id: str = "hplan/PointRooms-v0", *, kwargs=None, task=None, obs_mode="state", max_steps=200):
    return ScenarioConfig(name="t", source="scen.toml",
                          env=EnvConfig(id=env_id, obs_mode=obs_mode, max_steps=max_steps, kwargs=kwargs or {}),
                          task=task or TaskConfig())


def test_every_id_is_registered_with_gymnasium_and_has_factors():
    assert set(registered_ids()) == set(FACTORS)
    for env_id in registered_ids():
        assert env_id.split("/")[0] in ("hplan", "ogbench")  # hplan's own envs, or the suite an adapter wraps
        assert env_id in gym.registry


@pytest.mark.parametrize("env_id,obs_mode", CASES)
def test_env_checker_passes_without_warnings(env_id, obs_mode):
    env = gym.make(env_id, obs_mode=obs_mode, render_mode="rgb_array").unwrapped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    assert [str(w.message) for w in caught] == []
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    env.close()


@pytest.mark.parametrize("env_id,obs_mode", CASES)
def test_info_contract_on_reset_and_step(env_id, obs_mode):
    env = gym.make(env_id, obs_mode=obs_mode).unwrapped
    obs, info = env.reset(seed=3)
    for _ in range(3):
        obs, _, terminated, _, info = env.step(env.action_space.sample())
        assert CONTRACT_KEYS <= set(info)
        assert info["true_state"].dtype == np.float32 and info["true_state"].shape == (len(env.state_names),)
        assert info["pos"].dtype == np.float32 and info["pos"].shape == (2,)
        assert info["goal"].dtype == np.float32
        assert set(info["violations"]) == set(env.violation_names)
        assert info["cost"] == (1.0 if any(info["violations"].values()) else 0.0)
        assert isinstance(info["success"], bool)
        assert env.observation_space.contains(info["goal_obs"])
        assert env.observation_space.contains(obs)
        if terminated:
            break
    env.close()


def test_factor_nominals_equal_constructor_defaults():
    for env_id, factors in FACTORS.items():
        module, name = ENVS[env_id].entry_point.split(":")
        cls = getattr(__import__(module, fromlist=[name]), name)
        params = {}
        for klass in cls.__mro__:  # subclasses forward **kwargs to the adapter base
            if "__init__" in vars(klass):
                for pname, param in inspect.signature(klass.__init__).parameters.items():
                    params.setdefault(pname, param.default)
        for item in factors:
            default = params[item.name]
            if item.kind in ("rects", "color"):
                assert not default and not item.nominal, (env_id, item.name)
            else:
                assert default == item.nominal, (env_id, item.name)
            validate_factor(env_id, item.name, item.nominal)


@pytest.mark.parametrize("env_id", list(FACTORS))
def test_numeric_factors_accept_bounds_and_reject_outside(env_id):
    for item in factors_for(env_id):
        if item.kind not in ("float", "int"):
            continue
        assert validate_factor(env_id, item.name, item.low) == item.low
        assert validate_factor(env_id, item.name, item.high) == item.high
        step = 1 if item.kind == "int" else 1e-6
        for bad in (item.low - step, item.high + step):
            with pytest.raises(HplanError, match=item.name):
                validate_factor(env_id, item.name, bad)


def test_structured_factors_reject_malformed_values():
    pid = "hplan/PointRooms-v0"
    for name, bad in [("layout", "#..\n#."), ("layout", "nope"), ("layout", "###\n#q#\n###"),
                      ("zones", [[1, 1, 0, 2]]), ("zones", "abc"), ("colors", {"sky": [1, 2, 3]}),
                      ("colors", {"wall": [1, 2, 300]}), ("friction", "high"), ("friction", True)]:
        with pytest.raises(HplanError):
            validate_factor(pid, name, bad)
    with pytest.raises(HplanError, match="forbidden_zone"):
        validate_factor("hplan/Pusher-v0", "forbidden_zone", [0.2, 0.0, 0.1, 0.3])
    with pytest.raises(HplanError, match="no factor"):
        validate_factor(pid, "gravity", 1.0)
    with pytest.raises(HplanError, match="unknown env id"):
        factors_for("hplan/Nope-v0")


@pytest.mark.parametrize("kwargs,task,field", [
    ({"friction": 1.5}, None, "env.kwargs.friction"),
    ({"layout": "#####\n#..#"}, None, "env.kwargs.layout"),
    ({"wheels": 3}, None, "env.kwargs.wheels"),
    ({"obs_mode": "image"}, None, "env.kwargs.obs_mode"),
    ({"image_size": 3}, None, "env.kwargs.image_size"),
    ({"goal_tolerance": 1.0}, None, "env.kwargs.goal_tolerance"),
    ({}, TaskConfig(min_rooms_apart=3), "task.min_rooms_apart"),
    ({}, TaskConfig(start_room=7), "task.start_room"),
    ({"zones": [[15, 15, 6, 6]]}, None, "env.kwargs.zones"),
    ({"colors": {"wall": [1, 2, 3, 4]}}, None, "env.kwargs.colors"),
])
def test_factory_errors_name_file_and_field(kwargs, task, field):
    with pytest.raises(ConfigError) as err:
        validate_scenario_env(_scenario(kwargs=kwargs, task=task))
    assert err.value.file == "scen.toml" and err.value.field == field
    assert "\n" not in str(err.value)


def test_factory_rejects_unknown_id_unsupported_task_and_obs_mode():
    with pytest.raises(ConfigError) as err:
        make_env(_scenario("hplan/Nope-v0"))
    assert err.value.field == "env.id"
    with pytest.raises(ConfigError) as err:
        make_env(_scenario("hplan/CartPole-v0", task=TaskConfig(start_room=0)))
    assert err.value.field == "task.start_room"
    with pytest.raises(HplanError, match="PointRooms"):
        make_vec_env(_scenario("hplan/CartPole-v0"), 4)


def test_factory_builds_with_time_limit_task_and_overrides():
    scenario = _scenario(kwargs={"layout": "maze3x3", "friction": 0.3}, obs_mode="image", max_steps=5,
                         task=TaskConfig(min_rooms_apart=4, goal_tolerance=0.8))
    env = make_env(scenario, action_gain=0.2)
    inner = env.unwrapped
    assert (inner.friction, inner.action_gain, inner.world.goal_tolerance) == (0.3, 0.2, 0.8)
    obs, info = env.reset(seed=11)
    assert obs.shape == (64, 64, 3)
    layout = inner.world.layout
    assert layout.room_distance[inner.room_of(info["pos"]), inner.room_of(info["goal"])] >= 4
    truncated = False
    for step in range(5):
        _, _, terminated, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
        assert not terminated
    assert truncated and step == 4
    vec = make_vec_env(scenario, 3)
    assert vec.reset(seed=0)[0].shape == (3, 64, 64, 3)


def test_cli_lists_ids_and_factor_tables():
    import typer

    from hplan.commands.envs import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `envs` a sub-command
    runner = CliRunner()
    result = runner.invoke(app, ["envs"])
    assert result.exit_code == 0
    assert result.output.splitlines() == list(registered_ids())
    result = runner.invoke(app, ["envs", "--factors", "hplan/Pusher-v0"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for item in factors_for("hplan/Pusher-v0"):
        assert item.name in result.output
    result = runner.invoke(app, ["envs", "--factors", "hplan/Nope-v0"])
    assert isinstance(result.exception, HplanError)


def test_import_registers_namespace():
    assert hplan.envs.registered_ids() == tuple(ENVS)


def test_importing_hplan_alone_lets_gymnasium_make_its_envs():
    """A fresh interpreter: ``import hplan`` (nothing under it) registers every id."""
    import subprocess
    import sys

    code = ("import gymnasium as gym, hplan; env = gym.make('hplan/PointRooms-v0', obs_mode='state'); "
            "print(env.reset(seed=0)[0].shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(4,)"
