"""One call for other packages (demo, studies): validate a suite file, run it, return the outcome.

Same checks and same outputs as ``hplan stress SUITE --out DIR``; threshold failures are returned
in ``outcome.failures`` rather than raised, so a caller decides what a failed threshold means to it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.console import Console

from hplan.errors import ConfigError, HplanError
from hplan.stress.suite import ResolvedScenario, SuiteConfig
from hplan.stress.summary import SuiteOutcome


def validate_suite(suite_path: str | Path, checkpoint: str | Path | None = None, *, episodes: int | None = None,
                   max_steps: int | None = None,
                   sets: tuple[str, ...] = ()) -> tuple[SuiteConfig, tuple[ResolvedScenario, ...]]:
    """Parse and fully check a suite; runs nothing.

    ``episodes`` / ``max_steps`` override the file (quick runs on a small machine); they become part
    of the suite, so its fingerprint changes and a resume with other values is refused.

    Beyond :func:`~hplan.stress.suite.resolve_suite` (file structure, scenarios, shifts, severities,
    thresholds, checkpoint directories) this loads every checkpoint once (corrupt, trained on
    another env or on other observations: one line) and builds every shifted environment once (a
    factor pushed out of its valid range, a held-out layout the task cannot use).
    """
    from hplan.envs.factory import make_env
    from hplan.models.checkpoint import load_world_model
    from hplan.runner.settings import check_model_fits_scenario
    from hplan.stress.shifts import get_shift
    from hplan.stress.suite import load_suite, resolve_suite

    suite = with_overrides(load_suite(suite_path), episodes=episodes, max_steps=max_steps, sets=sets)
    scenarios = resolve_suite(suite, checkpoint)
    if max_steps is None:
        _refuse_perturbations_past_the_budget(suite, scenarios)
    for item in scenarios:
        model = load_world_model(item.checkpoint, device="cpu", expect_env_id=item.config.env.id)
        check_model_fits_scenario(model, item.config, item.checkpoint)
        for shift in suite.shifts:
            spec = get_shift(shift.name)
            for severity in shift.severities:
                make_env(item.config, **spec.env_overrides(item.config, severity)).close()
    return suite, scenarios


def _refuse_perturbations_past_the_budget(suite: SuiteConfig, scenarios: tuple[ResolvedScenario, ...]) -> None:
    """A perturbation whose earliest onset is not before a scenario's step budget never strikes:
    its rows would measure the nominal world. Refused when the files set that budget; a quick run
    that shortens every budget on the command line (``--max-steps``) is let through on purpose,
    and its never-fired rows are undefined to the verdict (it says why)."""
    from hplan.stress.shifts import get_shift

    for item in scenarios:
        budget = item.config.env.max_steps
        for shift in suite.shifts:
            if get_shift(shift.name).perturbs and any(shift.severities) and suite.recovery.onset_min >= budget:
                raise ConfigError(suite.source, "recovery.onset_min",
                                  f"{suite.recovery.onset_min} is not before scenario {item.label!r}'s step budget "
                                  f"({budget}): the {shift.name!r} perturbation would never strike")


def with_overrides(suite: SuiteConfig, *, episodes: int | None = None, max_steps: int | None = None,
                   sets: tuple[str, ...] = ()) -> SuiteConfig:
    """The suite with episodes per scenario × shift × severity and/or every scenario's step budget
    replaced, and ``--set`` scenario overrides added (all part of its fingerprint)."""
    if sets:
        suite = dataclasses.replace(suite, sets=suite.sets + tuple(sets))
    if episodes is not None:
        if episodes < 1:
            raise HplanError(f"--episodes must be >= 1, got {episodes}")
        suite = dataclasses.replace(suite, episodes=int(episodes),
                                    episodes_per_cell=min(suite.episodes_per_cell, int(episodes)))
    if max_steps is not None:
        if max_steps < 1:
            raise HplanError(f"--max-steps must be >= 1, got {max_steps}")
        suite = dataclasses.replace(suite, scenarios=tuple(dataclasses.replace(s, max_steps=int(max_steps))
                                                           for s in suite.scenarios))
    return suite


def run_suite(suite: str | Path, *, out_dir: str | Path, checkpoint: str | Path | None = None,
              seeds: int | None = None, max_steps: int | None = None, workers: int = 1,
              console: Console | None = None, report: bool = True) -> SuiteOutcome:
    """Run ``suite`` (file or built-in name) into ``out_dir``.

    ``seeds`` overrides the suite's episodes per scenario × shift × severity (a quick demo runs
    one); ``checkpoint`` overrides every scenario's run directory.
    """
    from hplan.stress.runner import run_suite as run

    config, scenarios = validate_suite(suite, checkpoint, episodes=seeds, max_steps=max_steps)
    if console is not None:
        console.print(f"stress suite {config.name}: {len(scenarios)} scenario(s), {len(config.shifts)} shift(s), "
                      f"{config.episodes} episode(s) per cell group → {out_dir}", highlight=False)
    return run(config, scenarios, out_dir, workers=workers, report=report, progress=console is not None)
