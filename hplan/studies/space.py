"""Search space: dotted scenario targets → ``trial.suggest_*`` calls and scenario overrides.

A parameter's name in Optuna is its dotted target (``planner.horizon``), so tables, exports and
optuna-dashboard read like the scenario file. Values are checked against the scenario's own
dataclasses at load time by building the scenario with each boundary value, so a bound the
scenario would reject (``planner.horizon`` 0, ``model.regularizer`` "vicregg") fails before the
first trial, naming the study file and the parameter.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from hplan.config import deep_merge as merge
from hplan.config import nested
from hplan.errors import ConfigError, HplanError
from hplan.studies.config import ParamSpec, StudyConfig

if TYPE_CHECKING:
    import optuna

    from hplan.config import ScenarioConfig

# Scenario fields a study must not search: they identify the run rather than configure it.
_FROZEN_TARGETS = {"name", "source", "seed", "description", "env.id"}


def overrides_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's flat ``{target: value}`` → nested scenario overrides."""
    out: dict[str, Any] = {}
    for target, value in params.items():
        out = merge(out, nested(target, value))
    return out


def check_target(target: str, scenario_cls: type | None = None) -> None:
    """Raise ``ValueError`` unless ``target`` names a leaf field of the scenario dataclasses."""
    from hplan.config import ScenarioConfig

    if target in _FROZEN_TARGETS:
        raise ValueError(f"{target} identifies the run and cannot be searched")
    cls: Any = scenario_cls or ScenarioConfig
    parts = target.split(".")
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            where = ".".join(parts[:depth]) or "the scenario"
            retired = getattr(cls, "retired_key", None)  # a key the section had before (planner)
            note = retired(part, where) if retired is not None else None
            if note:
                raise ValueError(f"target {target!r}: {note}")
            raise ValueError(f"unknown target {target!r}: {where} has no field {part!r} "
                             f"(fields: {', '.join(sorted(fields))})")
        hint = _field_type(cls, part)
        is_last = depth == len(parts) - 1
        if dataclasses.is_dataclass(hint):
            if is_last:
                raise ValueError(f"target {target!r} is a whole section; name one of its fields")
            cls = hint
        elif not is_last:
            if hint is dict or getattr(hint, "__origin__", None) is dict:
                return  # free-form tables (env.kwargs.*) are checked when the env is built
            raise ValueError(f"unknown target {target!r}: {'.'.join(parts[:depth + 1])} is not a section")


def _field_type(cls: type, name: str) -> Any:
    import sys
    import typing

    hints = typing.get_type_hints(cls, globalns=vars(sys.modules[cls.__module__]))
    return hints[name]


def boundary_values(spec: ParamSpec) -> list[Any]:
    """Values that must all be accepted by the scenario for the parameter to be valid."""
    if spec.kind == "categorical":
        return list(spec.choices)
    low, high = spec.low, spec.high
    if spec.kind in ("int", "log_int"):
        return [int(low), int(high)]  # type: ignore[arg-type]
    return [float(low), float(high)]  # type: ignore[arg-type]


def validate_against_scenario(study: StudyConfig) -> ScenarioConfig:
    """Load the scenario with the fixed overrides and with every parameter's boundary values.

    The environment is built once too (and once per boundary value of an ``env.*`` parameter):
    env settings are only checked when the env is constructed, and a bad one must fail here,
    naming the study file, not in every trial.
    """
    from hplan.config import load_scenario
    from hplan.envs.factory import validate_scenario_env

    try:
        base = load_scenario(study.scenario, study.scenario_overrides(), sets=study.sets, overrides_source=study.source)
        validate_scenario_env(base)
    except HplanError as err:
        raise ConfigError(study.source, "scenario/overrides", f"{err}") from None
    _check_stress_suite(study)
    for i, spec in enumerate(study.params):
        try:
            check_target(spec.target)
        except ValueError as err:
            raise ConfigError(study.source, f"params[{i}].target", str(err)) from None
        for value in boundary_values(spec):
            try:
                scenario = load_scenario(study.scenario, study.scenario_overrides(), sets=study.sets,
                                         overrides_source=study.source,
                                         layers=[(f"{study.source}: params[{i}]", nested(spec.target, value))])
                if spec.target.startswith("env."):
                    validate_scenario_env(scenario)
            except ConfigError as err:
                raise ConfigError(study.source, f"params[{i}] ({spec.target})",
                                  f"value {value!r} rejected by the scenario: {err.message}") from None
            except HplanError as err:
                raise ConfigError(study.source, f"params[{i}] ({spec.target})",
                                  f"value {value!r} rejected by the scenario: {err}") from None
    _check_combinations(study)
    if study.sampler.kind == "grid":
        try:
            grid_space(study.params)
        except ValueError as err:
            raise ConfigError(study.source, "sampler.kind", str(err)) from None
    return base


MAX_COMBINATIONS = 256
"""Combinations of boundary values :func:`_check_combinations` loads at most (a seeded sample of
them beyond that: eight two-valued parameters are checked exhaustively)."""


def _check_combinations(study: StudyConfig) -> None:
    """Every parameter's boundary values together: settings valid one by one can be invalid in
    combination (``planner.search.population`` 8..64 with ``planner.search.elites`` 4..32), and
    then trials failed with a traceback while the study exited 0."""
    from hplan.config import load_scenario

    if len(study.params) < 2:
        return
    values = [boundary_values(spec) for spec in study.params]
    total = math.prod(len(v) for v in values)
    if total <= MAX_COMBINATIONS:
        picks: Iterable[tuple[Any, ...]] = itertools.product(*values)
    else:
        rng = random.Random(f"{study.name}-combinations")
        picks = (tuple(rng.choice(v) for v in values) for _ in range(MAX_COMBINATIONS))
    for combination in picks:
        layers = [(f"{study.source}: params[{i}]", nested(spec.target, value))
                  for i, (spec, value) in enumerate(zip(study.params, combination))]
        try:
            load_scenario(study.scenario, study.scenario_overrides(), sets=study.sets,
                          overrides_source=study.source, layers=layers)
        except HplanError as err:
            named = ", ".join(f"{spec.target} = {value!r}" for spec, value in zip(study.params, combination))
            message = err.message if isinstance(err, ConfigError) else str(err)
            raise ConfigError(study.source, "params", f"rejected together by the scenario ({named}): {message}; "
                                                      "narrow the ranges so that every combination is valid") from None


def _check_stress_suite(study: StudyConfig) -> None:
    """The study's stress suite must exist and parse (its checkpoints are the trials' own models)."""
    if study.stress_suite is None:
        return
    from hplan.stress.suite import load_suite

    try:
        load_suite(study.stress_suite)
    except HplanError as err:
        raise ConfigError(study.source, "stress_suite", f"{study.stress_suite!r}: {err}") from None


def suggest(trial: optuna.trial.Trial, specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """Ask the trial for every parameter; returns ``{target: value}``."""
    values: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "categorical":
            values[spec.name] = trial.suggest_categorical(spec.name, list(spec.choices))
        elif spec.kind in ("int", "log_int"):
            values[spec.name] = trial.suggest_int(spec.name, int(spec.low), int(spec.high),  # type: ignore[arg-type]
                                                  step=int(spec.step or 1), log=spec.kind == "log_int")
        else:
            values[spec.name] = trial.suggest_float(spec.name, float(spec.low), float(spec.high),  # type: ignore[arg-type]
                                                    step=spec.step, log=spec.kind == "log_float")
    return values


def grid_space(specs: Sequence[ParamSpec]) -> dict[str, list[Any]]:
    """The grid for ``GridSampler``: categorical choices, or every step of a stepped int/float range."""
    if not specs:
        raise ValueError("a grid study needs at least one [[params]] entry")
    space: dict[str, list[Any]] = {}
    for spec in specs:
        if spec.kind == "categorical":
            space[spec.name] = list(spec.choices)
        elif spec.kind == "int":
            space[spec.name] = list(range(int(spec.low), int(spec.high) + 1, int(spec.step or 1)))  # type: ignore[arg-type]
        elif spec.kind == "float" and spec.step is not None:
            n = int(math.floor((spec.high - spec.low) / spec.step + 1e-9))  # type: ignore[operator]
            space[spec.name] = [round(spec.low + i * spec.step, 12) for i in range(n + 1)]  # type: ignore[operator]
        else:
            raise ValueError(f"grid sampler: parameter {spec.target} ({spec.kind}) has no finite grid; "
                             "use choices or an int/float range with a step")
    return space


def grid_size(specs: Sequence[ParamSpec]) -> int:
    return math.prod(len(v) for v in grid_space(specs).values())


def trial_scenario(study: StudyConfig, params: dict[str, Any], seed: int | None = None) -> ScenarioConfig:
    """The scenario one trial runs: base file + fixed overrides + sampled parameters (+ seed)."""
    from hplan.config import load_scenario

    sampled = overrides_from_params(params)
    if seed is not None:
        sampled["seed"] = seed
    try:
        return load_scenario(study.scenario, study.scenario_overrides(), sets=study.sets,
                             overrides_source=study.source, layers=[(f"{study.source}: params", sampled)])
    except ConfigError as err:
        raise HplanError(f"{study.source}: parameters {params} give an invalid scenario: {err}") from None
