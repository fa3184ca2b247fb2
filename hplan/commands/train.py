"""``hplan train SCENARIO --data DIR --out RUN_DIR``: train (or resume) a two-level latent world model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from hplan.commands.options import SET_OPTION, record_command
from hplan.config import MAX_SEED
from hplan.models.config import MAX_EPOCHS


def train_command(
    scenario: str = typer.Argument(..., help="built-in scenario name or path to a scenario TOML file"),
    data: Path = typer.Option(..., "--data", "-d", help="dataset directory written by `hplan collect`"),
    out: Path = typer.Option(..., "--out", "-o", help="run directory (re-run the same command to resume)"),
    regularizer: Optional[str] = typer.Option(None, help="override [model] regularizer: vicreg, sigreg, ema, none, recon"),
    max_epochs: Optional[int] = typer.Option(None, "--max-epochs", min=1, max=MAX_EPOCHS, help="override [train] max_epochs"),
    latent_dim: Optional[int] = typer.Option(None, "--latent-dim", min=2, help="override [model] latent_dim"),
    device: Optional[str] = typer.Option(None, help="override [train] device: auto, cpu, cuda, ..."),
    seed: Optional[int] = typer.Option(None, min=0, max=MAX_SEED, help="override the scenario's master seed (the training seed)"),
    set_: list[str] = SET_OPTION,
) -> None:
    """Train a world model with Lightning; writes config, seed, versions, checkpoints, metrics.csv, model.pt."""
    from hplan.config import load_scenario
    from hplan.diagnostics.report import read_run_metrics
    from hplan.io import check_out_dir
    from hplan.models.training import train_world_model

    console = Console()
    config = load_scenario(scenario, sets=set_)
    check_out_dir(out, owns=("config.json",), what="training run")
    run_dir = train_world_model(config, data, out, progress=True, regularizer=regularizer, max_epochs=max_epochs,
                                latent_dim=latent_dim, device=device, seed=seed)
    record_command(run_dir, set_)
    run = read_run_metrics(run_dir)
    last = run.frame.iloc[-1]
    shown = ", ".join(f"{k.split('/')[-1]} {last[k]:.3g}" for k in ("val/loss", "val/probe_r2", "val/effective_rank")
                      if k in last and last[k] == last[k])
    style = "bold red" if run.verdict.collapsed else "bold green"
    console.print(f"trained [bold]{run_dir}[/] — {shown} — [{style}]{run.verdict.describe()}[/]")
    console.print(f"see `hplan inspect {run_dir}` for the collapse diagnostics per epoch")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
