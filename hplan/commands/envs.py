"""``hplan envs``: list the registered environment ids, or one env's factors of variation."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("envs")(envs)


def envs(
    factors: Optional[str] = typer.Option(
        None, "--factors", metavar="ID", help="print the factors of variation of this env id as a table"),
) -> None:
    """List registered environment ids (one per line), or the factors of variation of one id."""
    from hplan.envs.registry import registered_ids

    if factors is None:
        for env_id in registered_ids():
            typer.echo(env_id)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from hplan.envs.factors import factors_for

    table = Table(title=f"factors of variation: {factors}")
    for column in ("name", "kind", "nominal", "low", "high", "doc"):
        table.add_column(column, overflow="fold")
    for item in factors_for(factors):
        doc = item.doc + (f": {', '.join(map(str, item.choices))}" if item.choices else "")
        cells = (item.name, item.kind, _show(item.nominal), _show(item.low), _show(item.high), doc)
        table.add_row(*map(escape, cells))
    Console().print(table)


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and "\n" in value:
        return "<ascii map>"
    return str(value)
