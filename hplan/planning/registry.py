"""Optimisers by name: the one table the agent, the hierarchical planner and the benchmark use.

Every optimiser has ``optimize(objective, init_mean, generator) -> PlanResult`` (see
:mod:`hplan.planning.types`). The population/iterations/elites passed here may differ from the
config's (the evaluation budget rescales them; the high level has its own), so they are explicit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from hplan.errors import HplanError
from hplan.planning.config import PlannerConfig
from hplan.planning.discrete import CategoricalCEM
from hplan.planning.gaussian import GaussianSearch
from hplan.planning.gradient import GradientPlanner
from hplan.planning.types import Objective, PlanResult, SearchSpace


class Optimizer(Protocol):
    space: SearchSpace

    def optimize(self, objective: Objective, init_mean: torch.Tensor, generator: torch.Generator) -> PlanResult: ...


@dataclass(frozen=True)
class Sizes:
    """How much search one plan gets (population × iterations; restarts × steps for grad)."""

    population: int
    iterations: int
    elites: int


def _gaussian(update: str) -> Callable[[SearchSpace, PlannerConfig, Sizes], Optimizer]:
    def build(space: SearchSpace, cfg: PlannerConfig, sizes: Sizes) -> Optimizer:
        search = cfg.search
        return GaussianSearch(space, update=update, population=sizes.population, elites=sizes.elites,
                              iterations=sizes.iterations, init_std=search.init_std, min_std=search.min_std,
                              momentum=search.momentum, temperature=search.temperature,
                              noise_beta=search.noise_beta, execute_mean=search.execute_mean)
    return build


def _grad(space: SearchSpace, cfg: PlannerConfig, sizes: Sizes) -> Optimizer:
    return GradientPlanner(space, restarts=sizes.population, steps=sizes.iterations, lr=cfg.grad.lr,
                           init_std=cfg.search.init_std)


def _categorical(space: SearchSpace, cfg: PlannerConfig, sizes: Sizes) -> Optimizer:
    return CategoricalCEM(space, population=sizes.population, elites=sizes.elites, iterations=sizes.iterations,
                          momentum=cfg.search.momentum, min_prob_mix=max(cfg.search.min_std, 1e-3))


OPTIMIZERS: dict[str, Callable[[SearchSpace, PlannerConfig, Sizes], Optimizer]] = {
    "cem": _gaussian("cem"),
    "mppi": _gaussian("mppi"),
    "grad": _grad,
    "cem_discrete": _categorical,
}
DISCRETE_OK = {"cem_discrete"}


def make_optimizer(name: str, space: SearchSpace, cfg: PlannerConfig, sizes: Sizes) -> Optimizer:
    """Build optimiser ``name``; a continuous optimiser on a discrete space (or vice versa) is a user error."""
    if name not in OPTIMIZERS:
        raise HplanError(f"planner.low: unknown optimiser {name!r} (known: {', '.join(sorted(OPTIMIZERS))})")
    if space.discrete != (name in DISCRETE_OK):
        kind = "discrete" if space.discrete else "continuous"
        fits = sorted(DISCRETE_OK) if space.discrete else sorted(set(OPTIMIZERS) - DISCRETE_OK)
        raise HplanError(f"planner.low: {name!r} cannot plan {kind} actions; use one of {', '.join(fits)}")
    return OPTIMIZERS[name](space, cfg, sizes)


def default_sizes(cfg: PlannerConfig) -> Sizes:
    """Sizes straight from the config (grad: restarts × Adam steps)."""
    if cfg.low == "grad":
        return Sizes(population=cfg.grad.restarts, iterations=cfg.grad.steps, elites=1)
    return Sizes(population=cfg.search.population, iterations=cfg.search.iterations, elites=cfg.search.elites)
