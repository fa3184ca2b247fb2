"""``hplan calibrate RUN_DIR --data DATASET``: conformal guardrail thresholds for a trained model.

``hplan train`` calibrates on its validation episodes by itself; this command (re)calibrates any run
on a dataset of its scenario — a held-out collection (``hplan collect --split heldout``) is the
natural one — and writes ``calibration.json`` beside ``model.pt``. Scenarios then set
``[guardrails] risk = δ`` instead of a probability threshold.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def calibrate_command(
    run_dir: Path = typer.Argument(..., help="run directory written by `hplan train`"),
    data: Path = typer.Option(..., "--data", "-d", help="labelled dataset of the run's scenario (every episode is used)"),
    labels: int = typer.Option(0, "--labels", min=0, max=10_000_000,
                               help="calibrate on a seeded sample of this many transitions (0: all)"),
    risk: float = typer.Option(0.05, "--risk", min=1e-6, max=0.999999,
                               help="risk level δ at which to print the thresholds"),
    device: str = typer.Option("auto", help="torch device"),
) -> None:
    """Write RUN_DIR/calibration.json from DATASET and print each head's threshold at δ."""
    import numpy as np

    from hplan.commands.inspect import load_run_and_dataset
    from hplan.data.shards import load_episodes
    from hplan.errors import HplanError
    from hplan.io import check_out_dir
    from hplan.models.calibration import calibrate_guardrails, save_calibration

    check_out_dir(run_dir, owns=("model.pt",), what="training run", option="RUN_DIR")  # writable, before any work
    scenario, model = load_run_and_dataset(run_dir, data, device)  # checks the dataset fits the model first
    if not model.guardrail_names:
        raise HplanError(f"{run_dir}: the model has no guardrail heads to calibrate")
    episodes = load_episodes(data)
    _, action = episodes.model_actions()
    calibration = calibrate_guardrails(model, episodes["obs"], action, episodes["violations"], episodes.num_obs,
                                       np.arange(episodes.num_episodes), str(data), labels, seed=scenario.seed)
    path = save_calibration(calibration, run_dir)
    table = Table(title=f"guardrail thresholds at δ = {risk:g} ({calibration.transitions:,} transitions of {data})",
                  title_justify="left")
    for heading in ("head", "violating transitions", "threshold", "safe transitions flagged"):
        table.add_column(heading, justify="left" if heading == "head" else "right")
    report = calibration.report(risk, scenario.guardrails.members)
    for name in model.guardrail_names:
        flagged, tau = report[f"safe_flagged_{name}"], report[f"threshold_{name}"]
        table.add_row(name, f"{int(report[f'calibration_violations_{name}']):,}",
                      "too few violations" if tau != tau else f"{tau:.3f}", "-" if flagged != flagged else f"{flagged:.1%}")
    console = Console()
    console.print(table)
    console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_command)
