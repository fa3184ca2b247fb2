"""Stress-suite files: scenarios × shifts × severities × seeds, checkpoints, planner settings, thresholds.

A suite file (``stress/*.toml``) is parsed once by :func:`load_suite` into frozen dataclasses and
checked *completely* before any episode runs: unknown scenario, unknown shift, a shift that does
not apply to a scenario's environment, a severity out of range, a missing checkpoint, a threshold
on an unknown metric — each is one :class:`~hplan.errors.ConfigError` line naming the file and the
field. A reviewer who typos a shift name must not learn about it an hour into the run.

Example::

    name = "smoke"
    seed = 0
    episodes = 4                  # episodes per (scenario, shift, severity)
    episodes_per_cell = 2         # seed-block size: the unit of parallelism and of resume

    [[scenarios]]
    scenario = "point_four_rooms" # built-in name or path to a scenario file
    checkpoint = "runs/point_four_rooms"

    [[shifts]]
    name = "obs_noise"
    severities = [0, 1, 3]

    [[thresholds]]
    metric = "violation_rate"
    max = 0.1
    shift = "*"
    max_severity = 1
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from hplan.config import ScenarioConfig, load_scenario
from hplan.configio import from_mapping, meta, read_toml, to_mapping
from hplan.errors import ConfigError, HplanError
from hplan.planning.config import GuardrailConfig, PlannerConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITE_DIR = REPO_ROOT / "stress"
MAX_SEVERITY = 3

MetricName = Literal[
    "success_rate", "violation_rate", "violations_per_1000", "guardrail_auroc", "guardrail_fnr",
    "guardrail_ece", "h50", "recovery_rate", "recovery_time_median", "surprise_auroc",
]
METRIC_DOCS: dict[str, str] = {
    "success_rate": "fraction of episodes that reached the goal within tolerance and budget",
    "violation_rate": "fraction of episodes with at least one real violation",
    "violations_per_1000": "violating steps per 1,000 executed steps",
    "guardrail_auroc": "AUROC of the guardrail heads' step predictions against real (and branched) outcomes",
    "guardrail_fnr": "false-negative rate of the guardrail heads at the planner's threshold",
    "guardrail_ece": "expected calibration error of the guardrail heads (10 equal-width bins)",
    "h50": "largest start-goal separation (shortest-path steps) with success >= 50 %",
    "recovery_rate": "fraction of perturbed episodes that still succeeded",
    "recovery_time_median": "median steps until the goal distance is back to its pre-perturbation value",
    "surprise_auroc": "AUROC of the latent surprise for flagging impossible transitions (teleports)",
}


@dataclass(frozen=True)
class SuiteScenario:
    """One scenario of the suite and the trained model it is run with."""

    scenario: str = field(metadata=meta("built-in scenario name (scenarios/NAME.toml) or a path to a scenario file"))
    checkpoint: str | None = field(default=None, metadata=meta(
        "run directory written by `hplan train` (relative paths: to the working directory, then to the "
        "suite file); falls back to the suite's top-level checkpoint"))
    name: str | None = field(default=None, metadata=meta("label in results (default: the scenario's name)"))
    max_steps: int | None = field(default=None, metadata=meta("override the scenario's step budget", ge=1))


@dataclass(frozen=True)
class SuiteShift:
    """A shift and the severities it is run at."""

    name: str = field(metadata=meta("shift name (see `hplan stress shifts`)"))
    severities: tuple[int, ...] = field(default=(0, 1, 2, 3), metadata=meta(
        f"severity levels, 0 (identity) ... {MAX_SEVERITY}"))

    def __post_init__(self) -> None:
        if not self.severities:
            raise ValueError("severities: must list at least one severity")
        if len(set(self.severities)) != len(self.severities):
            raise ValueError(f"severities: duplicate levels in {list(self.severities)}")


@dataclass(frozen=True)
class Threshold:
    """A pass/fail rule on a summary metric, over the (shift, severity) rows it selects."""

    metric: MetricName = field(metadata=meta("summary metric: " + "; ".join(f"{k}: {v}" for k, v in METRIC_DOCS.items())))
    max: float | None = field(default=None, metadata=meta("fail when the metric is above this"))
    min: float | None = field(default=None, metadata=meta("fail when the metric is below this"))
    shift: str = field(default="*", metadata=meta("shift name, or * for every shift"))
    scenario: str = field(default="*", metadata=meta("scenario label, or * for every scenario"))
    min_severity: int = field(default=0, metadata=meta("lowest severity the rule covers", ge=0, le=MAX_SEVERITY))
    max_severity: int = field(default=MAX_SEVERITY, metadata=meta("highest severity the rule covers", ge=0, le=MAX_SEVERITY))
    undefined: Literal["pass", "fail"] = field(default="fail", metadata=meta(
        "verdict when the metric is undefined for a row (e.g. AUROC without any violation, or any metric of a "
        "perturbation shift whose perturbation fired in no episode)"))

    def __post_init__(self) -> None:
        if (self.max is None) == (self.min is None):
            raise ValueError("a threshold needs exactly one of max or min")
        if self.min_severity > self.max_severity:
            raise ValueError(f"min_severity {self.min_severity} > max_severity {self.max_severity}")

    def describe(self) -> str:
        bound = f"<= {self.max:g}" if self.max is not None else f">= {self.min:g}"
        sev = (f"severity {self.min_severity}" if self.min_severity == self.max_severity
               else f"severity {self.min_severity}-{self.max_severity}")
        where = "every shift" if self.shift == "*" else f"shift {self.shift}"
        scen = "" if self.scenario == "*" else f" in {self.scenario}"
        return f"{self.metric} {bound} ({where}{scen}, {sev})"


@dataclass(frozen=True)
class H50Config:
    """The horizon sweep: episodes are placed at start–goal separations spread over these bins."""

    enabled: bool = field(default=True, metadata=meta("place starts and goals by separation (environments with a map)"))
    separations: tuple[int, ...] = field(default=(0, 10, 20, 30, 45, 60), metadata=meta(
        "bin edges in shortest-path steps; episode i is placed in bin i mod (len - 1)"))
    min_episodes: int = field(default=1, metadata=meta("bins with fewer episodes are not evidence", ge=1))

    def __post_init__(self) -> None:
        edges = self.separations
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
            raise ValueError("separations: need >= 2 strictly increasing non-negative bin edges")


@dataclass(frozen=True)
class RecoveryConfig:
    """When perturbations (kidnap, push, goal move) strike."""

    onset_min: int = field(default=10, metadata=meta("earliest perturbation step", ge=0))
    onset_max: int = field(default=30, metadata=meta("latest perturbation step (uniform in between, per episode)", ge=0))

    def __post_init__(self) -> None:
        if self.onset_min > self.onset_max:
            raise ValueError(f"onset_min {self.onset_min} > onset_max {self.onset_max}")


@dataclass(frozen=True)
class GuardrailEvalConfig:
    """How guardrail heads are judged."""

    branch: bool = field(default=True, metadata=meta(
        "also label each step by executing the planned action sequence in a copy of the environment"))
    branch_horizon: int = field(default=8, metadata=meta("planned steps executed in each branched copy", ge=1, le=256))
    branch_every: int = field(default=1, metadata=meta("branch every n-th step (cost control)", ge=1))
    bins: int = field(default=10, metadata=meta("reliability-diagram / ECE bins", ge=2, le=100))


@dataclass(frozen=True)
class SuiteConfig:
    """A whole stress-suite file."""

    name: str = field(metadata=meta("suite identifier"))
    scenarios: tuple[SuiteScenario, ...] = field(metadata=meta("[[scenarios]] tables"))
    shifts: tuple[SuiteShift, ...] = field(metadata=meta("[[shifts]] tables"))
    description: str = field(default="", metadata=meta("one line for humans"))
    seed: int = field(default=0, metadata=meta("master seed of the episodes (same seeds in every cell)", ge=0))
    episodes: int = field(default=8, metadata=meta("episodes per (scenario, shift, severity)", ge=1))
    split: Literal["val", "test"] = field(default="test", metadata=meta(
        "evaluation episode seeds: `test` for a report, `val` while choosing settings"))
    episodes_per_cell: int = field(default=4, metadata=meta("seed-block size: unit of parallel work and resume", ge=1))
    checkpoint: str | None = field(default=None, metadata=meta("default run directory for scenarios without one"))
    planner: dict[str, Any] = field(default_factory=dict, metadata=meta(
        "[planner] overrides of the scenario's planner settings (kind, low, horizon, search.population, ...)"))
    guardrails: dict[str, Any] = field(default_factory=dict, metadata=meta(
        "[guardrails] overrides of the scenario's guardrail settings (mode, threshold, ...)"))
    thresholds: tuple[Threshold, ...] = field(default=(), metadata=meta("[[thresholds]] pass/fail rules"))
    h50: H50Config = field(default_factory=H50Config, metadata=meta("[h50] horizon sweep"))
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig, metadata=meta("[recovery] perturbation timing"))
    guardrail_eval: GuardrailEvalConfig = field(default_factory=GuardrailEvalConfig, metadata=meta(
        "[guardrail_eval] how heads are judged"))
    reuse_nominal: bool = field(default=True, metadata=meta(
        "severity-0 cells of every shift are relabelled copies of the nominal (shift none) cell, since severity 0 "
        "is the identity (a tested property); false runs them anyway"))
    sets: tuple[str, ...] = field(default=(), metadata=meta(
        "scenario overrides `section.field=value` applied to every scenario (the command line's --set)"))
    source: str = field(default="<memory>", metadata=meta("file the suite was read from (set by the loader)"))

    @property
    def blocks(self) -> int:
        """Seed blocks per (scenario, shift, severity)."""
        return -(-self.episodes // self.episodes_per_cell)

    def fingerprint(self) -> str:
        """Hash of everything that decides the cells' content (not the checkpoint path spelling)."""
        data = to_mapping(replace(self, source=""))
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ResolvedScenario:
    """A suite scenario with its scenario file loaded and checkpoint located."""

    label: str
    config: ScenarioConfig
    checkpoint: Path


def resolve_suite_path(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a built-in suite under ``stress/``."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    return SUITE_DIR / f"{name_or_path}.toml"


def load_suite(name_or_path: str | Path) -> SuiteConfig:
    """Parse a suite file (structure only; :func:`resolve_suite` does the semantic checks)."""
    path = resolve_suite_path(name_or_path)
    data = read_toml(path)
    data["source"] = str(path)
    suite = from_mapping(SuiteConfig, data, source=str(path))
    for name in ("scenarios", "shifts"):  # an empty list would pass --check and then run nothing
        if not getattr(suite, name):
            raise ConfigError(str(path), name, "must list at least one entry")
    # planner / guardrail overrides: validated against their dataclasses, errors name the suite file
    from_mapping(PlannerConfig, suite.planner, source=str(path), section="planner")
    from_mapping(GuardrailConfig, suite.guardrails, source=str(path), section="guardrails")
    return suite


def resolve_suite(suite: SuiteConfig, checkpoint_override: str | Path | None = None) -> tuple[ResolvedScenario, ...]:
    """Load every scenario, check every shift/severity/threshold and locate every checkpoint.

    Raises a one-line :class:`ConfigError` for the first problem found. Nothing is run.
    """
    from hplan.stress.shifts import SHIFTS

    src = suite.source
    resolved: list[ResolvedScenario] = []
    labels: set[str] = set()
    for i, item in enumerate(suite.scenarios):
        where = f"scenarios[{i}]"
        try:
            overrides: dict[str, Any] = {}
            if suite.planner:
                overrides["planner"] = dict(suite.planner)
            if suite.guardrails:
                overrides["guardrails"] = dict(suite.guardrails)
            if item.max_steps is not None:
                overrides["env"] = {"max_steps": item.max_steps}
            config = load_scenario(item.scenario, overrides, sets=suite.sets, overrides_source=src)
        except HplanError as err:
            raise ConfigError(src, f"{where}.scenario", f"cannot load scenario {item.scenario!r}: {err}") from None
        label = item.name or config.name
        if label in labels:
            raise ConfigError(src, f"{where}.name", f"duplicate scenario label {label!r}")
        labels.add(label)
        ckpt_field = f"{where}.checkpoint" if item.checkpoint else "checkpoint"
        raw = checkpoint_override or item.checkpoint or suite.checkpoint
        if raw is None:
            raise ConfigError(src, f"{where}.checkpoint", "no checkpoint: set it here, at the top level, or pass --checkpoint")
        checkpoint = _locate_checkpoint(raw, Path(src).parent)
        if checkpoint is None:
            field_name = "--checkpoint" if checkpoint_override else ckpt_field
            raise ConfigError(src, field_name, f"checkpoint run directory {str(raw)!r} not found (train one with `hplan train`)")
        for j, shift in enumerate(suite.shifts):
            spec = SHIFTS.get(shift.name)
            if spec is None:
                raise ConfigError(src, f"shifts[{j}].name",
                                  f"unknown shift {shift.name!r} (known: {', '.join(sorted(SHIFTS))})")
            if config.env.id not in spec.applies_to:
                raise ConfigError(src, f"shifts[{j}].name",
                                  f"shift {shift.name!r} does not apply to {config.env.id} (scenario {label!r}); "
                                  f"it applies to {', '.join(spec.applies_to)}")
            for k, level in enumerate(shift.severities):
                if not 0 <= level <= spec.max_severity:
                    raise ConfigError(src, f"shifts[{j}].severities[{k}]",
                                      f"severity {level} out of range 0..{spec.max_severity} for shift {shift.name!r}")
            problem = spec.check(config)
            if problem:
                raise ConfigError(src, f"shifts[{j}].name", f"shift {shift.name!r} cannot run on scenario {label!r}: {problem}")
        resolved.append(ResolvedScenario(label=label, config=config, checkpoint=checkpoint))
    names = {s.name for s in suite.shifts}
    if len(names) != len(suite.shifts):
        raise ConfigError(src, "shifts", "a shift is listed twice")
    for t, rule in enumerate(suite.thresholds):
        if rule.shift != "*" and rule.shift not in names:
            raise ConfigError(src, f"thresholds[{t}].shift", f"shift {rule.shift!r} is not in this suite's shifts")
        if rule.scenario != "*" and rule.scenario not in labels:
            raise ConfigError(src, f"thresholds[{t}].scenario", f"scenario {rule.scenario!r} is not in this suite")
        if not any(rule.shift in ("*", shift.name) and any(rule.min_severity <= level <= rule.max_severity
                                                            for level in shift.severities) for shift in suite.shifts):
            ran = ", ".join(f"{shift.name} {list(shift.severities)}" for shift in suite.shifts
                            if rule.shift in ("*", shift.name))
            raise ConfigError(src, f"thresholds[{t}]", f"{rule.describe()} selects no rows (the suite runs {ran}); "
                                                       "it would judge nothing: change its shift or severity range")
    return tuple(resolved)


def _locate_checkpoint(raw: str | Path, suite_dir: Path) -> Path | None:
    for candidate in (Path(raw), suite_dir / raw, REPO_ROOT / raw):
        if candidate.is_dir():
            return candidate.resolve()
    return None
