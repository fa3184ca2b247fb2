"""The latent agent: contract, determinism, hierarchy vs flat on two rooms, surprise, hygiene."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hplan.planning.agent import LatentAgent, PlanInfo, make_agent
from hplan.planning.analytic import PointMassModel, UnsafeDisc
from hplan.planning.config import BudgetConfig, CodesConfig, GradConfig, GuardrailConfig, PlannerConfig, SearchConfig

PLANNING = Path(__file__).resolve().parent.parent / "hplan" / "planning"
START, GOAL = np.array([-0.5, 0.7], np.float32), np.array([0.5, 0.7], np.float32)


def two_rooms() -> PointMassModel:
    """Wall at x = 0 with a doorway at |y| < 0.15; the temporal distance ignores the wall."""
    return PointMassModel(wall_x=0.0, subgoal_interval=8)


def episode(model, cfg, guard=GuardrailConfig(mode="off"), seed=0, steps=100, start=START, goal=GOAL,
            teleport_at=None, teleport_to=None):
    agent = make_agent(model, cfg, guard, seed, "cpu")
    agent.reset(goal, seed)
    pos, infos, actions = start.copy(), [], []
    for t in range(steps):
        if t == teleport_at:
            pos = np.asarray(teleport_to, np.float32)
        action, info = agent.act(pos)
        actions.append(action)
        infos.append(info)
        act = torch.as_tensor(np.asarray(action, np.float32))
        if model.discrete:
            act = torch.nn.functional.one_hot(torch.tensor(action), model.action_spec.n).float()
        pos = model.predict(torch.as_tensor(pos)[None], act[None, None])[0, 0].numpy()
        if np.linalg.norm(pos - goal) < 0.05:
            return True, t + 1, infos, actions
    return False, steps, infos, actions


ROOMS_CFG = dict(budget=BudgetConfig(evals=6000), codes=CodesConfig(bound=1.0, horizon=5, direct_reach=6.0), horizon=12)


@pytest.mark.parametrize("low,high", [("cem", "cem"), ("mppi", "mppi")])
def test_hierarchical_reaches_the_goal_behind_a_wall_and_flat_does_not_with_the_same_budget(low, high):
    model = two_rooms()
    cfg = dict(ROOMS_CFG, low=low, codes=dataclasses.replace(ROOMS_CFG["codes"], optimizer=high))
    flat_ok, _, flat_infos, _ = episode(model, PlannerConfig(kind="flat", **cfg), steps=100)
    hier_ok, hier_steps, hier_infos, _ = episode(model, PlannerConfig(kind="hier", **cfg), steps=100)
    assert hier_ok and not flat_ok
    budget = ROOMS_CFG["budget"].evals
    assert max(i.model_evals for i in flat_infos) <= budget
    assert max(i.model_evals for i in hier_infos) <= budget
    # a fair comparison: on average the hierarchical agent spent no more than the flat one
    assert np.mean([i.model_evals for i in hier_infos]) <= np.mean([i.model_evals for i in flat_infos])
    # subgoal bookkeeping: first step plans the high level, subgoals are reported, replans are logged
    assert hier_infos[0].replanned_high and hier_infos[0].plan_reason == "start"
    assert hier_infos[0].subgoal_latent is not None and len(hier_infos[0].subgoal_latent) == 2
    replans = [t for t, i in enumerate(hier_infos) if i.replanned_high]
    assert all(b - a <= PlannerConfig().codes.replan_every for a, b in zip(replans, replans[1:]))
    assert [i.subgoal_index for i in hier_infos if i.replanned_high] == list(range(len(replans)))
    assert hier_infos[-1].plan_reason == "direct" and hier_infos[-1].subgoal_latent is None
    assert all(i.subgoal_latent is None and i.subgoal_index == -1 for i in flat_infos)


@pytest.mark.parametrize("kind", ["flat", "hier"])
def test_same_seed_same_episode_other_seed_other_episode(kind):
    model = two_rooms()
    cfg = PlannerConfig(kind=kind, search=SearchConfig(population=32, elites=4),
                        codes=CodesConfig(population=32, elites=4, bound=1.0))
    runs = [episode(model, cfg, seed=s, steps=12)[3] for s in (3, 3, 4)]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0], runs[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(runs[0], runs[2]))


def test_agent_reset_reseeds_so_a_reused_agent_repeats_itself():
    model = two_rooms()
    cfg = PlannerConfig(kind="hier", search=SearchConfig(population=32, elites=4),
                        codes=CodesConfig(population=32, elites=4))
    agent = make_agent(model, cfg, GuardrailConfig(mode="off"), 0, "cpu")
    first = []
    for _ in range(2):
        agent.reset(GOAL, 11)
        first.append(agent.act(START)[0])
    assert np.array_equal(first[0], first[1])


@pytest.mark.parametrize("low", ["cem", "mppi", "grad"])
def test_act_returns_an_in_bounds_action_and_a_complete_plan_info(low):
    model = PointMassModel(unsafe=UnsafeDisc(centre=(0.3, 0.3), radius=0.1))
    cfg = PlannerConfig(kind="flat", low=low, search=SearchConfig(population=32, elites=4),
                        grad=GradConfig(restarts=4, steps=5))
    agent = make_agent(model, cfg, GuardrailConfig(mode="penalty"), 0, "cpu")
    agent.reset([0.8, 0.8], 0)
    action, info = agent.act(np.array([0.0, 0.0], np.float64))
    assert isinstance(action, np.ndarray) and action.dtype == np.float32 and action.shape == (2,)
    assert np.all(action >= -1.0) and np.all(action <= 1.0)
    assert isinstance(info, PlanInfo)
    assert set(info.guardrail_probs) == {"restricted_zone"}
    assert 0.0 <= info.guardrail_probs["restricted_zone"] <= 1.0
    expected_prob = float(model.heads(torch.zeros(1, 2), torch.as_tensor(action)[None])[0, 0])
    assert info.guardrail_probs["restricted_zone"] == pytest.approx(expected_prob, abs=1e-6)
    assert info.plan_ms > 0 and info.model_evals > 0 and np.isfinite(info.predicted_cost)
    assert info.surprise == 0.0 and info.replanned_high is False


def test_discrete_actions_are_ints_and_categorical_cem_reaches_the_goal():
    model = PointMassModel(discrete=True, step=0.1)
    cfg = PlannerConfig(kind="flat", low="cem", horizon=8, search=SearchConfig(population=64, elites=8))
    ok, steps, infos, actions = episode(model, cfg, start=np.array([-0.5, -0.3], np.float32),
                                        goal=np.array([0.3, 0.4], np.float32), steps=40)
    assert all(isinstance(a, int) and 0 <= a < 5 for a in actions)
    assert ok and steps <= 20  # 15 moves is optimal


def test_grad_on_discrete_actions_is_refused():
    from hplan.errors import HplanError

    with pytest.raises(HplanError, match="cannot plan discrete actions"):
        make_agent(PointMassModel(discrete=True), PlannerConfig(low="grad"), GuardrailConfig(), 0, "cpu")


def test_a_teleport_is_surprising_and_makes_the_high_level_replan_as_lost():
    model = PointMassModel(subgoal_interval=8)
    cfg = PlannerConfig(kind="hier", codes=CodesConfig(bound=1.0, replan_every=50, horizon=3, direct_reach=1.0))
    ok, _, infos, _ = episode(model, cfg, start=np.array([-0.8, -0.8], np.float32),
                              goal=np.array([0.8, 0.8], np.float32), steps=12, teleport_at=6,
                              teleport_to=[-0.8, 0.8])
    before = [abs(i.surprise) for i in infos[2:6]]
    assert infos[6].surprise > 5.0 and infos[6].surprise > 5 * max(before)
    assert infos[6].replanned_high and infos[6].plan_reason == "lost"


def test_set_goal_retargets_the_agent():
    model = PointMassModel()
    agent = make_agent(model, PlannerConfig(kind="flat", search=SearchConfig(population=64, elites=8)),
                       GuardrailConfig(mode="off"), 0, "cpu")
    agent.reset([0.9, 0.0], 0)
    agent.act([0.0, 0.0])
    right = agent.last_step.result.actions[:, 0].mean()
    agent.set_goal([-0.9, 0.0])
    agent.act([0.0, 0.0])
    left = agent.last_step.result.actions[:, 0].mean()
    assert right > 0.5 and left < -0.5


def test_act_sees_observations_only():
    assert list(inspect.signature(LatentAgent.act).parameters) == ["self", "obs"]
    assert list(inspect.signature(LatentAgent.reset).parameters) == ["self", "goal_obs", "seed"]
    assert list(inspect.signature(LatentAgent.set_goal).parameters) == ["self", "goal_obs"]


def test_planning_package_never_imports_envs():
    """Statically (every import in hplan/planning) and dynamically (a fresh interpreter: no env
    implementation loads; ``import hplan`` itself loads the id table, ``hplan.envs.registry``, to
    register the ids with gymnasium)."""
    for path in PLANNING.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            assert not any(n == "hplan.envs" or n.startswith("hplan.envs.") for n in names), (path, names)
    modules = sorted(p.stem for p in PLANNING.glob("*.py") if p.stem != "__init__")
    code = ("import sys, importlib\n"
            f"for m in {modules!r}: importlib.import_module('hplan.planning.' + m)\n"
            "table = ('hplan.envs', 'hplan.envs.registry')\n"
            "bad = [m for m in sys.modules if m.startswith('hplan.envs.') and m not in table]\n"
            "print(len(sys.modules)); assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_subgoal_is_the_first_predicted_latent_not_already_reached():
    """A high-level plan whose first jump stays put must not pin the low level to where it is."""
    from hplan.planning.types import PlanResult

    model = PointMassModel(subgoal_interval=4)
    agent = make_agent(model, PlannerConfig(kind="hier", codes=CodesConfig(bound=1.0, horizon=3)),
                       GuardrailConfig(mode="off"), 0, "cpu")
    agent.reset([0.9, 0.0], 0)
    codes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    fixed = PlanResult(actions=codes, mean=codes, cost=0.0, risk=0.0, mean_risk=0.0, feasible=True, n_evals=0)
    agent.planner.high.plan = lambda objective, generator, shift=1: fixed
    agent.planner._plan_high(torch.zeros(2), agent.goal, agent.generator, "start")
    assert torch.allclose(agent.planner.subgoal, torch.tensor([0.2, 0.0]))  # the second jump, not the first
    fixed.actions = torch.zeros(3, 2)
    agent.planner._plan_high(torch.zeros(2), agent.goal, agent.generator, "start")
    assert torch.allclose(agent.planner.subgoal, torch.zeros(2))  # nothing ahead: the last latent


def test_surprise_uses_the_models_held_out_calibration_when_it_has_one():
    model = PointMassModel()
    model.surprise_stats = torch.tensor([0.001, 0.0005])
    agent = make_agent(model, PlannerConfig(kind="flat", search=SearchConfig(population=16, elites=4)),
                       GuardrailConfig(mode="off"), 0, "cpu")
    agent.reset([0.5, 0.5], 0)
    action, first = agent.act([0.0, 0.0])
    predicted = model.predict(torch.zeros(1, 2), torch.as_tensor(action)[None, None])[0, 0]
    observed = torch.tensor([0.3, -0.2])
    _, info = agent.act(observed.numpy())
    error = float((predicted - observed).pow(2).mean())
    assert first.surprise == 0.0
    assert info.surprise == pytest.approx((error - 0.001) / 0.0005, rel=1e-4)
