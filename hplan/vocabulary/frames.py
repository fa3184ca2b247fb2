"""Frame history: the encoder may see the last ``h`` observations instead of one.

Why: on PointRooms a single top-down frame shows where the point is but not how fast it moves,
and with inertia (friction 0.25) the next position depends on velocity. A latent of one frame
therefore cannot predict the next step exactly, and "will this step hit the wall?" — the
guardrail question — is ambiguous from it. Two frames carry the velocity (DINO-WM and video
JEPAs condition on a short history for the same reason). ``model.frame_history`` sets ``h``;
``h = 1`` is the plain single-frame model.

Convention everywhere: the stacked input is ``(..., h, *obs_shape)``, oldest frame first, and at
the start of an episode the missing past frames repeat the first one (a point at rest, which is
how every episode starts). A goal observation is encoded the same way: one frame, repeated.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping

import numpy as np
import torch


def gather_frames(obs: np.ndarray, episode: np.ndarray, step: np.ndarray, history: int) -> np.ndarray:
    """``obs (E, T, *shape)`` at broadcast indices ``(episode, step)`` with ``history`` frames.

    ``history == 1`` returns ``obs[episode, step]`` (no history axis); otherwise the result has a
    history axis after the index dims: frames ``step - h + 1 … step``, clamped at 0.
    """
    if history == 1:
        return obs[episode, step]
    offsets = np.arange(1 - history, 1)
    steps = np.maximum(np.asarray(step)[..., None] + offsets, 0)
    return obs[np.asarray(episode)[..., None], steps]


def sequence_frames(obs: np.ndarray, episode: np.ndarray, first: np.ndarray, length: int, history: int) -> np.ndarray:
    """Frames ``first - history + 1 … first + length - 1`` (clamped at 0) of episodes ``episode (B,)``;
    ``first`` is one start per episode or a single start for all.

    ``(B, length + history - 1, *shape)``: the input of ``encode_sequence`` for the ``length``
    steps from ``first`` — each frame once, where ``gather_frames`` would repeat it in every
    history it belongs to.
    """
    steps = np.maximum(np.asarray(first).reshape(-1, 1) + np.arange(1 - history, length), 0)
    return obs[np.asarray(episode)[:, None], steps]


def repeat_frame(obs: Any, history: int) -> Any:
    """One observation (array or tensor, or a dict of them) as a still history ``(h, *shape)``."""
    if history == 1:
        return obs
    if isinstance(obs, Mapping):
        return {key: repeat_frame(value, history) for key, value in obs.items()}
    if isinstance(obs, torch.Tensor):
        return obs.unsqueeze(0).expand(history, *obs.shape).clone()
    array = np.asarray(obs)
    return np.repeat(array[None], history, axis=0)


class FrameHistory:
    """The last ``h`` observations of an episode, for an agent whose model wants a history."""

    def __init__(self, history: int) -> None:
        self.history = int(history)
        self._frames: deque[Any] = deque(maxlen=self.history)

    def clear(self) -> None:
        self._frames.clear()

    def push(self, obs: Any) -> Any:
        """Add the newest observation; return the stacked history (the observation itself if ``h == 1``)."""
        if self.history == 1:
            return obs
        if not self._frames:
            self._frames.extend([obs] * (self.history - 1))
        self._frames.append(obs)
        return _stack(list(self._frames))


def _stack(frames: list[Any]) -> Any:
    first = frames[0]
    if isinstance(first, Mapping):
        return {key: _stack([f[key] for f in frames]) for key in first}
    return np.stack([np.asarray(f) for f in frames])
