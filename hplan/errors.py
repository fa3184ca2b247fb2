"""User-facing errors.

Every error a user can cause (a malformed file, an unknown id, a bad checkpoint) is raised as an
``HplanError``; the CLI prints its message as one line and exits non-zero. Library code never
prints tracebacks for user mistakes.
"""

from __future__ import annotations


class HplanError(Exception):
    """An error caused by user input; ``str(err)`` is the one line the CLI prints."""

    exit_code: int = 2


class ConfigError(HplanError):
    """A file (scenario, suite, study, log) has a bad field.

    The message always names the file and the dotted field path, e.g.
    ``scenarios/x.toml: planner.horizon: must be >= 1, got 0``.
    """

    def __init__(self, file: str, field: str, message: str) -> None:
        self.file = str(file)
        self.field = field
        self.message = message
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {message}")


class CheckpointError(HplanError):
    """A checkpoint or run directory is missing, corrupt, or does not match the scenario."""


class ReplayDivergence(HplanError):
    """A replayed episode did not reproduce its log."""

    exit_code = 3


class ThresholdFailure(HplanError):
    """A stress-suite pass/fail threshold failed."""

    exit_code = 1
