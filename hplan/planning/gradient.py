"""Gradient planner: Adam on the action sequence through the differentiable predictor.

``restarts`` sequences are optimised together as one batch (restart 0 starts at the warm-start
mean, the others at noisy copies) so local minima of one start do not decide the plan. Actions
are parameterised as ``mid + half · tanh(u)``: always inside the box, with gradients that do not
vanish at a clip boundary. The hard constraint enters the loss as a hinge (``barrier``); the
final choice among restarts uses the same ranking as the sampling planners.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hplan.planning.types import BestTracker, Objective, PlanResult, SearchSpace, rank


@dataclass
class GradientPlanner:
    space: SearchSpace
    restarts: int = 8
    steps: int = 20
    lr: float = 0.1
    init_std: float = 0.5

    def __post_init__(self) -> None:
        if self.space.discrete:
            raise ValueError("GradientPlanner plans in a box; use CategoricalCEM for discrete actions")

    def _to_actions(self, u: torch.Tensor) -> torch.Tensor:
        return self.space.mid + self.space.half * torch.tanh(u)

    def optimize(self, objective: Objective, init_mean: torch.Tensor, generator: torch.Generator) -> PlanResult:
        space, device = self.space, init_mean.device
        start = space.clip(init_mean.clone())
        noise = torch.randn((self.restarts - 1, *start.shape), generator=generator, device=device)
        starts = space.clip(torch.cat([start[None], start + self.init_std * space.half * noise]))
        ratio = ((starts - space.mid) / space.half).clamp(-0.999, 0.999)
        u = torch.atanh(ratio).detach().requires_grad_(True)
        optim = torch.optim.Adam([u], lr=self.lr)
        best, n_evals = BestTracker(), 0
        for _ in range(self.steps):
            with torch.enable_grad():
                actions = self._to_actions(u)
                ev = objective(actions)
                n_evals += ev.n_evals
                loss = (ev.cost + ev.barrier).sum()
                # gradients w.r.t. the plan only: the model's parameters are left untouched
                (u.grad,) = torch.autograd.grad(loss, [u])
            best.offer(actions.detach(), ev, int(rank(ev, top=1)[0]))
            optim.step()
        with torch.no_grad():
            actions = self._to_actions(u)
            ev = objective(actions)
            n_evals += ev.n_evals
            order = rank(ev, top=1)
            best.offer(actions, ev, int(order[0]))
        return best.result(actions[order[0]], n_evals)
