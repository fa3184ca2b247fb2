"""Run the ``hplan`` console script in-process, as a user would, for CLI tests."""

from __future__ import annotations

import sys

import pytest

from hplan import cli


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``hplan.cli.main`` in-process (as the console script does); returns exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["hplan", *args])
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at 80 columns when not on a terminal
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TINY_TWO_ROOMS_TOML = """
name = "tiny_two_rooms"
[env]
id = "hplan/PointRooms-v0"
obs_mode = "state"
max_steps = 5
[env.kwargs]
layout = "two_rooms"
[task]
min_rooms_apart = 1
[planner]
{planner}
"""
"""A five-step two-rooms scenario; ``{planner}`` takes the [planner] section's lines (``str.format``)."""
