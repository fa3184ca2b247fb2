"""Sampling planners over a Gaussian on the plan: CEM and MPPI.

Both draw ``population`` candidates per iteration in one tensor op (candidate 0 is always the
current mean, so a good warm start is never lost), score them with the objective, and move the
Gaussian; they differ only in how the new mean/std are formed from the ranked samples, which is
the one function in the :data:`UPDATES` table. Smoothing (``momentum``) and a std floor keep the
search from collapsing too early. Every candidate is clipped to the search box before scoring. Noise can be temporally coloured
(``noise_beta``, as in iCEM) and the executed plan is the final mean whenever it is feasible
(``execute_mean``), otherwise the best-ranked candidate evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from hplan.planning.types import BestTracker, Evaluation, Objective, PlanResult, SearchSpace, rank

Update = Callable[[torch.Tensor, Evaluation, torch.Tensor, "GaussianSearch"], tuple[torch.Tensor, torch.Tensor]]


def cem_update(samples: torch.Tensor, ev: Evaluation, order: torch.Tensor,
               search: "GaussianSearch") -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy method: refit mean and std to the top-``elites`` candidates."""
    elite = samples.index_select(0, order[: search.elites])
    return elite.mean(0), elite.std(0, unbiased=False)


def mppi_update(samples: torch.Tensor, ev: Evaluation, order: torch.Tensor,
                search: "GaussianSearch") -> tuple[torch.Tensor, torch.Tensor]:
    """MPPI over the elites: exponential weights ``exp(-(c - c_min) / (T · std(c)))``.

    The temperature is relative to the elites' cost spread, so one setting works for costs of
    any scale. Under a hard constraint only feasible elites get weight; if none is feasible the
    weights come from predicted risk instead (the least risky plans pull the mean).
    """
    idx = order[: search.elites]
    elite = samples.index_select(0, idx)
    score = ev.cost.index_select(0, idx)
    feasible = ev.feasible.index_select(0, idx)
    if bool((feasible & torch.isfinite(score)).all()):  # the common case: every elite scores by its cost
        logits = -(score - score.min()) / (search.temperature * score.std(unbiased=False).clamp_min(1e-6))
    else:
        logits = _masked_logits(score, feasible, ev.risk[idx], search.temperature)
    weights = torch.softmax(logits, 0)
    shape = (-1,) + (1,) * (samples.dim() - 1)
    mean = (weights.view(shape) * elite).sum(0)
    var = (weights.view(shape) * (elite - mean) ** 2).sum(0)
    return mean, var.sqrt()


def _masked_logits(cost: torch.Tensor, feasible: torch.Tensor, risk: torch.Tensor, temperature: float) -> torch.Tensor:
    """MPPI logits when some elite is infeasible or scores no finite cost: those get no weight
    (all weights come from risk when none is feasible)."""
    score = torch.where(feasible, cost, torch.full_like(cost, float("inf")))
    if not bool(feasible.any()):
        score = risk
    finite = torch.isfinite(score)
    spread = score[finite].std(unbiased=False) if int(finite.sum()) > 1 else score.new_tensor(0.0)
    scale = temperature * spread.clamp_min(1e-6)
    logits = -(score - score[finite].min()) / scale
    return torch.where(finite, logits, torch.full_like(logits, float("-inf")))


UPDATES: dict[str, Update] = {"cem": cem_update, "mppi": mppi_update}


def colored_noise(count: int, horizon: int, dim: int, beta: float, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """Unit-variance noise ``(count, horizon, dim)`` with power spectrum ∝ 1/f^beta along time.

    ``beta = 0`` is white noise; larger ``beta`` gives smoother, temporally correlated action
    perturbations (iCEM, Pinneri et al. 2020), which explore a point mass or an arm far better
    than white noise at the same population. Exactly normalised per time step from the spectrum.
    """
    if beta <= 0 or horizon < 2:
        return torch.randn((count, horizon, dim), generator=generator, device=device)
    freqs = torch.fft.rfftfreq(horizon, device=device)
    freqs[0] = freqs[1]
    scale = freqs ** (-beta / 2.0)
    real = torch.randn((count, dim, freqs.numel()), generator=generator, device=device)
    imag = torch.randn((count, dim, freqs.numel()), generator=generator, device=device)
    signal = torch.fft.irfft(torch.complex(real * scale, imag * scale), n=horizon)
    # variance of each time step: (s_0² + 4 Σ s_k² + s_nyquist²) / H² (DC and Nyquist are real)
    inner = scale[1:-1] if horizon % 2 == 0 else scale[1:]
    var = scale[0] ** 2 + 4 * (inner**2).sum() + (scale[-1] ** 2 if horizon % 2 == 0 else 0.0)
    return (signal / (var.sqrt() / horizon)).transpose(1, 2)


@dataclass
class GaussianSearch:
    """CEM or MPPI (``update`` names the rule in :data:`UPDATES`)."""

    space: SearchSpace
    update: str = "cem"
    population: int = 256
    elites: int = 32
    iterations: int = 3
    init_std: float = 0.5
    min_std: float = 0.05
    momentum: float = 0.1
    temperature: float = 0.5
    noise_beta: float = 0.0
    execute_mean: bool = True

    def __post_init__(self) -> None:
        if self.update not in UPDATES:
            raise ValueError(f"unknown update {self.update!r}; known: {sorted(UPDATES)}")
        if not 1 <= self.elites <= self.population:
            raise ValueError(f"need 1 <= elites ({self.elites}) <= population ({self.population})")
        if self.space.discrete:
            raise ValueError("GaussianSearch plans in a box; use CategoricalCEM for discrete actions")

    def optimize(self, objective: Objective, init_mean: torch.Tensor, generator: torch.Generator) -> PlanResult:
        space, device = self.space, init_mean.device
        mean = space.clip(init_mean)
        std = torch.full_like(mean, self.init_std * space.half)
        floor = self.min_std * space.half
        best, n_evals = BestTracker(), 0
        rule = UPDATES[self.update]
        with torch.no_grad():
            for _ in range(self.iterations):
                noise = colored_noise(self.population - 1, *mean.shape, self.noise_beta, generator, device)
                samples = space.clip(torch.cat([mean[None], noise.mul_(std).add_(mean)]))
                ev = objective(samples)
                n_evals += ev.n_evals
                order = rank(ev, top=self.elites)
                best.offer(samples, ev, int(order[0]))
                new_mean, new_std = rule(samples, ev, order, self)
                mean = space.clip(self.momentum * mean + (1 - self.momentum) * new_mean)
                std = (self.momentum * std + (1 - self.momentum) * new_std).clamp_min(floor)
            if self.execute_mean:
                # the mean averages the elites' noise away: smoother first actions for MPC; it is
                # only executed when it meets the hard constraint, so that guarantee is kept. Only
                # here is it scored on its own (one more rollout pass): otherwise the plan is the
                # best candidate evaluated, and the mean is scored as candidate 0 of the next plan
                final = mean[None]
                ev = objective(final)
                n_evals += ev.n_evals
                if bool(ev.feasible[0]):
                    best = BestTracker()
                best.offer(final, ev, 0)
        return best.result(mean, n_evals, final_std=float(std.mean()))
