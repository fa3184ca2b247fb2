"""The imagined-waypoint graph: invariants of its growth on a toy model whose geometry is known."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hypothesis import given, settings, strategies as st

from hplan.planning.imagination import GrowthLimits, imagine_graph


class PlaneModel:
    """Latent = position in the plane; a k-step jump moves by at most ``k · speed`` (the code,
    squashed, picks the direction and length); the temporal distance is the straight line over
    ``speed`` — so every quantity the growth rule uses has a known true value."""

    subgoal_interval = 4
    code_dim = 2
    speed = 0.5

    def predict_high(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        assert z.dim() == 2 and codes.dim() == 3, "the protocol's shapes: z (B, D), codes (B, L, M)"
        jumps = torch.tanh(codes) * self.subgoal_interval * self.speed
        return z[..., None, :] + jumps.cumsum(-2)

    def temporal_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).norm(dim=-1) / self.speed


LIMITS = st.builds(GrowthLimits, branches=st.integers(1, 12), frontier=st.integers(1, 24),
                   depth=st.integers(1, 12), nodes=st.integers(2, 120),
                   merge=st.floats(0.5, 4.0), reach=st.floats(2.0, 12.0))


@settings(max_examples=40, deadline=None)
@given(limits=LIMITS, seed=st.integers(0, 2**31 - 1), goal=st.tuples(st.floats(-20, 20), st.floats(-20, 20)))
def test_growth_respects_its_limits_and_merges(limits: GrowthLimits, seed: int, goal: tuple[float, float]) -> None:
    model = PlaneModel()
    root, target = torch.zeros(2), torch.tensor(goal)
    graph = imagine_graph(model, model.temporal_distance, root, target, limits, torch.Generator().manual_seed(seed))
    n = len(graph.points)
    assert torch.equal(graph.points[0], root)
    assert n <= max(limits.nodes, 1) and graph.rounds <= limits.depth
    apart = model.temporal_distance(graph.points[:, None], graph.points[None])
    assert bool((apart[~torch.eye(n, dtype=torch.bool)] > limits.merge).all())  # merged nodes are one node
    joined = torch.isfinite(graph.edges)
    assert not bool(joined.diagonal().any())
    assert bool((apart[joined] <= limits.reach + 1e-4).all())  # no edge longer than a believable jump
    assert graph.proposals <= graph.rounds * limits.frontier * limits.branches
    # every node but the root was reached from an earlier node
    reached = joined[:, 1:].any(0)
    assert bool(reached.all())


def test_growth_is_seeded_and_reaches_a_goal_in_open_space() -> None:
    model = PlaneModel()
    limits = GrowthLimits(branches=12, frontier=24, depth=20, nodes=400, merge=2.0, reach=6.0)
    goal = torch.tensor([12.0, -9.0])
    grow = lambda seed: imagine_graph(model, model.temporal_distance, torch.zeros(2), goal, limits,  # noqa: E731
                                      torch.Generator().manual_seed(seed))
    first, again, other = grow(3), grow(3), grow(4)
    assert torch.equal(first.points, again.points) and torch.equal(first.edges, again.edges)
    assert not torch.equal(first.points, other.points)
    nearest = float(model.temporal_distance(first.points, goal).min())
    assert nearest <= 2 * limits.merge  # growth stopped because it got there, not because it ran out
    assert first.rounds < limits.depth and len(first.points) < limits.nodes


def test_imagined_high_level_finds_the_doorway_flat_misses_with_no_waypoints_given() -> None:
    """Two rooms (analytic model: P_hi stopped by the wall, temporal distance blind to it): the
    agent routes over a graph it grew itself, through the doorway; flat presses into the wall."""
    from hplan.planning.analytic import PointMassModel
    from hplan.planning.config import PlannerConfig, RouteConfig

    sys.path.insert(0, str(Path(__file__).parent))
    from test_planning_agent import ROOMS_CFG, episode

    model = PointMassModel(wall_x=0.0, subgoal_interval=8)
    assert not hasattr(model, "waypoints")  # nothing remembered: the graph is all imagination
    cfg = dict(ROOMS_CFG, route=RouteConfig(edge=12.0, attach=3.0))
    flat_ok, _, _, _ = episode(model, PlannerConfig(kind="flat", **cfg), steps=120)
    ok, steps, infos, _ = episode(model, PlannerConfig(kind="hier", high="imagined", **cfg), steps=120)
    assert ok and not flat_ok
    assert infos[0].replanned_high and infos[0].plan_reason == "route"
    assert infos[0].model_evals > infos[1].model_evals  # growing the graph is counted where it happens
