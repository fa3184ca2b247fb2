"""Flat and hierarchical planners: MPC in latent space, with and without a subgoal level.

The **flat** planner is receding-horizon MPC (:class:`~hplan.planning.mpc.RecedingHorizon`)
aimed straight at the goal latent. The **hierarchical** planner is the same idea one level up:
a high-level MPC over sequences of subgoal codes ``m`` rolled out with ``model.predict_high``
(each code jumps ``subgoal_interval`` low-level steps; energy in
:meth:`~hplan.planning.energy.Energy.high_objective`), whose first predicted latent becomes the
target of the low-level MPC (the first one not already within ``SUBGOAL_REACHED``). The high
level is replanned

* at the start, and every ``codes.replan_every`` low-level steps (schedule);
* when the low level *reached* its subgoal (distance ≤ ``SUBGOAL_REACHED``);
* when it *lost* it (distance grew by more than ``SUBGOAL_LOST`` in one step);

and while the goal itself is within ``codes.direct_reach`` the low level goes straight for the goal.
With ``planner.high = "landmarks"`` the subgoal is instead the next waypoint of the shortest
route over the model's waypoint latents (:mod:`hplan.planning.landmarks`), recomputed every
step: a route costs no predictor evaluations, so there is nothing to save by keeping a stale one
(the waypoint handed last is kept only against a near tie, so that routes entering on either side
of a door do not pull the agent both ways).
A waypoint the low level has not come closer to in ``route.patience`` steps is taken out of
the graph for the rest of the episode (``LandmarkGraph.block``): with only its own observations,
that is how the agent finds out that a waypoint lies across a wall.
With ``planner.high = "imagined"`` the route runs over a graph of the high level's own
subgoals, grown from the agent's latent at the first step (:mod:`hplan.planning.imagination`)
and regrown from where the agent is when it leaves the graph (no node within ``route.edge``
steps) and when the progress watch gives waypoints up (``imagined.regrow_on_stall``); everything
else is as with landmarks.
All decisions use the model's own distances; nothing here sees the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hplan.planning.config import (IMAGINED_MERGE, IMAGINED_REACH, ROUTE_SLACK, SUBGOAL_LOST,
                                   SUBGOAL_REACHED, PlannerConfig)
from hplan.planning.energy import Energy
from hplan.planning.imagination import GrowthLimits, imagine_graph
from hplan.planning.landmarks import Hand, LandmarkGraph
from hplan.planning.mpc import RecedingHorizon
from hplan.planning.types import PlanResult


PROGRESS = 0.5
"""Landmarks: temporal-distance steps the agent must gain on its waypoint to count as progress."""
BAN_PATIENCES = 3
"""Landmarks: after a stall going straight for the goal, it stays banned this many patiences."""


@dataclass
class PlanStep:
    """One agent step's planning outcome (before it is turned into a ``PlanInfo``)."""

    result: PlanResult
    target: torch.Tensor
    subgoal: torch.Tensor | None
    subgoal_index: int
    replanned_high: bool
    reason: str
    model_evals: int


class FlatPlanner:
    """The baseline: low-level MPC straight at the goal."""

    def __init__(self, energy: Energy, low: RecedingHorizon) -> None:
        self.energy = energy
        self.low = low

    def reset(self) -> None:
        self.low.reset()

    def step(self, z: torch.Tensor, goal: torch.Tensor, generator: torch.Generator) -> PlanStep:
        result = self.low.plan(self.energy.low_objective(z, goal, final=True), generator)
        return PlanStep(result=result, target=goal, subgoal=None, subgoal_index=-1, replanned_high=False,
                        reason="flat", model_evals=result.n_evals)


class HierarchicalPlanner:
    """High-level MPC over subgoal codes on top of low-level MPC towards the first subgoal."""

    def __init__(self, energy: Energy, low: RecedingHorizon, high: RecedingHorizon | None, cfg: PlannerConfig) -> None:
        self.energy = energy
        self.model = energy.model
        self.low = low
        self.high = high
        self.cfg = cfg
        self.graph: LandmarkGraph | None = None
        self.routing = cfg.high in ("landmarks", "imagined")  # a graph route, not an MPC over codes
        if cfg.high == "landmarks":
            waypoints = getattr(self.model, "waypoints", None)
            points = waypoints() if callable(waypoints) else torch.zeros(0)
            edges = getattr(self.model, "waypoint_edges", None)
            edges = edges() if callable(edges) and len(points) else None
            route = cfg.route
            self.graph = LandmarkGraph(energy.distance, points, route.edge, edges,
                                       route.attach if edges is not None else None, ROUTE_SLACK,
                                       energy.waypoint_cost(points), energy.edge_cost, meter=energy.meter)
        elif cfg.high == "codes" and high is None:
            raise ValueError("the `codes` high level needs a high-level optimiser")
        self.reset()

    def reset(self) -> None:
        """Forget subgoals and warm starts (new episode or new goal)."""
        self.low.reset()
        if self.high is not None:
            self.high.reset()
        self.subgoal: torch.Tensor | None = None
        self.subgoal_index = -1
        self.steps_since_high = 0
        self.last_subgoal_distance = float("inf")
        self.high_latents: torch.Tensor | None = None
        self.route_done = False  # landmarks: no waypoint left, the low level goes for the goal
        # landmarks: progress watch (going straight for the goal or not, best remaining distance, steps
        # without progress, waypoints handed meanwhile)
        self.stall_direct: bool | None = None
        self.stall_best, self.stall_steps = float("inf"), 0
        self.stall_waypoints: set[int] = set()
        if self.cfg.high == "imagined":
            self.graph = None  # grown from the first latent of the episode
            self.regrow = False
        if self.graph is not None:
            self.graph.reset()

    def _distance(self, z: torch.Tensor, target: torch.Tensor) -> float:
        return float(self.energy.distance(z[None], target[None])[0])

    def _replan_reason(self, z: torch.Tensor) -> str | None:
        if self.routing:
            return "route"
        if self.subgoal is None:
            return "start"
        if self.steps_since_high >= self.cfg.codes.replan_every:
            return "schedule"
        distance = self._distance(z, self.subgoal)
        if distance <= SUBGOAL_REACHED:
            return "reached"
        if distance > self.last_subgoal_distance + SUBGOAL_LOST:
            return "lost"
        return None

    def _watch_progress(self, z: torch.Tensor, goal: torch.Tensor, hand: Hand | None) -> Hand | None:
        """Landmarks: the agent must get ``PROGRESS`` steps closer to the goal — along its route, or
        straight while it goes for the goal — every ``route.patience`` steps. If it does not,
        every waypoint it was handed meanwhile, and every waypoint its routes entered the graph at
        meanwhile, leaves the episode's graph (or, going straight, the goal is not approached
        straight for a while), and it reroutes.

        Why the route's length and not the distance to the handed waypoint: the route is recomputed
        every step, and an agent pressed into a wall corner was handed two waypoints in turn, each
        new to a per-waypoint watch, so neither was ever given up. Watching the route: four rooms,
        guardrails off, 50 episodes, 84 % → 100 % success; two rooms, 20 episodes, 85 % → 100 %.

        Why the entries too: an agent pressed into a wall attaches to waypoints across it (the
        learned distance is short across a thin wall), and its route enters there and hands it a
        waypoint deeper on that side. Giving up only the handed one left the entry, and the next
        route went in there again (corridor, a traced `val` episode: 15 stalls, 200 steps against
        one wall before a waypoint by the door was handed; with the entries, 3 stalls).
        """
        patience = self.cfg.route.patience
        direct = hand is None
        remaining = self._distance(z, goal) if hand is None else hand.route_length
        if direct != self.stall_direct:
            self.stall_direct, self.stall_best, self.stall_steps, self.stall_waypoints = direct, remaining, 0, set()
        elif remaining < self.stall_best - PROGRESS:
            self.stall_best, self.stall_steps, self.stall_waypoints = remaining, 0, set()
        else:
            self.stall_steps += 1
        if hand is not None:
            self.stall_waypoints.update((hand.index, hand.entry))
        if not patience or self.stall_steps < patience:
            return hand
        assert self.graph is not None
        self.graph.block(self.stall_waypoints or None, BAN_PATIENCES * patience)
        self.stall_direct = None
        if self.cfg.high == "imagined" and self.cfg.imagined.regrow_on_stall and self.stall_waypoints:
            self.regrow = True
        return self.graph.hand(z, goal, SUBGOAL_REACHED)

    def _grow(self, z: torch.Tensor, goal: torch.Tensor, generator: torch.Generator) -> int:
        """``imagined``: (re)grow the graph from ``z`` when there is none, the agent has left it, or
        the progress watch gave its waypoints up. Returns the P_hi evaluations spent."""
        route, grow = self.cfg.route, self.cfg.imagined
        if self.graph is not None and not self.regrow:
            near = float(self.energy.distance(z[None], self.graph.points).min())
            if near <= route.edge:
                return 0
        k = max(1, self.model.subgoal_interval)
        limits = GrowthLimits(branches=grow.branches, frontier=grow.frontier, depth=grow.depth,
                              nodes=grow.nodes, merge=IMAGINED_MERGE * k, reach=IMAGINED_REACH * k)
        grown = imagine_graph(self.model, self.energy.distance, z, goal, limits, generator)
        points = grown.points
        self.graph = LandmarkGraph(self.energy.distance, points, route.edge, grown.edges, route.attach,
                                   ROUTE_SLACK, self.energy.waypoint_cost(points), self.energy.edge_cost,
                                   meter=self.energy.meter)
        self.regrow = False
        self.stall_direct = None
        return grown.proposals

    def _plan_high(self, z: torch.Tensor, goal: torch.Tensor, generator: torch.Generator, reason: str) -> int:
        grown = self._grow(z, goal, generator) if self.cfg.high == "imagined" else 0
        if self.graph is not None:
            hand = self._watch_progress(z, goal, self.graph.hand(z, goal, SUBGOAL_REACHED))
            self.subgoal = goal if hand is None else hand.latent
            self.route_done = hand is None
            self.subgoal_index += 1
            self.steps_since_high = 0
            return grown
        assert self.high is not None
        # warm start: drop the high-level steps already executed (at least the reached subgoal)
        interval = max(1, self.model.subgoal_interval)
        shift = round(self.steps_since_high / interval) if self.subgoal is not None else 0
        if reason == "reached":
            shift = max(shift, 1)
        result = self.high.plan(self.energy.high_objective(z, goal), generator, shift=shift)
        latents = self.model.predict_high(z[None], result.actions[None])[0]
        self.high_latents = latents
        # the first predicted subgoal that is not already reached (else a plan whose first jump
        # stays put would make "reached" fire on every step and the agent never move on)
        distances = self.energy.distance(z[None], latents)
        ahead = torch.nonzero(distances > SUBGOAL_REACHED)
        self.subgoal = latents[int(ahead[0, 0])] if ahead.numel() else latents[-1]
        self.subgoal_index += 1
        self.steps_since_high = 0
        self.last_subgoal_distance = float("inf")
        return result.n_evals + latents.shape[0]

    def step(self, z: torch.Tensor, goal: torch.Tensor, generator: torch.Generator) -> PlanStep:
        evals, replanned, reason = 0, False, "subgoal"
        # the landmark graph decides itself when to go straight (its short attach radius): the
        # temporal distance says "near" across a wall, where going straight means pressing into it
        if not self.routing and self._distance(z, goal) <= self.cfg.codes.direct_reach:
            target, reason = goal, "direct"
        else:
            why = self._replan_reason(z)
            if why is not None:
                evals += self._plan_high(z, goal, generator, why)
                replanned, reason = True, why
            assert self.subgoal is not None
            target = self.subgoal
            self.last_subgoal_distance = self._distance(z, target)
            if self.graph is not None and self.route_done:
                reason = "direct"
        result = self.low.plan(self.energy.low_objective(z, target, final=reason == "direct"), generator)
        self.steps_since_high += 1
        return PlanStep(result=result, target=target, subgoal=None if reason == "direct" else self.subgoal,
                        subgoal_index=self.subgoal_index, replanned_high=replanned, reason=reason,
                        model_evals=evals + result.n_evals)
