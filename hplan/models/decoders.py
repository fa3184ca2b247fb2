"""Observation decoders for the `recon` baseline (the model JEPA is compared against).

The image decoder reconstructs the *pooled* image the encoder sees (``image_downsample``), which
keeps the baseline as cheap as the JEPA models while still forcing the latent to carry pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hplan.models.config import ModelConfig
from hplan.models.predictor import mlp


class ImageDecoder(nn.Module):
    """``(B, D)`` → ``(B, C, h, w)`` pixels in [-0.5, 0.5] at the pooled resolution."""

    def __init__(self, obs_shape: tuple[int, ...], cfg: ModelConfig) -> None:
        super().__init__()
        height, width, channels = obs_shape
        self.downsample = cfg.image_downsample
        self.out_hw = (height // cfg.image_downsample, width // cfg.image_downsample)
        ch = 2 * cfg.encoder_channels
        self.base = 4
        self.fc = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.hidden_dim), nn.ReLU(),
                                nn.Linear(cfg.hidden_dim, ch * self.base * self.base))
        ups: list[nn.Module] = []
        size = self.base
        while size < max(self.out_hw):
            ups += [nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1), nn.ReLU()]
            size *= 2
        self.deconv = nn.Sequential(*ups, nn.Conv2d(ch, channels, 3, padding=1))
        self.channels = ch

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(-1, self.channels, self.base, self.base)
        return F.interpolate(self.deconv(x), size=self.out_hw, mode="bilinear", align_corners=False)

    def target(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.permute(0, 3, 1, 2).float().div(255.0).sub(0.5)
        return F.avg_pool2d(x, self.downsample) if self.downsample > 1 else x


class StateDecoder(nn.Module):
    """``(B, D)`` → standardised state vector (statistics shared with the state encoder)."""

    def __init__(self, obs_shape: tuple[int, ...], cfg: ModelConfig) -> None:
        super().__init__()
        (dim,) = obs_shape
        self.net = mlp(cfg.latent_dim, cfg.hidden_dim, dim, 2)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-6))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def target(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs.float() - self.mean) / self.std


DECODERS = {"image": ImageDecoder, "state": StateDecoder}
