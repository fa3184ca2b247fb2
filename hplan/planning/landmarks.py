"""The landmark high level: shortest paths over the model's waypoint latents.

An alternative to planning over subgoal codes with P_hi (``planner.high = "codes"``): the model
keeps a few hundred training latents drawn uniformly from the data (``model.waypoints()``, picked
by ``hplan.models.refits.Refits.pick_waypoints``; the checkpoint carries them, so planning needs no
dataset) and the graph of the steps its training episodes took between them
(``model.waypoint_edges()``, :mod:`hplan.models.waypoints`); a model without that graph joins
waypoints whose learned temporal distance is at most ``route.edge``. All-pairs shortest paths
are computed once (Floyd–Warshall, ``O(N³)`` on the planner's device: ~20 ms for 256 waypoints);
each step the agent enters the graph at a waypoint within ``route.attach``, leaves it at one
within ``route.attach`` of the goal, and hands the low level the farthest waypoint at most
``route.edge`` steps along that route (as in SPTM / SoRB / SGM). Why: the learned distance is
only ever asked about *short* hops, where it is trained directly, and every waypoint is a state
the data visited. It costs no predictor evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection

import torch

from hplan.errors import HplanError
from hplan.planning.config import LONG_HOP_PRICE
from hplan.planning.meter import ComputeMeter

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Route:
    """Waypoint indices from entry to exit, total cost (entry + graph + exit, guardrail costs
    included), the steps to the entry, and every waypoint's exit cost towards the goal (``inf``
    where it may not attach to it; what a route through another waypoint would pay to leave)."""

    path: list[int]
    length: float
    enter: float
    leave: torch.Tensor


@dataclass(frozen=True)
class Hand:
    """The waypoint handed to the low level: its index, its latent, the length of the route
    it lies on (steps from the agent to the goal over the graph) and the waypoint that route
    entered the graph at."""

    index: int
    latent: torch.Tensor
    route_length: float
    entry: int


class LandmarkGraph:
    """Shortest routes between waypoints ``(N, D)``.

    Edges are those of ``edges`` (steps the training data took between waypoints, ``inf`` where
    none; see :mod:`hplan.models.waypoints`) when the model kept them, weighted by the larger of
    those steps and the temporal ``distance`` (quasimetric, broadcasting) and dropped where that
    distance exceeds the steps seen by more than ``slack``; else every pair whose temporal distance
    is at most ``edge_max``. A hop of ``s`` steps is priced ``s · (1 + LONG_HOP_PRICE · s / edge_max)``
    (:data:`~hplan.planning.config.LONG_HOP_PRICE`: routes prefer chains of short hops); the
    lookahead along a route (``hand``) counts plain steps. Going from i to j costs
    ``edge_cost(waypoints, steps)[i, j]`` more (the guardrail cost of the way between them;
    :meth:`~hplan.planning.energy.Energy.edge_cost`). Arriving at waypoint j costs ``node_cost[j]``
    more (the guardrail cost of being there; :meth:`~hplan.planning.energy.Energy.waypoint_cost`).
    The agent and the goal attach to waypoints within ``attach`` steps (default ``edge_max``): with
    an experience graph that radius is kept short, because the distance is least trustworthy across
    walls — the very place the data-given edges are for.
    """

    def __init__(self, distance: Distance, waypoints: torch.Tensor, edge_max: float,
                 edges: torch.Tensor | None = None, attach: float | None = None, slack: float = float("inf"),
                 node_cost: torch.Tensor | None = None,
                 edge_cost: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 meter: ComputeMeter | None = None) -> None:
        self.meter = meter or ComputeMeter()
        if len(waypoints) == 0:
            raise HplanError("planner.high: 'landmarks' needs a model with waypoints (train it with model.landmarks > 0)")
        self.distance, self.points, self.edge_max = distance, waypoints, float(edge_max)
        self.attach = self.edge_max if attach is None else float(attach)
        n = len(waypoints)
        with torch.no_grad():
            hop = distance(waypoints[:, None], waypoints[None])  # hop[i, j]: from i to j
        inf = torch.full_like(hop, float("inf"))
        if edges is None:
            cost = torch.where(hop <= self.edge_max, hop, inf)
        else:
            if edges.shape != (n, n):
                raise HplanError(f"landmark edges: shape {tuple(edges.shape)} does not fit {n} waypoints")
            # the data say *whether* two waypoints are joined; how far apart they are is the larger
            # of the steps seen and the temporal distance (a visit is anywhere within the model's
            # landmark_link, so one step between visits can join waypoints cells apart)
            # ... and an edge the distance finds much longer than the steps seen is dropped: the
            # distance is trained to stay below every observed gap, so such an edge came from a
            # visit counted on the wrong side of a wall (zones model: 2.4 % of edges 6+ steps longer)
            seen = edges.to(hop.device, hop.dtype)
            consistent = torch.isfinite(seen) & (hop <= seen + slack)
            cost = torch.where(consistent, torch.maximum(seen, hop), inf)
        self.node_cost = torch.zeros(n, device=cost.device, dtype=cost.dtype) if node_cost is None \
            else node_cost.to(cost.device, cost.dtype)
        cost.fill_diagonal_(0.0)
        self.steps = cost  # steps between joined waypoints, without guardrail costs
        cost = cost + LONG_HOP_PRICE * cost * cost / self.edge_max  # long hops priced more (inf stays inf)
        if edge_cost is not None:  # the way between two waypoints pays its (guardrail) cost
            cost = cost + edge_cost(waypoints, self.steps).to(cost.device, cost.dtype)
        cost = cost + self.node_cost[None, :]  # arriving at a waypoint pays its (guardrail) cost
        cost.fill_diagonal_(0.0)
        self.base = cost  # edge costs before shortest paths (what ``block`` edits)
        self._solve()
        self._pristine = (self.base.clone(), self.cost, self.next)
        self.blocked: set[int] = set()  # waypoints given up on in this episode (``block``)
        self.direct_ban = 0  # steps left during which the goal is not approached straight
        self.exits_reached: set[int] = set()  # route ends the agent has reached (``hand``)
        self.held: int | None = None  # the waypoint last handed (``hand`` keeps it against a near tie)

    def _solve(self) -> None:
        """All-pairs shortest paths over ``self.base`` (Floyd–Warshall; ~20 ms for 256 on a CPU)."""
        with self.meter.measure("graph"):
            self._floyd_warshall()

    def _floyd_warshall(self) -> None:
        cost, n = self.base.clone(), len(self.base)
        nxt = torch.arange(n, device=cost.device).expand(n, n).clone()  # next node on the i → j route
        for k in range(n):
            via = cost[:, k, None] + cost[None, k, :]
            better = via < cost
            cost = torch.where(better, via, cost)
            nxt = torch.where(better, nxt[:, k, None].expand(n, n), nxt)
        self.cost, self.next = cost, nxt

    def reset(self) -> None:
        """Forget what ``block`` learnt (a new episode)."""
        base, self.cost, self.next = self._pristine
        self.base = base.clone()
        self.blocked, self.direct_ban, self.exits_reached, self.held = set(), 0, set(), None

    def block(self, waypoints: "Collection[int] | None", steps: int) -> None:
        """The low level made no progress along routes through ``waypoints``: take them out of
        the routes for the rest of the episode — or, when it was going for the goal itself
        (``waypoints`` None), do not go straight for it for ``steps`` steps.

        Why: an edge or an attachment can still join two sides of a wall (a visit counted on the
        wrong side, a distance that is short across it); the agent then presses into the wall
        (zones, guardrails off: 9 of 20 episodes). Giving up on the waypoint is all the agent can
        learn from its own observations. The whole waypoint and not one edge: a waypoint across
        a wall is usually reached by several such edges (dropping one edge at a time took five
        stalls of 12 steps to get round one wall). Which waypoints: the caller's choice (the
        progress watch gives up the ones it was handed and the ones its routes entered at).
        """
        if waypoints is None:
            self.direct_ban = steps
            return
        index = torch.tensor(sorted(set(waypoints)), dtype=torch.long, device=self.base.device)
        if index.numel() == 0:
            return
        self.blocked.update(index.tolist())
        self.base[index, :] = float("inf")
        self.base[:, index] = float("inf")
        self.base[index, index] = 0.0
        self._solve()

    def _attach(self, d: torch.Tensor) -> torch.Tensor:
        """Distances to the waypoints a state may attach to (``inf`` elsewhere): those within
        ``attach``, and always the nearest one (a goal seen at rest, say, may be a little farther
        from every waypoint than ``attach``; it still needs a way in). Never a blocked one."""
        if self.blocked:
            d = d.index_fill(0, torch.tensor(sorted(self.blocked), device=d.device), float("inf"))
        radius = torch.clamp(d.min(), min=self.attach)
        return torch.where(d <= radius, d, torch.full_like(d, float("inf")))

    def route(self, z: torch.Tensor, goal: torch.Tensor) -> Route | None:
        """The shortest route from ``z`` to ``goal`` over the waypoints, or None if the graph does
        not connect them (or the goal is within ``attach`` and going straight is no longer)."""
        with torch.no_grad():
            d_in = self.distance(z[None], self.points)
            d_out = self.distance(self.points, goal[None])
            direct = float(self.distance(z[None], goal[None])[0])
        with self.meter.measure("graph"):
            enter, leave = self._attach(d_in) + self.node_cost, self._attach(d_out)
            total = enter[:, None] + self.cost + leave[None, :]
            best = int(torch.argmin(total))
            length = float(total.flatten()[best])
        if not length < float("inf") or (direct <= self.attach and direct <= length and not self.direct_ban):
            return None
        i, j = divmod(best, len(self.points))
        path = [i]
        while path[-1] != j:
            path.append(int(self.next[path[-1], j]))
        return Route(path, length, float(enter[i] - self.node_cost[i]), leave)

    def hand(self, z: torch.Tensor, goal: torch.Tensor, reached: float = 0.0) -> Hand | None:
        """The farthest waypoint along the route at most ``edge_max`` route steps from ``z`` and
        farther than ``reached`` (None: no route, or the goal itself is the better target).
        Each call is one agent step: a ban on going straight (``block``) counts down here.

        Why measure along the route and not straight from ``z``: the straight temporal distance
        is short across a wall, so the farthest waypoint "within reach" was often the one on the
        other side of it. Why skip waypoints already reached: the route is recomputed every step,
        and an agent sitting on a waypoint whose successor is just out of reach would otherwise be
        handed the waypoint it is on, over and over (measured: hovering for 180 steps). It gets
        the successor instead, or the goal after the last one.

        Why an exit the agent has reached is not handed again: when no waypoint lies within
        ``attach`` of the goal, the route ends with a straight hop from its last waypoint. The
        agent reaches that waypoint, goes for the goal, is ``reached`` away from the waypoint after
        a step or two and was handed it again: it swung between the two for the rest of the
        episode (OGBench pointmaze-medium task 2, 3 units from the goal for 700 steps). The exit
        is handed again only while going straight is banned (``block``: straight went nowhere).
        """
        found = self.route(z, goal)
        self.direct_ban = max(0, self.direct_ban - 1)
        hand = self._next_on_route(z, found, reached)
        hand = self._hold(z, found, hand, reached)
        self.held = None if hand is None else hand.index
        return hand

    def _next_on_route(self, z: torch.Tensor, found: Route | None, reached: float) -> Hand | None:
        """The waypoint ``hand`` picks on ``found`` (see there)."""
        if found is None:
            return None
        path = torch.tensor(found.path, device=self.cost.device)
        hops = self.steps[path[:-1], path[1:]]
        along = found.enter + torch.cat([hops.new_zeros(1), hops.cumsum(0)])
        within = torch.nonzero(along <= self.edge_max).flatten()
        position = int(within[-1]) if within.numel() else 0
        with torch.no_grad():
            here = float(self.distance(z[None], self.points[path[position]][None])[0])
        if here <= reached:
            position += 1
            if position == len(path):
                self.exits_reached.add(found.path[-1])
                return None
        index = found.path[position]
        if position == len(path) - 1 and index in self.exits_reached and not self.direct_ban:
            return None
        return Hand(index, self.points[index], found.length, found.path[0])

    def _hold(self, z: torch.Tensor, found: Route | None, hand: Hand | None, reached: float) -> Hand | None:
        """Keep handing the waypoint handed last step unless the agent reached it, it was blocked,
        the new route has moved past it, or the new route is shorter than the one through it by
        more than ``attach``.

        Why: the route is recomputed every step from where the agent attaches, and near a door two
        entries within ``attach`` of the agent give routes a few steps apart, one through a waypoint
        on this side, one through a waypoint on the other. Handing them in turn pulled the agent
        both ways into the door's jamb until the progress watch blocked both (spiral, a traced `val`
        episode: 13 swaps in 29 steps at one door, seven waypoints blocked, then no route left and
        the goal approached straight through a wall for its last 210 steps).
        Within ``attach`` the two lengths differ by no more than the entries' own error.
        """
        held = self.held
        if held is None or found is None or hand is None or held == hand.index or held in self.blocked:
            return hand
        path = found.path
        if held in path and path.index(held) <= path.index(hand.index):
            return hand  # the new route passes the held waypoint: the agent moved on along it
        with torch.no_grad():
            here = float(self.distance(z[None], self.points[held][None])[0])
        if here <= reached:
            return hand
        with self.meter.measure("graph"):
            through = here + float(self.node_cost[held] + torch.min(self.cost[held] + found.leave))
        if not through <= found.length + self.attach:
            return hand
        # its entry is where this step's route went in: a stall gives that up too (``_watch_progress``)
        return Hand(held, self.points[held], through, found.path[0])
