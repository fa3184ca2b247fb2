"""Waypoints and their experience graph: visits are the nearest waypoint within the link radius,
and two waypoints are joined only when one episode went from one to the other."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.models.waypoints import draw_waypoints, experience_edges, fill_uncovered, nearest_waypoint


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


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), count=st.integers(1, 12), rounds=st.integers(1, 4))
def test_filled_waypoints_sit_where_no_waypoint_visited(seed: int, count: int, rounds: int) -> None:
    """A dense cluster and a thin trail (a doorway's few steps): a uniform draw lands in the cluster;
    the fill adds waypoints only at latents no earlier waypoint visited, and never past padding."""
    gen = torch.Generator().manual_seed(seed)
    cluster = torch.rand(3, 40, 1, generator=gen)                # 120 latents within one unit
    trail = torch.linspace(2.0, 30.0, 40).view(1, 40, 1)          # one episode strung along the line
    z = torch.cat([cluster, trail])
    valid = torch.tensor([40, 40, 40, 35])                        # the trail's last 5 steps are padding
    start = torch.tensor([[0.5]])
    points = fill_uncovered(z, valid, start, count, line_distance, 0.75, gen, rounds)
    assert len(points) == 1 + count and torch.equal(points[:1], start)
    assert float(points.max()) <= float(trail[0, 34, 0])          # padding is never drawn
    # the start covers the whole cluster (within 0.75 of 0.5): every filled waypoint is on the trail,
    # where a uniform draw of the same size would put fewer than one in four
    assert int((points[1:] >= 2.0).sum()) == count
    assert len(torch.unique(points[1:])) == count  # no latent drawn twice


def test_once_everything_is_visited_the_fill_draws_like_the_uniform_waypoints() -> None:
    z = torch.tensor([[[0.0], [0.1], [0.2], [9.0]]])
    start = z[0, 1:2]
    points = fill_uncovered(z, torch.tensor([3]), start, 2, line_distance, 0.5, torch.Generator().manual_seed(0),
                            rounds=1)
    assert len(points) == 3 and torch.equal(points[0], start[0])
    valid_latents = z[0, :3, 0].tolist()  # the 9.0 is padding
    assert all(float(p) in valid_latents for p in points[1:])
