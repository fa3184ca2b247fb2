"""PyBullet planar pusher: a velocity-driven cylinder pushes a block to a target position.

Why these choices:

* DIRECT mode, and the whole world is rebuilt on every reset (``resetSimulation``): Bullet is
  deterministic for a fixed sequence of calls from a fresh world, while restored states can
  diverge, so a seed fixes an episode exactly.
* The pusher is a heavy cylinder whose horizontal velocity is *set* every substep from the action
  (``Box(-1, 1, (2,))`` × ``pusher_speed`` m/s) — kinematic control without a controller to tune —
  and is kept inside the ``±WORKSPACE`` square.
* ``CONTROL_DT = 0.1`` s per action with 5 substeps of 20 ms: few substeps keep it fast.
* Goal observations are rendered in a second, render-only Bullet client, so drawing the goal never
  touches the simulated world (moving bodies there and back would change contact caches).

Observations: ``state`` float32 ``[pusher_x, pusher_y, block_x, block_y, cos 4·yaw, sin 4·yaw,
block_vx, block_vy]`` (metres, m/s); ``image`` a 64×64 top-down TINY-renderer view (the forbidden
zone is drawn on the floor in red; the target is not drawn). The block is a square, so its yaw is
observed modulo 90° (``4·yaw``): two observations of the same physical pose are the same vector,
and a model never has to learn that they are one state.

The task is the block's *position* (yaw is free); ``goal_obs`` is the state a straight push leaves
behind: the block at the target, at rest, with the yaw it had when the goal was set, and the pusher
just behind it on the line from the block's place to the target (:func:`push_goal_pusher`). Why: a
goal-conditioned planner reaches the goal *observation*, and one that puts the pusher back where it
started (as this environment once did) asks it to walk away from the block after the push, or
costs every plan that does not; the pusher behind the block is where the shortest solution ends.

Violations: ``contact_force`` (pusher–block normal force above ``force_limit`` N in any
substep; steady pushing at nominal settings needs ~2 N, ramming the block at full speed ~4-5 N,
so the nominal 3 N limit asks for gentle contact) and ``forbidden_zone`` (block centre inside the forbidden rectangle after the step).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from hplan.errors import HplanError

WORKSPACE = 0.45
"""Half-width (m) of the square the pusher may move in."""
BLOCK_HALF = 0.05
PUSHER_RADIUS = 0.03
PUSHER_MASS = 5.0
CONTROL_DT = 0.1
SUBSTEPS = 5
CAMERA_HEIGHT = 1.2
ZONE_COLOR = (0.85, 0.15, 0.15, 1.0)
BLOCK_COLOR = (0.2, 0.4, 0.9, 1.0)
PUSHER_COLOR = (0.15, 0.15, 0.15, 1.0)
GOAL_PUSHER_GAP = 0.01
"""Gap (m) between the goal observation's pusher and the block's corner circle."""
STATE_HIGH = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 5.0, 5.0], dtype=np.float32)
"""Bounds of the state observation (m, m/s); the pusher is confined to ±WORKSPACE."""


def push_goal_pusher(block_xy: np.ndarray, goal_xy: np.ndarray) -> np.ndarray:
    """Where a straight push of the block from ``block_xy`` to ``goal_xy`` leaves the pusher: behind
    the block on that line, clear of any corner (the block's half-diagonal), inside the workspace."""
    direction = np.asarray(goal_xy, dtype=np.float64) - np.asarray(block_xy, dtype=np.float64)
    norm = float(np.hypot(*direction))
    unit = direction / norm if norm > 1e-9 else np.array([1.0, 0.0])
    back = BLOCK_HALF * np.sqrt(2.0) + PUSHER_RADIUS + GOAL_PUSHER_GAP
    return np.clip(np.asarray(goal_xy, dtype=np.float64) - back * unit, -WORKSPACE, WORKSPACE)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence C-level writes to stdout/stderr (file descriptors 1, 2) for the duration of the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


class PusherEnv(gym.Env):
    """Planar pushing with a contact-force limit and a forbidden zone (see module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    state_names = ("pusher_x", "pusher_y", "block_x", "block_y", "block_cos4yaw", "block_sin4yaw", "block_vx", "block_vy")
    violation_names = ("contact_force", "forbidden_zone")

    def __init__(self, obs_mode: str = "state", image_size: int = 64, block_mass: float = 0.2,
                 block_friction: float = 0.5, pusher_speed: float = 0.5, force_limit: float = 3.0,
                 forbidden_zone: Sequence[float] = (0.05, -0.35, 0.25, -0.15), goal_tolerance: float = 0.05,
                 render_mode: str | None = None) -> None:
        with _quiet_stdout():  # importing and connecting print banners from C
            import pybullet
            from pybullet_utils import bullet_client

        if obs_mode not in ("state", "image", "both"):
            raise HplanError(f"obs_mode must be state, image or both, got {obs_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise HplanError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if not (block_mass > 0 and block_friction > 0 and pusher_speed > 0 and force_limit > 0 and goal_tolerance > 0):
            raise HplanError("block_mass, block_friction, pusher_speed, force_limit and goal_tolerance must be > 0")
        zone = np.asarray(forbidden_zone, dtype=np.float64)
        if zone.shape != (4,) or not (zone[0] < zone[2] and zone[1] < zone[3]):
            raise HplanError(f"forbidden_zone must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1, got {list(forbidden_zone)}")
        self.obs_mode, self.image_size, self.render_mode = obs_mode, int(image_size), render_mode
        self.block_mass, self.block_friction = float(block_mass), float(block_friction)
        self.pusher_speed, self.force_limit = float(pusher_speed), float(force_limit)
        self.forbidden_zone, self.goal_tolerance = zone, float(goal_tolerance)
        with _quiet_stdout():
            self._p = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
            self._goal_client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
        self._goal_bodies = self._build(self._goal_client, (0.0, 0.0), (0.3, 0.0), 0.0)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        state = gym.spaces.Box(-STATE_HIGH, STATE_HIGH, dtype=np.float32)
        image = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8)
        self.observation_space = {"state": state, "image": image,
                                  "both": gym.spaces.Dict({"state": state, "image": image})}[obs_mode]
        self._bodies: tuple[int, int] = (-1, -1)
        self._goal = np.zeros(2)
        self._goal_obs: Any = None

    # ------------------------------------------------------------------ world
    def _build(self, client: Any, pusher_xy: Sequence[float], block_xy: Sequence[float], yaw: float) -> tuple[int, int]:
        """Fresh world: floor, forbidden-zone marking, block and pusher."""
        import pybullet_data

        client.resetSimulation()
        client.setAdditionalSearchPath(pybullet_data.getDataPath())
        client.setGravity(0, 0, -9.81)
        client.setTimeStep(CONTROL_DT / SUBSTEPS)
        plane = client.loadURDF("plane.urdf")
        client.changeDynamics(plane, -1, lateralFriction=1.0)
        x0, y0, x1, y1 = self.forbidden_zone
        zone_shape = client.createVisualShape(client.GEOM_BOX, halfExtents=[(x1 - x0) / 2, (y1 - y0) / 2, 0.001],
                                              rgbaColor=ZONE_COLOR)
        client.createMultiBody(0, -1, zone_shape, [(x0 + x1) / 2, (y0 + y1) / 2, 0.001])
        half = [BLOCK_HALF] * 3
        block = client.createMultiBody(
            self.block_mass, client.createCollisionShape(client.GEOM_BOX, halfExtents=half),
            client.createVisualShape(client.GEOM_BOX, halfExtents=half, rgbaColor=BLOCK_COLOR),
            [block_xy[0], block_xy[1], BLOCK_HALF], client.getQuaternionFromEuler([0, 0, yaw]))
        client.changeDynamics(block, -1, lateralFriction=self.block_friction)
        pusher = client.createMultiBody(
            PUSHER_MASS, client.createCollisionShape(client.GEOM_CYLINDER, radius=PUSHER_RADIUS, height=0.08),
            client.createVisualShape(client.GEOM_CYLINDER, radius=PUSHER_RADIUS, length=0.08, rgbaColor=PUSHER_COLOR),
            [pusher_xy[0], pusher_xy[1], 0.041])
        client.changeDynamics(pusher, -1, lateralFriction=0.0, angularDamping=1.0)
        return pusher, block

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        options = options or {}
        rng = self.np_random
        block = self._sample(rng, 0.25, lambda xy: not self._in_zone(xy))
        pusher = self._sample(rng, 0.4, lambda xy: np.hypot(*(xy - block)) > 0.15)
        goal = self._sample(rng, 0.3, lambda xy: not self._in_zone(xy) and np.hypot(*(xy - block)) > 4 * self.goal_tolerance)
        yaw = float(rng.uniform(-np.pi, np.pi))
        if "goal" in options:
            goal = self._check_xy(options["goal"], "reset option goal")
        self._bodies = self._build(self._p, pusher, block, yaw)
        self._set_goal(goal)
        return self._obs(), self._info(contact_force=0.0)

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        p, (pusher, block) = self._p, self._bodies
        peak = 0.0
        for _ in range(SUBSTEPS):
            (px, py, _), _ = p.getBasePositionAndOrientation(pusher)
            velocity = action * self.pusher_speed
            nxt = np.array([px, py]) + velocity * CONTROL_DT / SUBSTEPS
            velocity[np.abs(nxt) > WORKSPACE] = 0.0  # the pusher stays in the workspace
            p.resetBaseVelocity(pusher, [velocity[0], velocity[1], 0.0], [0.0, 0.0, 0.0])
            p.stepSimulation()
            force = sum(c[9] for c in p.getContactPoints(pusher, block))
            peak = max(peak, force)
        info = self._info(contact_force=peak)
        return self._obs(), float(info["success"]), bool(info["success"]), False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._camera(self._p, 256)

    def close(self) -> None:
        for client in (self._p, self._goal_client):
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001 - pybullet raises a bare error when already disconnected
                pass

    # ------------------------------------------------------------------ contract extras
    def set_goal(self, pos: Sequence[float]) -> None:
        """Stress hook: move the target; ``goal_obs`` in the next ``info`` shows the new target."""
        self._set_goal(self._check_xy(pos, "goal"))

    def push(self, velocity_delta: Sequence[float]) -> None:
        """Stress hook: kick the block by a horizontal velocity (m/s)."""
        _, block = self._bodies
        linear, angular = self._p.getBaseVelocity(block)
        delta = np.asarray(velocity_delta, dtype=np.float64).reshape(2)
        self._p.resetBaseVelocity(block, [linear[0] + delta[0], linear[1] + delta[1], linear[2]], angular)

    # ------------------------------------------------------------------ internals
    def _sample(self, rng: np.random.Generator, half: float, ok: Any) -> np.ndarray:
        for _ in range(1000):
            xy = rng.uniform(-half, half, size=2)
            if ok(xy):
                return xy
        raise HplanError("could not place pusher/block/target: forbidden_zone covers the workspace")

    def _check_xy(self, xy: Sequence[float], what: str) -> np.ndarray:
        arr = np.asarray(xy, dtype=np.float64).reshape(-1)
        if arr.shape != (2,) or not np.all(np.abs(arr) <= WORKSPACE):
            raise HplanError(f"{what} {list(np.atleast_1d(xy))} must be a point in the ±{WORKSPACE} m workspace")
        return arr

    def _in_zone(self, xy: np.ndarray) -> bool:
        x0, y0, x1, y1 = self.forbidden_zone
        return bool(x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1)

    def _set_goal(self, goal: np.ndarray) -> None:
        """The target and its observation: the block there, at rest, at its present yaw, the pusher
        behind it (:func:`push_goal_pusher`, from the block's present place)."""
        self._goal = np.asarray(goal, dtype=np.float64).copy()
        now = self._true_state()
        pusher_xy = push_goal_pusher(now[2:4], self._goal)
        yaw = float(np.arctan2(now[5], now[4])) / 4.0
        client, (pusher, block) = self._goal_client, self._goal_bodies
        client.resetBasePositionAndOrientation(pusher, [*pusher_xy, 0.041], [0, 0, 0, 1])
        client.resetBasePositionAndOrientation(block, [*self._goal, BLOCK_HALF],
                                               client.getQuaternionFromEuler([0, 0, yaw]))
        state = np.array([*pusher_xy, *self._goal, now[4], now[5], 0.0, 0.0], dtype=np.float32)
        self._goal_obs = self._compose(state, lambda: self._camera(client, self.image_size))

    def _true_state(self) -> np.ndarray:
        p, (pusher, block) = self._p, self._bodies
        (px, py, _), _ = p.getBasePositionAndOrientation(pusher)
        (bx, by, _), quat = p.getBasePositionAndOrientation(block)
        (bvx, bvy, _), _ = p.getBaseVelocity(block)
        yaw = p.getEulerFromQuaternion(quat)[2]  # the square's pose repeats every 90°: observed as 4·yaw
        return np.array([px, py, bx, by, np.cos(4 * yaw), np.sin(4 * yaw), bvx, bvy], dtype=np.float32)

    def _compose(self, state: np.ndarray, image: Any) -> Any:
        if self.obs_mode == "state":
            return state
        if self.obs_mode == "image":
            return image()
        return {"state": state, "image": image()}

    def _obs(self) -> Any:
        # The observation is clipped to its space (a block knocked far off the table); true_state is not.
        state = np.clip(self._true_state(), -STATE_HIGH, STATE_HIGH)
        return self._compose(state, lambda: self._camera(self._p, self.image_size))

    def _camera(self, client: Any, size: int) -> np.ndarray:
        view = client.computeViewMatrix([0, 0, CAMERA_HEIGHT], [0, 0, 0], [0, 1, 0])
        half_fov = np.degrees(np.arctan((WORKSPACE + 0.1) / CAMERA_HEIGHT))
        projection = client.computeProjectionMatrixFOV(2 * half_fov, 1.0, 0.1, 2.0)
        _, _, rgba, _, _ = client.getCameraImage(size, size, view, projection, renderer=client.ER_TINY_RENDERER)
        return np.asarray(rgba, dtype=np.uint8).reshape(size, size, 4)[..., :3].copy()

    def _info(self, *, contact_force: float) -> dict[str, Any]:
        state = self._true_state()
        block = state[2:4].astype(np.float64)
        violations = {"contact_force": bool(contact_force > self.force_limit), "forbidden_zone": self._in_zone(block)}
        goal_obs = self._goal_obs
        goal_obs = {k: v.copy() for k, v in goal_obs.items()} if isinstance(goal_obs, dict) else goal_obs.copy()
        return {
            "true_state": state,
            "pos": state[2:4].copy(),
            "goal": self._goal.astype(np.float32),
            "cost": 1.0 if any(violations.values()) else 0.0,
            "violations": violations,
            "success": bool(np.hypot(*(block - self._goal)) <= self.goal_tolerance),
            "goal_obs": goal_obs,
            "contact_force": float(contact_force),
        }
