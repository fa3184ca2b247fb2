"""Optimiser-level tests: bounds, convergence on known costs, hard constraints, chunking, seeds."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.planning.budget import plan_cost
from hplan.planning.config import GradConfig, PlannerConfig, SearchConfig
from hplan.planning.energy import chunked
from hplan.planning.gaussian import colored_noise
from hplan.planning.mpc import RecedingHorizon, shift_plan
from hplan.planning.registry import Sizes, make_optimizer
from hplan.planning.types import Evaluation, SearchSpace, rank

CONTINUOUS = ("cem", "mppi", "grad")


def build(name: str, space: SearchSpace, population: int = 64, iterations: int = 4, elites: int = 8,
          grad: GradConfig = GradConfig(), **search):
    """Optimiser ``name`` with these sizes; ``search`` are ``[planner.search]`` settings."""
    return make_optimizer(name, space, PlannerConfig(search=SearchConfig(**search), grad=grad),
                          Sizes(population=population, iterations=iterations, elites=elites))


def quadratic(target: torch.Tensor):
    """Cost ‖a − target‖² summed over the plan: optimum is ``target`` (clipped to the box)."""

    def objective(actions: torch.Tensor) -> Evaluation:
        cost = ((actions - target) ** 2).sum((1, 2))
        return Evaluation.unconstrained(cost, actions.shape[0] * actions.shape[1])

    return objective


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(CONTINUOUS), low=st.floats(-3, 0.5), width=st.floats(0.1, 4),
       horizon=st.integers(1, 5), dim=st.integers(1, 3), seed=st.integers(0, 2**31 - 1),
       offset=st.floats(-10, 10), scale=st.floats(0.1, 10))
def test_continuous_plans_never_leave_the_action_box(name, low, width, horizon, dim, seed, offset, scale):
    space = SearchSpace(horizon, dim, low, low + width)
    gen = torch.Generator().manual_seed(seed)
    # target far outside the box pulls every optimiser against the bounds; init outside too
    target = torch.full((horizon, dim), offset)
    init = torch.full((horizon, dim), -offset * scale)
    result = build(name, space, population=16, iterations=3, elites=4,
                   grad=GradConfig(lr=1.0), init_std=2.0).optimize(quadratic(target), init, gen)
    for plan in (result.actions, result.mean):
        assert plan.shape == (horizon, dim)
        assert bool((plan >= space.low).all()) and bool((plan <= space.high).all())


@settings(max_examples=15, deadline=None)
@given(horizon=st.integers(1, 4), n=st.integers(2, 6), seed=st.integers(0, 2**31 - 1))
def test_categorical_plans_are_one_hot(horizon, n, seed):
    space = SearchSpace(horizon, n, discrete=True)
    target = torch.randint(0, n, (horizon,), generator=torch.Generator().manual_seed(seed))

    def objective(actions):
        hit = actions[:, torch.arange(horizon), target].sum(1)
        return Evaluation.unconstrained(-hit, actions.shape[0] * horizon)

    # an explicit budget (not the CPU-tuned defaults): 64 x 6 samples for at most 6**4 sequences
    result = build("cem_discrete", space, population=64, iterations=6, elites=8).optimize(
        objective, space.initial_mean(), torch.Generator().manual_seed(seed))
    assert bool(((result.actions == 0) | (result.actions == 1)).all())
    assert torch.equal(result.actions.sum(-1), torch.ones(horizon))
    assert torch.allclose(result.mean.sum(-1), torch.ones(horizon))
    # the categorical CEM finds the one sequence that hits every target
    assert torch.equal(result.actions.argmax(-1), target)


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(CONTINUOUS), seed=st.integers(0, 2**31 - 1),
       target=st.lists(st.floats(-0.8, 0.8), min_size=6, max_size=6))
def test_converges_to_quadratic_optimum(name, seed, target):
    space = SearchSpace(3, 2, -1.0, 1.0)
    goal = torch.tensor(target).view(3, 2)
    sizes = dict(population=8, iterations=150) if name == "grad" else dict(population=128, iterations=12, elites=16)
    optimizer = build(name, space, **sizes, grad=GradConfig(lr=0.05), min_std=0.02)
    result = optimizer.optimize(quadratic(goal), space.initial_mean(), torch.Generator().manual_seed(seed))
    assert torch.allclose(result.actions, goal, atol=0.05), (result.actions, goal)
    assert result.cost < 0.01


def risky_objective(threshold_axis: float):
    """Cost rewards large a[0]; risk rises steeply once the plan's mean a[0] passes ``threshold_axis``."""

    def objective(actions):
        push = actions[..., 0].mean(1)
        cost = -push
        risk = torch.sigmoid(30 * (push - threshold_axis))
        ev = Evaluation.unconstrained(cost, actions.shape[0] * actions.shape[1])
        ev.risk = risk
        ev.mean_risk = risk
        ev.feasible = risk <= 0.5
        return ev

    return objective


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(CONTINUOUS + ("cem_discrete",)), seed=st.integers(0, 2**31 - 1),
       edge=st.floats(-0.95, 0.95), execute_mean=st.booleans(), beta=st.sampled_from([0.0, 2.0]))
def test_hard_constraint_never_returns_unsafe_when_a_safe_candidate_was_seen(name, seed, edge, execute_mean, beta):
    discrete = name == "cem_discrete"
    space = SearchSpace(3, 3 if discrete else 1, discrete=discrete)
    base = risky_objective(edge)
    seen_safe = []

    def objective(actions):
        ev = base(actions)
        seen_safe.append(bool(ev.feasible.any()))
        return ev

    result = build(name, space, population=16, iterations=3, elites=4, execute_mean=execute_mean,
                   noise_beta=beta).optimize(objective, space.initial_mean(), torch.Generator().manual_seed(seed))
    final = base(result.actions[None])
    assert bool(final.feasible[0]) == result.feasible
    if any(seen_safe):
        assert result.feasible and result.risk <= 0.5
    # and the returned plan is the cheapest feasible plan it evaluated, never a riskier one
    assert final.risk[0] == result.risk


def test_rank_puts_feasible_first_by_cost_then_infeasible_by_risk():
    cost = torch.tensor([5.0, 1.0, 3.0, 0.0, 2.0])
    risk = torch.tensor([0.1, 0.9, 0.2, 0.7, 0.6])
    ev = Evaluation.unconstrained(cost, 5)
    ev.risk, ev.feasible = risk, risk <= 0.5
    assert rank(ev).tolist() == [2, 0, 4, 3, 1]


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(CONTINUOUS + ("cem_discrete",)), seed=st.integers(0, 2**31 - 1),
       max_batch=st.integers(1, 40))
def test_chunked_evaluation_gives_identical_plans(name, seed, max_batch):
    discrete = name == "cem_discrete"
    space = SearchSpace(4, 3, discrete=discrete)
    goal = torch.linspace(-0.5, 0.5, 12).view(4, 3)
    sizes = []

    def evaluate(actions):
        sizes.append(actions.shape[0])
        return quadratic(goal)(actions)

    plans = []
    for batch in (10_000, max_batch):
        sizes.clear()
        optimizer = build(name, space, population=37, iterations=3, elites=5)
        plans.append(optimizer.optimize(chunked(evaluate, batch), space.initial_mean(),
                                        torch.Generator().manual_seed(seed)))
        assert max(sizes) <= batch
    assert torch.equal(plans[0].actions, plans[1].actions)
    assert plans[0].cost == plans[1].cost and plans[0].n_evals == plans[1].n_evals


def test_same_seed_same_plan_other_seed_other_samples():
    space = SearchSpace(4, 2)
    goal = torch.full((4, 2), 0.3)
    runs = [build("mppi", space).optimize(quadratic(goal), space.initial_mean(), torch.Generator().manual_seed(s))
            for s in (1, 1, 2)]
    assert torch.equal(runs[0].actions, runs[1].actions)
    assert not torch.equal(runs[0].actions, runs[2].actions)


@pytest.mark.parametrize("name", ["cem", "mppi", "cem_discrete"])
@pytest.mark.parametrize("execute_mean", [False, True])
def test_eval_counts_match_the_documented_formula(name, execute_mean):
    """One rollout pass per iteration; the final mean is scored on its own only to execute it
    (before issue 26 every plan scored it: 3 iterations cost 4 passes)."""
    space = SearchSpace(5, 3, discrete=name == "cem_discrete")
    calls = []

    def objective(actions):
        calls.append(actions.shape[0])
        return quadratic(torch.zeros(5, 3))(actions)

    result = build(name, space, population=20, iterations=3, execute_mean=execute_mean).optimize(
        objective, space.initial_mean(), torch.Generator().manual_seed(0))
    final = execute_mean and name != "cem_discrete"
    assert calls == [20, 20, 20] + [1] * final
    assert result.n_evals == 3 * 20 * 5 + 5 * final == plan_cost(name, Sizes(20, 3, 8), 5, 5 * final)


def test_gradient_eval_count_matches_the_documented_formula():
    space = SearchSpace(5, 2)
    grad = build("grad", space, population=4, iterations=6).optimize(
        quadratic(torch.zeros(5, 2)), space.initial_mean(), torch.Generator().manual_seed(0))
    assert grad.n_evals == (6 + 1) * 4 * 5 == plan_cost("grad", Sizes(4, 6, 1), 5)


def test_shift_plan_drops_executed_steps_and_repeats_the_last():
    mean = torch.arange(8.0).view(4, 2)
    assert shift_plan(mean, 1, None).tolist() == [[2, 3], [4, 5], [6, 7], [6, 7]]
    assert shift_plan(mean, 0, None).tolist() == mean.tolist()
    assert shift_plan(mean, 9, torch.tensor([9.0, 9.0])).tolist() == [[9, 9]] * 4


def test_warm_start_keeps_a_converged_plan_and_beats_a_cold_start():
    """A receding-horizon plan on a moving target: warm starts reach lower cost with tiny budgets."""
    space = SearchSpace(6, 2)
    target = torch.linspace(-0.9, 0.9, 12).view(6, 2)
    costs = {}
    for warm in (True, False):
        mpc = RecedingHorizon(build("cem", space, population=16, iterations=2, elites=4), torch.device("cpu"),
                              warm_start=warm)
        gen = torch.Generator().manual_seed(0)
        results = [mpc.plan(quadratic(target), gen, shift=0) for _ in range(8)]
        costs[warm] = results[-1].cost
        if warm:
            # candidate 0 of each plan is the previous plan's mean: a plan is never worse than it
            for before, after in zip(results, results[1:]):
                assert after.cost <= float(quadratic(target)(before.mean[None]).cost[0]) + 1e-6
    assert costs[True] < costs[False]


@pytest.mark.parametrize("horizon", [2, 7, 16])
def test_colored_noise_has_unit_variance_and_is_smoother_with_larger_beta(horizon):
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    lag1 = {}
    for beta in (0.0, 1.0, 2.0):
        noise = colored_noise(20_000, horizon, 2, beta, gen(), torch.device("cpu"))
        assert noise.shape == (20_000, horizon, 2)
        assert torch.allclose(noise.std(0), torch.ones(horizon, 2), atol=0.05)
        lag1[beta] = float((noise[:, 1:] * noise[:, :-1]).mean())
    assert abs(lag1[0.0]) < 0.03
    if horizon > 2:
        assert lag1[0.0] < lag1[1.0] < lag1[2.0]


def test_execute_mean_returns_the_final_mean_when_feasible():
    space = SearchSpace(4, 2)
    target = torch.full((4, 2), 0.4)
    with_mean = build("cem", space, population=32, iterations=3, elites=4, execute_mean=True).optimize(
        quadratic(target), space.initial_mean(), torch.Generator().manual_seed(0))
    assert torch.equal(with_mean.actions, with_mean.mean)
    scored = []

    def objective(actions):
        ev = quadratic(target)(actions)
        scored.append(ev.cost)
        return ev

    best = build("cem", space, population=32, iterations=3, elites=4, execute_mean=False).optimize(
        objective, space.initial_mean(), torch.Generator().manual_seed(0))
    # without it, the plan is the cheapest candidate scored (the final mean is not scored: issue 26)
    assert best.cost == float(torch.cat(scored).min()) and len(scored) == 3
