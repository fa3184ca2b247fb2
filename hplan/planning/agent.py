"""The latent agent: observations in, actions out, with everything the runner logs in ``PlanInfo``.

Implements the "Agent contract" of ``docs/architecture.md``::

    agent = make_agent(model, planner_cfg, guardrail_cfg, seed, device)
    agent.reset(goal_obs, seed)          # new episode; seed fixes the planner's sampler
    action, info = agent.act(obs)        # numpy array (continuous) or int (discrete)
    agent.set_goal(goal_obs)             # goal moved mid-episode

The agent only ever receives observations and goal observations — never the environment's
``info`` — which is what keeps ground truth out of the planning loop. With a seed, an episode is
deterministic on CPU: all randomness comes from one ``torch.Generator`` seeded in ``reset``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from hplan.device import resolve_device
from hplan.planning.budget import resolve_budget
from hplan.planning.config import (CODE_PRIOR_STD, CORRECTION_ACTION_WIDTH, CORRECTION_RADIUS, GuardrailConfig,
                                   PlannerConfig)
from hplan.planning.correction import ResidualMemory
from hplan.planning.energy import Energy
from hplan.vocabulary.frames import FrameHistory, repeat_frame
from hplan.planning.hierarchical import FlatPlanner, HierarchicalPlanner, PlanStep
from hplan.planning.lagrangian import LagrangeMultiplier
from hplan.planning.mpc import RecedingHorizon
from hplan.vocabulary.protocol import WorldModel
from hplan.planning.registry import make_optimizer
from hplan.planning.surprise import RunningZScore
from hplan.planning.types import PlanResult, SearchSpace
from hplan.seeding import torch_generator


@dataclass
class PlanInfo:
    """What the agent predicted and spent for one action (logged per step by the runner).

    ``guardrail_probs``: predicted violation probability per guardrail name for the chosen first
    action; ``predicted_cost``: energy of the chosen plan; ``subgoal_latent``: the low level's
    current subgoal (None for the flat planner or when going straight for the goal);
    ``subgoal_index``: how many subgoals were chosen before this one in the episode (-1: none);
    ``plan_ms``: wall time of ``act``; ``model_evals``: predictor evaluations spent (see
    :mod:`hplan.planning.energy`); ``replanned_high``: the high level replanned this step;
    ``surprise``: z-scored latent prediction error of the last transition (see ``_score_surprise``).
    Additive fields: ``plan_reason`` (flat / start / schedule / reached / lost / subgoal / direct),
    ``lagrange_multiplier`` (λ in Lagrangian mode, else None), ``predicted_risk`` (max predicted
    violation probability along the chosen plan), ``compute``: what the step computed besides
    predictor evaluations (:mod:`hplan.planning.meter`: distance- and guardrail-head rows and ms,
    graph ms); the first step of an episode also carries the agent's build: ``setup_ms`` (its wall
    time) and ``setup_distance_evals``, ``setup_graph_ms``, ... (the head rows and graph time in it).
    """

    guardrail_probs: dict[str, float]
    predicted_cost: float
    subgoal_latent: list[float] | None
    subgoal_index: int
    plan_ms: float
    model_evals: int
    replanned_high: bool
    surprise: float
    plan_reason: str = "flat"
    lagrange_multiplier: float | None = None
    predicted_risk: float = 0.0
    compute: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class LatentAgent:
    """Plans in the latent space of ``model`` with a flat or hierarchical planner."""

    def __init__(self, model: WorldModel, planner: PlannerConfig, guardrails: GuardrailConfig, seed: int,
                 device: torch.device) -> None:
        started = time.perf_counter()
        self.model = model
        self.planner_cfg = planner
        self.guardrail_cfg = guardrails
        self.device = device
        self.seed = int(seed)
        spec = model.action_spec
        self.discrete = bool(spec.discrete)
        self.multiplier = LagrangeMultiplier(guardrails)
        self.energy = Energy(model, planner, guardrails, multiplier=self.multiplier)
        fix = planner.correction
        if fix.memory:
            self.energy.correction = ResidualMemory(fix.memory, CORRECTION_RADIUS, CORRECTION_ACTION_WIDTH, fix.threshold)
        budget = resolve_budget(planner)
        low_space = SearchSpace(planner.horizon, spec.dim, spec.low, spec.high, discrete=self.discrete)
        low = RecedingHorizon(make_optimizer(planner.low, low_space, planner, budget.low), device,
                              warm_start=planner.search.warm_start)
        if planner.kind == "hier":
            high = None  # the landmark high level has no optimiser (and no budget share)
            if budget.high is not None:
                codes = planner.codes
                high_space = SearchSpace(codes.horizon, model.code_dim, -codes.bound, codes.bound)
                start = CODE_PRIOR_STD / codes.bound  # the codes' prior, as a fraction of the box
                high_cfg = dataclasses.replace(planner, search=dataclasses.replace(
                    planner.search, init_std=start, min_std=min(planner.search.min_std, start)))
                high = RecedingHorizon(make_optimizer(codes.optimizer, high_space, high_cfg, budget.high),
                                       device, warm_start=planner.search.warm_start)
            self.planner: FlatPlanner | HierarchicalPlanner = HierarchicalPlanner(self.energy, low, high, planner)
        else:
            self.planner = FlatPlanner(self.energy, low)
        self.budget = budget
        self.surprise = RunningZScore()
        self.history = FrameHistory(getattr(model, "frame_history", 1))
        self.goal: torch.Tensor | None = None
        self.generator = torch_generator(self.seed, device)
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last_step: PlanStep | None = None
        # the build (the landmark graph's distances, edge prices and shortest paths), reported apart
        # from the first step's own work: ``setup_ms`` and ``setup_<kind>_evals`` / ``setup_<kind>_ms``
        self._setup: dict[str, float] | None = {f"setup_{k}": v for k, v in self.energy.meter.take().items()}
        self._setup["setup_ms"] = 1000.0 * (time.perf_counter() - started)

    # -- episode control ------------------------------------------------------------------------
    def reset(self, goal_obs: Any, seed: int | None = None) -> None:
        """Start an episode towards ``goal_obs``; ``seed`` reseeds the sampler (same seed, same episode)."""
        if seed is not None:
            self.seed = int(seed)
        self.generator = torch_generator(self.seed, self.device)
        self.multiplier.reset()
        self.surprise.reset()
        if self.energy.correction is not None:
            self.energy.correction.reset()
        self._last = None
        self.last_step = None
        self.planner.reset()
        self.history.clear()
        self.goal = self.encode(repeat_frame(goal_obs, self.history.history))

    def set_goal(self, goal_obs: Any) -> None:
        """The goal moved: re-encode it and drop subgoals and warm starts aimed at the old one."""
        self.goal = self.encode(repeat_frame(goal_obs, self.history.history))
        self.planner.reset()

    # -- acting ---------------------------------------------------------------------------------
    def encode(self, obs: Any) -> torch.Tensor:
        """One encoder input (a raw observation, or a frame history of them; arrays or dicts of
        arrays) → latent ``(D,)``."""
        with torch.no_grad():
            return self.model.encode(self._batch(obs))[0]

    def _batch(self, obs: Any) -> Any:
        if isinstance(obs, Mapping):
            return {key: self._batch(value) for key, value in obs.items()}
        array = np.asarray(obs)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        return torch.as_tensor(array, device=self.device)[None]

    def _score_surprise(self, z: torch.Tensor) -> float:
        """Z-scored one-step prediction error (mean squared over latent dims, as the model's own
        calibration defines it). A model that carries held-out calibration (``surprise_stats`` =
        [mean, std], set by training) is scored against it; otherwise against the running
        statistics of this episode (:class:`RunningZScore`). The same error, as a vector, goes to
        the episode's dynamics correction when the planner keeps one."""
        if self._last is None:
            return 0.0
        z_prev, a_prev = self._last
        with torch.no_grad():
            predicted = self.model.predict(z_prev[None], a_prev[None, None])[0, -1]
        if self.energy.correction is not None:
            self.energy.correction.add(z_prev, a_prev, z, predicted)
        error = float((predicted - z).pow(2).mean())
        running = self.surprise.score(error)
        stats = getattr(self.model, "surprise_stats", None)
        if isinstance(stats, torch.Tensor) and stats.numel() == 2 and float(stats[1]) > 0 \
                and not torch.equal(stats.cpu(), torch.tensor([0.0, 1.0])):
            return (error - float(stats[0])) / float(stats[1])
        return running

    def act(self, obs: Any) -> tuple[np.ndarray | int, PlanInfo]:
        """Plan from ``obs`` and return the first action of the chosen plan with its ``PlanInfo``."""
        if self.goal is None:
            raise RuntimeError("call agent.reset(goal_obs, seed) before agent.act(obs)")
        start = time.perf_counter()
        z = self.encode(self.history.push(obs))
        surprise = self._score_surprise(z)
        with torch.no_grad():  # the gradient planner re-enables grad for its action sequence only
            step = self.planner.step(z, self.goal, self.generator)
        result: PlanResult = step.result
        first = result.actions[0].detach()
        with torch.no_grad(), self.energy.meter.measure("guardrail", rows=1 if self.model.guardrail_names else 0):
            probs = self.model.heads(z[None], first[None])[0] if self.model.guardrail_names else None
        multiplier = None
        if self.guardrail_cfg.mode == "lagrangian":
            multiplier = self.multiplier.update(result.mean_risk)
        self._last = (z, first)
        self.last_step = step
        action: np.ndarray | int
        if self.discrete:
            action = int(first.argmax())
        else:
            action = first.cpu().numpy().astype(np.float32)
        names = self.model.guardrail_names
        info = PlanInfo(
            guardrail_probs={name: float(probs[i]) for i, name in enumerate(names)} if probs is not None else {},
            predicted_cost=float(result.cost),
            subgoal_latent=None if step.subgoal is None else [float(v) for v in step.subgoal.cpu()],
            subgoal_index=step.subgoal_index,
            plan_ms=1000.0 * (time.perf_counter() - start),
            model_evals=step.model_evals,
            replanned_high=step.replanned_high,
            surprise=surprise,
            plan_reason=step.reason,
            lagrange_multiplier=multiplier,
            predicted_risk=float(result.risk),
            compute=self._compute(),
        )
        return action, info

    def _compute(self) -> dict[str, float]:
        """This step's head and graph work; the first step after the agent was built also carries
        the build, under ``setup_*`` keys (``setup_ms``: its wall time)."""
        compute = self.energy.meter.take()
        if self._setup is not None:
            compute.update(self._setup)
            self._setup = None
        return compute


def make_agent(model: WorldModel, planner: PlannerConfig, guardrails: GuardrailConfig, seed: int,
               device: str | torch.device | None = None) -> LatentAgent:
    """The factory the runner injects (dreamerv3's ``make_agent``); ``device`` resolved once here.

    ``device=None`` uses ``planner.device``. On a discrete action space the sampling optimisers
    ``cem``/``mppi`` mean categorical CEM (``grad`` is refused with a one-line error).
    """
    if model.action_spec.discrete and planner.low in ("cem", "mppi"):
        planner = dataclasses.replace(planner, low="cem_discrete")
    return LatentAgent(model, planner, guardrails, seed, resolve_device(device if device is not None else planner.device))

