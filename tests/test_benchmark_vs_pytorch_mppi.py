"""benchmarks/bench_vs_pytorch_mppi.py: both sides score one problem, and both solve its open variant."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_vs_pytorch_mppi.py"
spec = importlib.util.spec_from_file_location("bench_vs_pytorch_mppi", SCRIPT)
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench  # its dataclasses look their module up there
spec.loader.exec_module(bench)


@pytest.mark.parametrize("name", ["open", "wall"])
def test_hplan_scores_what_the_peer_scores_step_by_step(name):
    """hplan's objective (stacked trajectory, one cost pass) sums the peer's per-step costs."""
    problem = bench.PROBLEMS[name]
    gen = torch.Generator().manual_seed(0)
    actions = torch.rand((64, bench.HORIZON, 2), generator=gen) * 3 - 1.5  # outside the box too
    state = torch.tensor([0.3, 0.1, 0.4, 0.2])
    assert torch.allclose(problem.trajectory_cost(state, actions), problem.per_step_cost(state, actions), rtol=1e-5)


def test_the_wall_stops_a_crossing_outside_the_door_only():
    wall = bench.PROBLEMS["wall"]
    low, high = wall.door
    states = torch.tensor([[0.48, high + 0.2, 0.5, 0.0], [0.48, (low + high) / 2, 0.5, 0.0]])
    after = wall.dynamics(states, torch.ones(2, 2))
    assert after[0, 0] == states[0, 0] and after[0, 2] == 0.0  # blocked: x stays, vx = 0
    assert after[1, 0] > bench.WALL_X and after[1, 2] > 0.5  # through the door
    assert torch.equal(bench.PROBLEMS["open"].dynamics(states, torch.ones(2, 2))[:, 0], after[1, 0].expand(2))


@pytest.mark.parametrize("side", ["hplan", "peer"])
def test_both_sides_reach_the_goal_of_the_open_problem(side):
    if side == "peer":
        pytest.importorskip("pytorch_mppi")
        arm = bench.peer_arm(64)
    else:
        arm = bench.hplan_arm("mppi", 64, 1)
    cell = bench.Cell()
    bench.play(bench.PROBLEMS["open"], arm, seed=0, cell=cell)
    assert cell.successes == 1 and 0 < len(cell.plan_seconds) < bench.MAX_STEPS
