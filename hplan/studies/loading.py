"""Reading a study file: parse it (:mod:`hplan.studies.config`) and validate it against its
scenario (:mod:`hplan.studies.space`), metrics included (:mod:`hplan.studies.metrics`).

Here, above both: the search space works on the study's dataclasses, and loading a study needs
the search space's checks, so neither of the two imports the other's caller.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from hplan.config import parse_sets
from hplan.configio import from_mapping, read_toml
from hplan.errors import ConfigError
from hplan.studies.config import StudyConfig, resolve_study_path
from hplan.studies.metrics import METRICS, stress_required
from hplan.studies.space import validate_against_scenario


def load_study(name_or_path: str | Path, *, check_scenario: bool = True) -> StudyConfig:
    """Read a study file and validate it, including every target and value against the scenario."""
    path = resolve_study_path(name_or_path)
    data = read_toml(path)
    data["source"] = str(path)
    study = from_mapping(StudyConfig, data, source=str(path))
    _check_metrics(study)
    if check_scenario:
        validate_against_scenario(study)
    return study


def rescale(study: StudyConfig, *, seeds: int | None = None, episodes: int | None = None,
            max_epochs: int | None = None, collect_episodes: int | None = None,
            sets: tuple[str, ...] = ()) -> StudyConfig:
    """A copy of ``study`` with command-line changes (scaled-down runs), validated like the file.

    The study keeps its name: run a rescaled study into its own ``--out`` folder or storage so
    its trials are not mixed with full-scale ones.
    """
    changes: dict[str, Any] = {k: v for k, v in (("seeds", seeds), ("episodes_per_seed", episodes),
                                                 ("max_epochs", max_epochs), ("collect_episodes", collect_episodes))
                               if v is not None}
    parse_sets(sets)  # malformed assignments fail here, naming --set
    try:
        changed = replace(study, **changes, sets=study.sets + tuple(sets))
    except ValueError as err:
        raise ConfigError(study.source, "<command line>", str(err)) from None
    validate_against_scenario(changed)
    return changed


def _check_metrics(study: StudyConfig) -> None:
    known = ", ".join(sorted(METRICS))
    entries = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(study.objectives)]
    entries += [(f"constraints[{i}].metric", c.metric) for i, c in enumerate(study.constraints)]
    for where, name in entries:
        if name not in METRICS:
            raise ConfigError(study.source, where, f"unknown metric {name!r} (known: {known})")
        if stress_required(name) and study.stress_suite is None:
            raise ConfigError(study.source, where, f"metric {name!r} needs `stress_suite` to be set")
