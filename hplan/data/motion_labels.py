"""Weak labels for contact-like violations, read from unlabelled transitions.

A wall contact shows in the data as obstructed motion: the point ends short of where its velocity
and action would have carried it. A model of *free* motion that never sees where the agent is —
it maps the previous step's displacement and the action to this step's displacement — cannot
know about walls, so its residual is small on free steps and large on obstructed ones. Thresholded
on the labelled subset, that residual labels every unlabelled transition, and a guardrail head
trained on those weak labels sees the whole wall map instead of the ~200 contacts among 1,000
random labels.

Why not in the learned latent: the four-rooms keypoint latent places the point to about 0.1 cell,
while a contact cuts a step short by a median 0.08 cell; the same free-motion residual on the
keypoints ranks contacts at AUROC 0.62. On image observations the agent is therefore *tracked*:
one disc moving over a static background, located by background subtraction to 0.003 cell
(`agent_centroids`); there the residual ranks held-out contacts at AUROC 0.97.

Assumptions, stated because they limit where this applies: a static background with one moving
object (image observations), or a state vector whose change the action drives; episodes start at
rest; and a violation that stops motion (wall contact, not a restricted zone, which motion does
not reveal). ``[train] guardrail_weak_labels`` names the heads it is used for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

FREE_MOTION_HIDDEN = 128
"""Width of the free-motion MLP: (previous displacement, action) -> displacement is a smooth map."""

CAUCHY_SCALE = 1e-3
"""Squared residual (in units of the displacement's std) where the robust loss turns flat: free
steps fit to well under this, obstructed ones lie far above and barely pull the fit."""


def agent_centroids(frames: np.ndarray, chunk: int = 256) -> np.ndarray:
    """``(E, T, H, W, 3)`` uint8 frames → ``(E, T, 2)`` sub-pixel (col, row) of the one moving object.

    The background is the per-pixel median of a sample of frames (the object covers a few pixels of
    each, so it never wins the median); the object's colour is the mean of each frame's most changed
    pixel; a pixel's coverage is its distance from the background over the object's, clipped to
    [0, 1], so an anti-aliased rim contributes its fraction. The coverage-weighted centroid follows
    the object continuously, also where it overlaps background of another colour (a wall). Only the
    pixels that differ from the background are visited (a few dozen a frame): 200k four-rooms frames
    take seconds rather than the half-minute of whole-frame arithmetic.
    """
    episodes, steps, height, width, channels = frames.shape
    flat = frames.reshape(-1, height * width, channels)
    stride = max(1, len(flat) // 4096)
    sample = flat[::stride]
    background = np.median(sample, axis=0).astype(np.uint8)
    change = np.abs(sample.astype(np.int16) - background).sum(-1)
    colour = sample[np.arange(len(sample)), change.argmax(1)].astype(np.float64).mean(0)
    contrast = np.maximum(np.linalg.norm(colour - background, axis=-1), 1e-3)
    col_of, row_of = np.arange(height * width) % width + 0.5, np.arange(height * width) // width + 0.5
    out = np.full((len(flat), 2), np.nan)
    for start in range(0, len(flat), chunk):
        part = flat[start:start + chunk]
        frame, pixel = np.nonzero((part != background).any(-1))
        cover = np.clip(np.linalg.norm(part[frame, pixel].astype(np.float64) - background[pixel], axis=-1)
                        / contrast[pixel], 0.0, 1.0)
        mass = np.bincount(frame, cover, minlength=len(part))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + chunk, 0] = np.bincount(frame, cover * col_of[pixel], minlength=len(part)) / mass
            out[start:start + chunk, 1] = np.bincount(frame, cover * row_of[pixel], minlength=len(part)) / mass
    return out.reshape(episodes, steps, 2)


def tracked_signal_dim(obs_shape: tuple[int, ...]) -> int:
    """Width of :func:`tracked_signal` for observations of ``obs_shape`` (a ValueError for shapes it cannot track)."""
    if len(obs_shape) == 5:
        return 2
    if len(obs_shape) == 3:
        return int(obs_shape[-1])
    raise ValueError(f"weak motion labels need image (E, T, H, W, C) or state (E, T, D) observations, got shape {obs_shape}")


def tracked_signal(obs: np.ndarray) -> np.ndarray:
    """What the free-motion model follows: the agent's centroid for images ``(E, T, H, W, C)``,
    the state vector itself for ``(E, T, D)`` state observations."""
    tracked_signal_dim(obs.shape)
    return agent_centroids(obs) if obs.ndim == 5 else obs.astype(np.float64)


@dataclass(frozen=True)
class FreeMotionFit:
    """Settings of the free-motion fit (the defaults were measured on four rooms)."""

    steps: int = 2000
    batch: int = 1024
    lr: float = 1e-3


def free_motion_net(signal_dim: int, action_dim: int, seed: int) -> nn.Module:
    """The free-motion MLP, initialised from ``seed`` without touching the caller's RNG.

    Separate from the fit so a caller that runs the fit on another thread can draw the initial
    weights on its own: the global RNG is shared by every thread, and forking it there would rewind
    whatever the other threads drew meanwhile."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(signal_dim + action_dim, FREE_MOTION_HIDDEN), nn.ReLU(),
                             nn.Linear(FREE_MOTION_HIDDEN, FREE_MOTION_HIDDEN), nn.ReLU(),
                             nn.Linear(FREE_MOTION_HIDDEN, signal_dim))


def free_motion_residuals(signal: np.ndarray, action: np.ndarray, valid: np.ndarray, seed: int,
                          fit: FreeMotionFit = FreeMotionFit(), net: nn.Module | None = None) -> np.ndarray:
    """``(E, T)`` residual of each transition under a position-free motion model (NaN where invalid).

    ``signal (E, T + 1, S)`` is :func:`tracked_signal`, ``action (E, T, A)``, ``valid (E, T)``. The
    model sees the previous displacement (zero at an episode's first step: episodes start at rest)
    and the action, never the position itself, and is fitted with a Cauchy loss so the obstructed
    minority does not bend it. ``net``: the :func:`free_motion_net` of ``seed``, drawn by the caller
    (default: drawn here).
    """
    signal = np.asarray(signal, dtype=np.float64)
    move = signal[:, 1:] - signal[:, :-1]
    previous = np.concatenate([np.zeros_like(move[:, :1]), move[:, :-1]], axis=1)
    # A frame where the tracker found nothing (NaN) cannot be scored or fitted.
    mask = np.asarray(valid, dtype=bool) & np.isfinite(move).all(-1) & np.isfinite(previous).all(-1)
    if not mask.any():
        return np.full(mask.shape, np.nan, dtype=np.float32)
    scale = move[mask].std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    inputs = torch.from_numpy(np.nan_to_num(np.concatenate([previous / scale, action], axis=-1)).astype(np.float32))
    target = torch.from_numpy(np.nan_to_num(move / scale).astype(np.float32))
    rows = torch.from_numpy(np.flatnonzero(mask.reshape(-1)))
    flat_in, flat_target = inputs.reshape(-1, inputs.shape[-1]), target.reshape(-1, target.shape[-1])
    gen = torch.Generator().manual_seed(seed)
    net = net if net is not None else free_motion_net(flat_target.shape[1], action.shape[-1], seed)
    optim = torch.optim.Adam(net.parameters(), lr=fit.lr)
    with torch.enable_grad():
        for _ in range(fit.steps):
            pick = rows[torch.randint(len(rows), (min(fit.batch, len(rows)),), generator=gen)]
            err = (net(flat_in[pick]) - flat_target[pick]).pow(2).sum(1)
            loss = torch.log1p(err / CAUCHY_SCALE).mean()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
    with torch.no_grad():
        residual = torch.cat([(net(part) - tgt).norm(dim=1) for part, tgt in
                              zip(flat_in.split(65536), flat_target.split(65536))]).numpy()
    residual = residual.reshape(mask.shape).astype(np.float32)
    residual[~mask] = np.nan
    return residual


def balanced_threshold(residual: np.ndarray, labels: np.ndarray) -> float:
    """The residual threshold whose weak labels best match ``labels`` (balanced accuracy).

    Candidates are residual quantiles; with no positive or no negative label the median is returned
    (there is nothing to match, and a weak label then follows the data's own split).
    """
    residual, labels = np.asarray(residual, dtype=np.float64), np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return float(np.median(residual))
    candidates = np.quantile(residual, np.linspace(0.02, 0.98, 97))
    above = residual[None, :] > candidates[:, None]
    score = (above & labels).sum(1) / labels.sum() + (~above & ~labels).sum(1) / (~labels).sum()
    return float(candidates[int(score.argmax())])
