"""Predictor-evaluation budgets, so flat and hierarchical planners can be compared fairly.

One plan costs (see :mod:`hplan.planning.energy` for what counts as an evaluation):

* CEM / MPPI / categorical CEM: ``iterations × population × horizon``, plus ``horizon`` with
  ``search.execute_mean`` (the final mean is then scored on its own, to check it before executing it);
* gradient: ``(steps + 1) × restarts × horizon`` (one forward per Adam step plus a final one);
* the high level: the same formula with ``codes.horizon`` jumps, plus ``codes.horizon`` for rolling
  the chosen codes out once more into subgoals.

With ``budget.evals = B > 0`` the populations are derived from B (iterations and the
elite fraction are kept): a flat agent spends up to B on its low level every step; a hierarchical
agent spends up to ``(1 − HIGH_SHARE)·B`` on its low level every step and, on the steps where it
replans its subgoals, up to ``HIGH_SHARE·B`` on the high level. So a hierarchical agent never
spends more per step than the flat one; on average it spends less. The ``landmarks`` high level
spends no predictor evaluations (it searches a graph under the distance head), so its low level
gets the whole B, exactly like the flat planner's.
"""

from __future__ import annotations

from dataclasses import dataclass

from hplan.errors import HplanError
from hplan.planning.config import HIGH_SHARE, PlannerConfig
from hplan.planning.registry import Sizes, default_sizes


def plan_cost(optimizer: str, sizes: Sizes, horizon: int, extra: int = 0) -> int:
    """Predictor evaluations one plan of this optimiser spends: its search, plus ``extra`` spent
    outside it (:func:`outside_search`)."""
    if optimizer == "grad":
        return (sizes.iterations + 1) * sizes.population * horizon + extra
    return sizes.iterations * sizes.population * horizon + extra


def outside_search(cfg: PlannerConfig, level: str) -> int:
    """Evaluations one ``level`` (``low`` or ``high``) plan spends besides its search: the final
    mean scored on its own (``execute_mean``; sampling optimisers), and at the high level the
    chosen codes rolled out into subgoals."""
    if level == "low":
        return cfg.horizon if cfg.search.execute_mean and cfg.low != "grad" else 0
    return cfg.codes.horizon * (1 + cfg.search.execute_mean)


def fit_sizes(optimizer: str, template: Sizes, horizon: int, budget: int, field: str, extra: int = 0) -> Sizes:
    """The largest population whose :func:`plan_cost` fits ``budget`` (iterations kept)."""
    if optimizer == "grad":
        population = (budget - extra) // ((template.iterations + 1) * horizon)
        least = 1
    else:
        population = (budget - extra) // (template.iterations * horizon)
        least = 2
    if population < least:
        need = plan_cost(optimizer, Sizes(least, template.iterations, 1), horizon, extra)
        raise HplanError(f"planner.budget.evals: {field} gets {budget} evaluations, but one plan needs at least "
                         f"{need} with horizon {horizon} and {template.iterations} iterations")
    elites = max(1, min(population, round(population * template.elites / template.population)))
    return Sizes(population=population, iterations=template.iterations, elites=elites)


@dataclass(frozen=True)
class Budget:
    low: Sizes
    high: Sizes | None


def high_template(cfg: PlannerConfig) -> Sizes:
    return Sizes(population=cfg.codes.population, iterations=cfg.codes.iterations, elites=cfg.codes.elites)


def resolve_budget(cfg: PlannerConfig) -> Budget:
    """Sizes for the low level (and the high level when it plans over subgoal codes)."""
    codes = cfg.kind == "hier" and cfg.high == "codes"  # landmarks and imagined graphs have no optimiser
    low, high = default_sizes(cfg), high_template(cfg) if codes else None
    evals = cfg.budget.evals
    if evals <= 0:
        return Budget(low, high)
    low_field = "the flat low level" if cfg.kind == "flat" else "the hierarchical low level"
    if not codes:
        return Budget(fit_sizes(cfg.low, low, cfg.horizon, evals, low_field, outside_search(cfg, "low")), None)
    high_budget = int(evals * HIGH_SHARE)
    return Budget(
        fit_sizes(cfg.low, low, cfg.horizon, evals - high_budget, low_field, outside_search(cfg, "low")),
        fit_sizes(cfg.codes.optimizer, high, cfg.codes.horizon, high_budget, "the high level",
                  outside_search(cfg, "high")))
