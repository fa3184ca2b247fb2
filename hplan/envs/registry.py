"""The table of hplan environments: id, entry point, observation modes, settings, task fields.

One row per env. ``import hplan.envs`` registers every row with gymnasium; the factory and the
``hplan envs`` command read the same table, so an env is added in exactly one place (plus its
factors in :mod:`hplan.envs.factors`). *Settings* are constructor keywords that are not factors
of variation (image size, rendering); *task fields* are the scenario ``[task]`` keys the env
honours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from hplan.errors import HplanError


def _int_in(low: int, high: int) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise HplanError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        return value
    return check


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise HplanError(f"{name} must be true or false, got {value!r}")
    return value


def _render_mode(name: str, value: Any) -> Any:
    if value not in (None, "rgb_array"):
        raise HplanError(f"{name} must be 'rgb_array' (or unset), got {value!r}")
    return value


@dataclass(frozen=True)
class EnvEntry:
    """One registered environment."""

    id: str
    entry_point: str
    doc: str
    obs_modes: tuple[str, ...] = ("state", "image", "both")
    settings: dict[str, Callable[[str, Any], Any]] = field(default_factory=dict)
    task_fields: tuple[str, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Fixed constructor keywords of this id (one adapter class serves several ids)."""
    requires: str | None = None
    """Optional package the env needs (an extra of hplan); a scenario naming it without the package is refused."""
    collect_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keywords the collector adds (OGBench: random cells and wandering goals); ``settings`` or task fields."""
    expert: bool = False
    """The env reports ``info["expert_direction"]`` (what the ``expert`` exploration policy follows)."""

    @property
    def collector_task_fields(self) -> tuple[str, ...]:
        """Task fields the collector replaces (``collect_kwargs``): they do not shape the collected data."""
        return tuple(name for name in self.collect_kwargs if name in self.task_fields)


def _maze(name: str, value: Any) -> Any:
    from hplan.envs.maze_generator import GENERATED, maze_spec

    maze_spec(GENERATED, value)  # the shape alone; that it goes with layout = "generated" the env checks
    return value


_IMAGE = {"image_size": _int_in(16, 512), "render_mode": _render_mode}
_OGBENCH = {"wander": _boolean, "render_mode": _render_mode}


def _ogbench_point_maze(maze: str) -> EnvEntry:
    return EnvEntry(f"ogbench/pointmaze-{maze}-v0", "hplan.envs.ogbench_maze:OGBenchPointMaze",
                    f"OGBench point maze '{maze}' (MuJoCo; its evaluation tasks 1-5 via task.task_id)",
                    obs_modes=("state",), settings=dict(_OGBENCH), task_fields=("task_id", "goal_tolerance"),
                    kwargs={"maze": maze}, requires="ogbench", collect_kwargs={"wander": True, "task_id": 0}, expert=True)

ENVS: dict[str, EnvEntry] = {entry.id: entry for entry in (
    EnvEntry("hplan/PointRooms-v0", "hplan.envs.point_rooms:PointRoomsEnv",
             "continuous point mass in rooms joined by doorways (ASCII layouts, restricted zones)",
             settings={**_IMAGE, "terminate_on_success": _boolean, "render_size": _int_in(64, 1024), "maze": _maze},
             task_fields=("min_rooms_apart", "start_room", "goal_room", "goal_tolerance")),
    EnvEntry("hplan/MiniGridFourRooms-v0", "hplan.envs.minigrid_adapters:MiniGridFourRooms",
             "MiniGrid FourRooms, fully observed, discrete actions", settings=dict(_IMAGE)),
    EnvEntry("hplan/MiniGridDoorKey-v0", "hplan.envs.minigrid_adapters:MiniGridDoorKey",
             "MiniGrid DoorKey: pick up the key, open the door, reach the goal", settings=dict(_IMAGE)),
    EnvEntry("hplan/MiniGridLavaCrossing-v0", "hplan.envs.minigrid_adapters:MiniGridLavaCrossing",
             "MiniGrid LavaCrossing: lava is the guardrail (violation 'lava')", settings=dict(_IMAGE)),
    EnvEntry("hplan/Pusher-v0", "hplan.envs.pusher:PusherEnv",
             "PyBullet planar pusher moving a block to a target (contact force, forbidden zone)",
             settings=dict(_IMAGE), task_fields=("goal_tolerance",)),
    EnvEntry("hplan/CartPole-v0", "hplan.envs.cartpole:CartPoleEnv",
             "gymnasium CartPole-v1 with the hplan info contract (sanity scenario)",
             settings=dict(_IMAGE)),
    *(_ogbench_point_maze(maze) for maze in ("medium", "large", "giant")),
)}


def env_entry(env_id: str) -> EnvEntry:
    try:
        return ENVS[env_id]
    except KeyError:
        raise HplanError(f"unknown env id {env_id!r} (registered: {', '.join(ENVS)})") from None


def register_all() -> None:
    """Register every row with gymnasium (idempotent)."""
    for entry in ENVS.values():
        if entry.id not in gym.registry:
            gym.register(id=entry.id, entry_point=entry.entry_point, kwargs=dict(entry.kwargs))


def registered_ids() -> tuple[str, ...]:
    return tuple(ENVS)
