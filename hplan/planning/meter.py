"""What a planner computes besides predictor evaluations, counted and timed.

Predictor evaluations are the budget flat and hierarchical planners are compared at, but they are
not all a planner computes: the distance head scores every candidate, the guardrail heads price
candidates and waypoints, and the landmark high level builds and searches a graph (the graph is
built when the agent is, i.e. before its first step). A budget that leaves these out flatters
the planner that leans on them, so the agent reports them beside the evaluations, every step.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

KINDS = ("distance", "guardrail", "graph")
"""``distance``: temporal-distance head rows; ``guardrail``: guardrail-head rows (state or
state-action); ``graph``: shortest-path solves and route look-ups (no rows, time only)."""


class ComputeMeter:
    """Rows evaluated and seconds spent per kind, since the last :meth:`take`."""

    def __init__(self) -> None:
        self.rows: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    @contextmanager
    def measure(self, kind: str, rows: int = 0) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[kind] += time.perf_counter() - start
            self.rows[kind] += int(rows)

    def count(self, kind: str, rows: int) -> None:
        """Add rows whose number is known only after the call (the output's shape)."""
        self.rows[kind] += int(rows)

    def take(self) -> dict[str, float]:
        """Everything since the last call, as ``<kind>_evals`` and ``<kind>_ms``; then start afresh."""
        out: dict[str, float] = {}
        for kind in KINDS:
            if kind != "graph":
                out[f"{kind}_evals"] = int(self.rows[kind])
            out[f"{kind}_ms"] = 1000.0 * self.seconds[kind]
        self.rows.clear()
        self.seconds.clear()
        return out
