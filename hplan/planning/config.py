"""Planner and guardrail settings ([planner] and [guardrails] in a scenario file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hplan.configio import meta


@dataclass(frozen=True)
class PlannerConfig:
    """How the agent plans: flat (low level straight at the goal) or hierarchical."""

    kind: Literal["flat", "hier"] = field(default="hier", metadata=meta("flat baseline or hierarchical planner"))
    low: Literal["cem", "mppi", "grad", "cem_discrete"] = field(
        default="cem", metadata=meta("low-level optimiser"))
    horizon: int = field(default=16, metadata=meta("low-level planning horizon (steps)", ge=1, le=512))
    population: int = field(default=256, metadata=meta("candidates per iteration", ge=2))
    iterations: int = field(default=4, metadata=meta("optimiser iterations per plan", ge=1))
    elites: int = field(default=32, metadata=meta("elite candidates kept by CEM", ge=1))
    device: str = field(default="auto", metadata=meta("torch device: auto, cpu, cuda, ..."))


@dataclass(frozen=True)
class GuardrailConfig:
    """How guardrail-head predictions enter the planner's energy."""

    mode: Literal["off", "penalty", "hard", "lagrangian"] = field(
        default="penalty", metadata=meta("off, weighted penalty, hard constraint or Lagrangian"))
    weight: float = field(default=10.0, metadata=meta("penalty weight on predicted violation probability", ge=0.0))
    threshold: float = field(default=0.5, metadata=meta("probability above which a candidate is unsafe", gt=0.0, lt=1.0))
    budget: float = field(default=0.02, metadata=meta("Lagrangian mode: allowed mean violation probability", ge=0.0, le=1.0))
