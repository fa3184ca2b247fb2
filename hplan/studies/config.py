"""Study files: the TOML a researcher edits to search or ablate the whole pipeline.

A study names a scenario, a search space of dotted targets into that scenario
(``model.regularizer``, ``planner.horizon``, ...), fixed overrides, objectives and risk-budget
constraints from the metric table (:mod:`hplan.studies.metrics`), a sampler, a pruner and a
budget. :func:`hplan.studies.loading.load_study` parses it once into these frozen dataclasses and
checks every target and every value against the scenario's own dataclasses, so a typo fails before
any trial starts, with one line naming the study file and the field.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hplan.configio import meta

STUDY_DIR = Path(__file__).resolve().parent.parent.parent / "studies"

ParamKind = Literal["categorical", "int", "log_int", "float", "log_float"]
Scalar = bool | int | float | str


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: a dotted target into the scenario and its distribution."""

    target: str = field(metadata=meta("dotted scenario field, e.g. model.latent_dim or planner.horizon"))
    kind: ParamKind = field(default="categorical", metadata=meta(
        "distribution: categorical (choices), int/log_int or float/log_float (low..high)"))
    choices: tuple[Scalar, ...] = field(default=(), metadata=meta("values of a categorical parameter"))
    # bounded by the target field's own bounds (checked at load), not by configio's generic size limit
    low: float | None = field(default=None, metadata=meta("lower bound (inclusive) of a numeric parameter",
                                                          ge=-math.inf, le=math.inf))
    high: float | None = field(default=None, metadata=meta("upper bound (inclusive) of a numeric parameter",
                                                           ge=-math.inf, le=math.inf))
    step: float | None = field(default=None, metadata=meta("grid step of a linear int/float parameter", gt=0))

    def __post_init__(self) -> None:
        if self.kind == "categorical":
            if not self.choices:
                raise ValueError(f"{self.target}: a categorical parameter needs a non-empty `choices` list")
            if self.low is not None or self.high is not None or self.step is not None:
                raise ValueError(f"{self.target}: a categorical parameter takes `choices`, not low/high/step")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ValueError(f"{self.target}: `choices` has duplicates")
            return
        if self.choices:
            raise ValueError(f"{self.target}: a {self.kind} parameter takes low/high, not `choices`")
        if self.low is None or self.high is None:
            raise ValueError(f"{self.target}: a {self.kind} parameter needs both `low` and `high`")
        if self.low > self.high:
            raise ValueError(f"{self.target}: low ({self.low}) > high ({self.high})")
        if self.kind.startswith("log_"):
            if self.low <= 0:
                raise ValueError(f"{self.target}: a {self.kind} parameter needs low > 0")
            if self.step is not None:
                raise ValueError(f"{self.target}: `step` cannot be combined with a log scale")
        if self.kind in ("int", "log_int"):
            ints = [v for v in (self.low, self.high, self.step) if v is not None]
            if any(float(v) != int(v) for v in ints):
                raise ValueError(f"{self.target}: an int parameter needs integer low/high/step")

    @property
    def name(self) -> str:
        """Optuna parameter name: the dotted target itself (readable in tables and the dashboard)."""
        return self.target


@dataclass(frozen=True)
class ObjectiveSpec:
    """One optimisation objective, a metric from the metric table."""

    metric: str = field(metadata=meta("metric name (see `hplan study metrics`), e.g. success_rate"))
    direction: Literal["maximize", "minimize"] | None = field(default=None, metadata=meta(
        "maximize or minimize; the metric's natural direction if unset"))


@dataclass(frozen=True)
class ConstraintSpec:
    """A risk budget: a metric bound that makes violating trials infeasible for the sampler."""

    metric: str = field(metadata=meta("metric name, e.g. violation_rate"))
    max: float | None = field(default=None, metadata=meta("feasible when metric <= max"))
    min: float | None = field(default=None, metadata=meta("feasible when metric >= min"))

    def __post_init__(self) -> None:
        if (self.max is None) == (self.min is None):
            raise ValueError(f"constraint on {self.metric}: set exactly one of `max` or `min`")

    @property
    def name(self) -> str:
        bound = f"le_{self.max:g}" if self.max is not None else f"ge_{self.min:g}"
        return f"{self.metric}_{bound}"

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 is feasible, the positive part is the amount of violation."""
        return value - self.max if self.max is not None else self.min - value  # type: ignore[operator]


@dataclass(frozen=True)
class SamplerConfig:
    """Which Optuna sampler proposes parameters."""

    kind: Literal["tpe", "nsgaii", "random", "grid"] = field(default="tpe", metadata=meta(
        "tpe (single/multi-objective), nsgaii (multi-objective), random, grid (ablations)"))
    seed: int = field(default=0, metadata=meta("sampler seed", ge=0))
    n_startup_trials: int = field(default=8, metadata=meta("tpe: random trials before modelling", ge=0))
    population_size: int = field(default=16, metadata=meta("nsgaii: population per generation", ge=2))


@dataclass(frozen=True)
class PrunerConfig:
    """Which Optuna pruner stops hopeless trials from their validation-loss curve."""

    kind: Literal["median", "hyperband", "none"] = field(default="median", metadata=meta(
        "median, hyperband or none (multi-objective studies cannot prune)"))
    n_startup_trials: int = field(default=3, metadata=meta("median: trials before pruning starts", ge=0))
    n_warmup_steps: int = field(default=1, metadata=meta("median: epochs before a trial can be pruned", ge=0))
    min_resource: int = field(default=1, metadata=meta("hyperband: minimum epochs", ge=1))
    reduction_factor: int = field(default=3, metadata=meta("hyperband: reduction factor", ge=2))


@dataclass(frozen=True)
class StorageConfig:
    """Heartbeats and retries of trials whose worker died."""

    heartbeat_interval: int = field(default=10, metadata=meta("seconds between a running trial's heartbeats", ge=1))
    grace_period: int = field(default=30, metadata=meta(
        "seconds without heartbeat after which a running trial is stale (failed, then retried)", ge=1))
    max_retry: int = field(default=2, metadata=meta("retries of a trial whose worker died", ge=0))
    connect_timeout: int = field(default=5, metadata=meta("seconds to wait for a database server", ge=1))


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the synthetic pipeline (analytic metrics, no training) used to test studies."""

    epochs: int = field(default=4, metadata=meta("intermediate values reported per trial", ge=1))
    epoch_seconds: float = field(default=0.0, metadata=meta("sleep per reported epoch", ge=0.0))
    noise: float = field(default=0.02, metadata=meta("per-seed noise on the metrics", ge=0.0))


@dataclass(frozen=True)
class StudyConfig:
    """A whole study file."""

    name: str = field(metadata=meta("study name in the storage (one storage can hold many studies)"))
    scenario: str = field(metadata=meta("scenario name (scenarios/NAME.toml) or path"))
    objectives: tuple[ObjectiveSpec, ...] = field(metadata=meta("[[objectives]]: one or more metrics"))
    description: str = field(default="", metadata=meta("one line for humans"))
    pipeline: Literal["full", "synthetic"] = field(default="full", metadata=meta(
        "full: collect, train, run (and stress); synthetic: analytic metrics to test the machinery"))
    n_trials: int = field(default=20, metadata=meta("trials in the study (all workers together)", ge=1))
    seeds: int = field(default=1, metadata=meta("training+evaluation seeds per trial (same seeds for every trial)", ge=1))
    episodes_per_seed: int = field(default=10, metadata=meta("evaluation episodes per seed", ge=1))
    collect_episodes: int | None = field(default=None, metadata=meta("override collect.episodes", ge=1))
    max_epochs: int | None = field(default=None, metadata=meta("override train.max_epochs", ge=1))
    stress_suite: str | None = field(default=None, metadata=meta(
        "optional stress-suite file run on every trial's model (adds stress_* metrics)"))
    overrides: dict[str, Any] = field(default_factory=dict, metadata=meta(
        "[overrides.SECTION] tables merged into the scenario for every trial"))
    params: tuple[ParamSpec, ...] = field(default=(), metadata=meta("[[params]]: the search space"))
    constraints: tuple[ConstraintSpec, ...] = field(default=(), metadata=meta("[[constraints]]: risk budgets"))
    sampler: SamplerConfig = field(default_factory=SamplerConfig, metadata=meta("[sampler] section"))
    pruner: PrunerConfig = field(default_factory=PrunerConfig, metadata=meta("[pruner] section"))
    storage: StorageConfig = field(default_factory=StorageConfig, metadata=meta("[storage] section"))
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig, metadata=meta("[synthetic] section"))
    sets: tuple[str, ...] = field(default=(), metadata=meta(
        "scenario overrides SECTION.FIELD=VALUE from the command line (--set), applied after everything else"))
    source: str = field(default="<memory>", metadata=meta("file this study was read from (set by the loader)"))

    def __post_init__(self) -> None:
        if not self.objectives:
            raise ValueError("objectives: at least one [[objectives]] entry is needed")
        if len(self.objectives) > 1 and self.pruner.kind != "none":
            raise ValueError("pruner.kind: Optuna cannot prune multi-objective studies; set kind = \"none\"")
        targets = [p.target for p in self.params]
        dup = sorted({t for t in targets if targets.count(t) > 1})
        if dup:
            raise ValueError(f"params: target {dup[0]} appears twice")

    @property
    def directions(self) -> list[str]:
        from hplan.studies.metrics import metric

        return [o.direction or metric(o.metric).direction for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def scenario_overrides(self) -> dict[str, Any]:
        """Fixed overrides for every trial (shortcut fields folded into the nested tables)."""
        merged: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in self.overrides.items()}
        if self.collect_episodes is not None:
            merged.setdefault("collect", {})["episodes"] = self.collect_episodes
        if self.max_epochs is not None:
            merged.setdefault("train", {})["max_epochs"] = self.max_epochs
        return merged


def resolve_study_path(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a canned study under ``studies/``."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file() or len(path.parts) > 1:
        return path
    return STUDY_DIR / f"{name_or_path}.toml"
