"""Options several commands share, so each is declared (and documented) once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import typer

SET_OPTION: Any = typer.Option(
    [], "--set",
    help="scenario override SECTION.FIELD=VALUE (repeatable; the value is read as TOML), e.g. "
         "--set planner.horizon=12 --set model.regularizer=sigreg; validated like the file")

SPLIT_OPTION: Any = typer.Option(
    "test", "--split",
    help="evaluation episodes: `test` (reported numbers) or `val` (choosing settings); disjoint seed streams")


def record_command(directory: Path, sets: Sequence[str]) -> None:
    """Write ``command.json`` into an output directory: the command line and its ``--set``
    assignments, so every variant in a results table has the command that made it."""
    from hplan.io import write_json

    write_json(Path(directory) / "command.json", {"argv": ["hplan", *sys.argv[1:]], "sets": list(sets)})
