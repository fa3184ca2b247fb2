"""Aggregate metrics over an episodes table, with the definitions the product documents.

* ``success_rate``: fraction of episodes whose last step reached the goal within tolerance.
* ``violation_rate``: fraction of episodes with at least one real violation.
* ``violations_per_1000_steps``: violating steps per 1,000 steps taken, over all episodes.
* ``ms_per_step``: wall time of ``agent.act`` per step (encode + plan), averaged over all steps
  of all episodes (step-weighted, so long episodes count for what they cost).
* ``cpu_ms_per_step``: the same with the calling thread's CPU time (robust to a busy machine when
  torch runs on one thread; it does not include GPU time or other torch threads).
* ``model_evals_per_step``: predictor evaluations per step (the planners' compute budget).
* ``distance_evals_per_step``, ``guardrail_evals_per_step``: rows the distance and guardrail heads
  scored per step; ``heads_ms_per_step``, ``graph_ms_per_step``: their time and the landmark
  graph's (shortest paths, route look-ups) per step. All three include building the agent (its
  landmark graph) once per episode, so they are parts of ``total_ms_per_step``;
  ``setup_ms_per_step``: that build's wall time spread over the episode's steps, *not* inside
  ``ms_per_step`` (the wall time of ``agent.act``); ``total_ms_per_step`` = ``ms_per_step`` + it.
* ``<name>_rate``, ``<name>_per_1000_steps``: the two violation figures for one guardrail alone.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.table import Table

COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (key, heading, format)
    ("episodes", "episodes", "{:d}"),
    ("success_rate", "success", "{:.0%}"),
    ("mean_steps", "mean steps", "{:.1f}"),
    ("violation_rate", "violation rate", "{:.0%}"),
    ("violations_per_1000_steps", "viol./1k steps", "{:.1f}"),
    ("ms_per_step", "plan ms/step", "{:.1f}"),
    ("cpu_ms_per_step", "cpu ms/step", "{:.1f}"),
    ("model_evals_per_step", "evals/step", "{:.0f}"),
)


def summarize(frame: pd.DataFrame) -> dict[str, Any]:
    """Aggregate one run's episodes table (columns as written by ``episode_row``)."""
    if frame.empty:
        raise ValueError("cannot summarise an empty episodes table")
    steps = frame["steps"].astype(float)
    total_steps = float(steps.sum())
    weighted_ms = float((frame["act_ms"].fillna(0.0) * steps).sum())
    return {
        "episodes": int(len(frame)),
        "success_rate": float(frame["success"].mean()),
        "mean_steps": float(steps.mean()),
        "violation_rate": float(frame["violation"].mean()),
        "violations_per_1000_steps": 1000.0 * float(frame["violations"].sum()) / total_steps if total_steps else 0.0,
        "ms_per_step": weighted_ms / total_steps if total_steps else math.nan,
        "cpu_ms_per_step": _weighted(frame, "act_cpu_ms", steps),
        "model_evals_per_step": float(frame["model_evals"].sum()) / total_steps if total_steps else math.nan,
        **_compute_per_step(frame, total_steps, weighted_ms),
        **_per_guardrail(frame, total_steps),
    }


def _compute_per_step(frame: pd.DataFrame, total_steps: float, act_ms: float) -> dict[str, float]:
    """Head rows, head / graph / setup time per step (NaN when the table predates them)."""
    if "distance_evals" not in frame or not total_steps:
        return {}

    def per_step(*columns: str) -> float:
        return float(sum(frame[c].astype(float).sum() for c in columns)) / total_steps

    return {"distance_evals_per_step": per_step("distance_evals"),
            "guardrail_evals_per_step": per_step("guardrail_evals"),
            "heads_ms_per_step": per_step("distance_ms", "guardrail_ms"),
            "graph_ms_per_step": per_step("graph_ms"),
            "setup_ms_per_step": per_step("setup_ms"),
            "total_ms_per_step": (act_ms + float(frame["setup_ms"].astype(float).sum())) / total_steps}


def _per_guardrail(frame: pd.DataFrame, total_steps: float) -> dict[str, float]:
    """``<name>_rate`` and ``<name>_per_1000_steps`` for every ``violations_<name>`` column: one
    guardrail's figures (restricted zones, say) are not drowned by another's (wall contact)."""
    out: dict[str, float] = {}
    for column in sorted(c for c in frame.columns if c.startswith("violations_")):
        name, counts = column[len("violations_"):], frame[column].astype(float)
        out[f"{name}_rate"] = float((counts > 0).mean())
        out[f"{name}_per_1000_steps"] = 1000.0 * float(counts.sum()) / total_steps if total_steps else 0.0
    return out


def _weighted(frame: pd.DataFrame, column: str, steps: pd.Series) -> float:
    """Step-weighted mean of a per-episode mean, over the episodes that have it (NaN if none)."""
    if column not in frame:
        return math.nan
    known = frame[column].notna()
    weight = float(steps[known].sum())
    return float((frame.loc[known, column] * steps[known]).sum()) / weight if weight else math.nan


def summary_table(summaries: list[tuple[str, dict[str, Any]]], title: str = "") -> Table:
    """A rich table, one row per labelled summary."""
    table = Table(title=title or None)
    table.add_column("run")
    for _, heading, _ in COLUMNS:
        table.add_column(heading, justify="right")
    for label, summary in summaries:
        table.add_row(label, *(_fmt(fmt, summary.get(key)) for key, _, fmt in COLUMNS))
    return table


def _fmt(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value)
