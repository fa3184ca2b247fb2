"""Episodic dynamics correction: the agent's own transitions fix its predictor where it was wrong.

A latent predictor is smooth, and the world is not: at a doorway's corner the two-rooms predictor
lets a point pushed into the divider 0.2 cells below the opening move on by half a cell, where the
real point stops dead (five pushes right from x = 8.6, read with a linear probe of the position;
every two-rooms failure in 200 episodes was an agent pinned there, pushing into the corner for up to
100 steps). No planner rule over waypoints can repair that: the low level keeps choosing the push
its model says gets through.

The agent does see, one step later, that the push did not get through: the observed latent
``z_{t+1}`` differs from the predicted ``P(z_t, a_t)``. :class:`ResidualMemory` keeps the last
``capacity`` residuals ``r_i = z_{i+1} - P(z_i, a_i)`` of at least ``threshold`` median moves and
adds, to every prediction the planner makes, their kernel-weighted mean (Nadaraya–Watson, weight 1
at an exact match)::

    P'(z, a) = P(z, a) + Σ_i w_i r_i / max(1, Σ_i w_i),
    w_i = exp(-|z - z_i|² / 2(ρ s)²) · exp(-|a - a_i|² / 2σ_a²)

``s`` is the median one-step latent move the model predicted in the episode, so ``ρ``
(``[planner.correction] radius``) is in steps and the same setting fits every latent scale (the predicted
move and not the observed one: an agent pinned to a wall barely moves, and its own moves would
shrink the kernel to nothing just when it is needed). Far from where the agent has been, and for
actions unlike those it tried, the prediction is untouched; in free space the errors are the
model's small noise and are not kept (so the memory is usually empty and costs nothing). Why not
fine-tune the predictor online: a few gradient steps on a handful of transitions move it
everywhere, not just at the corner, and cost far more than this lookup (``capacity`` × candidates
× horizon kernel terms). The memory is reset with each episode, so a
seed still fixes an episode and replays re-execute exactly.

Measured: two rooms (50 episodes × seeds 0–3, within 100 steps) 95.5 → 99.5 %; the 3×3 maze (50
episodes) 98 → 100 %. In the guarded four-rooms scenarios it did not help (four rooms, seeds 0 / 1:
100 / 96 % → 96 / 96 %; zones 86 / 94 → 80 / 90 %, zone entered more often), so it was a
per-scenario setting at first; ``[planner.correction] memory = 32`` was later chosen on val for every
PointRooms scenario (``benchmarks/results.toml``, recipe tables).
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ResidualMemory:
    """The last ``capacity`` one-step residuals of an episode and the correction they imply."""

    def __init__(self, capacity: int, radius: float, action_width: float, threshold: float = 0.0) -> None:
        if capacity < 1 or radius <= 0 or action_width <= 0 or threshold < 0:
            raise ValueError("ResidualMemory needs capacity >= 1, radius > 0, action_width > 0 and threshold >= 0")
        self.capacity, self.radius, self.action_width = int(capacity), float(radius), float(action_width)
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        self.z: torch.Tensor | None = None  # (M, D) latents the residuals were seen from
        self.a: torch.Tensor | None = None  # (M, A) the actions taken there
        self.r: torch.Tensor | None = None  # (M, D) observed minus predicted next latent
        self.moves: list[float] = []  # |P(z_t, a_t) - z_t| of every step: the latent's scale
        self.scale = 1e-6  # their median (kept up to date by ``add``: read once per rollout step)
        self._keys: tuple[torch.Tensor, torch.Tensor] | None = None  # scaled [z, a] rows and |row|²

    def __len__(self) -> int:
        return 0 if self.z is None else len(self.z)

    def add(self, z: torch.Tensor, action: torch.Tensor, observed: torch.Tensor, predicted: torch.Tensor) -> None:
        """Remember one transition ``z (D,) --action (A,)--> observed (D,)`` that the model predicted as
        ``predicted`` — if its error is at least ``threshold`` median moves (smaller ones are the
        model's noise: kept, they would only cost time)."""
        self.moves.append(float((predicted - z).norm()))
        self.scale = max(statistics.median(self.moves), 1e-6)
        self._keys = None  # the scale moved, and perhaps the rows
        residual = observed - predicted
        if float(residual.norm()) < self.threshold * self.scale:
            return
        row = (z[None], action.to(z.dtype)[None], residual[None])
        if self.z is None:
            self.z, self.a, self.r = row
            return
        self.z, self.a, self.r = (torch.cat([old, new])[-self.capacity:] for old, new in zip((self.z, self.a, self.r), row))

    def _scaled(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[z / √2ρs, a / √2σ_a]``: rows whose squared distances are the kernel's exponent."""
        return torch.cat([z / (2 ** 0.5 * self.radius * self.scale),
                          actions.to(z.dtype) / (2 ** 0.5 * self.action_width)], dim=-1)

    def correction(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``z (..., D)``, ``actions (..., A)`` → the residual to add to ``P(z, actions)`` (zeros when empty)."""
        if self.z is None or self.a is None or self.r is None:
            return torch.zeros_like(z)
        if self._keys is None:  # once per agent step, not per rollout step
            keys = self._scaled(self.z, self.a)
            self._keys = (keys, keys.pow(2).sum(-1))
        keys, key_norms = self._keys
        query = self._scaled(z.reshape(-1, z.shape[-1]), actions.reshape(-1, actions.shape[-1]))
        exponent = (query.pow(2).sum(-1, keepdim=True) + key_norms - 2.0 * query @ keys.T).clamp_min(0.0)
        weight = torch.exp(-exponent)  # (N, M)
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
