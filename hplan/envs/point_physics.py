"""PointRooms dynamics, written once for a batch of points and shared by the single and vector envs.

Per step, with action ``a`` clipped to ``[-1, 1]²``::

    v' = (1 - friction) · v + action_gain · a / mass,   then |v'| clipped to max_speed
    x' = x + v'   resolved one axis at a time against the wall grid

Why per-axis resolution: a point sliding along a wall keeps its parallel velocity (as a real
point mass would), and because ``max_speed < 1`` cell per step a move can cross at most one cell
boundary per axis, so checking the destination cell is exact and the point can never end inside
a wall. A blocked axis stops at :data:`WALL_MARGIN` from the wall face, its velocity is zeroed and
the step reports ``wall_contact``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WALL_MARGIN = 1e-3
"""Distance kept from a wall face after a blocked move (world units)."""

MAX_SPEED_LIMIT = 0.95
"""Physical limit for ``max_speed``: below one cell per step so collisions stay exact."""


@dataclass(frozen=True)
class PointPhysics:
    """Physics factors; each may be a scalar or an ``(N,)`` array (one value per env)."""

    friction: float | np.ndarray
    mass: float | np.ndarray
    action_gain: float | np.ndarray
    max_speed: float | np.ndarray


def padded_walls(wall: np.ndarray) -> np.ndarray:
    """The wall grid with a one-cell wall border, so lookups outside the map read as wall."""
    return np.pad(wall, 1, constant_values=True)


def step_points(walls_padded: np.ndarray, pos: np.ndarray, vel: np.ndarray, action: np.ndarray,
                physics: PointPhysics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advance ``N`` points one step. Returns new ``pos (N, 2)``, ``vel (N, 2)``, ``contact (N,)``.

    Inputs are not modified. ``walls_padded`` comes from :func:`padded_walls`.
    """
    action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    friction = _column(physics.friction)
    gain_over_mass = _column(physics.action_gain) / _column(physics.mass)
    vel = (1.0 - friction) * vel + gain_over_mass * action
    vel = clip_speed(vel, physics.max_speed)
    pos = pos.copy()
    contact = np.zeros(pos.shape[0], dtype=bool)
    for axis in (0, 1):
        pos, vel, blocked = _move_axis(walls_padded, pos, vel, axis)
        contact |= blocked
    return pos, vel, contact


def clip_speed(vel: np.ndarray, max_speed: float | np.ndarray) -> np.ndarray:
    """Scale each velocity down to at most ``max_speed`` in Euclidean norm."""
    speed = np.sqrt((vel * vel).sum(axis=1, keepdims=True))
    limit = np.minimum(_column(max_speed), MAX_SPEED_LIMIT)
    scale = np.where(speed > limit, limit / np.maximum(speed, 1e-12), 1.0)
    return vel * scale


def cells_of(walls_padded: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded-grid (row, col) indices of each point, clipped into the padded grid."""
    rows = np.clip(np.floor(pos[:, 1]).astype(np.int64) + 1, 0, walls_padded.shape[0] - 1)
    cols = np.clip(np.floor(pos[:, 0]).astype(np.int64) + 1, 0, walls_padded.shape[1] - 1)
    return rows, cols


def _move_axis(walls_padded: np.ndarray, pos: np.ndarray, vel: np.ndarray,
               axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    old = pos[:, axis]
    new = old + vel[:, axis]
    trial = pos.copy()
    trial[:, axis] = new
    rows, cols = cells_of(walls_padded, trial)
    blocked = walls_padded[rows, cols]
    if blocked.any():
        cell = np.floor(old)
        clamped = np.clip(new, cell + WALL_MARGIN, cell + 1.0 - WALL_MARGIN)
        trial[:, axis] = np.where(blocked, clamped, new)
        vel = vel.copy()
        vel[blocked, axis] = 0.0
    return trial, vel, blocked


def _column(value: float | np.ndarray) -> float | np.ndarray:
    """Broadcast a per-env array against ``(N, 2)``; scalars pass through."""
    if np.ndim(value) == 0:
        return float(value)
    return np.asarray(value, dtype=np.float64)[:, None]
