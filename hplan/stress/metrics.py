"""Stress-suite metrics, exactly as DESIGN.md defines them, as pure functions over tables.

Every function takes plain arrays (or the per-episode / per-step tables the suite runner writes)
and returns numbers; nothing here touches an environment or a model, so each definition can be
checked against hand-computed values. Undefined quantities (an AUROC with one class only, a
recovery time of an episode that never recovered) are ``nan``, never a made-up 0 or 1.

Definitions (the product's vocabulary):

* **success** — goal reached within tolerance within the step budget (per episode, from the env).
* **violation rate** — fraction of episodes with at least one real violation; **violations per
  1,000 steps** — violating steps (``info["cost"] == 1``) per 1,000 executed steps, pooled.
* **guardrail head quality** — per step, the predicted violation probability against what
  happened: AUROC (ties count one half), false-negative rate at the planner's threshold (a
  violation the planner would have called safe: ``p <= threshold``, because the planner treats
  ``p > threshold`` as unsafe), expected calibration error over equal-width bins.
* **H50** — the largest start–goal separation (shortest-path steps on the true map) at which
  success is at least 50 %.
* **recovery** — after a perturbation at step ``t_p``: recovery rate (perturbed episodes that still
  succeed) and recovery time (steps until the geodesic distance to goal is back at its value just
  before ``t_p``).
* **surprise AUROC** — how well the z-scored latent prediction error flags impossible transitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

NAN = float("nan")


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
    ranks = pd.Series(s).rank(method="average").to_numpy()
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


# ----------------------------------------------------------------------------------- violations

def violation_rate(episode_violations: Sequence[int] | np.ndarray) -> float:
    """Fraction of episodes with at least one real violation (input: violating steps per episode)."""
    v = np.asarray(episode_violations, dtype=np.float64)
    if v.size == 0:
        return NAN
    return float(np.mean(v > 0))


def violations_per_1000_steps(episode_violations: Sequence[int] | np.ndarray,
                              episode_steps: Sequence[int] | np.ndarray) -> float:
    """Violating steps per 1,000 executed steps, pooled over episodes (not a mean of ratios)."""
    v = np.asarray(episode_violations, dtype=np.float64)
    n = np.asarray(episode_steps, dtype=np.float64)
    total = n.sum()
    if total <= 0:
        return NAN
    return float(1000.0 * v.sum() / total)


# ---------------------------------------------------------------------------------------- H50

def success_by_separation(separation: Sequence[float] | np.ndarray, success: Sequence[bool] | np.ndarray,
                          edges: Sequence[float]) -> pd.DataFrame:
    """Success rate per separation bin ``(edges[i], edges[i+1]]``; columns lo, hi, episodes, success."""
    sep = np.asarray(separation, dtype=np.float64)
    ok = np.asarray(success).astype(bool)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("separation bin edges must be a strictly increasing list of at least two values")
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (sep > lo) & (sep <= hi)
        count = int(inside.sum())
        rows.append({"lo": lo, "hi": hi, "episodes": count,
                     "success": float(ok[inside].mean()) if count else NAN})
    return pd.DataFrame(rows)


def h50(separation: Sequence[float] | np.ndarray, success: Sequence[bool] | np.ndarray,
        edges: Sequence[float], min_episodes: int = 1) -> float:
    """Largest separation (the upper edge of a bin, in shortest-path steps) with success >= 50 %.

    Bins with fewer than ``min_episodes`` episodes carry no evidence and are skipped. The largest
    qualifying bin counts even if a shorter bin failed (the definition asks for the largest
    separation, not the first failure). 0 when no bin reaches 50 %; ``nan`` when no bin has data.
    """
    table = success_by_separation(separation, success, edges)
    table = table[table["episodes"] >= max(1, min_episodes)]
    if table.empty:
        return NAN
    good = table[table["success"] >= 0.5]
    return float(good["hi"].max()) if not good.empty else 0.0


# ----------------------------------------------------------------------------------- recovery

def recovery_time(distance: Sequence[float] | np.ndarray, onset: int,
                  reset_distance: float | None = None) -> float:
    """Steps from a perturbation at step ``onset`` until the goal distance is back to its pre-onset value.

    ``distance[t]`` is the geodesic distance to goal *after* step ``t`` (0-based); the value just
    before the perturbation is ``distance[onset - 1]`` (or ``reset_distance`` when ``onset == 0``).
    The answer is ``t* - onset + 1`` for the first ``t* >= onset`` with ``distance[t*] <= d_before``,
    i.e. the number of steps executed from the perturbed step up to and including the recovered
    one; ``nan`` if it never happens within the episode (or there was no perturbation).
    """
    d = np.asarray(distance, dtype=np.float64)
    if onset < 0 or onset >= d.size:
        return NAN
    if onset == 0:
        if reset_distance is None:
            return NAN
        before = float(reset_distance)
    else:
        before = float(d[onset - 1])
    back = np.nonzero(d[onset:] <= before + 1e-9)[0]
    return float(back[0] + 1) if back.size else NAN


def recovery_summary(episodes: pd.DataFrame) -> dict[str, float]:
    """Recovery rate and recovery-time statistics over perturbed episodes.

    Expects columns ``perturbation_onset`` (-1: none), ``success`` and ``recovery_time``.
    """
    perturbed = episodes[episodes["perturbation_onset"] >= 0]
    if perturbed.empty:
        return {"perturbed": 0.0, "recovery_rate": NAN, "recovery_time_median": NAN,
                "recovered_fraction": NAN}
    times = perturbed["recovery_time"].to_numpy(dtype=np.float64)
    finite = times[np.isfinite(times)]
    return {
        "perturbed": float(len(perturbed)),
        "recovery_rate": float(perturbed["success"].astype(bool).mean()),
        "recovery_time_median": float(np.median(finite)) if finite.size else NAN,
        "recovered_fraction": float(finite.size / len(perturbed)),
    }


# ----------------------------------------------------------------------------------- surprise

def surprise_labels(impossible: Sequence[bool] | np.ndarray) -> np.ndarray:
    """Align "this step's transition was impossible" with the surprise the agent reports next.

    ``PlanInfo.surprise`` returned by ``act(obs_t)`` scores the transition that *produced* ``obs_t``,
    i.e. the one executed at step ``t - 1``. So the label for the surprise at step ``t`` is
    ``impossible[t - 1]``; step 0 has no previous transition (label False).
    """
    imp = np.asarray(impossible).astype(bool)
    out = np.zeros_like(imp)
    out[1:] = imp[:-1]
    return out


def surprise_auroc(steps: pd.DataFrame) -> float:
    """AUROC of ``surprise`` for flagging impossible transitions, within episodes (see :func:`surprise_labels`).

    Expects per-step columns ``episode`` (any hashable id), ``t``, ``surprise``, ``impossible``.
    """
    if steps.empty:
        return NAN
    ordered = steps.sort_values(["episode", "t"], kind="mergesort")
    labels = np.concatenate([surprise_labels(g["impossible"].to_numpy())
                             for _, g in ordered.groupby("episode", sort=False)])
    scores = np.concatenate([g["surprise"].to_numpy(dtype=np.float64)
                             for _, g in ordered.groupby("episode", sort=False)])
    return auroc(scores, labels)
