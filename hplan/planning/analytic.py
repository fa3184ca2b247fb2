"""Analytic world models that implement the planning protocol exactly, without training.

They exist so planners, the agent and the runner can be tested against dynamics whose optimum is
known (tdmpc2/eb_jepa test planners on a quadratic bowl and a wall before any learned model):

* :class:`PointMassModel` — the latent *is* the 2-D position; ``predict`` moves it by
  ``step · a`` inside ``[-1, 1]²``, optionally blocked by a vertical wall with a doorway
  ("two rooms"); ``predict_high`` jumps ``subgoal_interval`` steps with a constant action (the
  code); ``temporal_distance`` is the straight-line distance in steps — blind to walls, like a
  temporal distance learned from short windows; the guardrail head marks a disc as unsafe.
* Discrete actions: ``discrete=True`` maps one-hot actions onto the moves in ``MOVES``.

These are not stand-ins for learned models in experiments; they are fixtures with known answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hplan.vocabulary.protocol import ActionSpec

MOVES = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
"""Discrete moves: stay, right, left, up, down."""


@dataclass
class UnsafeDisc:
    """A disc the guardrail head flags: probability ``sigmoid(sharpness · (radius − ‖z − centre‖))``."""

    centre: tuple[float, float]
    radius: float
    sharpness: float = 40.0


@dataclass
class PointMassModel:
    """A 2-D point mass in latent space; see the module docstring."""

    step: float = 0.05
    subgoal_interval: int = 8
    wall_x: float | None = None
    door: tuple[float, float] = (-0.15, 0.15)
    unsafe: UnsafeDisc | None = None
    discrete: bool = False
    latent_dim: int = 2
    code_dim: int = 2
    action_spec: ActionSpec = field(init=False)
    guardrail_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.action_spec = ActionSpec(dim=len(MOVES) if self.discrete else 2, discrete=self.discrete)
        self.guardrail_names = ("restricted_zone",) if self.unsafe is not None else ()

    # -- protocol -------------------------------------------------------------------------------
    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.to(torch.float32)[..., :2]

    def _velocity(self, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return actions @ MOVES.to(actions)
        return actions.clamp(-1.0, 1.0)

    def _move(self, z: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
        new = (z + self.step * velocity).clamp(-1.0, 1.0)
        if self.wall_x is None:
            return new
        before, after = z[..., 0] - self.wall_x, new[..., 0] - self.wall_x
        crossing = before * after < 0
        frac = before.abs() / (before.abs() + after.abs()).clamp_min(1e-12)
        y_cross = z[..., 1] + frac * (new[..., 1] - z[..., 1])
        through_door = (y_cross > self.door[0]) & (y_cross < self.door[1])
        blocked = crossing & ~through_door
        x = torch.where(blocked, z[..., 0], new[..., 0])
        return torch.stack([x, new[..., 1]], dim=-1)

    def predict(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        velocity = self._velocity(actions)
        out = []
        for t in range(actions.shape[1]):
            z = self._move(z, velocity[:, t])
            out.append(z)
        return torch.stack(out, dim=1)

    def predict_high(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        k = self.subgoal_interval
        velocity = codes.clamp(-1.0, 1.0)
        out = []
        for level in range(codes.shape[1]):
            for _ in range(k):
                z = self._move(z, velocity[:, level])
            out.append(z)
        return torch.stack(out, dim=1)

    def heads(self, z: torch.Tensor, actions: torch.Tensor | None = None, combine: str = "mean") -> torch.Tensor:
        del combine  # one head: its mean and its max are the same
        if self.unsafe is None:
            return z.new_zeros((*z.shape[:-1], 0))
        where = z if actions is None else self._move(z, self._velocity(actions))
        centre = torch.tensor(self.unsafe.centre, dtype=z.dtype, device=z.device)
        gap = self.unsafe.radius - (where - centre).norm(dim=-1)
        return torch.sigmoid(self.unsafe.sharpness * gap)[..., None]

    def temporal_distance(self, z: torch.Tensor, z_goal: torch.Tensor) -> torch.Tensor:
        return (z - z_goal).norm(dim=-1) / self.step
