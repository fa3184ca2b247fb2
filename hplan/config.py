"""Scenario files: the TOML a user edits to define an environment, a task and the agent's settings.

Parsed once into frozen dataclasses by :func:`load_scenario`; every malformed input raises a
:class:`~hplan.errors.ConfigError` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hplan.configio import from_mapping, meta, read_toml
from hplan.errors import ConfigError
from hplan.models.config import ModelConfig, TrainConfig
from hplan.planning.config import GuardrailConfig, PlannerConfig

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


@dataclass(frozen=True)
class EnvConfig:
    """Which environment, built how."""

    id: str = field(metadata=meta("registered gymnasium id, e.g. hplan/PointRooms-v0 (see `hplan envs`)"))
    obs_mode: Literal["state", "image", "both"] = field(default="image", metadata=meta("what the agent observes"))
    max_steps: int = field(default=200, metadata=meta("step budget per episode", ge=1, le=100_000))
    kwargs: dict[str, Any] = field(default_factory=dict, metadata=meta(
        "constructor keywords (layout by name or inline ASCII map, physics factors, ...)"))


@dataclass(frozen=True)
class TaskConfig:
    """Start and goal sampling (environments that have rooms honour the room fields)."""

    min_rooms_apart: int = field(default=0, metadata=meta("start and goal at least this many rooms apart", ge=0))
    start_room: int | None = field(default=None, metadata=meta("fix the start room (index in the layout)", ge=0))
    goal_room: int | None = field(default=None, metadata=meta("fix the goal room (index in the layout)", ge=0))
    goal_tolerance: float | None = field(default=None, metadata=meta("success radius (env units); env default if unset", gt=0.0))


@dataclass(frozen=True)
class CollectConfig:
    """Offline data collection for training."""

    episodes: int = field(default=200, metadata=meta("episodes to collect", ge=1))
    steps_per_episode: int = field(default=100, metadata=meta("transitions per episode", ge=1))
    policy: Literal["random", "momentum", "minigrid_explore"] = field(
        default="momentum", metadata=meta("exploration policy"))
    num_envs: int = field(default=32, metadata=meta("environments stepped in parallel", ge=1, le=4096))
    episodes_per_shard: int = field(default=64, metadata=meta("episodes per shard file", ge=1))
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
    seed: int = field(default=0, metadata=meta("master seed: fixes collection, training and episodes", ge=0))
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


def load_scenario(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> ScenarioConfig:
    """Read and validate a scenario file (semantic env checks happen in ``hplan.envs.factory``)."""
    path = resolve_scenario_path(name_or_path)
    data = read_toml(path)
    data = deep_merge(data, overrides or {})
    data["source"] = str(path)
    return from_mapping(ScenarioConfig, data, source=str(path))


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested override tables (``update`` wins); used for scenario overrides."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
