"""The landmark high level: routes over waypoints go round walls and use only short hops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.errors import HplanError
from hplan.planning.agent import make_agent
from hplan.planning.analytic import PointMassModel, UnsafeDisc
from hplan.planning.config import LONG_HOP_PRICE, GuardrailConfig, PlannerConfig, RouteConfig, SearchConfig
from hplan.planning.energy import Energy
from hplan.planning.hierarchical import HierarchicalPlanner
from hplan.planning.landmarks import Hand, LandmarkGraph

WALL_TOP = 3.0


def _crosses_wall(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Does the segment a → b cross the wall x = 0, y ≤ WALL_TOP? (broadcasting)"""
    xa, ya, xb, yb = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    opposite = (xa * xb) < 0
    t = xa / (xa - xb).where(opposite, torch.ones_like(xa))
    y_cross = ya + t * (yb - ya)
    return opposite & (y_cross <= WALL_TOP)


def walled_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Straight-line distance, but 1,000 through the wall: what a temporal distance learns."""
    d = (a - b).norm(dim=-1)
    return torch.where(_crosses_wall(a, b), torch.full_like(d, 1000.0), d)


def _latent(hand):
    """The handed waypoint's latent (None: straight for the goal)."""
    return None if hand is None else hand.latent


def _grid() -> torch.Tensor:
    xs, ys = torch.meshgrid(torch.arange(-3.0, 3.5, 1.0), torch.arange(-1.0, 6.0, 1.0), indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten()], dim=1)
    return points[(points[:, 0] != 0.0) | (points[:, 1] > WALL_TOP)]  # none inside the wall


def test_route_goes_round_the_wall_in_short_hops() -> None:
    graph = LandmarkGraph(walled_distance, _grid(), edge_max=1.5)
    z, goal = torch.tensor([-0.5, 0.0]), torch.tensor([0.5, 0.0])
    found = graph.route(z, goal)
    assert found is not None
    path, length = found.path, found.length
    points = graph.points[path]
    hops = walled_distance(points[:-1], points[1:])
    assert (hops <= 1.5).all()  # only short, trusted hops
    assert points[:, 1].max() > WALL_TOP  # over the top of the wall
    assert length >= 2 * (WALL_TOP + 1.0)  # at least the detour, never the 1-unit shortcut
    waypoint = _latent(graph.hand(z, goal))
    assert waypoint is not None and float(walled_distance(z, waypoint)) <= 1.5


def test_goal_within_reach_needs_no_waypoint() -> None:
    graph = LandmarkGraph(walled_distance, _grid(), edge_max=1.5)
    assert _latent(graph.hand(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.5]))) is None


def test_a_model_without_waypoints_is_refused_in_one_line() -> None:
    with pytest.raises(HplanError, match="planner.high"):
        LandmarkGraph(walled_distance, torch.zeros(0, 2), edge_max=1.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(3, 40), edge=st.floats(0.3, 2.0))
def test_shortest_routes_match_brute_force(seed: int, n: int, edge: float) -> None:
    """Floyd–Warshall costs equal Dijkstra's on the same graph (a hop priced by its length, long hops
    more than in proportion), and every route is a chain of edges."""
    points = torch.from_numpy(np.random.default_rng(seed).uniform(-2, 2, size=(n, 2)))
    graph = LandmarkGraph(walled_distance, points, edge_max=edge)
    steps = walled_distance(points[:, None], points[None]).numpy()
    hop = steps * (1.0 + LONG_HOP_PRICE * steps / edge)
    for source in range(n):
        best = np.full(n, np.inf)
        best[source] = 0.0
        todo = set(range(n))
        while todo:
            u = min(todo, key=lambda i: best[i])
            todo.remove(u)
            if not np.isfinite(best[u]):
                break
            for v in range(n):
                if steps[u, v] <= edge:
                    best[v] = min(best[v], best[u] + hop[u, v])
        np.testing.assert_allclose(graph.cost[source].numpy(), best, rtol=1e-9)
        for target in range(n):
            if np.isfinite(best[target]) and target != source:
                node, total = source, 0.0
                while node != target:
                    nxt = int(graph.next[node, target])
                    assert steps[node, nxt] <= edge
                    total += hop[node, nxt]
                    node = nxt
                assert total == pytest.approx(best[target])


def test_an_agent_on_a_waypoint_is_handed_the_next_one() -> None:
    """Routes are recomputed every step: an agent that has reached a waypoint whose successor is
    just out of reach must get the successor (or the goal after the last one), not the same waypoint."""
    chain = torch.tensor([[0.0, 0.0], [1.4, 0.0], [2.8, 0.0]])
    graph = LandmarkGraph(walled_distance, chain, edge_max=1.5)
    z, goal = torch.tensor([-0.2, 0.0]), torch.tensor([4.2, 0.0])
    torch.testing.assert_close(_latent(graph.hand(z, goal, reached=0.0)), chain[0])
    torch.testing.assert_close(_latent(graph.hand(z, goal, reached=0.5)), chain[1])
    assert _latent(graph.hand(torch.tensor([2.9, 0.0]), torch.tensor([4.35, 0.0]), reached=0.5)) is None  # the goal next


def straight_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A temporal distance blind to the wall (what a learned one gets wrong across thin walls)."""
    return (a - b).norm(dim=-1)


def _experience(points: torch.Tensor, reach: float = 1.5) -> torch.Tensor:
    """Edges the data would give: steps between waypoints that are close *and* not across the wall."""
    hop = walled_distance(points[:, None], points[None])
    edges = torch.where(hop <= reach, hop.ceil(), torch.full_like(hop, float("inf")))
    return edges.fill_diagonal_(0.0)


def test_experience_edges_keep_a_wall_blind_distance_from_cutting_through_the_wall() -> None:
    """With the straight-line distance alone the route runs through the wall; the experience graph
    (no edge ever crosses it) goes over the top, and the waypoint handed to the low level is on
    the agent's side — while the distance still says the goal is only 1 away."""
    points, z, goal = _grid(), torch.tensor([-0.5, 0.0]), torch.tensor([0.5, 0.0])
    blind = LandmarkGraph(straight_distance, points, edge_max=1.5)
    assert blind.route(z, goal) is None  # "the goal is right there": straight into the wall
    graph = LandmarkGraph(straight_distance, points, edge_max=3.0, edges=_experience(points), attach=0.8)
    found = graph.route(z, goal)
    assert found is not None
    route = points[found.path]
    assert route[:, 1].max() > WALL_TOP
    assert not bool(_crosses_wall(route[:-1], route[1:]).any())
    waypoint = _latent(graph.hand(z, goal))
    assert waypoint is not None and float(waypoint[0]) < 0  # still on the agent's side of the wall


def test_experience_edge_costs_are_at_least_the_distance() -> None:
    """One step between two visits can join waypoints far apart: the cost is the larger of the two."""
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    edges = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    graph = LandmarkGraph(straight_distance, points, edge_max=2.0, edges=edges)
    assert float(graph.steps[0, 1]) == pytest.approx(3.0)
    assert float(graph.cost[0, 1]) == pytest.approx(3.0 * (1 + LONG_HOP_PRICE * 3.0 / 2.0))


def test_a_state_far_from_every_waypoint_still_attaches_to_the_nearest() -> None:
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    edges = _experience(points)
    graph = LandmarkGraph(straight_distance, points, edge_max=1.5, edges=edges, attach=0.5)
    found = graph.route(torch.tensor([-2.0, 0.0]), torch.tensor([4.0, 0.0]))
    assert found is not None and found.path[0] == 0 and found.path[-1] == 2
    assert found.enter == pytest.approx(2.0)


def test_edges_of_the_wrong_shape_are_refused_in_one_line() -> None:
    with pytest.raises(HplanError, match="landmark edges"):
        LandmarkGraph(straight_distance, torch.zeros(3, 2), edge_max=1.0, edges=torch.zeros(2, 2))


def test_blocking_a_spurious_edge_reroutes_round_the_wall_and_reset_restores_it() -> None:
    """An edge through the wall (a visit counted on the wrong side) is what the route takes first;
    once the agent gives up on the waypoint behind it (``block``) the next route goes over the top,
    and a new episode starts from the graph as trained."""
    points = _grid()
    edges = _experience(points)
    left, right = [int(torch.nonzero((points == torch.tensor(p)).all(1))[0]) for p in ([-1.0, 0.0], [1.0, 0.0])]
    edges[left, right] = 2.0  # the spurious shortcut
    graph = LandmarkGraph(straight_distance, points, edge_max=3.0, edges=edges, attach=0.3)
    z, goal = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.0])
    hand = graph.hand(z, goal)
    assert hand is not None and hand.index == right
    graph.block([hand.index], steps=10)
    found = graph.route(z, goal)
    assert found is not None and points[found.path][:, 1].max() > WALL_TOP
    graph.reset()
    assert graph.hand(z, goal).index == right


def test_a_blocked_waypoint_leaves_every_route_and_a_ban_on_going_straight_runs_out() -> None:
    points = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [2.0, 0.0]])
    graph = LandmarkGraph(straight_distance, points, edge_max=0.55, edges=_experience(points), attach=0.6)
    z, goal = torch.tensor([0.1, 0.0]), torch.tensor([2.1, 0.0])
    first = graph.hand(z, goal)
    assert first is not None and first.index == 0  # where the route enters
    graph.block([first.index], steps=2)
    for _ in range(3):
        assert first.index not in graph.route(z, goal).path
    near = torch.tensor([1.9, 0.0])
    assert graph.hand(near, goal) is None  # the goal is within reach: straight for it
    graph.block(None, steps=2)
    assert graph.route(near, goal) is not None  # banned: the route, although the goal is near
    graph.hand(near, goal)
    graph.hand(near, goal)
    assert graph.route(near, goal) is None  # the ban has run out


def test_routes_avoid_waypoints_the_guardrail_cost_marks_and_take_them_when_nothing_else_goes() -> None:
    """Two ways round an obstacle: the short one through a waypoint the heads call unsafe and a
    longer safe one. A hard waypoint cost sends the route the long way; with the long way gone, the
    unsafe waypoint is still used (a finite cost: the least risky way, not none)."""
    points = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, -2.0], [2.0, 0.0]])
    edges = torch.full((4, 4), float("inf")).fill_diagonal_(0.0)
    for a, b in [(0, 1), (1, 3), (0, 2), (2, 3)]:
        edges[a, b] = edges[b, a] = 1.0
    unsafe = torch.tensor([0.0, 1000.0, 0.0, 0.0])
    z, goal = torch.tensor([-0.1, 0.0]), torch.tensor([2.1, 0.0])
    graph = LandmarkGraph(straight_distance, points, edge_max=10.0, edges=edges, attach=0.2, node_cost=unsafe)
    assert graph.route(z, goal).path == [0, 2, 3]
    assert LandmarkGraph(straight_distance, points, edge_max=10.0, edges=edges, attach=0.2).route(z, goal).path == [0, 1, 3]
    edges[0, 2] = edges[2, 0] = float("inf")
    graph = LandmarkGraph(straight_distance, points, edge_max=10.0, edges=edges, attach=0.2, node_cost=unsafe)
    assert graph.route(z, goal).path == [0, 1, 3]
    hand = graph.hand(z, goal)
    assert hand is not None and hand.index == 3  # "along the route" counts steps, not guardrail cost


class _AlternatingGraph:
    """A route that enters the graph at the last waypoint and hands the others in turn while its
    length stays put: an agent pressed into a wall corner, each waypoint across the wall. Records
    what the planner gives up on."""

    def __init__(self, points: torch.Tensor) -> None:
        self.points, self.calls, self.blocked = points, 0, []
        self.entry = len(points) - 1

    def reset(self) -> None:
        self.calls, self.blocked = 0, []

    def hand(self, z: torch.Tensor, goal: torch.Tensor, reached: float = 0.0) -> Hand | None:
        left = [i for i in range(self.entry) if i not in self.blocked]
        if not left:
            return None
        self.calls += 1
        index = left[self.calls % len(left)]
        return Hand(index, self.points[index], route_length=30.0, entry=self.entry)

    def block(self, waypoints, steps: int) -> None:
        self.blocked.extend([None] if waypoints is None else waypoints)


def test_a_stalled_agent_gives_up_on_every_waypoint_it_was_handed_and_where_its_routes_entered() -> None:
    """No progress along the route for ``route.patience`` steps blocks the waypoints handed in
    that time, even when the handed waypoint changes from step to step, and the waypoint the
    routes entered the graph at (else the next route goes in there again)."""
    model = PointMassModel(wall_x=0.0)
    points = torch.tensor([[-0.1, -0.5], [-0.1, -0.7], [-0.1, -0.6]])
    model.waypoints = lambda: points  # type: ignore[attr-defined]
    cfg = PlannerConfig(kind="hier", high="landmarks", horizon=3,
                        search=SearchConfig(population=16, iterations=1, elites=4), route=RouteConfig(patience=5))
    agent = make_agent(model, cfg, GuardrailConfig(mode="off"), seed=0, device="cpu")
    planner = agent.planner
    assert isinstance(planner, HierarchicalPlanner)
    stub = _AlternatingGraph(points)
    planner.graph = stub  # type: ignore[assignment]
    planner.reset()
    z, goal, gen = torch.tensor([0.05, -0.6]), torch.tensor([-0.5, -0.6]), torch.Generator().manual_seed(0)
    for _ in range(cfg.route.patience):
        planner.step(z, goal, gen)
        assert stub.blocked == []  # patience not yet spent
    planner.step(z, goal, gen)
    assert sorted(stub.blocked) == [0, 1, 2]


@pytest.mark.parametrize("mode", ["penalty", "hard", "off"])
def test_a_guarded_route_goes_round_a_hazard_that_lies_between_two_safe_waypoints(mode: str) -> None:
    """Edges pay the guardrail cost of the way between their waypoints (``Energy.edge_cost``), so a
    route no longer hops past a hazard that neither end of the hop is in."""
    model = PointMassModel(unsafe=UnsafeDisc(centre=(0.0, 0.0), radius=0.2))
    energy = Energy(model, PlannerConfig(route=RouteConfig(edge_samples=3)),
                    GuardrailConfig(mode=mode, weight=10.0, threshold=0.5))
    points = torch.tensor([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.6]])  # the hop 0 → 1 crosses the disc
    steps = model.temporal_distance(points[:, None], points[None])  # every pair joined by the data
    priced = energy.edge_cost(points, steps)
    assert float(energy.waypoint_cost(points).abs().max()) < 0.05  # the waypoints themselves are safe
    graph = LandmarkGraph(model.temporal_distance, points, edge_max=25.0, edges=steps, attach=1.0,
                          node_cost=energy.waypoint_cost(points), edge_cost=energy.edge_cost)
    found = graph.route(points[0], points[1])
    assert found is not None
    if mode == "off":
        assert float(priced.abs().max()) == 0.0 and found.path == [0, 1]  # nothing heeded: straight
    else:
        detour = float(steps[0, 2] + steps[2, 1] - steps[0, 1])  # ~11 steps longer
        assert float(priced[0, 1]) > 2 * detour and float(priced[0, 2]) < 1.0
        assert found.path == [0, 2, 1]  # round the disc
    hand = graph.hand(points[0], points[1])
    assert hand is not None and hand.route_length == pytest.approx(found.length)
    unpriced = Energy(model, PlannerConfig(), GuardrailConfig(mode=mode, weight=10.0, threshold=0.5))
    assert float(unpriced.edge_cost(points, steps).abs().max()) == 0.0  # route.edge_samples = 0: waypoints only


def test_a_reached_exit_is_not_handed_again_unless_going_straight_is_banned() -> None:
    """When no waypoint is near the goal the route ends with a straight hop from its last waypoint.
    An agent that reached it and went on towards the goal must not be handed it again (it swung
    between the two for 700 steps in OGBench pointmaze), unless going straight was given up."""
    chain = torch.tensor([[0.0, 0.0], [1.4, 0.0], [2.8, 0.0]])
    graph = LandmarkGraph(walled_distance, chain, edge_max=1.5)
    goal, on_exit, past_exit = torch.tensor([6.0, 0.0]), torch.tensor([2.8, 0.0]), torch.tensor([3.5, 0.0])
    fresh = LandmarkGraph(walled_distance, chain, edge_max=1.5)
    assert fresh.hand(past_exit, goal, reached=0.5).index == 2  # never there: the exit first
    assert graph.hand(on_exit, goal, reached=0.5) is None  # on the exit: straight for the goal
    assert graph.hand(past_exit, goal, reached=0.5) is None  # and it stays so on the way
    graph.block(None, steps=3)  # straight went nowhere
    assert graph.hand(past_exit, goal, reached=0.5).index == 2
    graph.reset()
    assert graph.hand(past_exit, goal, reached=0.5).index == 2  # a new episode has reached nothing


def test_a_route_takes_a_chain_of_short_hops_over_one_long_hop_of_the_same_length() -> None:
    """Two ways from A to B of 4 steps each: one hop straight, or two hops of 2 through a middle
    waypoint. The route goes through the middle one, and the lookahead still counts plain steps."""
    points = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    steps = torch.tensor([[0.0, 2.0, 4.0], [2.0, 0.0, 2.0], [4.0, 2.0, 0.0]])
    graph = LandmarkGraph(lambda a, b: (a - b).norm(dim=-1), points, edge_max=8.0, edges=steps, attach=0.5)
    assert graph.cost[0, 2] == pytest.approx(2 * 2.0 * (1 + LONG_HOP_PRICE * 2.0 / 8.0))
    assert int(graph.next[0, 2]) == 1
    assert float(graph.steps[0, 2]) == 4.0
    hand = graph.hand(torch.tensor([0.0, 0.0]), torch.tensor([4.0, 0.0]), reached=0.1)
    assert hand is not None and hand.index == 2  # 4 plain steps along the route: within the lookahead


class _NoisyEntry:
    """A straight distance whose reading from the agent (y = 0.1) to one waypoint can be made
    ``bump`` longer: the entry error that made routes near a door flip from step to step."""

    def __init__(self, noisy_target: torch.Tensor, bump: float) -> None:
        self.target, self.bump, self.on = noisy_target, bump, False

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d = (a - b).norm(dim=-1)
        if not self.on:
            return d
        hit = ((b - self.target).abs() < 1e-6).all(-1) & ((a[..., 1] - 0.1).abs() < 1e-6)
        return d + self.bump * hit


def test_a_handed_waypoint_is_kept_against_a_near_tie_and_given_up_once_passed_or_blocked() -> None:
    """Behind (L), ahead (R), then a chain to the goal (and a longer way round R). The agent between L and R is handed R; when
    R's distance reads a little long, a fresh route enters at L and hands L (back the way it came).
    The graph keeps R: the route through it is within ``attach`` of the new one. It lets R go once
    the route has moved past it, or once R is blocked."""
    points = torch.tensor([[-0.5, 0.0], [0.5, 0.0], [2.5, 0.0], [4.5, 0.0], [0.5, -1.0]])
    left, right, beyond = 0, 1, 2
    distance = _NoisyEntry(points[right], bump=1.2)
    hops = (points[:, None] - points[None]).norm(dim=-1)
    chain = torch.where(hops <= 2.3, hops, torch.full_like(hops, float("inf")))  # and a way round R, below it
    graph = LandmarkGraph(distance, points, edge_max=1.2, edges=chain, attach=1.0)
    z, goal = torch.tensor([0.0, 0.1]), torch.tensor([4.6, 0.1])
    assert graph.hand(z, goal).index == right
    distance.on = True
    fresh = LandmarkGraph(distance, points, edge_max=1.2, edges=chain, attach=1.0)
    assert fresh.hand(z, goal).index == left  # without the hold: handed the waypoint behind
    kept = graph.hand(z, goal)
    assert kept.index == right
    assert kept.route_length <= fresh.route(z, goal).length + graph.attach
    distance.on = False
    assert graph.hand(torch.tensor([2.0, 0.1]), goal).index == beyond  # the route moved past R
    graph.reset()
    assert graph.hand(z, goal).index == right
    graph.block([right], steps=0)
    distance.on = True
    assert graph.hand(z, goal).index == left  # a blocked waypoint is never held


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 8), min_size=1, max_size=5))
def test_blocking_waypoints_together_is_blocking_them_one_by_one(blocked: list[int]) -> None:
    """One solve for a stall's waypoints gives the routes that one solve per waypoint gave."""
    points = torch.tensor([[float(i % 3), float(i // 3)] for i in range(9)])
    edges = _experience(points + torch.tensor([1.0, 0.0]), reach=1.5)  # all on one side of the wall
    together = LandmarkGraph(straight_distance, points, edge_max=3.0, edges=edges)
    one_by_one = LandmarkGraph(straight_distance, points, edge_max=3.0, edges=edges)
    together.block(blocked, steps=0)
    for index in blocked:
        one_by_one.block([index], steps=0)
    assert together.blocked == one_by_one.blocked == set(blocked)
    torch.testing.assert_close(together.cost, one_by_one.cost)
    assert bool(torch.isinf(together.cost[blocked][:, [i for i in range(9) if i not in blocked]]).all())
