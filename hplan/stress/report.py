"""``report.html``: one self-contained page for a safety reviewer (PNG plots embedded as base64).

Order is the order of a review: the pass/fail table first, then what broke where — violation rate
and success against severity per shift, guardrail ROC and reliability nominal vs shifted, H50 per
shift, recovery-time distributions — and the full summary table last. No external files, scripts
or fonts, so the page can be attached to a ticket or archived as is.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hplan.htmlreport import figure_html
from hplan.io import write_text
from hplan import metrics as m
from hplan.stress.summary import SuiteOutcome, guardrail_samples, verdict_table
from hplan.stress.suite import SuiteConfig

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
.PASS{background:#d8f5d8;font-weight:bold}.FAIL{background:#f8d0d0;font-weight:bold}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:13px}
"""


def _png(fig) -> str:
    fig.tight_layout()
    return figure_html(fig, dpi=90)


def _grid(n: int, width: float = 3.2, height: float = 2.6):
    import matplotlib.pyplot as plt

    cols = min(4, max(1, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes.ravel()


def with_baseline(summary: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """Per scenario × shift, its rows plus the nominal (shift none, severity 0) row as severity 0
    when the shift has none of its own — every curve starts from the same nominal point."""
    groups = []
    for (scenario, shift), group in summary.groupby(["scenario", "shift"], sort=False):
        if shift == "none":
            continue
        if not (group["severity"] == 0).any():
            base = summary[(summary["scenario"] == scenario) & (summary["shift"] == "none") & (summary["severity"] == 0)]
            group = pd.concat([base.assign(shift=shift), group])
        groups.append(((scenario, shift), group.sort_values("severity")))
    if not groups:  # a suite of the nominal world only
        groups = [((s, "none"), g) for s, g in summary.groupby("scenario", sort=False)]
    return groups


def severity_plots(summary: pd.DataFrame) -> str:
    """Per scenario × shift: success and violation rate against severity (severity 0 = nominal)."""
    if summary.empty:
        return "<p>No results.</p>"
    groups = with_baseline(summary)
    fig, axes = _grid(len(groups))
    for ax, ((scenario, shift), group) in zip(axes, groups):
        ax.plot(group["severity"], group["success_rate"], "o-", label="success", color="tab:green")
        ax.plot(group["severity"], group["violation_rate"], "s-", label="violation rate", color="tab:red")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xticks(sorted(group["severity"].unique()))
        ax.set_title(f"{shift}" if summary["scenario"].nunique() == 1 else f"{scenario}: {shift}", fontsize=10)
        ax.set_xlabel("severity")
    axes[0].legend(fontsize=8)
    return _png(fig)


def guardrail_plots(steps: pd.DataFrame, suite: SuiteConfig, threshold_by_scenario: dict[str, float]) -> str:
    """ROC and reliability diagram of the guardrail heads, nominal (severity 0) vs shifted (> 0)."""
    import matplotlib.pyplot as plt

    if steps.empty or not any(c.startswith("p:") for c in steps.columns):
        return "<p>No guardrail predictions were recorded (the model has no guardrail heads).</p>"
    parts = []
    for scenario, scen_steps in steps.groupby("scenario", sort=False):
        fig, (roc_ax, rel_ax) = plt.subplots(1, 2, figsize=(9, 3.8))
        for label, subset, color in (("nominal", scen_steps[scen_steps["severity"] == 0], "tab:blue"),
                                     ("shifted", scen_steps[scen_steps["severity"] > 0], "tab:orange")):
            probs, labels = guardrail_samples(subset, "y")
            if probs.size == 0:
                continue
            fpr, tpr = m.roc_curve(probs, labels)
            auc = m.auroc(probs, labels)
            if np.all(np.isfinite(tpr)):
                roc_ax.plot(fpr, tpr, color=color, label=f"{label} (AUROC {auc:.2f}, n={probs.size}, pos={int(labels.sum())})")
            else:
                roc_ax.plot([], [], color=color, label=f"{label}: AUROC undefined ({int(labels.sum())} violations "
                                                      f"in {probs.size} predictions)")
            rel = m.reliability(probs, labels, suite.guardrail_eval.bins)
            used = rel.count > 0
            rel_ax.plot(rel.mean_prob[used], rel.frequency[used], "o-", color=color, label=f"{label} (ECE {rel.ece:.3f})")
        roc_ax.plot([0, 1], [0, 1], ":", color="grey")
        roc_ax.set_xlabel("false-positive rate")
        roc_ax.set_ylabel("true-positive rate")
        roc_ax.set_title(f"{scenario}: guardrail ROC (all heads, real outcome)", fontsize=10)
        roc_ax.legend(fontsize=7, loc="lower right")
        rel_ax.plot([0, 1], [0, 1], ":", color="grey")
        rel_ax.axvline(threshold_by_scenario.get(scenario, 0.5), color="grey", lw=0.8, ls="--")
        rel_ax.set_xlabel("predicted violation probability")
        rel_ax.set_ylabel("observed violation frequency")
        rel_ax.set_title("reliability (dashed: planner threshold)", fontsize=10)
        rel_ax.legend(fontsize=7, loc="upper left")
        parts.append(_png(fig))
    return "\n".join(parts)


def h50_plot(summary: pd.DataFrame) -> str:
    data = summary[np.isfinite(summary["h50"].astype(float))] if "h50" in summary else summary.iloc[0:0]
    if data.empty:
        return "<p>No H50 sweep in this suite (environment without a map, or disabled).</p>"
    import matplotlib.pyplot as plt

    data = pd.concat([g for _, g in with_baseline(data)])
    pivot = data.pivot_table(index=["scenario", "shift"], columns="severity", values="h50", sort=False)
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(pivot)), 3.5))
    width = 0.8 / max(1, pivot.shape[1])
    x = np.arange(len(pivot))
    for i, severity in enumerate(pivot.columns):
        ax.bar(x + i * width, pivot[severity].to_numpy(), width, label=f"severity {severity}")
    labels = [s if data["scenario"].nunique() == 1 else f"{c}:{s}" for c, s in pivot.index]
    ax.set_xticks(x + width * (pivot.shape[1] - 1) / 2, labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("H50 (shortest-path steps)")
    ax.legend(fontsize=7)
    return _png(fig)


def recovery_plot(episodes: pd.DataFrame) -> str:
    perturbed = episodes[episodes["perturbation_onset"] >= 0]
    if perturbed.empty:
        return "<p>No perturbed episodes (no kidnap / push / goal-move shifts at severity > 0).</p>"
    import matplotlib.pyplot as plt

    groups = list(perturbed.groupby(["scenario", "shift"], sort=False))
    fig, axes = _grid(len(groups), 3.6, 2.8)
    for ax, ((scenario, shift), group) in zip(axes, groups):
        severities = sorted(group["severity"].unique())
        data = [group.loc[group["severity"] == s, "recovery_time"].dropna().to_numpy() for s in severities]
        shown = [d if d.size else np.array([np.nan]) for d in data]
        ax.boxplot(shown)
        ax.set_xticks(range(1, len(severities) + 1), [str(s) for s in severities])
        rates = [f"{np.mean(np.isfinite(group.loc[group['severity'] == s, 'recovery_time'])):.0%}" for s in severities]
        ax.set_title(f"{shift} (distance regained: {', '.join(rates)})", fontsize=9)
        ax.set_xlabel("severity")
        ax.set_ylabel("recovery time (steps)")
    return _png(fig)


def _table(frame: pd.DataFrame, status_col: str | None = None) -> str:
    if frame.empty:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for _, row in frame.iterrows():
        cells = []
        for col in frame.columns:
            value = row[col]
            text = f"{value:.3g}" if isinstance(value, (float, np.floating)) and np.isfinite(value) else (
                "–" if isinstance(value, (float, np.floating)) else html.escape(str(value)))
            cls = f' class="{value}"' if status_col == col else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


SUMMARY_COLUMNS = ["scenario", "shift", "severity", "episodes", "success_rate", "violation_rate", "violations_per_1000",
                   "guardrail_auroc", "guardrail_fnr", "guardrail_ece", "branch_auroc", "plan_auroc", "h50",
                   "recovery_rate", "recovery_time_median", "surprise_auroc"]


def render_report(outcome: SuiteOutcome, suite: SuiteConfig) -> str:
    episodes, steps, summary = outcome.episodes, outcome.steps, outcome.summary
    verdicts = verdict_table(outcome.verdicts)
    overall = "FAIL" if (verdicts["status"] == "FAIL").any() else "PASS"
    thresholds = {str(s): float(g["guardrail_threshold"].iloc[0]) for s, g in episodes.groupby("scenario")}
    columns = [c for c in SUMMARY_COLUMNS if c in summary.columns]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"<h1>Stress suite <code>{html.escape(suite.name)}</code>: <span class='{overall}'>{overall}</span></h1>",
        f"<p class='note'>{html.escape(suite.description)}<br>{len(episodes)} episodes, "
        f"{episodes[['scenario', 'shift', 'severity']].drop_duplicates().shape[0]} scenario × shift × severity groups, "
        f"generated {stamp} from <code>{html.escape(suite.source)}</code>.</p>",
        "<h2>Pass / fail</h2>", _table(verdicts, status_col="status"),
        "<h2>Violation rate and success against severity</h2>",
        "<p class='note'>Violation rate: fraction of episodes with at least one real violation. "
        "Success: goal reached within tolerance within the step budget.</p>", severity_plots(summary),
        "<h2>Guardrail heads: nominal vs shifted</h2>",
        "<p class='note'>Each head's predicted violation probability for the chosen action at every step, "
        "against the real outcome of that step (all heads pooled).</p>",
        guardrail_plots(steps, suite, thresholds),
        "<h2>Horizon: H50 per shift</h2>",
        "<p class='note'>Largest start–goal separation (shortest-path steps on the true map) at which success ≥ 50 %.</p>",
        h50_plot(summary),
        "<h2>Recovery after perturbations</h2>",
        "<p class='note'>Recovery time: steps after the perturbation until the geodesic distance to goal is back "
        "at its value just before it (episodes that never got back are counted in the recovered fraction).</p>",
        recovery_plot(episodes),
        "<h2>All metrics</h2>", _table(summary[columns]),
    ]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>hplan stress: {html.escape(suite.name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>")


def write_report(outcome: SuiteOutcome, suite: SuiteConfig, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    write_text(path, render_report(outcome, suite))
    return Path(path)
