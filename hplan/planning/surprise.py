"""Surprise: how unexpected the last transition was to the agent's own predictor.

The agent predicts ``ẑ_{t+1} = predict(z_t, a_t)`` and, once ``z_{t+1}`` is observed, scores the
error ``‖ẑ_{t+1} − z_{t+1}‖`` as a z-score against the running mean/std (Welford) of the errors
seen before it in the episode. A kidnap, a push or a dynamics jump shows up as a large z-score
without the agent ever reading ground truth.
"""

from __future__ import annotations

import math


class RunningZScore:
    """Z-score of each new value against the values before it (0 until two values were seen)."""

    def __init__(self, min_std: float = 1e-6) -> None:
        self.min_std = min_std
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count > 0 else 0.0

    def score(self, value: float) -> float:
        """Z-score of ``value`` against the history, then add it to the history."""
        value = float(value)
        z = 0.0
        if self.count >= 2 and math.isfinite(value):
            z = (value - self.mean) / max(self.std, self.min_std, 1e-3 * abs(self.mean))
        if math.isfinite(value):
            self.count += 1
            delta = value - self.mean
            self.mean += delta / self.count
            self.m2 += delta * (value - self.mean)
        return z
