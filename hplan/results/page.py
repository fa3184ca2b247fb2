"""docs/results.md from the measured tables: markdown tables with intervals, PNG plots, provenance.

Each table's section is built from its cached rows (``runs/results/tables``), so ``--only NAME``
re-measures one table and the page still shows every other one with its own date and commit;
a table never measured says so and names the command that measures it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from hplan.results.definition import DEFAULT_DEFINITION, Arm, ResultsDefinition, Table
from hplan.results.stats import mean_interval, paired, wilson

ARM_COLUMNS: tuple[tuple[str, str], ...] = (
    # (summary key, heading); rates are per training seed, averaged
    ("mean_steps", "mean steps"),
    ("violations_per_episode", "violating steps / episode"),
    ("violations_per_1000_steps", "violating steps / 1k"),
    ("ms_per_step", "plan ms / step"),
    ("total_ms_per_step", "incl. setup ms / step"),
    ("model_evals_per_step", "predictor evals / step"),
    ("distance_evals_per_step", "distance-head rows / step"),
    ("guardrail_evals_per_step", "guardrail-head rows / step"),
    ("graph_ms_per_step", "graph ms / step"),
)



def arm_summary(frame: pd.DataFrame, arms: Sequence[str]) -> pd.DataFrame:
    """One row per arm: success across seeds (mean, 95 % t-interval), pooled (Wilson), and costs."""
    from hplan.runner.summary import summarize

    rows = []
    for arm in arms:
        mine = frame[frame["arm"] == arm]
        if mine.empty:
            continue
        per_seed = [{**summarize(group), "violations_per_episode": float(group["violations"].mean())}
                    for _, group in mine.groupby("training_seed", sort=True)]
        rates = [s["success_rate"] for s in per_seed]
        across = mean_interval(rates)
        pooled = wilson(int(mine["success"].sum()), len(mine))
        row: dict[str, Any] = {"arm": arm, "training_seeds": len(per_seed), "episodes": len(mine),
                               "success_mean": across.estimate, "success_low": across.low, "success_high": across.high,
                               "success_per_seed": rates,
                               "pooled": pooled.estimate, "pooled_low": pooled.low, "pooled_high": pooled.high}
        for key, _ in ARM_COLUMNS:
            values = [s.get(key, math.nan) for s in per_seed]
            row[key] = float(sum(values) / len(values)) if values else math.nan
        for name in sorted(k[: -len("_per_1000_steps")] for k in per_seed[0] if k.endswith("_per_1000_steps")
                           and k != "violations_per_1000_steps"):
            row[f"{name}_per_1000_steps"] = sum(s.get(f"{name}_per_1000_steps", math.nan) for s in per_seed) / len(per_seed)
            row[f"{name}_rate"] = sum(s.get(f"{name}_rate", math.nan) for s in per_seed) / len(per_seed)
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons(frame: pd.DataFrame, pairs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Paired differences in success between arms that played the same episodes; each episode's
    success is averaged over the training seeds both arms have for it (the episode is the unit)."""
    out = []
    for a, b in pairs:
        left = frame[frame["arm"] == a].set_index(["training_seed", "seed"])["success"].astype(float)
        right = frame[frame["arm"] == b].set_index(["training_seed", "seed"])["success"].astype(float)
        common = left.index.intersection(right.index)
        if common.empty:
            continue
        per_episode_a = left[common].groupby(level="seed").mean()
        per_episode_b = right[common].groupby(level="seed").mean()
        result = paired(list(per_episode_a), list(per_episode_b.loc[per_episode_a.index]))
        # a difference of success rates lies in [-1, 1]; a t-interval near its edge does not know that
        out.append({"a": a, "b": b, "difference": result.difference.estimate,
                    "low": float(np.clip(result.difference.low, -1.0, 1.0)),
                    "high": float(np.clip(result.difference.high, -1.0, 1.0)),
                    "a_only": result.a_only, "b_only": result.b_only, "pairs": result.pairs, "p_value": result.p_value})
    return out


def tier_labels(tiers: Sequence[int]) -> list[str]:
    """``[40, 80]`` → ``["< 40", "40–79", "≥ 80"]`` (shortest-path steps from start to goal)."""
    edges = [0, *tiers]
    return [f"< {tiers[0]}"] * bool(tiers) + [f"{a}–{b - 1}" for a, b in zip(edges[1:], edges[2:])] \
        + [f"≥ {tiers[-1]}"] * bool(tiers)


def tier_summary(frame: pd.DataFrame, arms: Sequence[str], tiers: Sequence[int]) -> pd.DataFrame:
    """Success per arm and start–goal distance tier (``start_geodesic_steps``), episodes pooled over
    training seeds, with Wilson 95 % intervals: one row per (arm, tier) that has episodes."""
    import numpy as np

    labels = tier_labels(tiers)
    tier = np.searchsorted(np.asarray(tiers), frame["start_geodesic_steps"].to_numpy(), side="right")
    rows = []
    for arm in arms:
        for index, label in enumerate(labels):
            mine = frame[(frame["arm"] == arm) & (tier == index)]
            if mine.empty:
                continue
            interval = wilson(int(mine["success"].sum()), len(mine))
            rows.append({"arm": arm, "tier": label, "episodes": len(mine), "success": interval.estimate,
                         "low": interval.low, "high": interval.high})
    return pd.DataFrame(rows)


def tier_markdown(summary: pd.DataFrame, tiers: Sequence[int]) -> str:
    labels = [label for label in tier_labels(tiers) if label in set(summary["tier"])]
    lines = ["| arm | " + " | ".join(f"{label} steps" for label in labels) + " |",
             "| --- |" + " --- |" * len(labels)]
    for arm, group in summary.groupby("arm", sort=False):
        by_tier = {row["tier"]: row for row in group.to_dict("records")}
        cells = []
        for label in labels:
            row = by_tier.get(label)
            cells.append("–" if row is None else
                         f"**{_pct(row['success'])}** ({_pct(row['low'])}–{_pct(row['high'])}) of {int(row['episodes'])}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f} %"


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    value = float(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _interval(mean: float, low: float, high: float) -> str:
    if math.isnan(low):
        return _pct(mean)
    return f"**{_pct(mean)}** ({_pct(max(0.0, low))}–{_pct(min(1.0, high))})"


def planning_markdown(summary: pd.DataFrame) -> str:
    violation_cols = sorted(c for c in summary.columns if c.endswith("_per_1000_steps")
                            and c != "violations_per_1000_steps" and summary[c].fillna(0).ne(0).any())
    heads = ["arm", "success, mean of seeds (95 % t-interval)", "per seed", "pooled episodes (Wilson 95 %)"]
    heads += [h for _, h in ARM_COLUMNS[:3]] + [f"{c[:-len('_per_1000_steps')]} / 1k" for c in violation_cols]
    heads += [h for _, h in ARM_COLUMNS[3:]]
    lines = ["| " + " | ".join(heads) + " |", "| " + " | ".join("---" for _ in heads) + " |"]
    for row in summary.to_dict("records"):
        cells = [row["arm"], _interval(row["success_mean"], row["success_low"], row["success_high"]),
                 " / ".join(_pct(v) for v in row["success_per_seed"]),
                 f"{_pct(row['pooled'])} ({_pct(row['pooled_low'])}–{_pct(row['pooled_high'])}) of {row['episodes']}"]
        cells += [_num(row[k]) for k, _ in ARM_COLUMNS[:3]] + [_num(row[c]) for c in violation_cols]
        cells += [_num(row[k]) for k, _ in ARM_COLUMNS[3:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    lines = ["| A vs B (same episodes) | success A − B (95 %, over episodes) | episodes A did better | "
             "episodes B did better | p (sign test) |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        diff = f"{100 * r['difference']:+.1f} pp ({100 * r['low']:+.1f} to {100 * r['high']:+.1f})" \
            if not math.isnan(r["low"]) else f"{100 * r['difference']:+.1f} pp"
        lines.append(f"| {r['a']} vs {r['b']} | {diff} | {r['a_only']} | {r['b_only']} | {r['p_value']:.2g} |")
    return "\n".join(lines)


def heldout_markdown(frame: pd.DataFrame, labels: Sequence[str] = ()) -> str:
    """Every held-out metric the model has (probes, guardrail AUROC and calibration, distance rank
    correlations, collapse metrics), mean of training seeds with a t-interval clipped to the metric's
    range: one column per seed for one model, one column per arm (the seeds in the CSV) for several."""
    order = ("probe_r2", "auroc_", "ece_", "distance_", "straight_line_", "latent_")
    columns = [c for c in frame.columns if c not in ("arm", "training_seed", "episodes")
               and not c.startswith("positives_") and frame[c].notna().any()]
    # a guardrail no held-out transition violated has no AUROC; its calibration error says nothing either
    columns = [c for c in columns if not (c.startswith("ece_") and f"auroc_{c[4:]}" not in columns)]
    columns.sort(key=lambda c: (next((i for i, p in enumerate(order) if c.startswith(p)), len(order)), c))
    if labels:
        arms = [label for label in labels if (frame["arm"] == label).any()]
        lines = ["| metric | " + " | ".join(arms) + " |", "| --- |" + " --- |" * len(arms)]
        for column in columns:
            cells = [_interval_text(column, _seed_values(frame[frame["arm"] == arm], column)) for arm in arms]
            lines.append(f"| {column} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    lines = ["| metric | mean of seeds (95 % t-interval) | per seed |", "| --- | --- | --- |"]
    for column in columns:
        values = _seed_values(frame, column)
        lines.append(f"| {column} | {_interval_text(column, values)} | {' / '.join(f'{v:.3f}' for v in values)} |")
    return "\n".join(lines)


UNBOUNDED_METRICS = ("latent_effective_rank", "latent_std_min", "latent_std_mean")
"""Held-out metrics with no upper bound of 1 (the rest are R², AUROC, rank correlations or shares)."""


def _seed_values(frame: pd.DataFrame, column: str) -> list[float]:
    return [float(v) for v in frame.sort_values("training_seed")[column] if pd.notna(v)]


def _interval_text(column: str, values: list[float]) -> str:
    """``mean (low–high)``, the interval clipped to the metric's range (AUROC and calibration error
    in [0, 1], rank correlations in [-1, 1], R² and shares at most 1; a latent's rank and spread unbounded)."""
    if not values:
        return "–"
    mi = mean_interval(values)
    low_bound = 0.0 if column.startswith(("auroc_", "ece_")) else -1.0 if "spearman" in column else -math.inf
    high_bound = math.inf if column in UNBOUNDED_METRICS else 1.0
    return f"{mi.estimate:.3f}" + ("" if math.isnan(mi.low) else
                                   f" ({max(low_bound, mi.low):.3f}–{min(high_bound, mi.high):.3f})")


STRESS_COLUMNS = (("success_rate", "success", _pct), ("violation_rate", "episodes violating", _pct),
                  ("violations_per_1000", "violating steps / 1k", _num), ("guardrail_auroc", "guardrail AUROC", _num),
                  ("guardrail_fnr", "guardrail FNR", _num), ("h50", "H50 (steps)", _num),
                  ("recovery_rate", "recovered after a perturbation", _pct))
"""The stress summary's columns a stress table shows (a column no row measured is left out)."""


def stress_markdown(frame: pd.DataFrame, suite_name: str) -> str:
    """A stress table: each threshold's verdict per training seed, then every shift × severity with
    its metrics as the mean of training seeds (per-cell rows are in the suite's own report)."""
    from hplan.stress.suite import load_suite
    from hplan.stress.summary import evaluate_thresholds, verdict_table

    suite = load_suite(suite_name)
    seeds = sorted(int(s) for s in frame["training_seed"].unique())
    lines = ["| threshold | " + " | ".join(f"training seed {s}" for s in seeds) + " |",
             "| --- | " + " | ".join("---" for _ in seeds) + " |"]
    verdicts = {s: verdict_table(evaluate_thresholds(frame[frame["training_seed"] == s].reset_index(drop=True),
                                                     suite.thresholds)).set_index("threshold") for s in seeds}
    for rule in dict.fromkeys(t for s in seeds for t in verdicts[s].index):
        cells = []
        for s in seeds:
            row = verdicts[s].loc[rule] if rule in verdicts[s].index else None
            cells.append("–" if row is None else f"{row['status']} (worst {_num(row['worst'])}"
                         + (f"; fails at {row['failures']}" if row["failures"] else "") + ")")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    columns = [(c, h, f) for c, h, f in STRESS_COLUMNS if c in frame.columns and frame[c].notna().any()]
    keys = ["scenario", "shift", "severity"]
    means = frame.groupby(keys, sort=False)[[c for c, _, _ in columns] + ["episodes"]].mean().reset_index()
    lines += ["", "| scenario | shift | severity | episodes per seed | " + " | ".join(h for _, h, _ in columns) + " |",
              "| --- | --- | --- | --- | " + " | ".join("---" for _ in columns) + " |"]
    for row in means.to_dict("records"):
        lines.append(f"| {row['scenario']} | {row['shift']} | {int(row['severity'])} | {row['episodes']:.0f} | "
                     + " | ".join(fmt(row[c]) for c, _, fmt in columns) + " |")
    return "\n".join(lines)


def _error_bars(summary: pd.DataFrame) -> list[Any]:
    """Below/above lengths of each arm's success interval, clipped to [0, 1] (none where it has none)."""
    low = (summary["success_mean"] - summary["success_low"].clip(lower=0.0)).fillna(0).clip(lower=0).to_numpy()
    high = (summary["success_high"].clip(upper=1.0) - summary["success_mean"]).fillna(0).clip(lower=0).to_numpy()
    return [low, high]


def success_figure(summary: pd.DataFrame, title: str) -> Any:
    """Success per arm: mean of seeds with its interval, each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(summary), 3.2))
    x = range(len(summary))
    means = summary["success_mean"].to_numpy()
    ax.bar(x, means, color="#8fb3de", yerr=_error_bars(summary), capsize=4, label="mean of training seeds (95 % t)")
    for i, rates in enumerate(summary["success_per_seed"]):
        ax.scatter([i] * len(rates), rates, color="#1f3b73", s=14, zorder=3, label="one training seed" if i == 0 else None)
    ax.set_xticks(list(x), [a.replace(", ", "\n") for a in summary["arm"]], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def curve_figure(summary: pd.DataFrame, curves: dict[str, str], title: str) -> Any:
    """Success (mean of seeds, 95 % t) against planning time per step (setup included), one line per
    curve; ``curves`` maps arm label → curve name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    rows = summary[summary["arm"].isin(list(curves))].assign(curve=lambda f: f["arm"].map(curves))
    for name, group in rows.groupby("curve", sort=False):
        group = group.sort_values("total_ms_per_step")
        ax.errorbar(group["total_ms_per_step"], group["success_mean"], yerr=_error_bars(group), marker="o", capsize=3,
                    label=name)
    ax.set_xscale("log")
    ax.set_xlabel("planning ms per step (setup included, log scale)")
    ax.set_ylabel("success")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def measured(frame: pd.DataFrame, meta: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Sorted dates and the commits (oldest evaluation first) of a table's evaluations; a table
    without per-evaluation records (held-out ones) has its one record."""
    if "measured_date" not in frame.columns:
        return [meta["date"]], [meta["commit"] + (" (uncommitted changes)" if meta.get("dirty") else "")]
    runs = frame[["measured_date", "measured_commit", "measured_dirty"]].drop_duplicates().sort_values("measured_date")
    commits: list[str] = []
    for _, run in runs.iterrows():
        label = str(run["measured_commit"]) + (" (uncommitted changes)" if bool(run["measured_dirty"]) else "")
        if label not in commits:
            commits.append(label)
    return sorted(runs["measured_date"].astype(str).unique()), commits


def measured_text(frame: pd.DataFrame, meta: dict[str, Any]) -> str:
    """"2026-12-06 15:52–20:41 UTC at commits `a`, `b`": when and from which code every part was played."""
    dates, commits = measured(frame, meta)
    span = dates[0] if len(dates) == 1 else f"{dates[0][:-4]} to {dates[-1]}"
    return f"{span} at commit{'s' if len(commits) > 1 else ''} " + ", ".join(f"`{c}`" for c in commits)


def with_groups(frame: pd.DataFrame, table: Table) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` plus, for each arm group, its members' rows under the group's name (so the group
    is summarised like an arm: episodes pooled per training seed); the group names in order."""
    groups: dict[str, list[str]] = {}
    for arm in table.arms:
        if arm.group:
            groups.setdefault(arm.group, []).append(arm.label)
    parts, names = [frame], []
    for name, members in groups.items():
        present = [m for m in members if (frame["arm"] == m).any()]
        if not present:
            continue
        rows = frame[frame["arm"].isin(present)]
        # a training seed counts only with every present arm measured: one seed's mean over one task
        # must not pass for its mean over five
        arms_per_seed = rows.groupby("training_seed")["arm"].nunique()
        complete = sorted(int(seed) for seed, count in arms_per_seed.items() if count == len(present))
        notes = []
        if len(present) < len(members):  # a mean over some of the arms must not pass for the whole group's
            notes.append(f"{len(present)} of {len(members)} measured")
        if len(complete) < len(arms_per_seed):
            if not complete:
                continue
            notes.append(f"training seed{'s' if len(complete) > 1 else ''} {', '.join(map(str, complete))}")
        name = f"{name} ({'; '.join(notes)})" if notes else name
        parts.append(rows[rows["training_seed"].astype(int).isin(complete)].assign(arm=name))
        names.append(name)
    return pd.concat(parts, ignore_index=True), names


def _missing(frame: pd.DataFrame, seeds: Sequence[int], labels: Sequence[str]) -> str:
    """What the definition asks for that the measured rows lack ("" when nothing)."""
    measured = set(frame["training_seed"].astype(int))
    if not labels:
        absent = [s for s in seeds if s not in measured]
        return f"training seeds not measured: {', '.join(map(str, absent))}" if absent else ""
    have = set(zip(frame["arm"], frame["training_seed"].astype(int)))
    parts = []
    for label in labels:
        absent = [s for s in seeds if (label, s) not in have]
        if absent:
            parts.append(f"{label} (training seed{'s' if len(absent) > 1 else ''} {', '.join(map(str, absent))})")
    return "not measured: " + "; ".join(parts) if parts else ""


def _arms_line(arms: Sequence[Arm], plain: str = "") -> str:
    """``Arms: *label*: `--planner hier`, `--set …`; …`` — each arm's command-line flags (``plain``
    for an arm with none)."""
    def flags(arm: Arm) -> str:
        return ", ".join([f"`--planner {arm.planner}`"] * bool(arm.planner)
                         + [f"`--guardrails {arm.guardrails}`"] * bool(arm.guardrails)
                         + [f"`--set {s}`" for s in arm.sets]) or plain
    return "Arms: " + "; ".join(f"*{arm.label}*: {flags(arm)}" for arm in arms) + "."


def table_section(definition: ResultsDefinition, table: Table, frame: pd.DataFrame | None, meta: dict[str, Any] | None,
                  figures: Path) -> list[str]:
    from hplan.config import load_scenario

    scenario = load_scenario(table.scenario, sets=table.sets)
    seeds, split = definition.seeds(table), definition.split(table)
    lines = [f"## {table.title}", "", f"<a id=\"{table.name}\"></a>"]
    if table.description:
        lines += ["", table.description]
    data = (f"{scenario.collect.episodes:,} episodes × {scenario.collect.steps_per_episode} steps = "
            f"{scenario.collect.episodes * scenario.collect.steps_per_episode:,} transitions")
    what = {"planning": f"{definition.episodes(table)} `{split}` episodes per arm and training seed",
            "heldout": f"{table.heldout_episodes} held-out episodes (`hplan collect --split heldout`)",
            "stress": f"stress suite `{table.suite}` (`hplan stress {table.suite}`) on each training seed's model"}[table.kind]
    lines += ["", f"Scenario `{table.scenario}` ({scenario.env.obs_mode} observations), training data {data}, "
                  f"training seeds {', '.join(map(str, seeds))}; {what}."
                  + (f" Overrides: `{'`, `'.join(table.sets)}`." if table.sets else ""),
              f"Command: `hplan results --only {table.name}`."]
    if frame is None or meta is None:
        return lines + ["", f"**Not measured yet.** Run `hplan results --only {table.name}`.", ""]
    lines += [f"Measured {measured_text(frame, meta)} on {meta['machine']}, device `{meta['device']}`.", ""]
    if table.kind in ("heldout", "stress"):
        labels = [arm.label for arm in table.arms]
        missing = _missing(frame, seeds, labels)
        note = [f"**Incomplete:** {missing}.", ""] if missing else []
        body = heldout_markdown(frame, labels) if table.kind == "heldout" else stress_markdown(frame, table.suite)
        extra: list[str] = []
        if labels:
            extra = [_arms_line(table.arms, plain="the scenario's model"), ""]
            figures.mkdir(parents=True, exist_ok=True)
            frame.sort_values(["arm", "training_seed"]).to_csv(figures / f"{table.name}.csv", index=False)
            extra += [f"Per training seed as CSV: [{figures.name}/{table.name}.csv]({figures.name}/{table.name}.csv).", ""]
        return lines + note + [body, ""] + extra
    labels = [arm.label for arm in table.arms]
    frame, groups = with_groups(frame, table)
    summary = arm_summary(frame, labels + groups)
    missing = _missing(frame, seeds, labels)
    if missing:
        lines += [f"**Incomplete:** {missing}. Run `hplan results --only {table.name}` to finish it; the figures "
                  "below cover only what was measured.", ""]
    lines += [planning_markdown(summary), ""]
    arms_with_sets = [arm for arm in table.arms if arm.sets or arm.planner or arm.guardrails]
    if arms_with_sets:
        lines += [_arms_line(arms_with_sets), ""]
    if table.tiers and "start_geodesic_steps" in frame.columns:
        tiers = tier_summary(frame, labels, table.tiers)
        if not tiers.empty:
            lines += ["Success by start–goal distance (shortest-path steps at the nominal top speed), episodes "
                      "pooled over training seeds (Wilson 95 %):", "", tier_markdown(tiers, table.tiers), ""]
    compared = comparison_markdown(comparisons(frame, table.compare))
    if compared:
        lines += [compared, ""]
    figures.mkdir(parents=True, exist_ok=True)
    fig = success_figure(summary, table.title)
    fig.savefig(figures / f"{table.name}.png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    summary.drop(columns=["success_per_seed"]).to_csv(figures / f"{table.name}.csv", index=False)
    curves = {arm.label: arm.curve for arm in table.arms if arm.curve}
    if curves:
        fig = curve_figure(summary, curves, table.title)
        fig.savefig(figures / f"{table.name}_curves.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        lines += [f"![success against planning time: {table.title}]({figures.name}/{table.name}_curves.png)", ""]
    lines += [f"![{table.title}]({figures.name}/{table.name}.png)", "",
              f"Per-arm figures as CSV: [{figures.name}/{table.name}.csv]({figures.name}/{table.name}.csv).", ""]
    return lines


README_BEGIN = "<!-- results:begin (written by `hplan results`; edit benchmarks/results.toml instead) -->"
README_END = "<!-- results:end -->"


def previous_sections(page_text: str) -> dict[str, list[str]]:
    """The sections of a page written before, by table name (its ``<a id>``), each as its lines.

    Why: the cache under ``runs/results`` lives on one machine; the page is what is committed. A
    table this machine has no rows for (a fresh clone, a table measured elsewhere) keeps the section
    the page already had, with its own date and commit, instead of turning into "not measured"."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in page_text.splitlines():
        if line.startswith("## "):
            current = [line]
            continue
        if current is None:
            continue
        current.append(line)
        if line.startswith('<a id="') and len(current) <= 3:
            sections[line[len('<a id="'):line.index('"', len('<a id="'))]] = current
    return {name: lines if lines[-1] == "" else lines + [""] for name, lines in sections.items()}


def previous_readme_rows(readme_text: str, header: str, page_name: str) -> dict[str, str]:
    """The headline rows an earlier run wrote, by table name, when its columns were the ones
    ``header`` has now (a row under other columns would be misread); see :func:`previous_sections`."""
    span = _readme_span(readme_text)
    lines = readme_text[span[0]:span[1]].strip().splitlines() if span else []
    if not lines or lines[0] != header:
        return {}
    rows = {}
    for line in lines[2:]:
        first = line.split("|")[1] if line.count("|") > 1 else ""
        if f"]({page_name}#" in first:
            rows[first[first.index(f"]({page_name}#") + len(f"]({page_name}#"):first.rindex(")")]] = line
    return rows


def readme_block(definition: ResultsDefinition, frames: dict[str, pd.DataFrame | None],
                 metas: dict[str, dict[str, Any] | None], page_name: str, previous: str = "") -> str:
    """The README's headline table: one row per ``readme = true`` table, one column per arm label,
    success as the mean of training seeds with its 95 % interval. A table without rows keeps its
    row from ``previous`` (the README as it was), when the columns have not changed."""
    tables = [t for t in definition.tables if t.readme and t.kind == "planning"]
    columns: list[str] = []
    for table in tables:
        columns += [arm.label for arm in table.arms if arm.label not in columns]
    lines = ["| table | " + " | ".join(columns) + " | seeds × episodes | measured |",
             "| --- | " + " | ".join("---" for _ in columns) + " | --- | --- |"]
    kept = previous_readme_rows(previous, lines[0], page_name)
    for table in tables:
        frame, meta = frames.get(table.name), metas.get(table.name)
        link = f"[{table.title.split(':')[0]}]({page_name}#{table.name})"
        if (frame is None or meta is None) and table.name in kept:
            lines.append(kept[table.name])
            continue
        if frame is None or meta is None:
            lines.append(f"| {link} | " + " | ".join("not measured yet" if c in [a.label for a in table.arms] else ""
                                                     for c in columns) + f" | | `hplan results --only {table.name}` |")
            continue
        summary = arm_summary(frame, [arm.label for arm in table.arms]).set_index("arm")
        cells = []
        for column in columns:
            if column not in summary.index:
                cells.append("")
                continue
            row = summary.loc[column]
            cells.append(_interval(row["success_mean"], row["success_low"], row["success_high"]).replace("**", ""))
        seeds = len(definition.seeds(table))
        size = f"{seeds} × {definition.episodes(table)}"
        if _missing(frame, definition.seeds(table), [arm.label for arm in table.arms]):
            size += f" (incomplete: [see]({page_name}#{table.name}))"
        dates, commits = measured(frame, meta)
        lines.append(f"| {link} | " + " | ".join(cells) + f" | {size} | {dates[-1][:10]}, "
                     + ", ".join(f"`{c}`" for c in commits) + " |")
    return "\n".join(lines)


def _readme_span(text: str) -> tuple[int, int] | None:
    """Where the headline table's text lies in ``text``: from the end of the begin marker to the
    start of the end marker (None: no markers)."""
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return None
    return start + len(README_BEGIN), end


def replace_readme_block(text: str, block: str) -> str | None:
    """``text`` with the part between the markers replaced by ``block`` (None: no markers)."""
    span = _readme_span(text)
    if span is None:
        return None
    return text[:span[0]] + "\n" + block + "\n" + text[span[1]:]


def definition_link(definition: ResultsDefinition, page_dir: Path) -> str:
    """The definition a page was generated from, linked relative to the page's folder (the committed
    one by its repository path; another file by its name; one not read from a file by its label)."""
    source = Path(definition.source)
    if not source.is_file():
        return f"`{definition.source}`"
    shown = "benchmarks/results.toml" if source.resolve() == DEFAULT_DEFINITION.resolve() else source.name
    return f"[`{shown}`]({Path(os.path.relpath(source.resolve(), page_dir.resolve())).as_posix()})"


def page(definition: ResultsDefinition, sections: list[list[str]], generated: dict[str, Any], page_dir: Path) -> str:
    versions = generated["versions"]
    head = [
        "# hplan results", "",
        f"Generated {generated['date']} by `hplan results` from {definition_link(definition, page_dir)} "
        f"(commit `{generated['commit']}`). Every number in the README comes from this page; each table names "
        "the command that re-measures it and when it was measured.", "",
        f"Machine: {generated['machine']}; device `{generated['device']}`; Python {versions.get('python')}, "
        f"torch {versions.get('torch')}, numpy {versions.get('numpy')}, gymnasium {versions.get('gymnasium')}, "
        f"lightning {versions.get('lightning')}.", "",
        "How to read it: success is measured per training seed on the same seeded `test` episodes for every arm; "
        "the first interval is the 95 % t-interval of the training seeds' success rates (it says how much a "
        "retrain moves the figure), the pooled one a Wilson interval over all episodes of all seeds (it treats "
        "them as independent, though seeds replay the same episodes: read it as a lower bound on the "
        "uncertainty). Arms on the same episodes are compared pair by pair, with the episode as the unit: each "
        "episode's success averaged over the training seeds, the mean difference with a 95 % t-interval over "
        "episodes, and an exact sign test on the episodes where the arms differ. *plan ms / step* is the agent's wall time per step (encode, plan, every "
        "head call and graph search); *incl. setup* adds building the agent (its landmark graph) once per episode. "
        "Timings depend on what else the machine ran; compare them within a table.", "",
        "Contents: " + ", ".join(f"[{t.title}](#{t.name})" for t in definition.tables), "",
    ]
    return "\n".join(head + [line for section in sections for line in section]).rstrip() + "\n"
