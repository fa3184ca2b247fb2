"""Write ``docs/results.md`` (+ PNG plots) from a finished demo folder and exported ablation studies.

The README's results section quotes this page, so its numbers are reproducible and dated:

    hplan demo                                            # -> runs/demo
    hplan study export ablate_planner --out runs/ablate_planner.parquet   # (optional, per study)
    python benchmarks/results_page.py --demo runs/demo --study ablate_planner=runs/ablate_planner.parquet
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pandas as pd

from hplan.demo.report import EVAL_COLUMNS, evaluation_figure, training_figure
from hplan.io import write_text

ROOT = Path(__file__).resolve().parent.parent


def markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def save(fig: object, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    return path.name


def demo_section(demo: Path, figures: Path) -> list[str]:
    lines = [f"## Demo (`hplan demo`, folder `{demo}`)", ""]
    evaluation = pd.read_csv(demo / "summary.csv")
    lines += [markdown_table(evaluation[[c for c in EVAL_COLUMNS if c in evaluation]]), ""]
    lines += [f"![planning]({figures.name}/{save(evaluation_figure(evaluation), figures / 'demo_planning.png')})", ""]
    metrics_path = demo / "model" / "metrics.csv"
    if metrics_path.exists():
        metrics = pd.read_csv(metrics_path)
        fig = training_figure(metrics)
        if fig is not None:
            lines += [f"![training]({figures.name}/{save(fig, figures / 'demo_training.png')})", ""]
        keep = [c for c in ("val/probe_r2", "val/probe_r2_pred", "val/effective_rank", "val/std_mean",
                            "val/auroc_wall_contact", "val/distance_spearman") if c in metrics]
        lines += ["World model at the last epoch:", "", markdown_table(metrics[keep].tail(1)), ""]
    timings = demo / "timings.json"
    if timings.exists():
        seconds = json.loads(timings.read_text())
        lines += ["Stage timings (s): " + ", ".join(f"{k} {v}" for k, v in seconds.items()), ""]
    stress = demo / "stress" / "summary.csv"
    if stress.exists():
        summary = pd.read_csv(stress)
        cols = [c for c in ("shift", "severity", "episodes", "success_rate", "violation_rate", "guardrail_auroc",
                            "guardrail_fnr", "surprise_auroc", "recovery_rate") if c in summary]
        lines += ["### Smoke stress suite", "", markdown_table(summary[cols]), ""]
    return lines


def study_section(name: str, table: Path) -> list[str]:
    trials = pd.read_parquet(table)
    params = [c for c in trials.columns if c.startswith("params_")]
    metrics = [c for c in trials.columns if c.startswith(("value", "user_attrs_success", "user_attrs_violation",
                                                           "user_attrs_ms_per_step"))]
    grouped = trials.groupby(params)[metrics].mean(numeric_only=True).reset_index() if params else trials[metrics]
    return [f"## Ablation `{name}` (`{table}`)", "", markdown_table(grouped), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--study", action="append", default=[], help="NAME=trials.parquet (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args()
    figures = args.out.parent / "results"
    lines = ["# hplan results", "",
             f"Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmarks/results_page.py`"
             " from the folders named below; regenerate after re-running them.", ""]
    if (args.demo / "summary.csv").exists():
        lines += demo_section(args.demo, figures)
    for item in args.study:
        name, _, path = item.partition("=")
        lines += study_section(name, Path(path))
    write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
