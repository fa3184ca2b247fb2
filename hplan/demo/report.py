"""The demo's ``report.html`` and the figures it shares with the repository's results page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from hplan.config import ScenarioConfig  # noqa: E402
from hplan.htmlreport import Section, figure_html, paragraph, table_html, write_report  # noqa: E402

EVAL_COLUMNS = ("run", "episodes", "success_rate", "mean_steps", "violation_rate", "violations_per_1000_steps",
                "ms_per_step", "model_evals_per_step")
_TRAINING_CURVES = (("loss", ("train/loss", "val/loss")), ("effective rank", ("val/effective_rank",)),
                    ("linear-probe R²", ("val/probe_r2",)))


def write_demo_report(out: Path, config: ScenarioConfig, run_dir: Path, evaluation: pd.DataFrame,
                      stress_summary: pd.DataFrame | None, seconds: dict[str, float]) -> Path:
    sections = [
        Section("Planning: flat vs hierarchical, guardrails off vs on",
                table_html(evaluation[[c for c in EVAL_COLUMNS if c in evaluation]])
                + figure_html(evaluation_figure(evaluation), "success, violations and planning time")),
        Section("Episodes on the map", _episodes_section(config, evaluation)),
        Section("World model training", _training_section(run_dir)),
    ]
    if stress_summary is not None:
        stress_report = out / "stress" / "report.html"
        link = (f'<p>Full safety report: <a href="stress/report.html">stress/report.html</a></p>'
                if stress_report.exists() else "")
        sections.append(Section("Stress suite (smoke)", table_html(stress_summary) + link))
    sections.append(Section("Timings", table_html(pd.DataFrame(
        [{"stage": k, "seconds": v} for k, v in seconds.items()]))))
    subtitle = (f"scenario {config.name} ({config.description}); seed {config.seed}; "
                f"generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    return write_report(out / "report.html", "hplan demo", sections, subtitle)


def evaluation_figure(evaluation: pd.DataFrame) -> Any:
    """Bars of success rate, violation rate and planning time per planner configuration."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    labels = evaluation["run"].tolist()
    colours = ["#9bb" if "flat" in label else "#36a" for label in labels]
    for ax, (column, title) in zip(axes, (("success_rate", "success rate"), ("violation_rate", "violation rate"),
                                          ("ms_per_step", "planning ms / step"))):
        ax.bar(range(len(labels)), evaluation[column], color=colours)
        ax.set_xticks(range(len(labels)), labels, rotation=25, ha="right", fontsize=8)
        ax.set_title(title)
        if column != "ms_per_step":
            ax.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def training_figure(metrics: pd.DataFrame) -> Any | None:
    """Loss, effective rank and probe R² per epoch (None when the columns are absent)."""
    panels = [(title, [c for c in cols if c in metrics]) for title, cols in _TRAINING_CURVES]
    panels = [(t, c) for t, c in panels if c]
    if not panels or "epoch" not in metrics:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (title, cols) in zip(axes[0], panels):
        for col in cols:
            ax.plot(metrics["epoch"], metrics[col], marker="o", label=col)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if title == "loss" and (metrics[cols] > 0).all().all():
            ax.set_yscale("log")  # the first epoch's spike would flatten every later one
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _episodes_section(config: ScenarioConfig, evaluation: pd.DataFrame) -> str:
    """Trajectories per planner configuration on the map, and success against start–goal distance."""
    from hplan.demo.trajectories import MAX_EPISODES_DRAWN, separation_figure, trajectory_figure

    if "log_dir" not in evaluation:
        return paragraph("no episode logs to draw", "note")
    runs = [(row["run"], Path(row["log_dir"])) for row in evaluation.to_dict("records")]
    parts = []
    fig = trajectory_figure(config, runs)
    if fig is not None:
        parts.append(paragraph(f"Up to {MAX_EPISODES_DRAWN} episodes per panel: green paths reached the goal (star), "
                               "red did not; crosses mark steps with a real violation (wall contact, restricted "
                               "zone: orange cells)."))
        parts.append(figure_html(fig, "trajectories on the map"))
    fig = separation_figure(runs)
    if fig is not None:
        parts.append(figure_html(fig, "success against start-goal separation"))
    return "".join(parts) or paragraph(f"{config.env.id} has no map to draw episodes on", "note")


def _training_section(run_dir: Path) -> str:
    metrics_path = run_dir / "metrics.csv"
    if not metrics_path.exists():
        return paragraph(f"{metrics_path} not found", "note")
    metrics = pd.read_csv(metrics_path)
    fig = training_figure(metrics)
    if fig is None:
        return paragraph("metrics.csv has no per-epoch curves", "note")
    last = metrics.tail(1).T.reset_index()
    last.columns = ["metric", "last epoch"]
    return figure_html(fig, "training curves") + table_html(last)
