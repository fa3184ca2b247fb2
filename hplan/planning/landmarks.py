"""The landmark high level: shortest paths over the model's waypoint latents.

An alternative to planning over subgoal codes with P_hi (``planner.high = "codes"``): the model
keeps a few hundred training latents drawn uniformly from the data (``model.waypoints()``, picked
by ``WorldModelModule.pick_waypoints``; the checkpoint carries them, so planning needs no
dataset); the graph joins two of them when the learned temporal distance
between them is at most ``landmark_edge`` steps, all-pairs shortest paths are computed once
(Floyd–Warshall, ``O(N³)`` on the planner's device: ~20 ms for 256 waypoints), and each step the
agent enters the graph at a waypoint within reach, leaves it at one within reach of the goal, and
hands the low level the farthest waypoint of that route still within ``landmark_edge`` (as in
SoRB / SGM). Why: the learned distance is only ever asked about *short* hops, where it is trained
directly (far pairs are where it is least reliable), and every waypoint is a state the data
visited — the agent cannot be sent into a wall. It costs no predictor evaluations.
"""

from __future__ import annotations

from typing import Callable

import torch

from hplan.errors import HplanError

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class LandmarkGraph:
    """Shortest routes between waypoints ``(N, D)`` under ``distance`` (quasimetric, broadcasting)."""

    def __init__(self, distance: Distance, waypoints: torch.Tensor, edge_max: float) -> None:
        if len(waypoints) == 0:
            raise HplanError("planner.high: 'landmarks' needs a model with waypoints (train it with model.landmarks > 0)")
        self.distance, self.points, self.edge_max = distance, waypoints, float(edge_max)
        n = len(waypoints)
        with torch.no_grad():
            hop = distance(waypoints[:, None], waypoints[None])  # hop[i, j]: from i to j
        inf = torch.tensor(float("inf"), device=hop.device, dtype=hop.dtype)
        cost = torch.where(hop <= self.edge_max, hop, inf)
        cost.fill_diagonal_(0.0)
        nxt = torch.arange(n, device=hop.device).expand(n, n).clone()  # next node on the i → j route
        for k in range(n):
            via = cost[:, k, None] + cost[None, k, :]
            better = via < cost
            cost = torch.where(better, via, cost)
            nxt = torch.where(better, nxt[:, k, None].expand(n, n), nxt)
        self.cost, self.next = cost, nxt

    def route(self, z: torch.Tensor, goal: torch.Tensor) -> tuple[list[int], float] | None:
        """Waypoint indices of the shortest route from ``z`` to ``goal`` and its length, or None if
        the graph does not connect them (or going straight is no longer)."""
        with torch.no_grad():
            d_in = self.distance(z[None], self.points)
            d_out = self.distance(self.points, goal[None])
            direct = float(self.distance(z[None], goal[None])[0])
        inf = torch.tensor(float("inf"), device=d_in.device, dtype=d_in.dtype)
        enter = torch.where(d_in <= self.edge_max, d_in, inf)
        leave = torch.where(d_out <= self.edge_max, d_out, inf)
        total = enter[:, None] + self.cost + leave[None, :]
        best = int(torch.argmin(total))
        length = float(total.flatten()[best])
        if not length < float("inf") or (direct <= self.edge_max and direct <= length):
            return None
        i, j = divmod(best, len(self.points))
        path = [i]
        while path[-1] != j:
            path.append(int(self.next[path[-1], j]))
        return path, length

    def waypoint(self, z: torch.Tensor, goal: torch.Tensor, reached: float = 0.0) -> torch.Tensor | None:
        """The farthest waypoint along the route still within ``edge_max`` of ``z`` and farther than
        ``reached`` (None: no route, or the goal itself is the better target).

        Why skip waypoints already reached: the route is recomputed every step, and an agent sitting
        on a waypoint whose successor is just out of reach would otherwise be handed the waypoint it
        is on, over and over (measured: hovering for 180 steps). It gets the successor instead, or
        the goal after the last one.
        """
        found = self.route(z, goal)
        if found is None:
            return None
        path = found[0]
        with torch.no_grad():
            d = self.distance(z[None], self.points[path])
        within = torch.nonzero(d <= self.edge_max).flatten()
        position = int(within[-1]) if within.numel() else 0
        if float(d[position]) <= reached:
            position += 1
            if position == len(path):
                return None
        return self.points[path[position]]
