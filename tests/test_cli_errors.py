"""The console script turns user errors into one line, printed as written."""

from __future__ import annotations

import pytest

from hplan import cli
from hplan.errors import HplanError
from tests.cli_support import run_cli


def test_an_error_naming_a_toml_section_is_printed_verbatim(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Square brackets are TOML section names here, not console markup: they must survive."""
    message = "[guardrails] names: unknown guardrail(s) ['lava'] (the model has: ['wall_contact'])"

    def failing_app(**_: object) -> None:
        raise HplanError(message)

    monkeypatch.setattr(cli, "app", failing_app)
    code, out, err = run_cli(monkeypatch, capsys)
    assert code != 0 and out == ""
    assert err.strip() == f"error: {message}"
