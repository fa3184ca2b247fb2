"""The results definition: which tables exist and how each is measured.

``benchmarks/results.toml`` lists every table the README and docs/results.md show: its scenario,
the overrides that fix its data size and settings, its arms, its training seeds, split and
episodes. Parsed once into frozen dataclasses; every scenario and override is loaded and checked
before the first episode, so a typo costs a second, not a training run.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hplan.configio import from_mapping, meta, read_toml
from hplan.errors import ConfigError, HplanError

DEFAULT_DEFINITION = Path(__file__).resolve().parent.parent.parent / "benchmarks" / "results.toml"

RUN_ONLY_SECTIONS = ("planner", "guardrails")
"""Overrides in these sections change how a model is used, not how it is trained."""
DATA_SECTIONS = ("env", "task", "collect", "seed")
"""Overrides in these sections change the training data (and so the model)."""


def override_target(assignment: str) -> str:
    """``"model.regularizer"`` of ``"model.regularizer=recon"``."""
    return assignment.partition("=")[0].strip()


def override_section(assignment: str) -> str:
    """``"model"`` of ``"model.regularizer=recon"``."""
    return override_target(assignment).split(".")[0]


@dataclass(frozen=True)
class Arm:
    """One row of a planning table (a planner and guardrail mode, plus its own overrides), or one
    model of a heldout table (its own model and training overrides only)."""

    label: str = field(metadata=meta("the row's name in the table (unique within the table)"))
    planner: Literal["flat", "hier"] | None = field(default=None, metadata=meta("flat or hier (default: the scenario's)"))
    guardrails: Literal["off", "on", "penalty", "hard", "lagrangian"] | None = field(
        default=None, metadata=meta("guardrail mode; `on` keeps the scenario's mode (penalty if it says off)"))
    sets: tuple[str, ...] = field(default=(), metadata=meta(
        "this arm's SECTION.FIELD=VALUE overrides (planner/guardrails ones reuse the table's model; others "
        "train a model of their own)"))
    curve: str = field(default="", metadata=meta(
        "arms with the same curve name are one line of the table's success-against-planning-time figure"))
    group: str = field(default="", metadata=meta(
        "arms with the same group name also make one row of that name, their episodes pooled per training "
        "seed (e.g. a benchmark's mean over its evaluation tasks)"))


@dataclass(frozen=True)
class Table:
    """One table: a scenario, its arms, and how many training seeds and episodes measure it."""

    name: str = field(metadata=meta("identifier, for `--only` (letters, digits, _ and -)"))
    title: str = field(metadata=meta("heading on the results page"))
    scenario: str = field(metadata=meta("built-in scenario name or path"))
    kind: Literal["planning", "heldout", "stress"] = field(default="planning", metadata=meta(
        "`planning`: seeded episodes per arm; `heldout`: world-model diagnostics on a held-out dataset; "
        "`stress`: a stress suite run on each training seed's model"))
    suite: str = field(default="", metadata=meta(
        "stress tables: the suite (built-in name under stress/ or a path); every scenario it runs must be "
        "the table's scenario, whose model it is run with"))
    description: str = field(default="", metadata=meta("a paragraph under the heading: what the table asks"))
    sets: tuple[str, ...] = field(default=(), metadata=meta("overrides of every arm (data size, settings)"))
    arms: tuple[Arm, ...] = field(default=(), metadata=meta(
        "[[tables.arms]] rows: planning tables' planners, or heldout tables' models (optional there)"))
    compare: tuple[tuple[str, str], ...] = field(default=(), metadata=meta(
        "pairs of arm labels compared episode by episode (same seeds): [[\"hier\", \"flat\"]]"))
    training_seeds: tuple[int, ...] | None = field(default=None, metadata=meta("training seeds (default: [defaults])"))
    episodes: int | None = field(default=None, metadata=meta("episodes per arm and training seed", ge=1, le=100_000))
    split: Literal["val", "test"] | None = field(default=None, metadata=meta("evaluation split (default: [defaults])"))
    heldout_episodes: int = field(default=200, metadata=meta("heldout tables: episodes collected", ge=2, le=100_000))
    readme: bool = field(default=False, metadata=meta("also one row of the README's headline table"))
    tiers: tuple[int, ...] = field(default=(), metadata=meta(
        "planning tables: also success per start–goal distance tier, these shortest-path step counts the "
        "boundaries (increasing), e.g. [40, 80]: under 40, 40–79, 80 and more"))

    def __post_init__(self) -> None:
        if any(b <= a for a, b in zip(self.tiers, self.tiers[1:])) or any(t < 1 for t in self.tiers):
            raise ValueError(f"tiers must be increasing positive step counts, got {list(self.tiers)}")


@dataclass(frozen=True)
class Defaults:
    training_seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata=meta("training seeds per arm"))
    episodes: int = field(default=50, metadata=meta("episodes per arm and training seed", ge=1, le=100_000))
    split: Literal["val", "test"] = field(default="test", metadata=meta("reported numbers come from `test`"))


@dataclass(frozen=True)
class ResultsDefinition:
    tables: tuple[Table, ...] = field(metadata=meta("[[tables]]"))
    defaults: Defaults = field(default_factory=Defaults, metadata=meta("[defaults]"))
    source: str = field(default="<memory>", metadata=meta("file it was read from"))

    def seeds(self, table: Table) -> tuple[int, ...]:
        return table.training_seeds if table.training_seeds is not None else self.defaults.training_seeds

    def episodes(self, table: Table) -> int:
        return table.episodes if table.episodes is not None else self.defaults.episodes

    def split(self, table: Table) -> str:
        return table.split if table.split is not None else self.defaults.split

    def select(self, only: tuple[str, ...]) -> tuple[Table, ...]:
        names = [t.name for t in self.tables]
        for name in only:
            if name not in names:
                raise ConfigError("--only", name, f"no such table in {self.source} (tables: {', '.join(names)})")
        return tuple(t for t in self.tables if not only or t.name in only)


_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def slug(label: str) -> str:
    """A label as a folder name (what evaluations are stored under)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower() or "arm"


def load_definition(path: str | Path = DEFAULT_DEFINITION) -> ResultsDefinition:
    """Read, parse and check a results definition (scenarios and overrides included)."""
    source = str(path)
    data = read_toml(path)
    data["source"] = source
    definition = from_mapping(ResultsDefinition, data, source=source)
    base = Path(path).resolve().parent
    definition = dataclasses.replace(definition, tables=tuple(
        dataclasses.replace(t, scenario=_relative_to(base, t.scenario),
                            suite=_relative_to(base, t.suite) if t.suite else "") for t in definition.tables))
    _check(definition)
    return definition


def _relative_to(base: Path, scenario: str) -> str:
    """A scenario (or suite) file named by a relative path is looked for beside the definition first
    (so a definition and its files travel together), then from the working directory."""
    path = Path(scenario)
    if path.suffix == ".toml" and not path.is_absolute() and (base / path).exists():
        return str(base / path)
    return scenario


def _check(definition: ResultsDefinition) -> None:
    from hplan.config import load_scenario

    src = definition.source
    if not definition.tables:
        raise ConfigError(src, "tables", "must list at least one table")
    seen: set[str] = set()
    for i, table in enumerate(definition.tables):
        where = f"tables[{i}]"
        if not _NAME.match(table.name):
            raise ConfigError(src, f"{where}.name", f"use letters, digits, _ and - only, got {table.name!r}")
        if table.name in seen:
            raise ConfigError(src, f"{where}.name", f"duplicate table name {table.name!r}")
        seen.add(table.name)
        seeds = definition.seeds(table)
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ConfigError(src, f"{where}.training_seeds", f"must be distinct non-negative integers, got {list(seeds)}")
        if table.kind == "planning" and not table.arms:
            raise ConfigError(src, f"{where}.arms", "a planning table needs at least one arm")
        if table.kind == "stress" and table.arms:
            raise ConfigError(src, f"{where}.arms", "a stress table has no arms")
        if table.kind == "heldout":
            _check_heldout_arms(src, where, table)
        if (table.kind == "stress") != bool(table.suite):
            raise ConfigError(src, f"{where}.suite", "a stress table names its suite; only a stress table does")
        if table.kind == "stress":
            _check_stress_suite(src, f"{where}.suite", table)
        labels = [arm.label for arm in table.arms]
        slugs = [slug(label) for label in labels]  # the arms' folder names: two labels must not share one
        for j, label in enumerate(labels):
            if slugs.index(slugs[j]) != j:
                raise ConfigError(src, f"{where}.arms[{j}].label", f"arm label {label!r} names the same folder "
                                  f"({slugs[j]!r}) as {labels[slugs.index(slugs[j])]!r}")
        for j, arm in enumerate(table.arms):
            if arm.group and arm.group in labels:
                raise ConfigError(src, f"{where}.arms[{j}].group", f"group {arm.group!r} is also an arm's label")
        for j, (a, b) in enumerate(table.compare):
            for label in (a, b):
                if label not in labels:
                    raise ConfigError(src, f"{where}.compare[{j}]", f"no arm labelled {label!r}")
        for j, arm in enumerate(table.arms or (Arm(label=""),)):
            field_name = f"{where}.arms[{j}].sets" if table.arms else f"{where}.sets"
            try:
                load_scenario(table.scenario, sets=table.sets + arm.sets)
            except HplanError as err:
                raise ConfigError(src, field_name, str(err)) from None


def _check_heldout_arms(src: str, where: str, table: Table) -> None:
    """A heldout table's arms are models: each may change how its model is made (``model.*``,
    ``train.*``), nothing else — every arm is scored on the table's one held-out dataset, and a
    planner or guardrail setting would not change what the table measures."""
    for j, arm in enumerate(table.arms):
        if arm.planner or arm.guardrails or arm.curve or arm.group:
            raise ConfigError(src, f"{where}.arms[{j}]", "a heldout table's arm is a model: it takes `label` "
                                                         "and model or training `sets` only")
        for assignment in arm.sets:
            if override_section(assignment) in DATA_SECTIONS + RUN_ONLY_SECTIONS:
                raise ConfigError(src, f"{where}.arms[{j}].sets", f"{assignment!r}: a heldout table's arms share "
                                  "its data and are not planned with; set data in the table's `sets`")
    if table.compare:
        raise ConfigError(src, f"{where}.compare", "a heldout table compares no episodes")


def _check_stress_suite(src: str, where: str, table: Table) -> None:
    """The suite of a stress table parses, and every scenario it runs is the table's (the suite is
    run with the model the table trains; another scenario would get a model of the wrong world)."""
    from hplan.config import load_scenario
    from hplan.stress.suite import load_suite

    try:
        suite = load_suite(table.suite)
    except HplanError as err:
        raise ConfigError(src, where, str(err)) from None
    own = load_scenario(table.scenario).name
    try:
        others = sorted({item.scenario for item in suite.scenarios if load_scenario(item.scenario).name != own})
    except HplanError as err:
        raise ConfigError(src, where, f"suite {table.suite!r}: {err}") from None
    if others:
        raise ConfigError(src, where, f"suite {table.suite!r} runs scenario(s) {', '.join(others)}; a stress "
                                      f"table runs only its own scenario ({table.scenario!r})")
