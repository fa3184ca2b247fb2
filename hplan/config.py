"""Scenario files: the TOML a user edits to define an environment, a task and the agent's settings.

Parsed once into frozen dataclasses by :func:`load_scenario`; every malformed input raises a
:class:`~hplan.errors.ConfigError` naming the file and the field.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hplan.configio import from_mapping, meta, read_toml
from hplan.envs.config import MAX_EPISODE_STEPS, EnvConfig, TaskConfig
from hplan.errors import ConfigError
from hplan.models.config import ModelConfig, TrainConfig
from hplan.planning.config import GuardrailConfig, PlannerConfig

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
MAX_SEED = 2**32 - 1
"""Largest master seed: what numpy's and Lightning's global seeding accept (``train --seed 2**64``
used to pass the command line and fail inside Lightning)."""
MAX_COLLECT_EPISODES = 1_000_000
"""Upper bound of a collection (10^4x the shipped ones): `collect -n 10^12` used to exhaust memory
planning its shards before any episode ran."""


@dataclass(frozen=True)
class CollectConfig:
    """Offline data collection for training."""

    episodes: int = field(default=200, metadata=meta("episodes to collect", ge=1, le=MAX_COLLECT_EPISODES))
    steps_per_episode: int = field(default=100, metadata=meta("transitions per episode", ge=1, le=MAX_EPISODE_STEPS))
    policy: Literal["random", "momentum", "minigrid_explore", "expert"] = field(
        default="momentum", metadata=meta("exploration policy"))
    num_envs: int = field(default=32, metadata=meta("environments stepped in parallel", ge=1, le=4096))
    episodes_per_shard: int = field(default=64, metadata=meta("episodes per shard file", ge=1,
                                                               le=MAX_COLLECT_EPISODES))
    start: Literal["anywhere", "task"] = field(default="anywhere", metadata=meta(
        "where episodes start: `anywhere` on the free map (PointRooms; so every room is covered) "
        "or as the [task] section samples starts"))
    turn_prob: float = field(default=0.05, metadata=meta(
        "momentum policy: chance per step of picking a new heading (mean run = 1/turn_prob steps)",
        ge=0.0, le=1.0))
    action_noise: float = field(default=0.0, metadata=meta(
        "momentum policy: std of fresh Gaussian noise added to every continuous action (in half-ranges), "
        "so actions vary independently of the velocity and the predictor must learn their effect",
        ge=0.0, le=2.0))
    seek_prob: float = field(default=0.0, metadata=meta(
        "momentum policy: chance that a new heading points at the object to manipulate (pusher's block), "
        "so the data contains pushes", ge=0.0, le=1.0))
    interact_prob: float = field(default=0.8, metadata=meta(
        "minigrid_explore policy: chance of acting on what the agent faces: pick up a key, open a door, "
        "turn away from lava",
        ge=0.0, le=1.0))


@dataclass(frozen=True)
class ScenarioConfig:
    """A whole scenario file."""

    name: str = field(metadata=meta("short identifier"))
    env: EnvConfig = field(metadata=meta("[env] section"))
    description: str = field(default="", metadata=meta("one line for humans"))
    seed: int = field(default=0, metadata=meta("master seed: fixes collection, training and episodes", ge=0,
                                                            le=MAX_SEED))
    task: TaskConfig = field(default_factory=TaskConfig, metadata=meta("[task] section"))
    collect: CollectConfig = field(default_factory=CollectConfig, metadata=meta("[collect] section"))
    model: ModelConfig = field(default_factory=ModelConfig, metadata=meta("[model] section"))
    train: TrainConfig = field(default_factory=TrainConfig, metadata=meta("[train] section"))
    planner: PlannerConfig = field(default_factory=PlannerConfig, metadata=meta("[planner] section"))
    guardrails: GuardrailConfig = field(default_factory=GuardrailConfig, metadata=meta("[guardrails] section"))
    source: str = field(default="<memory>", metadata=meta("file this scenario was read from (set by the loader)"))


def builtin_scenarios() -> list[str]:
    """Names of the scenario files shipped under ``scenarios/`` (name = file stem)."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a built-in scenario under ``scenarios/``.

    A bare word that is neither an existing file nor a built-in is an error that lists the
    built-ins, because a typo in a scenario name is the most common mistake.
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or len(path.parts) > 1:
        return path
    builtin = SCENARIO_DIR / f"{name_or_path}.toml"
    if not builtin.exists():
        raise ConfigError(str(name_or_path), "", "no such scenario file or built-in scenario "
                          f"(built-ins: {', '.join(builtin_scenarios())})")
    return builtin


def load_scenario(name_or_path: str | Path, overrides: dict[str, Any] | None = None,
                  sets: Sequence[str] = (), overrides_source: str = "overrides",
                  layers: Sequence[tuple[str, dict[str, Any]]] = ()) -> ScenarioConfig:
    """Read and validate a scenario file (semantic env checks happen in ``hplan.envs.factory``).

    ``overrides`` are nested tables merged over the file (a suite's or study's; name their file
    in ``overrides_source``); ``layers`` are more ``(source, table)`` pairs merged after them (a
    study's sampled parameters); ``sets`` are the command line's ``--set section.field=value``
    assignments, merged last. A bad value from ``--set`` is reported as ``--set section.field``.
    """
    path = resolve_scenario_path(name_or_path)
    raw = read_toml(path)
    from_sets = parse_sets(sets)
    stack = [(str(path), raw), (overrides_source, overrides or {}), *layers, ("--set", from_sets)]
    data: dict[str, Any] = {}
    for _, table in stack:
        data = deep_merge(data, table)
    data["source"] = str(path)
    resolve_budget_layers(data, stack)
    try:
        return from_mapping(ScenarioConfig, data, source=str(path))
    except ConfigError as err:
        if _set_target(err.field, sets) is None:
            raise
        raise ConfigError("--set", err.field, err.message) from None


def parse_assignment(text: str, *, source: str = "--set") -> tuple[str, Any]:
    """``"planner.horizon=12"`` → ``("planner.horizon", 12)`` (the value is read as TOML;
    a bare word is a string, so ``model.regularizer=sigreg`` needs no quotes)."""
    target, sep, raw = text.partition("=")
    target = target.strip()
    if not sep or not target or any(not part for part in target.split(".")):
        raise ConfigError(source, text, "expected SECTION.FIELD=VALUE, e.g. planner.search.population=64")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(source, target, f"must be a finite number, got {raw.strip()}")
    return target, value


def nested(target: str, value: Any) -> dict[str, Any]:
    """``"model.latent_dim", 64`` → ``{"model": {"latent_dim": 64}}``."""
    out: dict[str, Any] = {}
    node = out
    parts = target.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def parse_sets(sets: Sequence[str], *, source: str = "--set") -> dict[str, Any]:
    """Repeatable ``--set`` assignments → one nested override table (later ones win)."""
    out: dict[str, Any] = {}
    for text in sets:
        target, value = parse_assignment(text, source=source)
        out = deep_merge(out, nested(target, value))
    return out


def _set_target(field: str, sets: Sequence[str]) -> str | None:
    """The ``--set`` target an error's field path lies under, if any."""
    for text in sets:
        target = text.partition("=")[0].strip()
        if field == target or field.startswith(target + ".") or target.startswith(field + "."):
            return target
    return None


# Planner fields that fix a search's size by hand (paths under [planner]); ``budget.evals``
# derives them (it keeps the iteration counts and the elite fraction, so those may be set beside it).
POPULATION_FIELDS = (("search", "population"), ("codes", "population"))
BUDGET_FIELD = ("budget", "evals")


def _planner_value(planner: dict[str, Any], path: tuple[str, str]) -> tuple[bool, Any]:
    """``(present, value)`` of ``planner[path[0]][path[1]]`` in one layer's raw table."""
    section = planner.get(path[0])
    if isinstance(section, dict) and path[1] in section:
        return True, section[path[1]]
    return False, None


def resolve_budget_layers(data: dict[str, Any], layers: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """The documented rule between ``[planner.budget] evals`` and explicit search sizes.

    ``layers`` are ``(where, table)`` in merge order: the scenario file, a suite's or study's
    overrides, the command line's ``--set``.

    * One layer that sets both ``budget.evals > 0`` and a population is refused: which of the
      two it meant is ambiguous.
    * A later layer that sets a population without a budget turns an earlier budget off: the
      search a file names is the search it gets. ``hplan scenario check`` prints the sizes each
      planner ends up with.
    """
    tables = [(where, layer["planner"]) for where, layer in layers if isinstance(layer.get("planner"), dict)]
    for where, planner in tables:
        sizes = [path for path in POPULATION_FIELDS if _planner_value(planner, path)[0]]
        budget = _planner_value(planner, BUDGET_FIELD)[1]
        if sizes and isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            raise ConfigError(where, "planner." + ".".join(sizes[0]),
                              "set together with planner.budget.evals, which derives it; keep one of the two")
    budget, touched = None, False
    for _, layer in layers[1:]:
        planner = layer.get("planner") if isinstance(layer.get("planner"), dict) else {}
        present, value = _planner_value(planner, BUDGET_FIELD)
        if present:
            budget, touched = value, True
        elif any(_planner_value(planner, path)[0] for path in POPULATION_FIELDS):
            budget, touched = 0, True
    if touched and isinstance(data.get("planner"), dict):
        section = data["planner"].get(BUDGET_FIELD[0], {})
        if isinstance(section, dict):  # anything else is the file's error, reported by from_mapping
            data["planner"] = {**data["planner"], BUDGET_FIELD[0]: {**section, BUDGET_FIELD[1]: budget}}


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested override tables (``update`` wins); used for scenario overrides."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
