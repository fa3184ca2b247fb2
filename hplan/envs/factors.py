"""Factors of variation of every registered environment, declared in this one place.

A factor is a constructor keyword a stress shift (or a scenario) may change, with its nominal
value and valid range. The stress suite lists them (``hplan envs --factors ID``), shifts move
them by a severity within ``[low, high]``, and :func:`validate_factor` rejects anything outside.
Nominal values equal the constructors' defaults (a test checks it), so a scenario that sets no
kwargs runs the nominal world.

Kinds: ``float`` / ``int`` (numeric range), ``choice`` (one of ``choices``), ``layout`` (a
built-in layout name or an inline ASCII map), ``color`` (a ``{part: [r, g, b]}`` table, parts
in ``choices``),
``rects`` (a list of ``[col, row, width, height]`` cell rectangles), ``rect`` (one world-space
rectangle ``[x0, y0, x1, y1]`` with ``low``/``high`` bounding each coordinate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hplan.errors import HplanError


@dataclass(frozen=True)
class Factor:
    """One factor of variation: a constructor keyword with its nominal value and valid range."""

    name: str
    nominal: Any
    low: float | None
    high: float | None
    kind: str
    doc: str
    choices: tuple[Any, ...] = ()


_POINT_ROOMS = (
    Factor("friction", 0.25, 0.0, 0.9, "float", "fraction of velocity lost per step"),
    Factor("mass", 1.0, 0.25, 4.0, "float", "point mass; acceleration = action_gain * action / mass"),
    Factor("action_gain", 0.12, 0.0, 0.5, "float", "force per unit action"),
    Factor("max_speed", 0.4, 0.05, 0.95, "float", "speed limit, cells per step (< 1 keeps collisions exact)"),
    Factor("layout", "four_rooms", None, None, "layout",
           "ASCII map: a built-in name (two_rooms, four_rooms, four_rooms_zones, maze3x3) or an inline map"),
    Factor("zones", (), None, None, "rects", "extra restricted-zone rectangles [col, row, width, height] in cells"),
    Factor("colors", {}, None, None, "color", "image colours to replace, {part = [r, g, b]}; parts",
           ("floor", "wall", "restricted", "agent", "outside")),
)

_MINIGRID_COMMON = (
    Factor("colors", {}, None, None, "color", "image colours to replace, {part = [r, g, b]}; parts",
           ("floor", "wall", "goal", "agent", "key", "door", "lava")),
)

FACTORS: dict[str, tuple[Factor, ...]] = {
    "hplan/PointRooms-v0": _POINT_ROOMS,
    "hplan/MiniGridFourRooms-v0": _MINIGRID_COMMON,
    "hplan/MiniGridDoorKey-v0": (
        Factor("size", 6, 5, 12, "int", "grid side including the outer wall (door and key placement follow)"),
        *_MINIGRID_COMMON,
    ),
    "hplan/MiniGridLavaCrossing-v0": (
        Factor("size", 9, 5, 15, "int", "grid side including the outer wall (odd values only)"),
        Factor("num_crossings", 1, 1, 5, "int", "number of lava rivers (hazard placement)"),
        *_MINIGRID_COMMON,
    ),
    "hplan/Pusher-v0": (
        Factor("block_mass", 0.2, 0.05, 2.0, "float", "mass of the pushed block, kg"),
        Factor("block_friction", 0.5, 0.05, 1.5, "float", "lateral friction of the block on the floor"),
        Factor("pusher_speed", 0.5, 0.1, 1.5, "float", "pusher velocity at full action, m/s"),
        Factor("force_limit", 3.0, 0.5, 50.0, "float", "contact normal force above which contact_force fires, N"),
        Factor("forbidden_zone", (0.05, -0.35, 0.25, -0.15), -0.5, 0.5, "rect",
               "forbidden rectangle for the block [x0, y0, x1, y1], m"),
    ),
    "hplan/CartPole-v0": (
        Factor("gravity", 9.8, 4.0, 20.0, "float", "gravitational acceleration"),
        Factor("masscart", 1.0, 0.2, 5.0, "float", "cart mass"),
        Factor("masspole", 0.1, 0.02, 1.0, "float", "pole mass"),
        Factor("length", 0.5, 0.2, 2.0, "float", "half pole length"),
        Factor("force_mag", 10.0, 2.0, 30.0, "float", "push force at each action"),
        Factor("angle_limit_deg", 8.0, 1.0, 12.0, "float", "soft pole-angle limit for the pole_angle violation"),
    ),
    # OGBench's mazes are its own fixed benchmark: no factor of variation (the stress suite's
    # kidnap and goal-move shifts still apply through the teleport / set_goal hooks).
    **{f"ogbench/pointmaze-{maze}-v0": () for maze in ("medium", "large", "giant")},
}


def factors_for(env_id: str) -> tuple[Factor, ...]:
    """All factors of ``env_id``; HplanError for an unknown id."""
    try:
        return FACTORS[env_id]
    except KeyError:
        raise HplanError(f"unknown env id {env_id!r} (known: {', '.join(sorted(FACTORS))})") from None


def factor(env_id: str, name: str) -> Factor:
    for item in factors_for(env_id):
        if item.name == name:
            return item
    known = ", ".join(f.name for f in factors_for(env_id))
    raise HplanError(f"{env_id} has no factor {name!r} (factors: {known})")


def validate_factor(env_id: str, name: str, value: Any) -> Any:
    """Check ``value`` for factor ``name`` of ``env_id``; returns it (numbers as float/int) or raises HplanError."""
    item = factor(env_id, name)
    check = _CHECKS[item.kind]
    return check(item, value)


def _number(item: Factor, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise HplanError(f"{item.name} must be a number, got {value!r}")
    if item.kind == "int":
        if not float(value).is_integer():
            raise HplanError(f"{item.name} must be an integer, got {value!r}")
        value = int(value)
    if not item.low <= value <= item.high:  # type: ignore[operator]
        raise HplanError(f"{item.name}={value} is out of range [{item.low}, {item.high}]")
    return value if item.kind == "int" else float(value)


def _choice(item: Factor, value: Any) -> Any:
    if value not in item.choices:
        raise HplanError(f"{item.name} must be one of {', '.join(map(repr, item.choices))}, got {value!r}")
    return value


def _layout(item: Factor, value: Any) -> str:
    from hplan.envs.layouts import load_layout
    from hplan.envs.maze_generator import GENERATED

    if value != GENERATED:
        load_layout(value)
    return value


def _colors(item: Factor, value: Any) -> dict[str, tuple[int, int, int]]:
    if not isinstance(value, Mapping):
        raise HplanError(f"{item.name} must be a table of part = [r, g, b], got {type(value).__name__}")
    allowed = item.choices
    out = {}
    for part, rgb in value.items():
        if part not in allowed:
            raise HplanError(f"{item.name}: unknown part {part!r} (known: {', '.join(allowed)})")
        if (not isinstance(rgb, Sequence) or len(rgb) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb)):
            raise HplanError(f"{item.name}.{part} must be three integers in [0, 255], got {rgb!r}")
        out[str(part)] = (int(rgb[0]), int(rgb[1]), int(rgb[2]))
    return out


def _rects(item: Factor, value: Any) -> tuple[tuple[int, int, int, int], ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise HplanError(f"{item.name} must be a list of [col, row, width, height], got {value!r}")
    out = []
    for i, rect in enumerate(value):
        if (not isinstance(rect, Sequence) or len(rect) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in rect)
                or rect[0] < 0 or rect[1] < 0 or rect[2] < 1 or rect[3] < 1):
            raise HplanError(f"{item.name}[{i}] must be [col >= 0, row >= 0, width >= 1, height >= 1], got {rect!r}")
        out.append(tuple(int(v) for v in rect))
    return tuple(out)  # type: ignore[return-value]


def _rect(item: Factor, value: Any) -> tuple[float, float, float, float]:
    if (not isinstance(value, Sequence) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise HplanError(f"{item.name} must be [x0, y0, x1, y1], got {value!r}")
    x0, y0, x1, y1 = (float(v) for v in value)
    if not (x0 < x1 and y0 < y1):
        raise HplanError(f"{item.name} needs x0 < x1 and y0 < y1, got {list(value)}")
    if min(value) < item.low or max(value) > item.high:  # type: ignore[operator]
        raise HplanError(f"{item.name}={list(value)} is out of range [{item.low}, {item.high}]")
    return (x0, y0, x1, y1)


_CHECKS = {"float": _number, "int": _number, "choice": _choice, "layout": _layout, "color": _colors,
           "rects": _rects, "rect": _rect}
