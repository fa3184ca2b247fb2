"""Suite-level tables: metrics per scenario × shift × severity, and the threshold verdicts.

Everything here is a pure function of the episode and step tables the runner wrote, so a
reviewer can recompute a summary from ``results.parquet`` / ``steps.parquet`` with pandas alone.

Guardrail columns pool all heads of a scenario (each head's prediction at each step is one
sample): ``guardrail_*`` against the real outcome of the executed step, ``branch_*`` against the
planned first action in a branched copy, ``plan_*`` the plan's predicted risk against whether the
whole planned sequence ran into a violation in the branch.

A perturbation shift (kidnap, push, goal move) at severity > 0 whose perturbation fired in none of
a row's episodes (each ended before its onset, e.g. onsets past the step budget) measured the
nominal world, not the shift: every metric of that row is undefined to a threshold, so the rule's
``undefined`` setting decides rather than a nominal number passing for the shift's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hplan import metrics as m
from hplan.stress.shifts import SHIFTS
from hplan.stress.suite import SuiteConfig, Threshold

KEYS = ["scenario", "shift", "severity"]
NAN = float("nan")


def guardrail_samples(steps: pd.DataFrame, label_prefix: str = "y") -> tuple[np.ndarray, np.ndarray]:
    """Pool ``p:<head>`` predictions against ``<label_prefix>:<head>`` labels over all heads."""
    probs, labels = [], []
    for col in steps.columns:
        if not col.startswith("p:"):
            continue
        label_col = f"{label_prefix}:{col[2:]}"
        if label_col not in steps.columns:
            continue
        part = steps[[col, label_col]].dropna()
        probs.append(part[col].to_numpy(dtype=np.float64))
        labels.append(part[label_col].to_numpy().astype(bool))
    if not probs:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(probs), np.concatenate(labels)


def summarize_group(episodes: pd.DataFrame, steps: pd.DataFrame, suite: SuiteConfig) -> dict[str, float]:
    """All summary metrics of one (scenario, shift, severity) group."""
    threshold = float(episodes["guardrail_threshold"].iloc[0]) if len(episodes) else 0.5
    row: dict[str, float] = {
        "episodes": float(len(episodes)),
        "success_rate": float(episodes["success"].astype(bool).mean()) if len(episodes) else NAN,
        "violation_rate": m.violation_rate(episodes["violations"]),
        "violations_per_1000": m.violations_per_1000_steps(episodes["violations"], episodes["steps"]),
        "mean_steps": float(episodes["steps"].mean()) if len(episodes) else NAN,
    }
    for col in sorted(c for c in episodes.columns if c.startswith("violations_")):
        row[f"violation_rate_{col[len('violations_'):]}"] = m.violation_rate(episodes[col].fillna(0))
    probs, labels = guardrail_samples(steps, "y")
    quality = m.guardrail_quality(probs, labels, threshold, suite.guardrail_eval.bins)
    row.update(guardrail_auroc=quality["auroc"], guardrail_fnr=quality["fnr"], guardrail_ece=quality["ece"],
               guardrail_positives=quality["positives"])
    probs, labels = guardrail_samples(steps, "yb")
    quality = m.guardrail_quality(probs, labels, threshold, suite.guardrail_eval.bins)
    row.update(branch_auroc=quality["auroc"], branch_fnr=quality["fnr"], branch_positives=quality["positives"])
    if "plan_violation" in steps.columns:
        plan = steps[["plan_risk", "plan_violation"]].dropna()
        row.update(plan_auroc=m.auroc(plan["plan_risk"], plan["plan_violation"].astype(bool)),
                   plan_fnr=m.false_negative_rate(plan["plan_risk"], plan["plan_violation"].astype(bool), threshold))
    else:
        row.update(plan_auroc=NAN, plan_fnr=NAN)
    placed = episodes[(episodes["separation_bin"] >= 0) & (episodes["start_geodesic_steps"] >= 0)]
    row["h50"] = (m.h50(placed["start_geodesic_steps"], placed["success"], suite.h50.separations,
                        suite.h50.min_episodes) if len(placed) else NAN)
    row.update(m.recovery_summary(episodes))
    row["surprise_auroc"] = (m.surprise_auroc(steps[["episode", "t", "surprise", "impossible"]].dropna())
                             if len(steps) and "surprise" in steps.columns else NAN)
    return row


def summary_table(episodes: pd.DataFrame, steps: pd.DataFrame, suite: SuiteConfig) -> pd.DataFrame:
    """One row per scenario × shift × severity (sorted)."""
    rows = []
    if episodes.empty:
        return pd.DataFrame(columns=KEYS)
    for key, group in episodes.groupby(KEYS, sort=True):
        if len(steps):
            mask = ((steps["scenario"] == key[0]) & (steps["shift"] == key[1]) & (steps["severity"] == key[2]))
            group_steps = steps[mask]
        else:
            group_steps = steps
        spec = SHIFTS.get(str(key[1]))
        perturbs = spec is not None and spec.perturbs and int(key[2]) > 0
        rows.append({**dict(zip(KEYS, key)), **summarize_group(group, group_steps, suite),
                     "perturbs": float(perturbs)})
    return pd.DataFrame(rows)


def never_fired(row: pd.Series) -> bool:
    """A perturbation shift's row in which no episode's perturbation fired (see the module docstring)."""
    return bool(row.get("perturbs", 0.0) == 1.0 and not row.get("perturbed", 0.0) > 0)


@dataclass(frozen=True)
class Verdict:
    """One threshold checked on one summary row."""

    rule: Threshold
    scenario: str
    shift: str
    severity: int
    value: float
    passed: bool
    never_fired: bool = False

    def line(self) -> str:
        value = "undefined" if not np.isfinite(self.value) else f"{self.value:.3g}"
        if self.never_fired:
            value += " (the perturbation fired in no episode: each ended before its onset)"
        return f"{self.rule.describe()}: {self.scenario}/{self.shift}/severity {self.severity} = {value}"


def evaluate_thresholds(summary: pd.DataFrame, rules: tuple[Threshold, ...]) -> list[Verdict]:
    """Check every rule on every summary row it selects (shift, scenario, severity range).

    A ``shift = "*"`` rule checks the nominal world once: severity-0 rows of other shifts are the
    nominal episodes again (severity 0 is the identity), so they are skipped when the scenario has
    a ``none`` row — one nominal failure is reported once, not once per shift.
    """
    verdicts = []
    nominal = set(summary.loc[summary["shift"] == "none", "scenario"]) if len(summary) else set()
    for rule in rules:
        for _, row in summary.iterrows():
            if rule.shift not in ("*", row["shift"]) or rule.scenario not in ("*", row["scenario"]):
                continue
            if (rule.shift == "*" and int(row["severity"]) == 0 and row["shift"] != "none"
                    and row["scenario"] in nominal):
                continue
            if not rule.min_severity <= int(row["severity"]) <= rule.max_severity:
                continue
            unfired = never_fired(row)
            value = NAN if unfired else float(row.get(rule.metric, NAN))
            if not np.isfinite(value):
                passed = rule.undefined == "pass"
            elif rule.max is not None:
                passed = value <= rule.max
            else:
                passed = value >= rule.min  # type: ignore[operator]
            verdicts.append(Verdict(rule, str(row["scenario"]), str(row["shift"]), int(row["severity"]), value, passed,
                                    unfired))
    return verdicts


def verdict_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """Per rule: rows checked, rows failed, worst value, PASS/FAIL (the report's top table)."""
    rows = []
    for rule in dict.fromkeys(v.rule for v in verdicts):
        mine = [v for v in verdicts if v.rule == rule]
        failed = [v for v in mine if not v.passed]
        finite = [v.value for v in mine if np.isfinite(v.value)]
        worst = (max(finite) if rule.max is not None else min(finite)) if finite else NAN
        rows.append({"threshold": rule.describe(), "checked": len(mine), "failed": len(failed), "worst": worst,
                     "status": "PASS" if not failed else "FAIL",
                     "failures": "; ".join(f"{v.scenario}/{v.shift}/s{v.severity}" for v in failed)})
    return pd.DataFrame(rows, columns=["threshold", "checked", "failed", "worst", "status", "failures"])


@dataclass
class SuiteOutcome:
    """What a finished suite produced (the files are on disk as well).

    It lives here, below the runner that makes it and the report that renders it, so that each
    of the two imports it at module level without importing the other."""

    out_dir: Path
    episodes: pd.DataFrame
    steps: pd.DataFrame
    summary: pd.DataFrame
    verdicts: list[Verdict]
    ran: list[str]
    skipped: list[str]

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]
