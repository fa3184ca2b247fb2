"""Observation encoders E(x) → z: a cheap strided CNN for images and an MLP for state vectors.

Both take observations *raw*, exactly as the environment returns them (uint8 HWC images, float
state vectors), and normalise inside the module, so a planner never needs to know the
preprocessing. The image encoder average-pools first (``image_downsample``): on PointRooms the
agent is a disc a few pixels wide, which survives 2× pooling as an intensity blob, and it makes
the convolutions four times cheaper on CPU.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Callable

import numpy as np
import torch
from torch import nn

from hplan.models.config import ModelConfig
from hplan.models.regularizers import REGULARIZERS


MOTION_GAIN = 4.0
"""Scale of frame differences in the image encoder's input (a moving disc changes few pixels)."""

KEYPOINT_MOTION_GAIN = 20.0
"""Scale of keypoint changes between frames (a step moves a keypoint ~1-2 % of the image)."""


class StackedInputEncoder(nn.Module):
    """An encoder that reads a frame history as one stacked input (no per-frame stage to share).

    The two-stage interface every encoder offers (``frame_features`` per frame, then
    ``from_features`` per history) lets training encode a window's frames once and reuse them in
    each overlapping history (``encode_sequences``); here the per-frame stage is the identity.
    """

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        return frames

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self(features)


class ImageEncoder(StackedInputEncoder):
    """``(B, H, W, C)`` uint8 → ``(B, D)``: pool, stride-2 convs down to ≤ 4×4, then an MLP.

    With a frame history (input ``(B, h, H, W, C)``, see ``hplan/vocabulary/frames.py``) the
    encoder sees the current frame and the differences between consecutive frames as channels
    (early fusion), so the motion is in the input directly, signed by its direction. On PointRooms
    this was not enough: trained as a JEPA this CNN still located the point only to about a cell
    and encoded no velocity (linear probe R² 0.00 with raw stacks and with differences); use the
    ``keypoints`` encoder there.
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
        x = obs.float().div(255.0)
        if x.ndim == 5:  # (B, h, H, W, C): the current frame plus the h - 1 frame differences
            motion = (x[:, 1:] - x[:, :-1]) * MOTION_GAIN
            x = torch.cat([x[:, -1:], motion], dim=1).permute(0, 2, 3, 1, 4).flatten(3)
        return self.head(self.conv(x.permute(0, 3, 1, 2).sub(0.5)))


class KeypointEncoder(nn.Module):
    """``(B, [h,] H, W, C)`` uint8 → ``(B, D)`` through a spatial softmax (deep spatial autoencoders,
    Finn et al. 2016; Levine et al. 2016): per frame, a small conv stack scores every pixel for
    ``keypoints`` feature maps, a softmax over the pixels turns each map into a distribution and its
    expected (x, y) is one keypoint; an MLP maps the keypoints to ``z``.

    Why on PointRooms: the state *is* a position. The strided CNN encoded it only to about a cell
    (held-out linear-probe R² 0.95 ≈ 1.1 cells of error, while the point moves 0.1–0.4 cells per
    step), so one-step latent changes were mostly encoding noise and the predictor learned to
    ignore its actions. An expected coordinate is sub-pixel and linear in the position. With a
    frame history the keypoints of every frame are computed with shared weights and the MLP sees
    the current keypoints plus their change since the previous frame (the velocity), scaled up.
    """

    def __init__(self, obs_shape: tuple[int, ...], cfg: ModelConfig) -> None:
        super().__init__()
        self.frames = obs_shape[0] if len(obs_shape) == 4 else 1
        height, width, channels = obs_shape[-3:]
        pool = nn.AvgPool2d(cfg.image_downsample) if cfg.image_downsample > 1 else nn.Identity()
        k = cfg.keypoints
        self.features = nn.Sequential(pool, nn.Conv2d(channels, cfg.encoder_channels, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(cfg.encoder_channels, k, 1))
        h, w = height // cfg.image_downsample, width // cfg.image_downsample
        self.register_buffer("xs", torch.linspace(-1.0, 1.0, w))
        self.register_buffer("ys", torch.linspace(-1.0, 1.0, h))
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.norm = nn.BatchNorm1d(2 * k, affine=False) if cfg.keypoint_norm else nn.Identity()
        self.head = nn.Sequential(nn.Linear(self.frames * 2 * k, cfg.hidden_dim), nn.ReLU(),
                                  nn.Linear(cfg.hidden_dim, cfg.latent_dim))

    def keypoints(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, C)`` uint8 → ``(N, 2K)`` expected coordinates in [-1, 1]."""
        return self.keypoints_of_pooled(self.features[0](frames.permute(0, 3, 1, 2).float()))

    def keypoints_of_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """:meth:`keypoints` from the frames already average-pooled (``(N, C, H/d, W/d)`` floats in
        0..255; :func:`pooled_frame_sums` / d² gives the same bits), so training can pool its
        dataset once instead of in every step."""
        # Pool before scaling (both linear, so the result is the same): the elementwise work then
        # runs on a quarter of the pixels; it was a third of a training step at full resolution.
        x = pooled.mul(1.0 / 255.0).sub(0.5)
        # The softmax temperature divides the last (1x1) convolution's weights, not its output: the
        # same logits, without a division (and its backward) over every pixel of every map, which
        # was a third of the keypoint stage's time in training.
        score = self.features[3]
        temperature = self.log_temperature.exp()
        f = torch.nn.functional.conv2d(self.features[2](self.features[1](x)), score.weight / temperature,
                                       score.bias / temperature)
        n, k, h, w = f.shape
        p = torch.softmax(f.reshape(n, k, h * w), dim=-1)
        # Expected (x, y) as one product with the pixel grid (x varies along a row).
        grid = torch.stack([self.xs.repeat(h), self.ys.repeat_interleave(w)], dim=1)
        points = p @ grid
        return torch.cat([points[..., 0], points[..., 1]], dim=-1)

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """The per-frame stage: keypoints of ``(N, H, W, C)`` frames (standardised with ``keypoint_norm``)."""
        return self.norm(self.keypoints(frames))

    def pooled_frame_features(self, sums: torch.Tensor) -> torch.Tensor:
        """:meth:`frame_features` of frames given as their :func:`pooled_frame_sums` ``(N, H/d, W/d, C)``."""
        downsample = self.features[0].kernel_size if isinstance(self.features[0], nn.AvgPool2d) else 1
        return self.norm(self.keypoints_of_pooled(sums.permute(0, 3, 1, 2).float() / float(downsample ** 2)))

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, 2K)`` keypoints, or ``(N, h, 2K)`` of a history (oldest first) → ``(N, D)``."""
        if features.ndim == 2:
            return self.head(features)
        moves = (features[:, 1:] - features[:, :-1]) * KEYPOINT_MOTION_GAIN
        return self.head(torch.cat([features[:, -1:], moves], dim=1).flatten(1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.ndim == 4:
            return self.from_features(self.frame_features(obs))
        b, h = obs.shape[:2]
        return self.from_features(self.frame_features(obs.flatten(0, 1)).view(b, h, -1))


def pooled_frame_sums(frames: np.ndarray, downsample: int, chunk: int = 4096) -> np.ndarray:
    """``(N, H, W, C)`` uint8 → ``(N, H // d, W // d, C)`` uint16 sums of each d × d block (exact).

    Divided by d² in float32 they are bit for bit what ``AvgPool2d(d)`` makes of the frames
    (tested), so a keypoint encoder trained on a fixed dataset pools it here once: pooling a
    four-rooms batch's ~1,700 frames in every step cost ~100 ms at one thread, and at two threads
    a step went from 0.293 to 0.260 s without it."""
    n, height, width, channels = frames.shape
    h, w = height // downsample, width // downsample
    out = np.empty((n, h, w, channels), dtype=np.uint16)

    def pool(start: int) -> None:
        blocks = frames[start:start + chunk, :h * downsample, :w * downsample].reshape(-1, h, downsample, w, downsample,
                                                                                        channels)
        total = blocks[:, :, 0, :, 0].astype(np.uint16)
        for i in range(downsample):
            for j in range(downsample):
                if i or j:
                    total += blocks[:, :, i, :, j]
        out[start:start + chunk] = total

    # numpy releases the GIL in its loops: the chunks pool on every core (200k frames: a few seconds)
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool_threads:
        list(pool_threads.map(pool, range(0, n, chunk)))
    return out


def takes_pooled_frames(cfg: ModelConfig, obs_kind: str) -> bool:
    """Whether training feeds this encoder :func:`pooled_frame_sums` of its frames (keypoint encoders
    that pool) rather than the frames: the datamodule and the training step both ask here. Not with
    a decoder (the reconstruction baseline), whose target is the frame itself."""
    return obs_kind == "image" and cfg.image_encoder == "keypoints" and cfg.image_downsample > 1 and \
        255 * cfg.image_downsample ** 2 <= np.iinfo(np.uint16).max and not REGULARIZERS[cfg.regularizer].decoder


class GlimpseEncoder(KeypointEncoder):
    """Keypoints plus a glimpse: a ``glimpse_pixels`` window of the frame centred on the keypoints'
    mean, resampled at one sample per two pixels and read by a small CNN.

    Why: the keypoint encoder places the agent precisely but sees nothing else, which is enough in
    one fixed layout (the walls are the same in every frame, so the predictor learns them as a
    function of the position) and useless where the layout changes every episode. A whole-frame CNN
    sees the walls but, trained as a JEPA on generated mazes, put the maze in its latent and lost the
    agent (validation probe R² of the position −0.07 after an epoch). Dynamics only need the walls
    near the agent — a few cells within one step, within one jump of ``P_hi`` — so the latent gets
    exactly those: where the agent is (keypoints) and what surrounds it (the glimpse). The window
    moves with the keypoints, and the gradient reaches them through the resampling.
    """

    def __init__(self, obs_shape: tuple[int, ...], cfg: ModelConfig) -> None:
        super().__init__(obs_shape, cfg)
        height, width, channels = obs_shape[-3:]
        self.scale = min(1.0, cfg.glimpse_pixels / float(min(height, width)))
        self.samples = max(8, cfg.glimpse_pixels // 2)
        c = cfg.encoder_channels
        side = (self.samples + 1) // 2
        side = (side + 1) // 2
        self.glimpse_net = nn.Sequential(
            nn.Conv2d(channels, c, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(2 * c * side * side, cfg.glimpse_features))
        self.glimpse_dim = cfg.glimpse_features
        self.head = nn.Sequential(nn.Linear(self.frames * 2 * cfg.keypoints + cfg.glimpse_features, cfg.hidden_dim),
                                  nn.ReLU(), nn.Linear(cfg.hidden_dim, cfg.latent_dim))

    def glimpse(self, frames: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """``(N, H, W, C)`` uint8 frames, ``(N, 2)`` centres in [-1, 1] → ``(N, C, S, S)`` windows."""
        x = frames.permute(0, 3, 1, 2).float().mul(1.0 / 255.0).sub(0.5)
        n = len(x)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = self.scale
        theta[:, :, 2] = centre
        grid = torch.nn.functional.affine_grid(theta, [n, x.shape[1], self.samples, self.samples], align_corners=True)
        return torch.nn.functional.grid_sample(x, grid, align_corners=True, padding_mode="border")

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Per frame: standardised keypoints ``(N, 2K)`` and the glimpse's features ``(N, G)``, side by side."""
        points = self.keypoints(frames)
        k = points.shape[1] // 2
        centre = torch.stack([points[:, :k].mean(1), points[:, k:].mean(1)], dim=1)
        return torch.cat([self.norm(points), self.glimpse_net(self.glimpse(frames, centre))], dim=1)

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Keypoints of every frame of the history (and their changes), the glimpse of the current one."""
        if features.ndim == 2:
            return self.head(features)
        points, seen = features[..., :-self.glimpse_dim], features[:, -1, -self.glimpse_dim:]
        moves = (points[:, 1:] - points[:, :-1]) * KEYPOINT_MOTION_GAIN
        return self.head(torch.cat([torch.cat([points[:, -1:], moves], dim=1).flatten(1), seen], dim=1))


class StateEncoder(StackedInputEncoder):
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


IMAGE_ENCODERS: dict[str, Callable[[tuple[int, ...], ModelConfig], nn.Module]] = {
    "cnn": ImageEncoder,
    "keypoints": KeypointEncoder,
    "glimpse": GlimpseEncoder,
}
"""``[model] image_encoder`` → encoder class for image observations."""

ENCODERS: dict[str, Callable[[tuple[int, ...], ModelConfig], nn.Module]] = {
    "image": lambda shape, cfg: IMAGE_ENCODERS[cfg.image_encoder](shape, cfg),
    "state": StateEncoder,
}
"""Observation kind → encoder. ``obs_kind_of`` picks the kind from the observation array."""


def obs_kind_of(obs_shape: tuple[int, ...], dtype: str) -> str:
    """``image`` for ``(H, W, C)`` uint8 observations, ``state`` for flat vectors."""
    if len(obs_shape) == 3 and dtype == "uint8":
        return "image"
    if len(obs_shape) == 1:
        return "state"
    raise ValueError(f"unsupported observation shape {obs_shape} with dtype {dtype}")


def build_encoder(obs_kind: str, obs_shape: tuple[int, ...], cfg: ModelConfig) -> nn.Module:
    """The encoder for an observation kind; images use ``cfg.image_encoder`` (:data:`IMAGE_ENCODERS`)."""
    return ENCODERS[obs_kind](tuple(obs_shape), cfg)


def encode_sequences(encoder: nn.Module, sequences: list[torch.Tensor], history: int,
                     pooled: bool = False) -> list[torch.Tensor]:
    """Encode frame sequences ``(B_i, L_i + history - 1, *obs_shape)`` → latents ``(B_i, L_i, D)``.

    Latent ``j`` of a sequence reads frames ``j … j + history - 1`` (its history, oldest first), so
    callers pass ``history - 1`` frames before the first step they want (clamped at the episode
    start, as ``hplan/vocabulary/frames.py`` does). Why not stack histories and call the encoder:
    with ``h`` frames per history every frame would be encoded ``h`` times; here the per-frame
    stage (``frame_features``) runs once per frame and only the cheap ``from_features`` runs per
    history. All sequences go through one ``from_features`` call, so a batch-normalised encoder
    sees one batch, exactly as when the stacked histories were encoded together. ``pooled``: the
    frames are :func:`pooled_frame_sums` (see :func:`takes_pooled_frames`).
    """
    sizes = [(s.shape[0], s.shape[1]) for s in sequences]
    frames = torch.cat([s.flatten(0, 1) for s in sequences])
    features = encoder.pooled_frame_features(frames) if pooled else encoder.frame_features(frames)
    stacks, lengths = [], []
    for part, (b, n) in zip(features.split([b * n for b, n in sizes]), sizes):
        part = part.view(b, n, *part.shape[1:])
        length = n - history + 1
        if history > 1:
            part = part[:, torch.arange(length, device=part.device)[:, None] + torch.arange(history, device=part.device)]
        stacks.append(part.flatten(0, 1))
        lengths.append(length)
    z = encoder.from_features(torch.cat(stacks))
    return [chunk.view(b, length, -1) for chunk, (b, _), length in zip(z.split([b * l for (b, _), l in zip(sizes, lengths)]), sizes, lengths)]
