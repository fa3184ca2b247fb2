"""Categorical CEM for discrete action spaces (MiniGrid): plans are one-hot rows fed to the model.

The search distribution is one categorical per time step. Each iteration samples ``population``
sequences (candidate 0 is the per-step argmax), refits the probabilities to the elites'
frequencies with smoothing, and mixes in a little of the uniform distribution (``min_prob_mix``)
so no action's probability ever reaches zero. The plan is the best sequence evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hplan.planning.types import BestTracker, Objective, PlanResult, SearchSpace, rank


@dataclass
class CategoricalCEM:
    space: SearchSpace
    population: int = 256
    elites: int = 32
    iterations: int = 3
    momentum: float = 0.1
    min_prob_mix: float = 0.05

    def __post_init__(self) -> None:
        if not self.space.discrete:
            raise ValueError("CategoricalCEM needs a discrete search space")
        if not 1 <= self.elites <= self.population:
            raise ValueError(f"need 1 <= elites ({self.elites}) <= population ({self.population})")

    def _mix(self, probs: torch.Tensor) -> torch.Tensor:
        probs = probs.clamp_min(0)
        probs = probs / probs.sum(-1, keepdim=True).clamp_min(1e-12)
        return (1 - self.min_prob_mix) * probs + self.min_prob_mix / self.space.dim

    def optimize(self, objective: Objective, init_mean: torch.Tensor, generator: torch.Generator) -> PlanResult:
        n = self.space.dim
        probs = self._mix(init_mean.clone())
        best, n_evals = BestTracker(), 0
        with torch.no_grad():
            for _ in range(self.iterations):
                drawn = torch.multinomial(probs, self.population - 1, replacement=True, generator=generator)
                idx = torch.cat([probs.argmax(-1)[:, None], drawn], dim=1).T  # (N, H)
                samples = F.one_hot(idx, n).to(probs.dtype)
                ev = objective(samples)
                n_evals += ev.n_evals
                order = rank(ev, top=self.elites)
                best.offer(samples, ev, int(order[0]))
                freq = samples[order[: self.elites]].mean(0)
                probs = self._mix(self.momentum * probs + (1 - self.momentum) * freq)
        # the final probabilities' argmax is not scored on its own (one more rollout pass): it is
        # candidate 0 of the next plan, warm-started from ``probs``
        return best.result(probs, n_evals)
