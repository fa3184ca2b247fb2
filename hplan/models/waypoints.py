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


FILL_ROUNDS = 4
""":func:`fill_uncovered` adds its waypoints in this many rounds, re-finding what is still uncovered
after each (a round's picks cover their neighbours, so the next round looks elsewhere)."""


def fill_uncovered(z: torch.Tensor, valid: torch.Tensor, points: torch.Tensor, count: int, distance: Distance,
                   link: float, generator: torch.Generator, rounds: int = FILL_ROUNDS) -> torch.Tensor:
    """``points`` plus ``count`` more, drawn uniformly from the valid latents of ``z (E, L, D)`` that
    visit no waypoint (farther than ``link`` from all of them), in ``rounds`` rounds (once every
    latent is visited, from all of them, so there are always ``count`` more).

    Why: a uniform draw follows the data's density, and a doorway is where the data are thinnest —
    crossing it takes a few steps of an episode. On the spiral (256 uniform waypoints, three
    training seeds of one dataset) a third of the training latents visited no waypoint, and the
    route's cheapest crossing of a door ranged from 1 to 26 steps by seed and door (a long hop
    hands the low level a waypoint beyond the door, and it pressed into the wall beside it).
    Drawing part of the waypoints where the uniform ones leave latents unvisited puts waypoints in
    the thin places, doorways among them, without taking the extremes first as farthest-point
    sampling does (wall-pressed and fastest states)."""
    steps = torch.arange(z.shape[1], device=z.device)
    inside = steps[None] < valid[:, None]
    for left in range(rounds, 0, -1):
        want = -(-count // left)  # this round's share of what is still to add
        if want <= 0:
            break
        uncovered = inside & (nearest_waypoint(z, valid, points, distance, link) < 0)
        # nothing left unvisited: no thin place either, so the rest are drawn like the others
        candidates = z[uncovered] if bool(uncovered.any()) else z[inside]
        pick = torch.randperm(len(candidates), generator=generator, device=candidates.device)[:want]
        points = torch.cat([points, candidates[pick]])
        count -= len(pick)
    return points
