"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _subnormals_restored() -> Iterator[None]:
    """Every hplan command turns on flushing of subnormal floats for its process
    (:func:`hplan.device.flush_denormals`); a test that runs a command in-process must not leave it
    on for the next test in the same worker (hypothesis, for one, refuses to draw floats then)."""
    yield
    import torch

    torch.set_flush_denormal(False)
