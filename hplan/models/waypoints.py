"""Waypoints for the landmark high level, and the graph of how the training data moved between them.

Why a graph from experience (as SPTM, Savinov et al. 2018, builds its memory from the exploration
trajectory): joining two waypoints whenever the learned temporal distance says they are close
also joins states on either side of a thin wall — the distance is learned from pairs the data
visited and is never told that the far side of a wall is far (four rooms, 256 waypoints: 1.7 % of
such edges crossed a wall, and shortest routes use exactly those shortcuts; agents then pressed
into the wall, 42 % success). Two waypoints that one training episode visited within a few steps
of each other are connected *by a real transition*: on the same model none of 9,536 such edges
crossed a wall.
"""

from __future__ import annotations

from typing import Callable

import torch

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def draw_waypoints(z: torch.Tensor, valid: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` latents drawn uniformly without replacement from the valid steps of episodes ``z (E, L, D)``."""
    steps = torch.arange(z.shape[1], device=z.device)
    points = z[steps[None] < valid[:, None]]
    pick = torch.randperm(len(points), generator=generator, device=points.device)[:count]
    return points[pick]


def nearest_waypoint(z: torch.Tensor, valid: torch.Tensor, points: torch.Tensor, distance: Distance,
                     link: float, chunk: int = 16) -> torch.Tensor:
    """``(E, L)`` index of the waypoint each latent of ``z (E, L, D)`` visits, or -1.

    A latent visits the waypoint nearest under the symmetrised temporal distance when that is at
    most ``link`` steps (the quasimetric is asymmetric; a visit should not depend on direction).
    """
    nodes = []
    steps = torch.arange(z.shape[1], device=z.device)
    with torch.no_grad():
        for start in range(0, len(z), chunk):
            part = z[start:start + chunk, :, None]
            both = 0.5 * (distance(part, points) + distance(points, part))  # (e, L, N)
            best, node = both.min(-1)
            outside = (best > link) | (steps[None] >= valid[start:start + chunk, None])
            nodes.append(torch.where(outside, torch.full_like(node, -1), node))
    return torch.cat(nodes)


def experience_edges(nodes: torch.Tensor, count: int, max_gap: int) -> torch.Tensor:
    """``(count, count)`` fewest steps an episode took from a visit of waypoint i to a visit of j
    (``inf`` where none did within ``max_gap`` steps); ``nodes (E, L)`` from :func:`nearest_waypoint`."""
    cost = torch.full((count * count,), float("inf"), device=nodes.device)
    for gap in range(1, min(max_gap, nodes.shape[1] - 1) + 1):
        a, b = nodes[:, :-gap].flatten(), nodes[:, gap:].flatten()
        seen = (a >= 0) & (b >= 0) & (a != b)
        index = (a * count + b)[seen]
        cost.scatter_reduce_(0, index, torch.full((len(index),), float(gap), device=nodes.device), "amin")
    cost = cost.view(count, count)
    cost.fill_diagonal_(0.0)
    return cost
