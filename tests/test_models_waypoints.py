"""Waypoints and their experience graph: visits are the nearest waypoint within the link radius,
and two waypoints are joined only when one episode went from one to the other."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.models.waypoints import draw_waypoints, experience_edges, nearest_waypoint


def line_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=-1)


def test_visits_need_the_link_radius_and_respect_episode_lengths() -> None:
    z = torch.tensor([[[0.0], [0.4], [5.0], [1.0]]])  # one episode, the last step is padding
    points = torch.tensor([[0.0], [1.0]])
    nodes = nearest_waypoint(z, torch.tensor([3]), points, line_distance, link=0.5)
    assert nodes.tolist() == [[0, 0, -1, -1]]


def test_edges_join_only_what_an_episode_travelled_within_the_gap() -> None:
    # two episodes: 0 → 1 in 2 steps, and 1 → 2 in 5 steps; 0 and 2 never follow each other closely
    nodes = torch.tensor([[0, -1, 1, -1, -1, -1, -1], [1, -1, -1, -1, -1, 2, -1]])
    edges = experience_edges(nodes, 3, max_gap=4)
    assert float(edges[0, 1]) == 2.0
    assert not torch.isfinite(edges[1, 2])  # 5 steps apart: beyond max_gap
    assert not torch.isfinite(edges[1, 0])  # the data went 0 → 1, never back
    assert torch.equal(torch.diagonal(edges), torch.zeros(3))
    assert float(experience_edges(nodes, 3, max_gap=5)[1, 2]) == 5.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), episodes=st.integers(1, 5), length=st.integers(2, 30), count=st.integers(2, 6),
       gap=st.integers(1, 8))
def test_edge_costs_are_the_fewest_steps_between_visits(seed: int, episodes: int, length: int, count: int,
                                                        gap: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    nodes = torch.randint(-1, count, (episodes, length), generator=gen)
    edges = experience_edges(nodes, count, gap)
    for i in range(count):
        for j in range(count):
            if i == j:
                continue
            seen = [t2 - t1 for e in range(episodes) for t1 in range(length) for t2 in range(t1 + 1, length)
                    if nodes[e, t1] == i and nodes[e, t2] == j and t2 - t1 <= gap]
            assert float(edges[i, j]) == (float(min(seen)) if seen else float("inf"))


def test_waypoints_are_drawn_from_valid_steps_only() -> None:
    z = torch.arange(12.0).view(2, 6, 1)
    points = draw_waypoints(z, torch.tensor([2, 3]), 100, torch.Generator().manual_seed(0))
    assert sorted(points.flatten().tolist()) == [0.0, 1.0, 6.0, 7.0, 8.0]
