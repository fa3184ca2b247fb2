"""Episode metrics, exactly as DESIGN.md defines them, as pure functions over tables.

Every function takes plain arrays (or the per-episode / per-step tables the suite runner writes)
and returns numbers; nothing here touches an environment or a model, so each definition can be
checked against hand-computed values. Undefined quantities (an AUROC with one class only, a
recovery time of an episode that never recovered) are ``nan``, never a made-up 0 or 1.

Definitions (the product's vocabulary):

* **success** — goal reached within tolerance within the step budget (per episode, from the env).
* **violation rate** — fraction of episodes with at least one real violation; **violations per
  1,000 steps** — violating steps (``info["cost"] == 1``) per 1,000 executed steps, pooled.
* **guardrail head quality** — see :mod:`hplan.metrics.scores`.
* **H50** — the largest start–goal separation (shortest-path steps on the true map) at which
  success is at least 50 %.
* **recovery** — after a perturbation at step ``t_p``: recovery rate (perturbed episodes that still
  succeed) and recovery time (steps until the geodesic distance to goal is back at its value just
  before ``t_p``).
* **surprise AUROC** — how well the z-scored latent prediction error flags impossible transitions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from hplan.metrics.scores import NAN, auroc


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
