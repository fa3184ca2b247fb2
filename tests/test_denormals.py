"""Subnormal floats are flushed to zero in every process that trains or plans (hplan.device.flush_denormals).

Each case runs in a fresh interpreter: the setting is process-wide and must not leak into other tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

SUBNORMAL = "import torch; print(repr((torch.tensor([1e-39]) * 1.0).item()))"

CASES = {
    "plain torch keeps subnormals": ("", False),
    "every CLI command flushes them": (
        "from typer.testing import CliRunner; from hplan.cli import app; "
        "assert CliRunner().invoke(app, ['envs']).exit_code == 0; ", True),
    "a stress worker flushes them": ("from hplan.stress.runner import _init_worker; _init_worker(); ", True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_subnormals_are_flushed_where_hplan_computes(case):
    prelude, flushed = CASES[case]
    out = subprocess.run([sys.executable, "-c", prelude + SUBNORMAL], capture_output=True, text=True, check=True)
    value = float(out.stdout.strip().splitlines()[-1])
    assert (value == 0.0) is flushed, out.stdout
