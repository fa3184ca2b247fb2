"""Waypoints the agent imagines: a graph grown from the current latent with the learned high level.

``planner.high = "imagined"`` routes like ``"landmarks"`` (:mod:`hplan.planning.landmarks`) but
keeps no memory of training latents: its waypoints are subgoals ``P_hi(z, ε)``, ``ε ~ N(0, I)``,
sampled from the model's own state-conditioned prior, grown outwards from where the agent is
(the names below are the fields of ``[planner.imagined]``).
Growth is best first (A*): each round the ``frontier`` not yet expanded nodes with the
shortest way from the root (learned steps per jump) plus learned distance to the goal each propose
``branches`` subgoals (one batched ``predict_high`` call); a proposal the learned temporal
distance places more than ``reach`` steps from its parent is dropped (a jump the model
itself does not believe in); one within ``merge`` steps of a node already in the graph
(both ways) only joins its parent to that node; the others are taken most promising first (way
from the root plus learned distance to the goal), at most ``frontier`` per round and none
within ``merge`` of another, and join the graph. Growth stops at ``nodes`` nodes, after ``depth``
rounds, or once a proposal lands within ``merge`` steps of the goal. Where the learned
distance points into a wall, the nodes there stop producing new ones (their proposals merge into
what exists) and the search widens round the wall, as A* does.

Why this shape: a code-space MPC rolled out for a few jumps sees only ``codes.horizon · k`` steps
ahead and greedily follows a learned distance that is least reliable where walls bend the way;
the graph explores every direction the prior says is possible, and a shortest-path search over
it finds the doorway the greedy search walks past. Because the nodes come from the prior at the
agent's own states, it needs no data of the layout it is in — only a model that knows what a
wall does (see ``docs/results.md`` for where that holds). An edge costs the learned distance of
its jump (at most ``reach``); the edge back from child to parent is kept where the
learned distance says the way back is believable too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ImaginedGraph:
    """Nodes ``(N, D)`` (node 0 is the latent it was grown from), ``edges (N, N)`` learned steps
    (``inf``: not joined), the rounds it took and the subgoals it proposed (P_hi evaluations)."""

    points: torch.Tensor
    edges: torch.Tensor
    rounds: int
    proposals: int


@dataclass(frozen=True)
class GrowthLimits:
    """How far the graph grows (``[planner.imagined]``; see the module docstring)."""

    branches: int
    frontier: int
    depth: int
    nodes: int
    merge: float  # latent steps (the planner passes IMAGINED_MERGE · k)
    reach: float  # latent steps (IMAGINED_REACH · k)


def _spread_pick(order: torch.Tensor, d_new: torch.Tensor, d_old: torch.Tensor, limit: int, merge: float) -> list[int]:
    """Candidates taken in ``order`` (most promising first) while each is farther than ``merge``
    from every node and every candidate taken before it; at most ``limit``. ``d_new (C, C)``
    between candidates, ``d_old (C,)`` from each to its nearest node."""
    nearest = d_old.clone()
    picked: list[int] = []
    for i in order.tolist():
        if len(picked) >= limit:
            break
        if float(nearest[i]) > merge:
            picked.append(i)
            nearest = torch.minimum(nearest, d_new[i])
    return picked


@torch.no_grad()
def imagine_graph(model: Any, distance: Distance, root: torch.Tensor, goal: torch.Tensor, limits: GrowthLimits,
                  generator: torch.Generator) -> ImaginedGraph:
    """Grow the graph of imagined waypoints from ``root (D,)`` towards ``goal (D,)``."""
    both = lambda a, b: torch.maximum(distance(a, b), distance(b, a))  # noqa: E731  (broadcast: [i, j] both ways)
    points = root[None].clone()
    steps_from_root = torch.zeros(1, device=root.device, dtype=root.dtype)
    expanded = torch.zeros(1, dtype=torch.bool, device=root.device)
    edges: list[tuple[int, int, float]] = []  # (from, to, learned steps)
    rounds = proposed = 0
    for rounds in range(1, limits.depth + 1):
        waiting = torch.nonzero(~expanded).flatten()
        if not len(waiting) or len(points) >= limits.nodes:
            rounds -= 1
            break
        # best first: the open nodes whose way from the root plus learned distance to the goal is shortest
        score = steps_from_root[waiting] + distance(points[waiting], goal[None])
        frontier = waiting[torch.argsort(score)[:limits.frontier]]
        expanded[frontier] = True
        parents = points[frontier]
        codes = torch.randn(len(frontier) * limits.branches, 1, model.code_dim, generator=generator,
                            device=generator.device).to(root.device, root.dtype)
        starts = parents.repeat_interleave(limits.branches, 0)
        proposals = model.predict_high(starts, codes)[:, 0]  # (F·B, D): one jump per code
        proposed += len(proposals)
        parent_of = frontier.repeat_interleave(limits.branches)
        hop = distance(points[parent_of], proposals)
        keep = hop <= limits.reach
        proposals, parent_of, hop = proposals[keep], parent_of[keep], hop[keep]
        if not len(proposals):
            continue
        to_old = both(proposals[:, None], points[None])  # (C, N) both-way distance to every node
        nearest_old, which_old = to_old.min(1)
        merged = nearest_old <= limits.merge
        if merged.any():  # the parent reaches a node it already has: join them if that is a believable jump
            pairs = torch.stack([parent_of[merged], which_old[merged]], 1).unique(dim=0)
            pairs = pairs[pairs[:, 0] != pairs[:, 1]]
            length = distance(points[pairs[:, 0]], points[pairs[:, 1]])
            believable = length <= limits.reach
            edges += [(i, j, d) for (i, j), d in zip(pairs[believable].tolist(), length[believable].tolist())]
        to_goal = distance(proposals, goal[None])
        fresh = torch.nonzero(~merged).flatten()
        room = min(limits.frontier, limits.nodes - len(points))
        if len(fresh):
            promise = steps_from_root[parent_of[fresh]] + hop[fresh] + to_goal[fresh]
            chosen = fresh[_spread_pick(torch.argsort(promise), both(proposals[fresh][:, None], proposals[fresh][None]),
                                        nearest_old[fresh], room, limits.merge)]
        else:
            chosen = fresh
        landed = torch.cat([torch.nonzero(merged).flatten(), chosen])  # proposals now stood for by a node
        arrived = bool((to_goal[landed] <= limits.merge).any())
        first = len(points)
        points = torch.cat([points, proposals[chosen]])
        steps_from_root = torch.cat([steps_from_root, steps_from_root[parent_of[chosen]] + hop[chosen]])
        expanded = torch.cat([expanded, torch.zeros(len(chosen), dtype=torch.bool, device=root.device)])
        back = distance(proposals[chosen], points[parent_of[chosen]])
        rows = zip(parent_of[chosen].tolist(), hop[chosen].tolist(), back.tolist())
        for offset, (p, forward, backward) in enumerate(rows):
            edges.append((p, first + offset, forward))
            if backward <= limits.reach:
                edges.append((first + offset, p, backward))
        if arrived:  # a subgoal landed within merge of the goal: the graph holds a way there
            break
    matrix = torch.full((len(points), len(points)), float("inf"), device=root.device, dtype=root.dtype)
    if edges:
        index = torch.tensor([(i, j) for i, j, _ in edges], device=root.device)
        matrix[index[:, 0], index[:, 1]] = torch.tensor([d for _, _, d in edges], device=root.device, dtype=root.dtype)
    return ImaginedGraph(points, matrix, rounds, proposed)
