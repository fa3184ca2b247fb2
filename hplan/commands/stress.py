"""``hplan stress SUITE --out DIR``: run a stress suite, resume it, and judge it against its thresholds.

Everything a suite file can get wrong (unknown scenario or shift, a shift that does not apply, a
severity out of range, a missing or mismatched checkpoint) is checked before the first episode,
so a typo costs a second, not an hour. The exit code is 0 when every threshold passes, 1
(:class:`~hplan.errors.ThresholdFailure`) naming the failing thresholds otherwise, 2 for bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from hplan.commands.options import SET_OPTION
from hplan.configio import MAX_MAGNITUDE


def _print_verdicts(console: Console, outcome) -> None:
    from hplan.stress.summary import verdict_table

    table = Table(title="thresholds", header_style="bold")
    for col in ("threshold", "checked", "failed", "worst", "status"):
        table.add_column(col)
    for _, row in verdict_table(outcome.verdicts).iterrows():
        style = "green" if row["status"] == "PASS" else "bold red"
        table.add_row(row["threshold"], str(row["checked"]), str(row["failed"]), f"{row['worst']:.3g}",
                      f"[{style}]{row['status']}[/]")
    console.print(table)


def stress(
    suite: str = typer.Argument(..., help="suite TOML file, or the name of a built-in suite under stress/"),
    out: Path = typer.Option(..., "--out", help="output directory (re-run with the same one to resume)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="run directory overriding the suite's checkpoints"),
    workers: int = typer.Option(1, "--workers", min=1, help="parallel worker processes (cells run in parallel)"),
    check: bool = typer.Option(False, "--check", help="only validate the suite file and checkpoints, run nothing"),
    no_report: bool = typer.Option(False, "--no-report", help="skip report.html"),
    episodes: Optional[int] = typer.Option(None, "--episodes", min=1, max=MAX_MAGNITUDE,
                                           help="override episodes per scenario × shift × severity"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="override every scenario's step budget"),
    set_: list[str] = SET_OPTION,
) -> None:
    """Run a stress suite: scenarios × shifts × severities × seeds → results.parquet, summary.csv, report.html."""
    from hplan.errors import ThresholdFailure
    from hplan.io import check_out_dir
    from hplan.stress.api import validate_suite
    from hplan.stress.runner import run_suite

    console = Console()
    config, scenarios = validate_suite(suite, checkpoint, episodes=episodes, max_steps=max_steps, sets=tuple(set_))
    check_out_dir(out, owns=("suite.json",), what="stress run")
    cells = len(scenarios) * sum(len(s.severities) for s in config.shifts) * config.blocks
    console.print(f"[bold green]ok[/] {config.source}: {len(scenarios)} scenario(s), {len(config.shifts)} shift(s), "
                  f"{cells} cells of up to {config.episodes_per_cell} episodes", highlight=False)
    if check:
        return
    outcome = run_suite(config, scenarios, out, workers=workers, report=not no_report)
    console.print(f"ran {len(outcome.ran)} cells, skipped {len(outcome.skipped)} finished ones; "
                  f"{len(outcome.episodes)} episodes → {out}/results.parquet, summary.csv"
                  + ("" if no_report else ", report.html")
                  + f"; episode logs in {out}/episodes (verify: hplan replay {out}/episodes --verify)", highlight=False)
    _print_verdicts(console, outcome)
    failures = outcome.failures
    if failures:
        names = sorted({v.rule.describe() for v in failures})
        raise ThresholdFailure(f"{len(names)} threshold(s) failed: " + " | ".join(
            f"{name} [{', '.join(f'{v.shift}/s{v.severity}' for v in failures if v.rule.describe() == name)}]"
            for name in names))


def shifts() -> None:
    """List the registered shifts, what each severity does, and where they apply."""
    from hplan.stress.shifts import SHIFTS

    table = Table(header_style="bold")
    table.add_column("shift")
    table.add_column("applies to")
    table.add_column("what severity 1..3 does")
    for name, spec in SHIFTS.items():
        table.add_row(name, ", ".join(e.split("/")[-1] for e in spec.applies_to), spec.doc)
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("stress")(stress)
    app.command("stress-shifts")(shifts)
