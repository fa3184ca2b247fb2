"""Receding-horizon MPC as a wrapper around a sub-planner (dino_wm's ``MPCPlanner(sub_planner=…)``).

Each call plans a whole sequence, the agent executes its first step, and the next call starts
from the previous plan's mean shifted by ``shift`` steps (the last step repeated; for discrete
plans the freed slot becomes uniform). The hierarchical planner uses the same wrapper one level up.
"""

from __future__ import annotations

import torch

from hplan.planning.registry import Optimizer
from hplan.planning.types import Objective, PlanResult


def shift_plan(mean: torch.Tensor, steps: int, fill: torch.Tensor) -> torch.Tensor:
    """Drop the first ``steps`` rows and pad at the end with ``fill`` (a row) or the last row."""
    steps = max(0, min(int(steps), mean.shape[0]))
    if steps == 0:
        return mean.clone()
    kept = mean[steps:]
    pad_row = fill if fill is not None else mean[-1]
    return torch.cat([kept, pad_row.expand(steps, -1)])


class RecedingHorizon:
    """Warm-started MPC around ``optimizer``."""

    def __init__(self, optimizer: Optimizer, device: torch.device, warm_start: bool = True) -> None:
        self.optimizer = optimizer
        self.device = device
        self.warm_start = warm_start
        self.previous: torch.Tensor | None = None
        self.last: PlanResult | None = None

    @property
    def space(self):
        return self.optimizer.space

    def reset(self) -> None:
        self.previous = None
        self.last = None

    def initial(self, shift: int = 1) -> torch.Tensor:
        """The warm-start mean for the next plan (the box centre / uniform when there is none)."""
        space = self.optimizer.space
        fresh = space.initial_mean(self.device)
        if not self.warm_start or self.previous is None:
            return fresh
        fill = fresh[0] if space.discrete else None
        return shift_plan(self.previous, shift, fill)

    def plan(self, objective: Objective, generator: torch.Generator, shift: int = 1) -> PlanResult:
        result = self.optimizer.optimize(objective, self.initial(shift), generator)
        self.previous = result.mean
        self.last = result
        return result
