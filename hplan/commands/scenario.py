"""``hplan scenario``: list the built-in scenarios and check a scenario file.

``check`` validates a file completely — structure and types (:func:`hplan.config.load_scenario`),
then what only the environment can judge (env id, layout, env kwargs, task fields:
``hplan.envs.factory.validate_scenario_env``), then whether the collection settings fit the env —
so a user learns about a typo before a long collection or training run, not during it.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hplan.commands.options import SET_OPTION

scenario_app = typer.Typer(help="List built-in scenarios and check scenario files.", no_args_is_help=True)


@scenario_app.command("list")
def list_scenarios() -> None:
    """Print the built-in scenarios (pass the name wherever a scenario is expected)."""
    from hplan.config import builtin_scenarios, load_scenario

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("env", no_wrap=True)
    table.add_column("description")
    for name in builtin_scenarios():
        scenario = load_scenario(name)
        table.add_row(name, scenario.env.id, scenario.description)
    Console().print(table)


@scenario_app.command("check")
def check(file: Path = typer.Argument(..., help="scenario TOML file (or the name of a built-in scenario)"),
          set_: list[str] = SET_OPTION) -> None:
    """Validate a scenario file fully and print a short summary; errors name the file and field."""
    from hplan.data.validate import validate_scenario

    report = validate_scenario(file, sets=set_)
    console = Console()
    scenario = report.scenario
    console.print(f"[bold green]ok[/] {scenario.source}: [bold]{scenario.name}[/] — {scenario.description}",
                  highlight=False)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    for key, value in report.summary_rows():
        table.add_row(key, value)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(scenario_app, name="scenario")
