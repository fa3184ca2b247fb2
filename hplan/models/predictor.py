"""Low-level predictor P_lo(z_t, a_t) → z_{t+1}: a residual MLP.

Residual because most steps move the latent a little (the identity is the right prior), and an
MLP because planners call it on thousands of candidates at once: every step is a few big matmuls
over all leading dims together, and the only Python loop is over time.
"""

from __future__ import annotations

import torch
from torch import nn


def mlp(dim_in: int, hidden: int, dim_out: int, layers: int) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden`` (the building block of every head)."""
    mods: list[nn.Module] = []
    width = dim_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    mods.append(nn.Linear(width, dim_out))
    return nn.Sequential(*mods)


class ResidualPredictor(nn.Module):
    """``z' = z + f([z, a])`` with a zero-initialised last layer (starts as the identity)."""

    def __init__(self, latent_dim: int, action_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.net = mlp(latent_dim + action_dim, hidden, latent_dim, layers)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def step(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return z + self.net(torch.cat([z, action], dim=-1))

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Open loop: ``z (..., D)``, ``actions (..., H, A)`` → ``(..., H, D)``."""
        outputs = []
        for t in range(actions.shape[-2]):
            z = self.step(z, actions[..., t, :])
            outputs.append(z)
        return torch.stack(outputs, dim=-2)
