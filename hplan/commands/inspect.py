"""``hplan inspect RUN_DIR``: collapse diagnostics per epoch as a table, a PNG of the curves, a verdict."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from hplan.diagnostics.collapse import Verdict


MAX_EPOCH_COLUMNS = 8


def inspect_command(
    run_dir: Path = typer.Argument(..., help="run directory written by `hplan train`"),
    data: Optional[Path] = typer.Option(None, "--data", "-d", help=(
        "also evaluate model.pt on this held-out dataset: probe R², 8-step predicted probe R², guardrail "
        "AUROC, temporal distance vs true geodesic")),
    device: str = typer.Option("auto", help="torch device for --data evaluation"),
) -> None:
    """Print the per-epoch collapse and high-level metrics, save collapse.png into the run dir, say
    COLLAPSED or healthy (the encoder) and DEGENERATE or healthy (the high level)."""
    from hplan.diagnostics.collapse import CollapseRule
    from hplan.diagnostics.high_level import HighLevelRule
    from hplan.diagnostics.report import HIGH_LEVEL_COLUMNS, TABLE_COLUMNS, plot_collapse_curves, read_run_metrics

    console = Console()
    heldout = load_run_and_dataset(run_dir, data, device) if data is not None else None  # bad --data: before any output
    run = read_run_metrics(run_dir)
    frame = run.frame
    extra = sorted(c for c in frame.columns if c.startswith("val/auroc_") or c == "val/distance_spearman")
    columns = [c for c in TABLE_COLUMNS if c in frame.columns] + extra
    shown = frame.tail(MAX_EPOCH_COLUMNS)  # metrics as rows, epochs as columns: fits a terminal
    title = f"{run_dir} — latent_dim {run.latent_dim}"
    if len(shown) < len(frame):
        title += f" (last {len(shown)} of {len(frame)} epochs)"
    console.print(_epoch_table(title, shown, columns))
    high = [c for c in HIGH_LEVEL_COLUMNS if c in frame.columns]
    high += sorted((c for c in frame.columns if c.startswith("val/high_probe_r2")), key=lambda c: (len(c), c))
    if high:
        console.print(_epoch_table("high level (subgoal model, P_hi) on validation episodes", shown, high))
    png = plot_collapse_curves(run)
    _print_verdict(console, CollapseRule().describe(), run.verdict)
    if run.high_level is not None:
        _print_verdict(console, HighLevelRule().describe(), run.high_level)
    console.print(f"curves: {png}")
    if data is not None:
        _heldout(console, *heldout, data)


def load_run_and_dataset(run_dir: Path, data: Path, device: str) -> tuple[Any, Any]:
    """The run's scenario and model, checked against the ``--data`` dataset's manifest."""
    from hplan.io import read_json_object

    from hplan.config import ScenarioConfig
    from hplan.configio import from_mapping
    from hplan.diagnostics.heldout import check_dataset_fits
    from hplan.models.checkpoint import load_world_model

    from hplan.planning.migration import nest_scenario_planner

    config_path = run_dir / "config.json"
    recorded = nest_scenario_planner(read_json_object(config_path), source=str(config_path))
    scenario = from_mapping(ScenarioConfig, recorded, source=str(config_path))
    model = load_world_model(run_dir, device=device, expect_env_id=scenario.env.id)
    check_dataset_fits(model, data)
    return scenario, model


def _heldout(console: Console, scenario: Any, model: Any, data: Path) -> None:
    from hplan.diagnostics.heldout import evaluate_heldout, layout_geodesic
    from hplan.errors import HplanError

    geodesic = None
    try:
        from hplan.envs.factory import make_env

        env = make_env(scenario).unwrapped
        geodesic = layout_geodesic(env)
    except (ImportError, HplanError) as err:  # no env to ask (e.g. an unregistered id): skip geodesic figures
        console.print(f"no geodesic distances: {err}", style="dim")
    with console.status(f"evaluating on {data}"):
        results = evaluate_heldout(model, data, horizon=scenario.train.rollout_horizon, geodesic=geodesic)
    table = Table(title=f"held-out evaluation on {data}", title_justify="left", show_header=False)
    table.add_column(style="dim")
    table.add_column(justify="right")
    for key, value in results.items():
        table.add_row(key, _fmt(value))
    console.print(table)
    from hplan.diagnostics.high_level import high_level_verdict

    verdict = high_level_verdict(results, prefix="")
    if verdict is not None:
        _print_verdict(console, None, verdict, "held-out ")


def _print_verdict(console: Console, rule: str | None, verdict: "Verdict", prefix: str = "") -> None:
    """The rule (dim) and the verdict (red when flagged, else green)."""
    if rule:
        console.print(f"rule: {rule}", style="dim")
    console.print(f"[{'bold red' if verdict.flagged else 'bold green'}]{prefix}{verdict.describe()}[/]")


def _epoch_table(title: str, shown: "pd.DataFrame", columns: list[str]) -> Table:
    """Metrics as rows, epochs as columns (fits a terminal)."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for epoch in shown["epoch"]:
        table.add_column(f"ep {int(epoch)}", justify="right")
    for column in columns:
        table.add_row(column, *(_fmt(v) for v in shown[column]))
    return table


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
