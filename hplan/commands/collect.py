"""``hplan collect SCENARIO``: offline exploration data for training, with a progress bar.

Re-running the same command on the same ``--out`` resumes an interrupted collection (complete
shards are skipped; the result equals an uninterrupted run). See :mod:`hplan.data.collect`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hplan.commands.options import SET_OPTION, record_command
from hplan.config import MAX_COLLECT_EPISODES


def collect_command(
    scenario: str = typer.Argument(..., help="built-in scenario name or path to a scenario TOML file"),
    episodes: Optional[int] = typer.Option(None, "--episodes", "-n", min=1, max=MAX_COLLECT_EPISODES,
                                           help="episodes to collect (default: the scenario's [collect].episodes)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="dataset directory (default: runs/data/<scenario name>)"),
    split: str = typer.Option("train", "--split",
                              help="`train`, or `heldout`: a seed stream training never uses (for diagnostics)"),
    set_: list[str] = SET_OPTION,
) -> None:
    """Collect exploration episodes into sharded files with a manifest (resumable)."""
    from hplan.config import load_scenario
    from hplan.data.collect import collect
    from hplan.envs.factory import validate_scenario_env

    config = load_scenario(scenario, sets=set_)
    validate_scenario_env(config)
    out_dir = out if out is not None else Path("runs") / "data" / (config.name + ("" if split == "train" else f"-{split}"))
    console = Console()
    with Progress(TextColumn("[bold]collect[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("episodes"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task(config.name, total=None)

        def on_start(total: int, done: int) -> None:
            progress.update(task, total=total, completed=done)

        result = collect(config, out_dir, episodes=episodes, on_start=on_start, split=split,
                         on_episodes=lambda n: progress.advance(task, n))
    record_command(out_dir, set_)
    for problem in result.shards_damaged:
        console.print(f"[yellow]collected again[/] a damaged shard: {out_dir / problem}", highlight=False)
    console.print(summary_table(result.manifest, result))


def summary_table(manifest: dict[str, Any], result: Any) -> Table:
    """The closing summary: sizes, speed, room coverage and violation rates."""
    table = Table(title=f"dataset {result.out_dir}", show_header=False, box=None, pad_edge=False, title_justify="left")
    table.add_column(style="dim")
    table.add_column()
    table.add_row("episodes", f"{manifest['episodes']} ({result.shards_written} shards written, "
                              f"{result.shards_skipped} already complete)")
    table.add_row("transitions", f"{manifest['transitions']} valid")
    if result.shards_written:
        table.add_row("speed", f"{result.transitions_per_second:,.0f} transitions/s "
                               f"({result.transitions_written} in {result.seconds:.1f} s, incl. writing)")
    if "room_coverage" in manifest:
        cover = "  ".join(f"{room}: {frac:.1%}" for room, frac in manifest["room_coverage"].items())
        table.add_row("room coverage", f"{manifest['rooms_visited']}/{manifest['num_rooms']} rooms visited — {cover}")
    table.add_row("violation rate", f"{manifest['violation_rate']:.1%} of episodes, "
                                    f"{manifest['violations_per_1000_steps']:.1f} per 1,000 steps")
    for name, rate in manifest["violation_step_rates"].items():
        table.add_row(f"  {name}", f"{rate:.2%} of steps")
    return table


def register(app: typer.Typer) -> None:
    app.command("collect")(collect_command)
