"""``hplan inspect RUN_DIR``: collapse diagnostics per epoch as a table, a PNG of the curves, a verdict."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def inspect_command(
    run_dir: Path = typer.Argument(..., help="run directory written by `hplan train`"),
) -> None:
    """Print the per-epoch collapse metrics, save collapse.png into the run dir, say COLLAPSED or healthy."""
    from hplan.diagnostics.collapse import CollapseRule
    from hplan.diagnostics.report import TABLE_COLUMNS, plot_collapse_curves, read_run_metrics

    console = Console()
    run = read_run_metrics(run_dir)
    frame = run.frame
    extra = sorted(c for c in frame.columns if c.startswith("val/auroc_") or c == "val/distance_spearman")
    columns = [c for c in TABLE_COLUMNS if c in frame.columns] + extra
    table = Table(title=f"{run_dir} — latent_dim {run.latent_dim}", title_justify="left")
    table.add_column("epoch", justify="right")
    for column in columns:
        table.add_column(column.split("/", 1)[-1], justify="right")
    for _, row in frame.iterrows():
        table.add_row(str(int(row["epoch"])), *(_fmt(row.get(c)) for c in columns))
    console.print(table)
    png = plot_collapse_curves(run)
    rule = CollapseRule()
    console.print(f"rule: collapsed when {rule.loss_key} fell and, at the last epoch, effective_rank < "
                  f"{rule.rank_fraction:g}·latent_dim, std_mean < {rule.std_floor:g} or probe_r2 < {rule.probe_floor:g}",
                  style="dim")
    style = "bold red" if run.verdict.collapsed else "bold green"
    console.print(f"[{style}]{run.verdict.describe()}[/]")
    console.print(f"curves: {png}")


def _fmt(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    if number != number:
        return "-"
    return f"{number:.4g}"


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
