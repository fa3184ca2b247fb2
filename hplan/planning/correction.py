"""Episodic dynamics correction: the agent's own transitions fix its predictor where it was wrong.

A latent predictor is smooth, and the world is not: at a doorway's corner the two-rooms predictor
lets a point pushed into the divider 0.2 cells below the opening move on by half a cell, where the
real point stops dead (``runs/s8/corner.py``; every two-rooms failure in 200 episodes was an agent
pinned there, pushing into the corner for up to 100 steps). No planner rule over waypoints can
repair that: the low level keeps choosing the push its model says gets through.

The agent does see, one step later, that the push did not get through: the observed latent
``z_{t+1}`` differs from the predicted ``P(z_t, a_t)``. :class:`ResidualMemory` keeps the last
``capacity`` such residuals ``r_i = z_{i+1} - P(z_i, a_i)`` and adds, to every prediction the
planner makes, their kernel-weighted mean (Nadaraya–Watson, weight 1 at an exact match)::

    P'(z, a) = P(z, a) + Σ_i w_i r_i / max(1, Σ_i w_i),
    w_i = exp(-|z - z_i|² / 2(ρ s)²) · exp(-|a - a_i|² / 2σ_a²)

``s`` is the median one-step latent move seen in the episode, so ``ρ`` (``correction_radius``) is
in steps and the same setting fits every latent scale. Far from where the agent has been, and for
actions unlike those it tried, the prediction is untouched; in free space the residuals are the
model's small noise. Why not fine-tune the predictor online: a few gradient steps on a handful of
transitions move it everywhere, not just at the corner, and cost far more than this lookup
(``capacity`` × candidates × horizon kernel terms). The memory is reset with each episode, so a
seed still fixes an episode and replays re-execute exactly.
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ResidualMemory:
    """The last ``capacity`` one-step residuals of an episode and the correction they imply."""

    def __init__(self, capacity: int, radius: float, action_width: float) -> None:
        if capacity < 1 or radius <= 0 or action_width <= 0:
            raise ValueError("ResidualMemory needs capacity >= 1, radius > 0 and action_width > 0")
        self.capacity, self.radius, self.action_width = int(capacity), float(radius), float(action_width)
        self.reset()

    def reset(self) -> None:
        self.z: torch.Tensor | None = None  # (M, D) latents the residuals were seen from
        self.a: torch.Tensor | None = None  # (M, A) the actions taken there
        self.r: torch.Tensor | None = None  # (M, D) observed minus predicted next latent
        self.moves: list[float] = []  # |z_{t+1} - z_t| of every step: the latent's scale

    def __len__(self) -> int:
        return 0 if self.z is None else len(self.z)

    def add(self, z: torch.Tensor, action: torch.Tensor, observed: torch.Tensor, predicted: torch.Tensor) -> None:
        """Remember one transition ``z (D,) --action (A,)--> observed (D,)`` that the model predicted as ``predicted``."""
        self.moves.append(float((observed - z).norm()))
        row = (z[None], action.to(z.dtype)[None], (observed - predicted)[None])
        if self.z is None:
            self.z, self.a, self.r = row
            return
        self.z, self.a, self.r = (torch.cat([old, new])[-self.capacity:] for old, new in zip((self.z, self.a, self.r), row))

    def correction(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``z (..., D)``, ``actions (..., A)`` → the residual to add to ``P(z, actions)`` (zeros when empty)."""
        if self.z is None or self.a is None or self.r is None:
            return torch.zeros_like(z)
        scale = max(statistics.median(self.moves), 1e-6) * self.radius
        dz = torch.cdist(z.reshape(-1, z.shape[-1]), self.z).pow(2) / (2 * scale ** 2)
        da = torch.cdist(actions.reshape(-1, actions.shape[-1]).to(z.dtype), self.a).pow(2) / (2 * self.action_width ** 2)
        weight = torch.exp(-(dz + da))  # (N, M)
        mixed = weight @ self.r / weight.sum(-1, keepdim=True).clamp_min(1.0)
        return mixed.reshape(z.shape)

    def rollout(self, predict: Predict, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Open-loop rollout ``z (N, D)``, ``actions (N, H, A)`` → ``(N, H, D)`` with every step corrected."""
        outputs = []
        for t in range(actions.shape[-2]):
            step = actions[..., t, :]
            z = predict(z, step[..., None, :])[..., -1, :] + self.correction(z, step)
            outputs.append(z)
        return torch.stack(outputs, dim=-2)
