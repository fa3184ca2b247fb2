"""Build environments from scenario files: the only place scenario ``[env]``/``[task]`` meet envs.

Every check that can be done from the file alone happens here and raises a one-line
:class:`~hplan.errors.ConfigError` naming the file and the field (``env.id``, ``env.obs_mode``,
``env.kwargs.<name>``, ``task.<name>``); the runner, collector and stress suite call
:func:`make_env` (or :func:`make_vec_env` for fast PointRooms collection) and never parse kwargs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import TimeLimit

import hplan.envs  # noqa: F401  (registers the ids)
from hplan.envs.config import EnvScenario, TaskConfig
from hplan.envs.factors import FACTORS, validate_factor
from hplan.envs.registry import ENVS, EnvEntry
from hplan.errors import ConfigError, HplanError

POINT_ROOMS_ID = "hplan/PointRooms-v0"


@dataclasses.dataclass(frozen=True)
class EnvBuild:
    """Everything needed to construct the env of a scenario, already validated."""

    entry: EnvEntry
    kwargs: dict[str, Any]
    max_steps: int


def resolve_env(scenario: EnvScenario, **overrides: Any) -> EnvBuild:
    """Validate a scenario's env section (+ code overrides) into constructor keywords."""
    source = scenario.source
    env_id = scenario.env.id
    if env_id not in ENVS:
        raise ConfigError(source, "env.id", f"unknown env id {env_id!r} (registered: {', '.join(ENVS)})")
    entry = ENVS[env_id]
    if entry.requires and importlib.util.find_spec(entry.requires) is None:
        raise ConfigError(source, "env.id", f"{env_id} needs the optional package {entry.requires!r} "
                                            f"(pip install 'hplan[{entry.requires}]')")
    overrides = dict(overrides)
    obs_mode = overrides.pop("obs_mode", scenario.env.obs_mode)
    max_steps = int(overrides.pop("max_steps", scenario.env.max_steps))
    if obs_mode not in entry.obs_modes:
        raise ConfigError(source, "env.obs_mode", f"{env_id} supports obs_mode {', '.join(entry.obs_modes)}, "
                                                  f"got {obs_mode!r}")
    kwargs: dict[str, Any] = {"obs_mode": obs_mode}
    for name, value in scenario.env.kwargs.items():
        kwargs[name] = _check_kwarg(entry, name, value, source, f"env.kwargs.{name}")
    for name, value in _task_values(scenario.task).items():
        if name not in entry.task_fields:
            raise ConfigError(source, f"task.{name}", f"{env_id} does not support this task field "
                                                      f"(supported: {', '.join(entry.task_fields) or 'none'})")
        kwargs[name] = value
    for name, value in overrides.items():  # code overrides (the collector's) may also replace task fields
        kwargs[name] = value if name in entry.task_fields else _check_kwarg(entry, name, value, source,
                                                                            f"override.{name}")
    return EnvBuild(entry=entry, kwargs=kwargs, max_steps=max_steps)


def validate_scenario_env(scenario: EnvScenario) -> None:
    """All env checks of a scenario, including constructing (not stepping) the env once."""
    make_env(scenario).close()


def make_env(scenario: EnvScenario, **overrides: Any) -> gym.Env:
    """The scenario's env, wrapped in ``TimeLimit(max_steps)``; bad input raises ConfigError."""
    build = resolve_env(scenario, **overrides)
    env = _construct(scenario, build, lambda: gym.make(build.entry.id, **build.kwargs, disable_env_checker=True))
    return TimeLimit(env.unwrapped, max_episode_steps=build.max_steps)


def make_vec_env(scenario: EnvScenario, num_envs: int, **overrides: Any):  # -> PointRoomsVec
    """``num_envs`` PointRooms episodes stepped together (PointRooms scenarios only)."""
    from hplan.envs.vector import PointRoomsVec

    build = resolve_env(scenario, **overrides)
    if build.entry.id != POINT_ROOMS_ID:
        raise HplanError(f"{scenario.source}: vectorised stepping exists for {POINT_ROOMS_ID} only, "
                         f"not {build.entry.id}")
    kwargs = {k: v for k, v in build.kwargs.items() if k not in ("render_mode", "render_size")}
    return _construct(scenario, build, lambda: PointRoomsVec(num_envs, **kwargs))


def _check_kwarg(entry: EnvEntry, name: str, value: Any, source: str, field: str) -> Any:
    factor_names = {f.name for f in FACTORS.get(entry.id, ())}
    try:
        if name in factor_names:
            return validate_factor(entry.id, name, value)
        if name in entry.settings:
            return entry.settings[name](name, value)
    except HplanError as err:
        raise ConfigError(source, field, str(err)) from None
    if name == "obs_mode":
        raise ConfigError(source, field, "set obs_mode in the [env] section, not in kwargs")
    if name in entry.task_fields:
        raise ConfigError(source, field, "set this in the [task] section, not in env kwargs")
    known = sorted(factor_names | set(entry.settings))
    raise ConfigError(source, field, f"unknown keyword for {entry.id} (known: {', '.join(known)})")


def _task_values(task: TaskConfig) -> dict[str, Any]:
    """Task fields the scenario actually sets (defaults mean "env default")."""
    values = {}
    for fld in dataclasses.fields(task):
        value = getattr(task, fld.name)
        if value != fld.default:
            values[fld.name] = value
    return values


def _construct(scenario: EnvScenario, build: EnvBuild, construct: Any) -> Any:
    """Run ``construct``; a constructor's HplanError (checks that need the parsed layout, e.g. a zone
    outside the map or rooms too close for ``min_rooms_apart``) becomes a ConfigError on the field
    its message starts with or names."""
    try:
        return construct()
    except HplanError as err:
        message = str(err)
        task_names = tuple(f.name for f in dataclasses.fields(TaskConfig))
        field = next((f"task.{name}" if name in task_names else f"env.kwargs.{name}"
                      for name in build.kwargs if message.startswith(name)), None)
        field = field or next((f"task.{name}" for name in task_names if name in message), "env.kwargs")
        raise ConfigError(scenario.source, field, message) from None
