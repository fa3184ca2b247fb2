"""``hplan study run|show|export|plots|metrics``: Optuna studies over the whole pipeline.

The storage defaults to ``<study dir>/study.db`` (SQLite, no set-up); ``--storage`` takes any
Optuna RDB URL (e.g. ``postgresql+psycopg2://user@host/db`` shared by workers on many machines)
or ``journal:PATH``. optuna-dashboard opens the same storage: ``optuna-dashboard sqlite:///…``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from hplan.configio import MAX_MAGNITUDE

study_app = typer.Typer(help="Optuna studies: search and ablate the pipeline (SQLite by default, any RDB URL).",
                        no_args_is_help=True)

STUDY_ARG = typer.Argument(..., help="study name under studies/ or path to a study TOML file")
STORAGE_OPT = typer.Option(None, "--storage", help="Optuna storage URL (default: sqlite in the study dir)")
DIR_OPT = typer.Option(None, "--study-dir", help="study output folder (default: runs/studies/<name>)")


def _study_dir(config_name: str, given: Optional[Path]) -> Path:
    return given if given is not None else Path("runs") / "studies" / config_name


def _storage(storage: Optional[str], study_dir: Path) -> str:
    from hplan.studies.storage import default_storage_url

    return storage or default_storage_url(study_dir)


@study_app.command("run")
def run_command(
    study: str = STUDY_ARG,
    storage: Optional[str] = STORAGE_OPT,
    n_trials: Optional[int] = typer.Option(None, "--n-trials", min=1, help="trials in the study (default: the file's)"),
    workers: int = typer.Option(1, "--workers", min=1, help="local worker processes sharing the storage"),
    out: Optional[Path] = typer.Option(None, "--out", help="study output folder (default: runs/studies/<name>)"),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="override the file's seeds per trial"),
    episodes: Optional[int] = typer.Option(None, "--episodes", min=1, max=MAX_MAGNITUDE, help="override episodes per seed"),
    max_epochs: Optional[int] = typer.Option(None, "--max-epochs", min=1, help="override training epochs"),
    collect_episodes: Optional[int] = typer.Option(None, "--collect-episodes", min=1,
                                                   help="override the collected dataset size"),
    set_: list[str] = typer.Option([], "--set", help="scenario override TARGET=VALUE for every trial "
                                                     "(repeatable), e.g. --set planner.search.population=64"),
    check: bool = typer.Option(False, "--check", help="only validate the study file (scenario, environment, "
                                                      "parameter bounds, stress suite) and --out; run nothing"),
) -> None:
    """Run (or resume) a study until it has its budget of trials; prints the best trial(s).

    The scale options make a quick, smaller version of a canned study; give it its own --out.
    """
    from hplan.io import check_out_dir
    from hplan.studies.loading import load_study, rescale
    from hplan.studies.report import render_table
    from hplan.studies.storage import redact
    from hplan.studies.workers import run_study

    config = rescale(load_study(study), seeds=seeds, episodes=episodes, max_epochs=max_epochs,
                     collect_episodes=collect_episodes, sets=tuple(set_))
    study_dir = check_out_dir(_study_dir(config.name, out), owns=("study.db", "trials", "data"), what="study folder")
    url = _storage(storage, study_dir)
    console = Console()
    if check:
        console.print(f"[bold green]ok[/] {config.source}: scenario {config.scenario}, {len(config.params)} "
                      f"parameter(s), {config.n_trials if n_trials is None else n_trials} trial(s), "
                      f"pipeline {config.pipeline}", highlight=False)
        return
    console.print(f"study [bold]{config.name}[/] → {redact(url)}  (trials in {study_dir}/trials/{config.name})", highlight=False)
    handle = run_study(config, url, study_dir, n_trials=n_trials, workers=workers)
    console.print(render_table(handle, [o.metric for o in config.objectives], limit=30))


@study_app.command("show")
def show_command(
    study: str = STUDY_ARG,
    storage: Optional[str] = STORAGE_OPT,
    study_dir: Optional[Path] = DIR_OPT,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="show only the last N trials"),
) -> None:
    """A table of the study's trials; ★ marks the best feasible trial or the Pareto front."""
    from hplan.studies.loading import load_study
    from hplan.studies.report import best_trials, render_table
    from hplan.studies.workers import load

    config = load_study(study, check_scenario=False)
    handle = load(config, _storage(storage, _study_dir(config.name, study_dir)))
    console = Console()
    console.print(render_table(handle, [o.metric for o in config.objectives], limit=limit))
    best = best_trials(handle)
    label = "best trial" if len(config.objectives) == 1 else "Pareto front"
    if not best:
        console.print(f"{label}: none yet (no complete feasible trial)")
    for trial in best:
        values = ", ".join(f"{o.metric}={v:.4g}" for o, v in zip(config.objectives, trial.values))
        console.print(f"{label}: #{trial.number} {values} {trial.params} run_dir={trial.user_attrs.get('run_dir')}",
                      highlight=False, soft_wrap=True)


@study_app.command("export")
def export_command(
    study: str = STUDY_ARG,
    out: Path = typer.Option(..., "--out", help="trials table: .parquet or .csv"),
    storage: Optional[str] = STORAGE_OPT,
    study_dir: Optional[Path] = DIR_OPT,
) -> None:
    """Export every trial (params, values, metrics, constraints, run dirs) as a table."""
    from hplan.studies.report import export

    _, handle = _open_study(study, storage, study_dir)
    path = export(handle, out)
    Console().print(f"wrote {path} ({len(handle.trials)} trials)", highlight=False)


@study_app.command("plots")
def plots_command(
    study: str = STUDY_ARG,
    out: Path = typer.Option(..., "--out", help="folder for the PNG files"),
    storage: Optional[str] = STORAGE_OPT,
    study_dir: Optional[Path] = DIR_OPT,
) -> None:
    """Optimisation history, Pareto front and parameter importances as PNG files."""
    from hplan.studies.report import plots

    config, handle = _open_study(study, storage, study_dir)
    for path in plots(handle, config, out):
        Console().print(f"wrote {path}", highlight=False)


def _open_study(study: str, storage: Optional[str], study_dir: Optional[Path]):
    """The study file's config and its Optuna study, on the given or default storage (read-only use)."""
    from hplan.studies.loading import load_study
    from hplan.studies.workers import load

    config = load_study(study, check_scenario=False)
    return config, load(config, _storage(storage, _study_dir(config.name, study_dir)))


@study_app.command("metrics")
def metrics_command() -> None:
    """The metric table: names usable as objectives and constraints, with their definitions."""
    from rich.table import Table

    from hplan.studies.metrics import METRICS

    table = Table(title="study metrics")
    for col in ("name", "source", "better", "definition"):
        table.add_column(col)
    for m in METRICS.values():
        table.add_row(m.name, m.source, m.direction, " ".join(m.doc.split()))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
