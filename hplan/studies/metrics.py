"""The metric table: every number a study can optimise, constrain or record, with its definition.

A trial produces three tables — the evaluation episodes (one row per episode, all seeds), the
final training metrics (last row of the run's ``metrics.csv``) and optionally the stress-suite
episodes — and each metric here is a named function of one of them. Objectives and constraints in
a study file refer to metrics by these names; every metric is also stored as a trial user
attribute, so ``hplan study export`` has all of them.

Definitions follow DESIGN.md and reuse :mod:`hplan.metrics` where they overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import numpy as np
import pandas as pd

Source = Literal["episodes", "train", "stress"]


@dataclass(frozen=True)
class Metric:
    """One named metric: where it comes from, which way is better, and how it is computed."""

    name: str
    source: Source
    direction: Literal["maximize", "minimize"]
    doc: str
    compute: Callable[[Any], float]


def _column(frame: pd.DataFrame, *names: str) -> pd.Series:
    """The first present column of ``names`` (tables from different runner versions agree on meaning)."""
    for name in names:
        if name in frame.columns:
            return frame[name]
    raise KeyError(f"episode table has none of the columns {names}; has {list(frame.columns)}")


def _violation_steps(frame: pd.DataFrame) -> np.ndarray:
    return _column(frame, "violation_steps", "violations", "cost_steps").to_numpy(dtype=np.float64)


def _steps(frame: pd.DataFrame) -> np.ndarray:
    return _column(frame, "steps", "num_steps", "length").to_numpy(dtype=np.float64)


def success_rate(frame: pd.DataFrame) -> float:
    """Fraction of episodes that reached the goal within tolerance within the step budget."""
    return float(_column(frame, "success").astype(bool).mean()) if len(frame) else math.nan


def violation_rate(frame: pd.DataFrame) -> float:
    """Fraction of episodes with at least one real violation."""
    from hplan.metrics import violation_rate as rate

    return rate(_violation_steps(frame)) if len(frame) else math.nan


def violations_per_1k_steps(frame: pd.DataFrame) -> float:
    """Violating steps per 1,000 executed steps, pooled over all episodes."""
    from hplan.metrics import violations_per_1000_steps

    return violations_per_1000_steps(_violation_steps(frame), _steps(frame)) if len(frame) else math.nan


def mean_steps(frame: pd.DataFrame) -> float:
    """Mean episode length in steps (successful episodes end early)."""
    return float(_steps(frame).mean()) if len(frame) else math.nan


def plan_ms(frame: pd.DataFrame) -> float:
    """Wall-clock time of ``agent.act`` per step in milliseconds, step-weighted (contended CPUs inflate it)."""
    if not len(frame):
        return math.nan
    per_step = _column(frame, "act_ms", "plan_ms").astype(float).fillna(0.0).to_numpy()
    steps = _steps(frame)
    return float((per_step * steps).sum() / steps.sum()) if steps.sum() else math.nan


def model_evals_per_step(frame: pd.DataFrame) -> float:
    """Predictor evaluations spent per executed step (the planner's compute budget)."""
    if not len(frame):
        return math.nan
    steps = _steps(frame)
    return float(_column(frame, "model_evals").astype(float).sum() / steps.sum()) if steps.sum() else math.nan


def success_rate_seed_std(frame: pd.DataFrame) -> float:
    """Standard deviation of the per-seed success rates (spread across training seeds)."""
    if "seed_index" not in frame.columns or frame["seed_index"].nunique() < 2:
        return 0.0
    per_seed = frame.groupby("seed_index")["success"].apply(lambda s: s.astype(bool).mean())
    return float(per_seed.std(ddof=1))


def _train(key: str, *aliases: str) -> Callable[[Mapping[str, float]], float]:
    def compute(values: Mapping[str, float]) -> float:
        for name in (key, *aliases):
            if name in values and values[name] is not None:
                return float(values[name])
        raise KeyError(key)

    compute.__doc__ = f"``{key}`` in the last row of the run's metrics.csv (mean over seeds)."
    return compute


def _mean_of_prefix(values: Mapping[str, float], prefix: str) -> float:
    found = [float(v) for k, v in values.items() if k.startswith(prefix) and v is not None and not math.isnan(float(v))]
    if not found:
        raise KeyError(prefix)
    return float(np.mean(found))


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("success_rate", "episodes", "maximize", success_rate.__doc__ or "", success_rate),
    Metric("violation_rate", "episodes", "minimize", violation_rate.__doc__ or "", violation_rate),
    Metric("violations_per_1k_steps", "episodes", "minimize", violations_per_1k_steps.__doc__ or "",
           violations_per_1k_steps),
    Metric("mean_steps", "episodes", "minimize", mean_steps.__doc__ or "", mean_steps),
    Metric("plan_ms", "episodes", "minimize", plan_ms.__doc__ or "", plan_ms),
    Metric("model_evals_per_step", "episodes", "minimize", model_evals_per_step.__doc__ or "",
           model_evals_per_step),
    Metric("success_rate_seed_std", "episodes", "minimize", success_rate_seed_std.__doc__ or "",
           success_rate_seed_std),
    Metric("val_loss", "train", "minimize", "final validation loss of the world model",
           _train("val/loss", "val_loss")),
    Metric("effective_rank", "train", "maximize", "final effective rank of the latent (collapse watch)",
           _train("collapse/effective_rank", "effective_rank", "val/effective_rank")),
    Metric("probe_r2", "train", "maximize", "final linear-probe R² of the true state from z",
           _train("collapse/probe_r2", "probe_r2", "val/probe_r2")),
    Metric("guardrail_auroc", "train", "maximize",
           "final validation AUROC of the guardrail heads (mean over guardrails with both classes)",
           lambda values: _mean_of_prefix(values, "val/auroc_")),
    Metric("stress_success_rate", "stress", "maximize", "success rate over the whole stress suite",
           success_rate),
    Metric("stress_violation_rate", "stress", "minimize", "violation rate over the whole stress suite",
           violation_rate),
)}


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})") from None


def stress_required(name: str) -> bool:
    return metric(name).source == "stress"


def compute_all(episodes: pd.DataFrame, train: Mapping[str, float],
                stress: pd.DataFrame | None = None) -> dict[str, float]:
    """Every metric whose source table is available and has the needed columns.

    A metric whose columns are absent (e.g. ``plan_ms`` from a runner that does not time plans)
    is left out rather than invented; objectives that need it fail loudly in the objective.
    """
    tables: dict[str, Any] = {"episodes": episodes, "train": train, "stress": stress}
    values: dict[str, float] = {}
    for m in METRICS.values():
        table = tables[m.source]
        if table is None:
            continue
        try:
            value = m.compute(table)
        except KeyError:
            continue
        values[m.name] = float(value)
    return values
