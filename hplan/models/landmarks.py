"""Landmarks: a spread-out subset of training latents kept in the checkpoint as waypoints.

Why: a high level that routes over latents the model has actually seen (a graph whose edges are
short temporal distances, SoRB / SGM-style) only ever asks the learned distance about nearby
pairs, where it is trained directly, and its waypoints are real, reachable states — where a
subgoal proposed by a generative model can lie in a wall. The high level that uses them is
``planner.high = "landmarks"`` (``hplan/planning/landmarks.py``); the checkpoint carries the
latents so a run needs no dataset at planning time.
"""

from __future__ import annotations

import torch


def farthest_point_sample(points: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``n`` rows of ``points (N, D)`` chosen greedily to be far from each other (L2).

    The first is random (``generator``); each next one is the point farthest from all chosen so
    far, so the subset covers the data rather than its dense parts. ``O(n · N · D)``.
    """
    count = min(int(n), len(points))
    if count <= 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    first = int(torch.randint(0, len(points), (1,), generator=generator, device=generator.device if generator else None))
    chosen = [first]
    nearest = (points - points[first]).pow(2).sum(-1)
    for _ in range(count - 1):
        nxt = int(torch.argmax(nearest))
        chosen.append(nxt)
        nearest = torch.minimum(nearest, (points - points[nxt]).pow(2).sum(-1))
    return torch.as_tensor(chosen, device=points.device)
