"""Read a run directory's per-epoch metrics, judge collapse, and plot the collapse curves.

Used by ``hplan inspect``; kept out of the command so notebooks and the study code can reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hplan.diagnostics.collapse import COLLAPSE_METRICS, CollapseRule, CollapseVerdict, collapse_verdict
from hplan.diagnostics.high_level import HighLevelVerdict, high_level_verdict
from hplan.errors import HplanError
from hplan.io import atomic_path, read_json_object

CURVES_FILE = "collapse.png"
TABLE_COLUMNS = ("train/jepa_loss", "val/loss", *(f"val/{m}" for m in COLLAPSE_METRICS), "val/probe_r2",
                 "val/probe_r2_pred", "val/probe_r2_pred_delta")
"""Columns ``hplan inspect`` shows, in order (others, such as guardrail AUROC, follow)."""
HIGH_LEVEL_COLUMNS = ("val/high_jump_skill", "val/high_jump_err", "val/high_jump_err_nomove", "val/high_jump_err_linear",
                      "val/high_prior_spread", "val/high_prior_on_manifold", "val/high_prior_reachable",
                      "val/high_active_codes", "val/high_code_kl")
"""The high level's columns ``hplan inspect`` shows in its second table (probe R² per jump follow)."""


@dataclass(frozen=True)
class RunMetrics:
    run_dir: Path
    frame: pd.DataFrame
    latent_dim: int
    verdict: CollapseVerdict
    high_level: HighLevelVerdict | None  # None: the run logged no high-level diagnostics


def read_run_metrics(run_dir: str | Path, rule: CollapseRule = CollapseRule()) -> RunMetrics:
    """Load ``metrics.csv`` and ``config.json`` of a run; one-line errors for anything missing."""
    run_dir = Path(run_dir)
    metrics, config = run_dir / "metrics.csv", run_dir / "config.json"
    if not metrics.is_file():
        raise HplanError(f"{metrics}: no per-epoch metrics (is this a run directory from `hplan train`?)")
    try:
        frame = pd.read_csv(metrics)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise HplanError(f"{metrics}: unreadable metrics table: {str(err).splitlines()[0]}") from None
    if "epoch" not in frame.columns:
        raise HplanError(f"{metrics}: epoch: column missing")
    latent_dim = 0
    if config.is_file():
        try:
            latent_dim = int(read_json_object(config).get("model", {}).get("latent_dim", 0))
        except (TypeError, ValueError, AttributeError) as err:
            raise HplanError(f"{config}: model.latent_dim: unreadable ({err})") from None
    if latent_dim <= 0:
        raise HplanError(f"{config}: model.latent_dim: missing (needed for the effective-rank rule)")
    verdict = collapse_verdict(frame.to_dict("records"), latent_dim, rule)
    return RunMetrics(run_dir, frame, latent_dim, verdict, high_level_verdict(frame.to_dict("records")))


def plot_collapse_curves(run: RunMetrics, path: str | Path | None = None) -> Path:
    """One small panel per collapse metric against the epoch; saved atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in TABLE_COLUMNS if c in run.frame.columns]
    cols = 3
    rows = max(1, -(-len(columns) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, column in zip(axes.flat, columns):
        ax.plot(run.frame["epoch"], run.frame[column], marker="o")
        ax.set_title(column, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        if column == "val/effective_rank":
            ax.axhline(CollapseRule().rank_fraction * run.latent_dim, color="red", ls="--", lw=0.8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.suptitle(f"{run.run_dir.name}: {run.verdict.label}", color="red" if run.verdict.collapsed else "green")
    fig.tight_layout()
    target = Path(path) if path is not None else run.run_dir / CURVES_FILE
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return target
