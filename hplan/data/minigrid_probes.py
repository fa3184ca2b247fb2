"""What the collector reads from MiniGrid's grid: interaction targets and rooms.

An exploration policy is a data-collection heuristic, not an agent, so it may look at the
simulator: which object the agent faces (so DoorKey data contains picked-up keys and opened
doors, and LavaCrossing walks do not all end in the first river) and which room the agent is in (so the manifest can report room coverage for
MiniGrid FourRooms as it does for PointRooms). Planners never see any of this.

Rooms come from the same segmentation as PointRooms maps (:func:`hplan.envs.layouts.load_layout`):
the grid's walls are written as an ASCII map, and doorway gaps split it into rooms numbered in
reading order — for FourRooms always 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right,
whichever doorway positions an episode draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hplan.data.policies import MINIGRID_LEFT, MINIGRID_PICKUP, MINIGRID_TOGGLE
from hplan.envs.layouts import load_layout


def interaction_probe(env: Any) -> Callable[[Any], int] | None:
    """For MiniGrid adapters: a function giving the adapter action that deals with the cell in
    front — pickup for a key when the hands are free, toggle for a closed door (DoorKey), turn left
    when facing lava (LavaCrossing: so walks live long enough to find the gaps; the rest of the
    time they step in, which the guardrail heads need to see) — or -1. None for other envs."""
    from hplan.envs.minigrid_adapters import MiniGridAdapter

    if not isinstance(env, MiniGridAdapter):
        return None
    actions = list(env.actions)
    by_type = {"key": actions.index(MINIGRID_PICKUP) if MINIGRID_PICKUP in actions else -1,
               "door": actions.index(MINIGRID_TOGGLE) if MINIGRID_TOGGLE in actions else -1,
               "lava": actions.index(MINIGRID_LEFT) if "lava" in env.violation_names else -1}
    if max(by_type.values()) < 0:
        return None

    def probe(adapter: Any) -> int:
        grid_env = adapter._env  # the wrapped minigrid env
        cell = grid_env.grid.get(*grid_env.front_pos)
        if cell is None or cell.type not in by_type:
            return -1
        if cell.type == "key" and grid_env.carrying is not None:
            return -1
        if cell.type == "door" and cell.is_open:
            return -1
        return by_type[cell.type]

    return probe


def minigrid_room_grid(adapter: Any) -> np.ndarray:
    """``(H, W)`` room index per grid cell (-1 on walls) of the adapter's current episode."""
    grid = adapter._env.grid
    rows = ["".join("#" if (cell := grid.get(x, y)) is not None and cell.type == "wall" else "."
                    for x in range(grid.width)) for y in range(grid.height)]
    return load_layout("\n".join(rows)).room_grid  # cached per distinct map


ROOM_MAPS: dict[str, tuple[Callable[[Any], np.ndarray], int]] = {
    "hplan/MiniGridFourRooms-v0": (minigrid_room_grid, 4),
}
"""Env id → (room grid of the current episode, number of rooms), for envs without ``info["room"]``."""
