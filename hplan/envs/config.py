"""The environment side of a scenario: which env, built how, and how its tasks are drawn.

Kept apart from the learning configs (``[model]``, ``[train]``, ``[planner]``) so the environments
and their factory import no learning code; :mod:`hplan.config` assembles the whole scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hplan.configio import meta

MAX_EPISODE_STEPS = 100_000
"""Upper bound of any step budget (env.max_steps, collect.steps_per_episode)."""


@dataclass(frozen=True)
class EnvConfig:
    """Which environment, built how."""

    id: str = field(metadata=meta("registered gymnasium id, e.g. hplan/PointRooms-v0 (see `hplan envs`)"))
    obs_mode: Literal["state", "image", "both"] = field(default="image", metadata=meta("what the agent observes"))
    max_steps: int = field(default=200, metadata=meta("step budget per episode", ge=1, le=MAX_EPISODE_STEPS))
    kwargs: dict[str, Any] = field(default_factory=dict, metadata=meta(
        "constructor keywords (layout by name or inline ASCII map, physics factors, ...)"))


@dataclass(frozen=True)
class TaskConfig:
    """Start and goal sampling (environments that have rooms honour the room fields)."""

    min_rooms_apart: int = field(default=0, metadata=meta("start and goal at least this many rooms apart", ge=0))
    start_room: int | None = field(default=None, metadata=meta("fix the start room (index in the layout)", ge=0))
    goal_room: int | None = field(default=None, metadata=meta("fix the goal room (index in the layout)", ge=0))
    goal_tolerance: float | None = field(default=None, metadata=meta("success radius (env units); env default if unset", gt=0.0))
    task_id: int = field(default=0, metadata=meta(
        "a benchmark's own evaluation task (OGBench mazes: 1-5, its fixed start and goal cells); 0 = random cells",
        ge=0, le=1000))


class EnvScenario(Protocol):
    """What building an env needs of a scenario (a :class:`hplan.config.ScenarioConfig` has it)."""

    source: str
    env: EnvConfig
    task: TaskConfig

