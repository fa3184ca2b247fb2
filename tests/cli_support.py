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
