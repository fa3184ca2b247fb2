"""The energy a planner minimises: task cost + guardrail cost, evaluated in chunks.

* **Task cost**: the model's learned temporal distance (``[planner.energy] task_cost = "temporal"``) or latent L2
  (``"l2"``) from the predicted latents to the goal/subgoal latent — the terminal distance plus
  ``running_weight`` × the mean per-step distance (so plans that get there early are preferred).
* **Guardrail cost** from ``model.heads``; ``heads(z_t, a_t)`` is the probability that taking
  ``a_t`` in ``z_t`` leads to a violation, so it is applied to the latent *before* each action.
  Modes (``GuardrailConfig.mode``):

  ``off``        no guardrail term (heads are not even evaluated);
  ``penalty``    ``weight × Σ_t Σ_g p``;
  ``hard``       candidates whose max predicted probability exceeds ``threshold`` are infeasible;
                 ranking puts feasible ones first (see :func:`hplan.planning.types.rank`). With
                 ``risk = δ`` each head has its own conformal threshold instead
                 (:mod:`hplan.models.calibration`): at most δ of real violations pass under it;
  ``lagrangian`` ``λ × Σ_t Σ_g p``, with λ adapted per planning step towards ``budget``
                 by a :class:`~hplan.planning.lagrangian.LagrangeMultiplier` held by the agent.

  With ``risk = δ`` penalty and Lagrangian modes price each head's margin over its conformal
  threshold instead of ``p``: ``(p − τ_g)₊ / (1 − τ_g)`` (:meth:`Energy.priced`), so a step the
  calibrated head does not flag costs nothing and a certain violation (p = 1) still costs one
  ``weight`` (or λ). Why: the threshold is where the calibration says violations begin; without
  it, the many safe steps a head gives small non-zero probabilities were priced as if partly unsafe.

Candidates are evaluated ``[planner.search] max_batch`` at a time, so a large population never needs more memory
than one chunk; each chunk is one batched ``model.predict`` over all its candidates.

Evaluation counting (``n_evals``): one low-level transition = one predictor evaluation, so a
batch of N candidates over H steps costs N·H; one ``predict_high`` jump also counts as one (it is
one forward pass of a predictor of similar size). Head and temporal-distance calls are not
counted: they are small MLPs on the latents the predictor produced.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from hplan.errors import HplanError
from hplan.planning.config import SUBGOAL_REACHED, GuardrailConfig, PlannerConfig
from hplan.planning.correction import ResidualMemory
from hplan.planning.meter import ComputeMeter
from hplan.planning.types import Evaluation, Objective
from hplan.vocabulary.protocol import WorldModel


HARD_WAYPOINT_COST = 1000.0
"""Hard mode: route cost of a waypoint (or an edge) predicted unsafe (in temporal-distance steps)."""

AUTO_MAX_BATCH = {"cpu": 256}
"""``max_batch = 0`` per device type (default for other devices: :data:`AUTO_MAX_BATCH_ACCELERATOR`)."""
AUTO_MAX_BATCH_ACCELERATOR = 16384


def resolve_max_batch(max_batch: int, device: torch.device) -> int:
    """The chunk size to use: explicit if > 0, else the per-device default."""
    if max_batch > 0:
        return max_batch
    return AUTO_MAX_BATCH.get(device.type, AUTO_MAX_BATCH_ACCELERATOR)


def chunked(evaluate: Callable[[torch.Tensor], Evaluation], max_batch: int) -> Objective:
    """Wrap ``evaluate`` so candidates go through it at most ``max_batch`` at a time."""

    def objective(candidates: torch.Tensor) -> Evaluation:
        if candidates.shape[0] <= max_batch:
            return evaluate(candidates)
        return Evaluation.concat([evaluate(part) for part in torch.split(candidates, max_batch)])

    return objective


def heeded_guardrails(names: tuple[str, ...], known: tuple[str, ...], source: str = "") -> list[int]:
    """The head columns ``[guardrails] names`` picks (all when empty); an unknown name is refused
    in one line (prefixed with ``source``, the scenario file, when given)."""
    unknown = [name for name in names if name not in known]
    if unknown:
        where = f"{source}: " if source else ""
        raise HplanError(f"{where}[guardrails] names: unknown guardrail(s) {unknown} (the model has: {list(known)})")
    return [list(known).index(name) for name in names] if names else list(range(len(known)))


def head_thresholds(model: WorldModel, guardrails: GuardrailConfig, names: list[str]) -> torch.Tensor:
    """``(G',)`` decision thresholds of the heeded heads: ``guardrails.threshold`` for each, or with
    ``guardrails.risk = δ`` each head's conformal threshold from the model's calibration."""
    if guardrails.risk is None or guardrails.mode == "off" or not names:
        return torch.full((len(names),), float(guardrails.threshold))
    calibration = getattr(model, "calibration", None)
    if calibration is None:
        raise HplanError("[guardrails] risk: the model has no guardrail calibration (calibration.json beside "
                         "model.pt); write one with `hplan calibrate RUN --data DATASET`")
    return torch.tensor(calibration.thresholds(tuple(names), guardrails.risk, guardrails.members))


class Energy:
    """Builds objectives (low-level over actions, high-level over subgoal codes) for one model."""

    def __init__(self, model: WorldModel, planner: PlannerConfig, guardrails: GuardrailConfig,
                 multiplier: Callable[[], float] | None = None) -> None:
        self.model = model
        self.planner = planner
        self.guardrails = guardrails
        self.multiplier = multiplier or (lambda: guardrails.multiplier_init)
        self.heeded = heeded_guardrails(guardrails.names, model.guardrail_names)
        self.uses_heads = guardrails.mode != "off" and len(self.heeded) > 0
        self.thresholds = head_thresholds(model, guardrails, [model.guardrail_names[i] for i in self.heeded])
        # the episode's own prediction errors, set by the agent (``planner.correction.memory``)
        self.correction: ResidualMemory | None = None
        self.meter = ComputeMeter()  # head calls and graph work, reported beside predictor evaluations

    def heads(self, z: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """The heeded guardrail probabilities ``(..., G')`` (``model.heads`` restricted to ``guardrails.names``;
        ``combine`` is passed only when ``guardrails.members`` asks for more than the mean, so a model
        without an ensemble needs no such argument)."""
        with self.meter.measure("guardrail"):
            if self.guardrails.members == "mean":
                probs = self.model.heads(z, actions)
            else:
                probs = self.model.heads(z, actions, combine=self.guardrails.members)
        self.meter.count("guardrail", probs.numel() // max(1, probs.shape[-1]))
        return probs if len(self.heeded) == probs.shape[-1] else probs[..., self.heeded]

    # -- pieces ---------------------------------------------------------------------------------
    def distance(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Task distance from latents ``(..., D)`` to a goal latent (broadcast, so a learned distance
        embeds the goal once rather than once per candidate and step)."""
        if self.planner.energy.task_cost == "l2":
            return (z - goal).norm(dim=-1)
        with self.meter.measure("distance"):
            out = self.model.temporal_distance(z, goal)
        self.meter.count("distance", out.numel())
        return out

    def task_cost(self, z: torch.Tensor, goal: torch.Tensor, running_weight: float | None = None,
                  per_step: torch.Tensor | None = None) -> torch.Tensor:
        """``(N, T, D)`` predicted latents → ``(N,)`` terminal + running distance to ``goal``
        (``per_step``: those distances ``(N, T)`` when the caller has them already)."""
        weight = self.planner.energy.running_weight if running_weight is None else running_weight
        if per_step is None:
            per_step = self.distance(z, goal)
        cost = per_step[:, -1]
        if weight > 0:
            cost = cost + weight * per_step.mean(1)
        return cost

    def guardrail(self, probs: torch.Tensor, task: torch.Tensor, n_evals: int) -> Evaluation:
        """Combine ``(N, T, G)`` predicted violation probabilities with the task cost by mode."""
        g = self.guardrails
        per_step = probs.amax(-1)
        risk = per_step.amax(-1)
        mean_risk = per_step.mean(-1)
        total = self.priced(probs).sum((1, 2))
        feasible = torch.ones_like(risk, dtype=torch.bool)
        barrier = torch.zeros_like(risk)
        cost = task
        if g.mode == "penalty":
            cost = task + g.weight * total
        elif g.mode == "lagrangian":
            cost = task + self.multiplier() * total
        elif g.mode == "hard":
            excess = self.excess(probs).amax((1, 2))  # the worst head's margin over its threshold
            feasible = excess <= 0
            barrier = max(g.weight, 1.0) * F.relu(excess) * probs.shape[1]
        return Evaluation(cost=cost, risk=risk.detach(), feasible=feasible, mean_risk=mean_risk.detach(),
                          barrier=barrier, n_evals=n_evals)

    def waypoint_cost(self, points: torch.Tensor) -> torch.Tensor:
        """``(N,)`` extra route cost of passing through each waypoint ``(N, D)``, from the
        action-marginal heads: ``weight`` (or λ) × Σ_g p in penalty (Lagrangian) mode; in hard mode
        ``HARD_WAYPOINT_COST`` per waypoint whose max p exceeds ``threshold`` — large but finite, so
        when every way to the goal is risky the least risky one is still taken (as the
        low level ranks infeasible candidates by risk)."""
        if not self.uses_heads:
            return torch.zeros(len(points), device=points.device, dtype=points.dtype)
        with torch.no_grad():
            probs = self.heads(points)
        return self._route_price(self.priced(probs).sum(-1), self.excess(probs).amax(-1)).to(points.dtype)

    def excess(self, probs: torch.Tensor) -> torch.Tensor:
        """``probs (..., G')`` minus each heeded head's threshold: > 0 where a head flags."""
        return probs - self.thresholds.to(probs)

    def priced(self, probs: torch.Tensor) -> torch.Tensor:
        """What penalty and Lagrangian modes count per head and step: the probability ``p``, or with
        ``risk = δ`` the margin over the conformal threshold scaled to ``[0, 1]``,
        ``(p − τ) / (1 − τ)`` where positive (zero where the calibrated head does not flag)."""
        if self.guardrails.risk is None:
            return probs
        tau = self.thresholds.to(probs)
        return F.relu(probs - tau) / (1.0 - tau).clamp(min=1e-6)

    def _route_price(self, expected: torch.Tensor, worst: torch.Tensor) -> torch.Tensor:
        """Route cost of a waypoint or an edge from its ``expected`` violations (Σ p) and its
        ``worst`` head margin over its threshold (:meth:`excess`): ``weight`` (λ in Lagrangian mode)
        × expected, or in hard mode ``HARD_WAYPOINT_COST`` where some head flags."""
        g = self.guardrails
        if g.mode == "hard":
            return torch.where(worst > 0, HARD_WAYPOINT_COST, 0.0)
        return (g.weight if g.mode == "penalty" else self.multiplier()) * expected

    def edge_cost(self, points: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """``(N, N)`` extra route cost of going from waypoint i to j (``steps[i, j]`` steps apart,
        ``inf`` where not joined): the action-marginal heads at ``planner.route.edge_samples``
        points on the straight latent segment between them stand in for the way the data took. Penalty
        (Lagrangian) mode: ``weight`` (λ) × steps × the mean Σ_g p of those points — the expected
        violations of the hop; hard mode: ``HARD_WAYPOINT_COST`` where any point's max p exceeds
        ``threshold``.

        Why: pricing only the waypoints let a route hop *past* a hazard — zones model: a 6.6-step
        edge along a wall ran through a restricted zone between two safe waypoints, and the guarded
        low level, handed the far end, pressed into the wall instead. With 3 samples: zones, 20
        episodes, success 65 % → 90 % (95 % unguarded). Off by default: for wall contact, which is
        about pushing rather than places, it did not help (four rooms, 50 episodes: 96 % against
        100 %, 70 against 50 wall-contact steps per 1,000). On a keypoint latent the segment is
        close to the straight line between the two positions; on other latents it is a cruder
        stand-in for the path.
        """
        out = torch.zeros_like(steps)
        samples = self.planner.route.edge_samples
        joined = torch.isfinite(steps) & (steps > 0)
        if not self.uses_heads or not samples or not bool(joined.any()):
            return out
        i, j = torch.nonzero(joined, as_tuple=True)
        frac = torch.arange(1, samples + 1, device=points.device, dtype=points.dtype) / (samples + 1)
        with torch.no_grad():
            between = points[i, None] + frac[None, :, None] * (points[j] - points[i])[:, None]
            probs = torch.cat([self.heads(part) for part in between.split(4096)])  # (E, S, G)
        out[i, j] = self._route_price(steps[i, j] * self.priced(probs).sum(-1).mean(-1),
                                      self.excess(probs).amax((1, 2))).to(out.dtype)
        return out

    # -- objectives -----------------------------------------------------------------------------
    def low_objective(self, z0: torch.Tensor, goal: torch.Tensor, max_batch: int | None = None,
                      final: bool = False) -> Objective:
        """Objective over action sequences ``(N, H, A)`` from latent ``z0 (D,)`` towards ``goal (D,)``.

        ``final``: ``goal`` is the episode's goal, and with ``planner.energy.goal_ends_episode`` the risk of
        the steps after a candidate's predicted arrival (distance ≤ ``SUBGOAL_REACHED``) is not
        counted. Why: the episode ends there, and summing the risk of a horizon spent sitting at
        a goal by a wall made the guarded agent circle such goals instead of reaching them (two
        rooms, penalty mode, 50 episodes: 11 of the 15 failures ended within 3 cells of the goal).
        """
        model = self.model
        stop = final and self.planner.energy.goal_ends_episode

        def evaluate(actions: torch.Tensor) -> Evaluation:
            n, horizon = actions.shape[:2]
            start = z0.expand(n, -1)
            memory = self.correction
            z = memory.rollout(model.predict, start, actions) if memory else model.predict(start, actions)
            per_step = self.distance(z, goal)
            task = self.task_cost(z, goal, per_step=per_step)
            if not self.uses_heads:
                return Evaluation.unconstrained(task, n * horizon)
            before = torch.cat([start[:, None], z[:, :-1]], dim=1)
            probs = self.heads(before, actions)
            if stop:  # step t counts while no earlier step has arrived
                arrived = per_step <= SUBGOAL_REACHED
                going = torch.cat([arrived.new_zeros(n, 1), arrived[:, :-1]], dim=1).cummax(1).values.logical_not()
                probs = probs * going[..., None].to(probs.dtype)
            return self.guardrail(probs, task, n * horizon)

        return chunked(evaluate, resolve_max_batch(max_batch or self.planner.search.max_batch, z0.device))

    def high_objective(self, z0: torch.Tensor, goal: torch.Tensor, max_batch: int | None = None) -> Objective:
        """Objective over subgoal-code sequences ``(N, L, M)``.

        Energy = distance(last predicted latent, goal) + ``codes.running_weight`` × mean distance of
        the predicted latents to the goal + ``codes.reach_weight`` ×
        Σ_l relu(d(z_{l-1}, z_l) − k) — a jump the temporal distance says needs more than ``k``
        low-level steps is one the low level probably cannot execute — + the guardrail cost of
        the predicted subgoal latents (heads without actions).
        """
        model = self.model
        k = float(model.subgoal_interval)

        def evaluate(codes: torch.Tensor) -> Evaluation:
            n, length = codes.shape[:2]
            start = z0.expand(n, -1)
            z = model.predict_high(start, codes)
            codes_cfg = self.planner.codes
            task = self.task_cost(z, goal, codes_cfg.running_weight)
            if codes_cfg.reach_weight > 0:
                before = torch.cat([start[:, None], z[:, :-1]], dim=1)
                if self.planner.energy.task_cost == "l2":
                    jump = (z - before).norm(dim=-1)
                else:
                    jump = self.distance(before, z)  # the temporal distance, metered like every other call
                task = task + codes_cfg.reach_weight * F.relu(jump - k).sum(1)
            if not self.uses_heads:
                return Evaluation.unconstrained(task, n * length)
            return self.guardrail(self.heads(z), task, n * length)

        return chunked(evaluate, resolve_max_batch(max_batch or self.planner.search.max_batch, z0.device))
