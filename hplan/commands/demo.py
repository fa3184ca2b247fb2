"""``hplan demo``: the README's main job — the whole pipeline on the embedded default scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def demo_command(
    quick: bool = typer.Option(False, "--quick", help="a first look in about three minutes (tiny data, 4 epochs)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="demo folder (default: runs/demo, or runs/demo-quick with --quick)"),
    scenario: str = typer.Option("point_four_rooms", "--scenario", help="scenario name or TOML path"),
    fresh: bool = typer.Option(False, "--fresh", help="ignore cached data and checkpoints and start over"),
    device: str = typer.Option("auto", "--device", help="torch device: auto (GPU when present), cpu, cuda"),
) -> None:
    """Collect data, train the two-level model, compare planners with and without guardrails,
    run the smoke stress suite, and write a self-contained report.html."""
    from hplan.demo import run_demo

    run_demo(scenario=scenario, out_dir=out, quick=quick, fresh=fresh, device=device)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
