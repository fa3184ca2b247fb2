"""Scores of predictions against what happened: ranks, AUROC, ROC curves, false-negative rates,
reliability and calibration error (guardrail heads, surprise), Spearman (the distance head).

One home for every such definition: training diagnostics, held-out evaluation, the stress suite
and studies all compute them here. Undefined quantities (an AUROC with one class only) are ``nan``,
never a made-up 0 or 1.

* **guardrail head quality** — per step, the predicted violation probability against what
  happened: AUROC (ties count one half), false-negative rate at the planner's threshold (a
  violation the planner would have called safe: ``p <= threshold``, because the planner treats
  ``p > threshold`` as unsafe), expected calibration error over equal-width bins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

NAN = float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), 1-based."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    bounds = np.flatnonzero(np.diff(sorted_x)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(x)]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation; NaN for constant inputs."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64).ravel()), _ranks(np.asarray(b, dtype=np.float64).ravel())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _as_arrays(scores: Sequence[float] | np.ndarray,
               labels: Sequence[bool] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).astype(bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    keep = np.isfinite(s)
    return s[keep], y[keep]


def auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative).

    Computed as the Mann–Whitney U statistic with average ranks, so a tie between a positive and a
    negative counts one half. ``nan`` when either class is empty (the area is undefined). Steps
    without a prediction (``nan`` score) are left out.
    """
    s, y = _as_arrays(scores, labels)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return NAN
    ranks = _ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores: Sequence[float] | np.ndarray,
              labels: Sequence[bool] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (for plotting), from (0,0) to (1,1)."""
    s, y = _as_arrays(scores, labels)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]) * NAN
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def false_negative_rate(probs: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray,
                        threshold: float) -> float:
    """Fraction of real violations the planner would have let through: ``p <= threshold``.

    The planner calls a candidate unsafe when its probability is *above* the threshold
    (``GuardrailConfig.threshold``), so a violation predicted at exactly the threshold is missed.
    ``nan`` when no violation happened.
    """
    p, y = _as_arrays(probs, labels)
    if not y.any():
        return NAN
    return float(np.mean(p[y] <= threshold))


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data: per equal-width probability bin, mean prediction and frequency."""

    edges: np.ndarray
    mean_prob: np.ndarray
    frequency: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: count-weighted mean |frequency − mean prediction|."""
        total = self.count.sum()
        if total == 0:
            return NAN
        used = self.count > 0
        gaps = np.abs(self.frequency[used] - self.mean_prob[used])
        return float((gaps * self.count[used]).sum() / total)


def reliability(probs: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray,
                bins: int = 10) -> Reliability:
    """Bin predictions into ``bins`` equal-width bins on [0, 1]; bin i is [i/b, (i+1)/b), the last closed."""
    if bins < 1:
        raise ValueError("bins must be >= 1")
    p, y = _as_arrays(probs, labels)
    p = np.clip(p, 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.int64)
    sum_p = np.bincount(index, weights=p, minlength=bins)
    sum_y = np.bincount(index, weights=y.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.where(count > 0, sum_p / np.maximum(count, 1), NAN)
        frequency = np.where(count > 0, sum_y / np.maximum(count, 1), NAN)
    return Reliability(edges=edges, mean_prob=mean_prob, frequency=frequency, count=count)


def expected_calibration_error(probs: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray,
                               bins: int = 10) -> float:
    """ECE over ``bins`` equal-width bins (see :func:`reliability`); ``nan`` with no predictions."""
    return reliability(probs, labels, bins).ece


def guardrail_quality(probs: Sequence[float] | np.ndarray, labels: Sequence[bool] | np.ndarray,
                      threshold: float, bins: int = 10) -> dict[str, float]:
    """AUROC, false-negative rate at ``threshold`` and ECE of one guardrail head, plus counts."""
    p, y = _as_arrays(probs, labels)
    return {
        "auroc": auroc(p, y),
        "fnr": false_negative_rate(p, y, threshold),
        "ece": expected_calibration_error(p, y, bins),
        "n": float(p.size),
        "positives": float(y.sum()),
    }
