"""Observation encoders E(x) → z: a cheap strided CNN for images and an MLP for state vectors.

Both take observations *raw*, exactly as the environment returns them (uint8 HWC images, float
state vectors), and normalise inside the module, so a planner never needs to know the
preprocessing. The image encoder average-pools first (``image_downsample``): on PointRooms the
agent is a disc a few pixels wide, which survives 2× pooling as an intensity blob, and it makes
the convolutions four times cheaper on CPU.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from hplan.models.config import ModelConfig


class ImageEncoder(nn.Module):
    """``(B, H, W, C)`` uint8 → ``(B, D)``: pool, stride-2 convs down to ≤ 4×4, then an MLP.

    With a frame history (input ``(B, h, H, W, C)``, see ``hplan/planning/history.py``) the frames are stacked
    as channels (early fusion): the first convolution sees the disc in both frames side by side,
    which is all it needs to read the velocity.
    """

    def __init__(self, obs_shape: tuple[int, ...], cfg: ModelConfig) -> None:
        super().__init__()
        frames = obs_shape[0] if len(obs_shape) == 4 else 1
        height, width, channels = obs_shape[-3:]
        channels *= frames
        layers: list[nn.Module] = []
        if cfg.image_downsample > 1:
            layers.append(nn.AvgPool2d(cfg.image_downsample))
        size = min(height, width) // cfg.image_downsample
        c_in, c_out = channels, cfg.encoder_channels
        while size > 4:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
            size = (size + 1) // 2
            c_in, c_out = c_out, 2 * cfg.encoder_channels
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, channels, height, width)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, cfg.hidden_dim), nn.ReLU(), nn.Linear(cfg.hidden_dim, cfg.latent_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.ndim == 5:  # (B, h, H, W, C) → (B, H, W, h·C)
            obs = obs.permute(0, 2, 3, 1, 4).flatten(3)
        x = obs.permute(0, 3, 1, 2).float().div(255.0).sub(0.5)
        return self.head(self.conv(x))


class StateEncoder(nn.Module):
    """``(B, S)`` float (or ``(B, h, S)`` with a frame history) → ``(B, D)``: standardise with the
    training set's statistics, then an MLP."""

    def __init__(self, obs_shape: tuple[int, ...], cfg: ModelConfig) -> None:
        super().__init__()
        dim = int(np.prod(obs_shape))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.net = nn.Sequential(nn.Linear(dim, cfg.hidden_dim), nn.ReLU(), nn.Linear(cfg.hidden_dim, cfg.hidden_dim),
                                 nn.ReLU(), nn.Linear(cfg.hidden_dim, cfg.latent_dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-feature statistics of one frame (repeated over a frame history)."""
        reps = self.mean.numel() // mean.numel()
        self.mean.copy_(mean.repeat(reps))
        self.std.copy_(std.clamp_min(1e-6).repeat(reps))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net((obs.flatten(1).float() - self.mean) / self.std)


ENCODERS: dict[str, Callable[[tuple[int, ...], ModelConfig], nn.Module]] = {
    "image": ImageEncoder,
    "state": StateEncoder,
}
"""Observation kind → encoder class. ``obs_kind_of`` picks the kind from the observation array."""


def obs_kind_of(obs_shape: tuple[int, ...], dtype: str) -> str:
    """``image`` for ``(H, W, C)`` uint8 observations, ``state`` for flat vectors."""
    if len(obs_shape) == 3 and dtype == "uint8":
        return "image"
    if len(obs_shape) == 1:
        return "state"
    raise ValueError(f"unsupported observation shape {obs_shape} with dtype {dtype}")


def build_encoder(obs_kind: str, obs_shape: tuple[int, ...], cfg: ModelConfig) -> nn.Module:
    return ENCODERS[obs_kind](tuple(obs_shape), cfg)
