"""``hplan/CartPole-v0``: gymnasium's CartPole-v1 behind the hplan environment contract.

A sanity scenario: if a latent planner cannot balance a pole, nothing harder will work. The
dynamics are gymnasium's own ``CartPoleEnv`` (physics factors set as its attributes); this adapter
adds the ``info`` contract, a cheap 64×64 image observation drawn with numpy (gymnasium's pygame
renderer draws 600×400 frames, far too slow for data collection) and a soft guardrail:

* violation ``pole_angle``: ``|θ|`` above ``angle_limit_deg`` (nominal 8°, below the 12° at which
  the episode terminates) — a warning zone a guardrail head can learn to avoid;
* ``success``: the pole upright (``|θ| ≤ 0.05`` rad) with the cart near the centre (``|x| ≤ 0.25``);
* ``goal`` / ``goal_obs``: the upright, centred, motionless state and its observation;
* state observation = ``true_state`` = ``[x, x_dot, theta, theta_dot]``; ``pos`` = ``[x, theta]``.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv as _GymCartPole

from hplan.errors import HplanError

SUCCESS_ANGLE = 0.05
SUCCESS_X = 0.25
_BACKGROUND = (245, 245, 245)
_TRACK = (120, 120, 120)
_CART = (40, 40, 60)
_POLE = (200, 120, 60)


class CartPoleEnv(gym.Env):
    """CartPole with the hplan info contract (see module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}
    state_names = ("x", "x_dot", "theta", "theta_dot")
    violation_names = ("pole_angle",)

    def __init__(self, obs_mode: str = "state", image_size: int = 64, gravity: float = 9.8, masscart: float = 1.0,
                 masspole: float = 0.1, length: float = 0.5, force_mag: float = 10.0, angle_limit_deg: float = 8.0,
                 render_mode: str | None = None) -> None:
        if obs_mode not in ("state", "image", "both"):
            raise HplanError(f"obs_mode must be state, image or both, got {obs_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise HplanError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if min(gravity, masscart, masspole, length, force_mag, angle_limit_deg) <= 0:
            raise HplanError("gravity, masscart, masspole, length, force_mag and angle_limit_deg must be > 0")
        self._env = _GymCartPole()
        sim = self._env
        sim.gravity, sim.masscart, sim.masspole, sim.length, sim.force_mag = gravity, masscart, masspole, length, force_mag
        sim.total_mass = masspole + masscart
        sim.polemass_length = masspole * length
        self.angle_limit = math.radians(angle_limit_deg)
        self.obs_mode, self.image_size, self.render_mode = obs_mode, int(image_size), render_mode
        self.action_space = gym.spaces.Discrete(2)
        # Finite bounds (gymnasium's are infinite for the velocities): generous for every factor range.
        high = np.array([2 * sim.x_threshold, 20.0, 2 * sim.theta_threshold_radians, 20.0], dtype=np.float32)
        state = gym.spaces.Box(-high, high, dtype=np.float32)
        image = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), dtype=np.uint8)
        self.observation_space = {"state": state, "image": image,
                                  "both": gym.spaces.Dict({"state": state, "image": image})}[obs_mode]
        self._goal_state = np.zeros(4, dtype=np.float32)
        self._goal_obs = self._observe(self._goal_state)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        state, _ = self._env.reset(seed=seed)
        return self._observe(state), self._info(state)

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        if not self.action_space.contains(int(action)):
            raise HplanError(f"action must be 0 or 1, got {action!r}")
        state, reward, terminated, _, _ = self._env.step(int(action))
        return self._observe(state), float(reward), bool(terminated), False, self._info(state)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return draw_cartpole(np.asarray(self._env.state, dtype=np.float64), 256, self._env)

    def _observe(self, state: np.ndarray) -> Any:
        state = np.asarray(state, dtype=np.float32)
        if self.obs_mode == "state":
            return state
        image = draw_cartpole(state.astype(np.float64), self.image_size, self._env)
        return image if self.obs_mode == "image" else {"state": state, "image": image}

    def _info(self, state: np.ndarray) -> dict[str, Any]:
        state = np.asarray(state, dtype=np.float32)
        x, theta = float(state[0]), float(state[2])
        violations = {"pole_angle": abs(theta) > self.angle_limit}
        goal_obs = self._goal_obs
        goal_obs = {k: v.copy() for k, v in goal_obs.items()} if isinstance(goal_obs, dict) else goal_obs.copy()
        return {
            "true_state": state.copy(),
            "pos": np.array([x, theta], dtype=np.float32),
            "goal": np.zeros(2, dtype=np.float32),
            "cost": 1.0 if violations["pole_angle"] else 0.0,
            "violations": violations,
            "success": abs(theta) <= SUCCESS_ANGLE and abs(x) <= SUCCESS_X,
            "goal_obs": goal_obs,
        }


def draw_cartpole(state: np.ndarray, size: int, sim: _GymCartPole) -> np.ndarray:
    """A ``size``×``size`` frame: track, cart (rectangle) and pole (a thick line) — numpy only."""
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[...] = _BACKGROUND
    world_width = 2 * sim.x_threshold * 1.2
    scale = size / world_width
    track_y = int(size * 0.7)
    image[track_y, :] = _TRACK
    cart_x = state[0] * scale + size / 2
    half_w, half_h = max(2, int(0.1 * size)), max(1, int(0.05 * size))
    x0, x1 = int(np.clip(cart_x - half_w, 0, size)), int(np.clip(cart_x + half_w, 0, size))
    image[track_y - half_h:track_y + half_h, x0:x1] = _CART
    pole_len = size * 0.35 * sim.length / 0.5
    t = np.linspace(0.0, 1.0, max(8, size))
    px = cart_x + t * pole_len * math.sin(state[2])
    py = track_y - half_h - t * pole_len * math.cos(state[2])
    thickness = max(1, size // 32)
    for dx in range(-(thickness // 2), thickness - thickness // 2):
        cols = np.clip(np.round(px).astype(int) + dx, 0, size - 1)
        rows = np.clip(np.round(py).astype(int), 0, size - 1)
        image[rows, cols] = _POLE
    return image
