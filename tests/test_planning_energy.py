"""Energy terms, guardrail modes, the Lagrange multiplier and evaluation budgets."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.configio import from_mapping
from hplan.errors import ConfigError, HplanError
from hplan.planning.agent import make_agent
from hplan.planning.analytic import PointMassModel, UnsafeDisc
from hplan.planning.budget import plan_cost, resolve_budget
from hplan.planning.config import (SUBGOAL_REACHED, BudgetConfig, CodesConfig, EnergyConfig, GradConfig, GuardrailConfig, PlannerConfig,
                                   SearchConfig)
from hplan.planning.energy import Energy
from hplan.planning.lagrangian import LagrangeMultiplier

DISC = UnsafeDisc(centre=(0.2, 0.0), radius=0.15)


def actions(n=5, horizon=4, seed=0):
    return torch.rand((n, horizon, 2), generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("mode", ["off", "penalty", "hard", "lagrangian"])
def test_guardrail_modes_combine_task_and_risk_as_documented(mode):
    model = PointMassModel(unsafe=DISC)
    guard = GuardrailConfig(mode=mode, weight=3.0, threshold=0.4, multiplier_init=7.0)
    energy = Energy(model, PlannerConfig(energy=EnergyConfig(running_weight=0.5)), guard)
    z0, goal, acts = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 0.1]), actions()
    ev = energy.low_objective(z0, goal)(acts)
    z = model.predict(z0.expand(5, 2), acts)
    dist = (z - goal).norm(dim=-1) / model.step
    task = dist[:, -1] + 0.5 * dist.mean(1)
    before = torch.cat([z0.expand(5, 1, 2), z[:, :-1]], 1)
    probs = model.heads(before, acts)[..., 0]
    expected = {"off": task, "penalty": task + 3.0 * probs.sum(1), "hard": task,
                "lagrangian": task + 7.0 * probs.sum(1)}[mode]
    assert torch.allclose(ev.cost, expected)
    assert ev.n_evals == 5 * 4
    if mode == "off":
        assert torch.equal(ev.risk, torch.zeros(5))
    else:
        assert torch.allclose(ev.risk, probs.amax(1))
        assert torch.allclose(ev.mean_risk, probs.mean(1))
    if mode == "hard":
        assert torch.equal(ev.feasible, probs.amax(1) <= 0.4)
    else:
        assert bool(ev.feasible.all())


def test_l2_task_cost_uses_latent_distance():
    model = PointMassModel()
    energy = Energy(model, PlannerConfig(energy=EnergyConfig(task_cost="l2", running_weight=0.0)),
                    GuardrailConfig(mode="off"))
    acts = actions()
    ev = energy.low_objective(torch.zeros(2), torch.tensor([0.3, -0.2]))(acts)
    z = model.predict(torch.zeros(5, 2), acts)
    assert torch.allclose(ev.cost, (z[:, -1] - torch.tensor([0.3, -0.2])).norm(dim=-1))


def test_high_level_energy_charges_unreachable_jumps():
    model = PointMassModel(subgoal_interval=4)
    cfg = PlannerConfig(energy=EnergyConfig(running_weight=0.0),
                        codes=CodesConfig(running_weight=0.0, reach_weight=2.0))
    energy = Energy(model, cfg, GuardrailConfig(mode="off"))
    codes = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    ev = energy.high_objective(torch.zeros(2), torch.tensor([0.4, 0.0]))(codes)
    # two jumps of 4 steps at full speed each land exactly on the goal; each jump is exactly k steps
    assert ev.cost[0] == pytest.approx(0.0, abs=1e-4)
    assert ev.n_evals == 2

    class Stretchy(PointMassModel):  # a temporal distance that says every jump needs 2k steps
        def temporal_distance(self, z, z_goal):
            return 2 * super().temporal_distance(z, z_goal)

    far = Energy(Stretchy(subgoal_interval=4), cfg, GuardrailConfig(mode="off")).high_objective(
        torch.zeros(2), torch.tensor([0.4, 0.0]))(codes)
    assert far.cost[0] == pytest.approx(2.0 * 2 * 4.0, rel=1e-4)


@settings(max_examples=20, deadline=None)
@given(start=st.tuples(st.floats(-0.9, 0.9), st.floats(-0.9, 0.9)),
       centre=st.tuples(st.floats(-0.6, 0.6), st.floats(-0.6, 0.6)), radius=st.floats(0.05, 0.4),
       seed=st.integers(0, 10_000), low=st.sampled_from(["cem", "mppi", "grad"]))
def test_hard_mode_agent_never_picks_a_predicted_unsafe_plan_when_a_safe_one_was_evaluated(
        start, centre, radius, seed, low):
    model = PointMassModel(unsafe=UnsafeDisc(centre=centre, radius=radius))
    # every step's risk counts here, also after arriving at the goal (that is tested on its own below)
    cfg = PlannerConfig(kind="flat", low=low, horizon=5, search=SearchConfig(population=24, elites=4, iterations=2),
                        grad=GradConfig(restarts=4, steps=3), energy=EnergyConfig(goal_ends_episode=False))
    agent = make_agent(model, cfg, GuardrailConfig(mode="hard", threshold=0.3), seed, "cpu")
    seen_safe = []
    build = agent.energy.low_objective

    def spying(z0, goal, max_batch=None, final=False):
        objective = build(z0, goal, max_batch, final)

        def wrapped(candidates):
            ev = objective(candidates)
            seen_safe.append(bool(ev.feasible.any()))
            return ev

        return wrapped

    agent.energy.low_objective = spying
    agent.reset(torch.tensor(centre).numpy(), seed)  # the goal sits inside the unsafe disc
    _, info = agent.act(torch.tensor(start).numpy())
    plan = agent.last_step.result.actions
    z = model.predict(torch.tensor(start)[None], plan[None])
    before = torch.cat([torch.tensor(start).view(1, 1, 2), z[:, :-1]], 1)
    risk = float(model.heads(before, plan[None]).amax())
    assert risk == pytest.approx(info.predicted_risk, abs=1e-5)
    if any(seen_safe):
        assert risk <= 0.3


def test_off_mode_never_calls_the_heads_during_planning():
    calls = []

    class Counting(PointMassModel):
        def heads(self, z, a=None):
            calls.append(z.shape)
            return super().heads(z, a)

    agent = make_agent(Counting(unsafe=DISC), PlannerConfig(kind="flat", search=SearchConfig(population=16, elites=4)),
                       GuardrailConfig(mode="off"), 0, "cpu")
    agent.reset([0.5, 0.5], 0)
    _, info = agent.act([0.0, 0.0])
    assert calls == [(1, 2)]  # only the one PlanInfo query for the chosen first action
    assert set(info.guardrail_probs) == {"restricted_zone"}


@pytest.mark.parametrize("rule", ["dual", "pid"])
def test_lagrange_multiplier_rises_above_budget_and_relaxes_below(rule):
    cfg = GuardrailConfig(mode="lagrangian", budget=0.1, multiplier_init=1.0, multiplier_update=rule,
                          lagrangian_lr=2.0, pid_kp=1.0, multiplier_max=50.0)
    lam = LagrangeMultiplier(cfg)
    rising = [lam.update(0.8) for _ in range(5)]
    assert all(b > a for a, b in zip(rising, rising[1:]))
    falling = [lam.update(0.0) for _ in range(100)]
    assert falling[-1] < rising[-1]
    assert min(falling) >= 0.0
    assert falling[-1] == pytest.approx(0.0, abs=1e-9)
    capped = [lam.update(1.0) for _ in range(200)]
    assert max(capped) == pytest.approx(50.0)
    lam.reset()
    assert lam() == 1.0


def test_lagrangian_agent_reports_its_multiplier_and_it_adapts():
    model = PointMassModel(unsafe=UnsafeDisc(centre=(0.25, 0.0), radius=0.12))
    guard = GuardrailConfig(mode="lagrangian", budget=0.0, multiplier_init=0.0, multiplier_update="dual",
                            lagrangian_lr=50.0)
    cfg = PlannerConfig(kind="flat", horizon=8, search=SearchConfig(population=64, elites=8))
    agent = make_agent(model, cfg, guard, 0, "cpu")
    agent.reset([0.5, 0.0], 0)
    _, first = agent.act([0.0, 0.0])
    # with λ = 0 the straight line through the disc is chosen: predicted risk is high, λ jumps
    assert first.predicted_risk > 0.5
    first_mean_risk = agent.last_step.result.mean_risk
    assert first.lagrange_multiplier == pytest.approx(50.0 * first_mean_risk, rel=1e-5)
    # a few planning steps from the same spot later, the raised λ steers the plan around the disc
    for _ in range(4):
        _, info = agent.act([0.0, 0.0])
    assert info.lagrange_multiplier > first.lagrange_multiplier
    assert agent.last_step.result.mean_risk < 0.5 * first_mean_risk


@pytest.mark.parametrize("low", ["cem", "mppi", "grad"])
@pytest.mark.parametrize("budget", [3000, 12_345])
def test_a_budget_sizes_flat_and_hier_so_neither_exceeds_it(low, budget):
    flat = resolve_budget(PlannerConfig(kind="flat", low=low, budget=BudgetConfig(evals=budget)))
    hier_cfg = PlannerConfig(kind="hier", low=low, budget=BudgetConfig(evals=budget))
    hier = resolve_budget(hier_cfg)
    horizon = hier_cfg.horizon
    flat_cost = plan_cost(low, flat.low, horizon)
    hier_cost = plan_cost(low, hier.low, horizon) + plan_cost("cem", hier.high, hier_cfg.codes.horizon)
    assert flat_cost <= budget and hier_cost <= budget
    # and the budget is used: one more candidate would not fit
    bigger = dataclasses.replace(flat.low, population=flat.low.population + 1)
    assert plan_cost(low, bigger, horizon) > budget


def test_too_small_a_budget_is_a_one_line_user_error():
    with pytest.raises(HplanError, match="planner.budget.evals"):
        resolve_budget(PlannerConfig(kind="hier", budget=BudgetConfig(evals=100)))


def test_planner_config_validation_names_file_and_field():
    with pytest.raises(ConfigError, match=r"s.toml: planner.search: elites \(64\) must be <= population \(8\)"):
        from_mapping(PlannerConfig, {"search": {"population": 8, "elites": 64}}, source="s.toml", section="planner")
    with pytest.raises(ConfigError, match=r"s.toml: planner.codes: elites \(64\) must be <= population \(8\)"):
        from_mapping(PlannerConfig, {"codes": {"population": 8, "elites": 64}}, source="s.toml", section="planner")
    with pytest.raises(ConfigError, match=r"s.toml: guardrails.threshold: must be < 1.0"):
        from_mapping(GuardrailConfig, {"threshold": 1.5}, source="s.toml", section="guardrails")
    with pytest.raises(HplanError, match="cannot plan continuous actions"):
        make_agent(PointMassModel(), PlannerConfig(low="cem_discrete"), GuardrailConfig(), 0, "cpu")


class TinyLearnedModel(torch.nn.Module):
    """A learnable residual MLP behind the protocol (parameters require grad, like a trained model)."""

    latent_dim, code_dim, subgoal_interval, guardrail_names = 4, 2, 4, ("zone",)

    def __init__(self) -> None:
        super().__init__()
        from hplan.vocabulary.protocol import ActionSpec

        torch.manual_seed(0)
        self.action_spec = ActionSpec(2)
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
        self.guard = torch.nn.Linear(6, 1)

    def encode(self, obs):
        return obs.float()

    def predict(self, z, actions):
        out = []
        for t in range(actions.shape[1]):
            z = z + 0.1 * self.net(torch.cat([z, actions[:, t]], -1))
            out.append(z)
        return torch.stack(out, 1)

    def predict_high(self, z, codes):
        return self.predict(z, codes)

    def heads(self, z, actions=None):
        a = torch.zeros(*z.shape[:-1], 2) if actions is None else actions
        return torch.sigmoid(self.guard(torch.cat([z, a], -1)))

    def temporal_distance(self, z, z_goal):
        return (z - z_goal).norm(dim=-1) * 10


def test_gradient_planner_leaves_model_parameters_untouched_and_improves_the_plan():
    model = TinyLearnedModel()
    cfg = PlannerConfig(kind="flat", low="grad", grad=GradConfig(restarts=3, steps=15), horizon=5)
    agent = make_agent(model, cfg, GuardrailConfig(mode="penalty"), 0, "cpu")
    agent.reset([1.0, -1.0, 0.5, 0.0], 0)
    agent.act([0.0, 0.0, 0.0, 0.0])
    assert all(p.grad is None for p in model.parameters())
    objective = agent.energy.low_objective(torch.zeros(4), torch.tensor([1.0, -1.0, 0.5, 0.0]))
    with torch.no_grad():
        zero_plan = objective(torch.zeros(1, 5, 2)).cost[0]
    assert agent.last_step.result.cost < float(zero_plan)


@pytest.mark.parametrize("mode", ["penalty", "hard"])
def test_chunking_a_learned_model_matches_one_batch(mode):
    model = TinyLearnedModel()
    energy = Energy(model, PlannerConfig(), GuardrailConfig(mode=mode))
    z0, goal = torch.zeros(4), torch.ones(4)
    acts = torch.rand((37, 5, 2), generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        whole = energy.low_objective(z0, goal, max_batch=1000)(acts)
        parts = energy.low_objective(z0, goal, max_batch=8)(acts)
    assert torch.allclose(whole.cost, parts.cost, atol=1e-5)
    assert torch.equal(whole.feasible, parts.feasible) and whole.n_evals == parts.n_evals == 37 * 5


def test_auto_chunk_size_bounds_the_batch_the_model_sees():
    seen = []

    class Recording(PointMassModel):
        def predict(self, z, actions):
            seen.append(actions.shape[0])
            return super().predict(z, actions)

    energy = Energy(Recording(), PlannerConfig(), GuardrailConfig(mode="off"))
    energy.low_objective(torch.zeros(2), torch.ones(2))(torch.zeros(600, 3, 2))
    assert seen == [256, 256, 88]
    seen.clear()
    Energy(Recording(), PlannerConfig(search=SearchConfig(max_batch=1000)), GuardrailConfig(mode="off")).low_objective(
        torch.zeros(2), torch.ones(2))(torch.zeros(600, 3, 2))
    assert seen == [600]


def test_going_for_the_goal_the_risk_after_arriving_is_not_counted():
    """The episode ends at the goal: a plan that arrives and then sits in an unsafe region pays only
    for the steps up to its arrival; towards a subgoal (or with goal_ends_episode off) every step pays."""
    model = PointMassModel(unsafe=UnsafeDisc(centre=(0.2, 0.0), radius=0.15))
    z0, goal = torch.zeros(2), torch.tensor([0.2, 0.0])
    arrive = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 0.0]] * 2)  # 0.05 a step: 3, 2, 1, 0, 0, 0 steps away
    stay = torch.zeros(6, 2)  # never arrives
    candidates = torch.stack([arrive, stay])
    z = model.predict(z0.expand(2, -1), candidates)
    probs = model.heads(torch.cat([z0.expand(2, 1, -1), z[:, :-1]], 1), candidates)[..., 0]
    cfg, guard = PlannerConfig(), GuardrailConfig(mode="penalty", weight=1.0)
    task = Energy(model, cfg, guard).task_cost(z, goal)
    final = Energy(model, cfg, guard).low_objective(z0, goal, final=True)(candidates)
    subgoal = Energy(model, cfg, guard).low_objective(z0, goal)(candidates)
    stopless = dataclasses.replace(cfg, energy=EnergyConfig(goal_ends_episode=False))
    everything = Energy(model, stopless, guard).low_objective(
        z0, goal, final=True)(candidates)
    # arrival (distance 2 <= SUBGOAL_REACHED) is after the second action: only actions 0 and 1 pay
    assert SUBGOAL_REACHED == 2.0
    torch.testing.assert_close(final.cost, task + torch.stack([probs[0, :2].sum(), probs[1].sum()]))
    torch.testing.assert_close(subgoal.cost, task + probs.sum(1))
    torch.testing.assert_close(everything.cost, subgoal.cost)
    assert float(probs[0, 2:].sum()) > 1.0  # what was left out is real risk


def test_guardrails_names_picks_the_heads_the_planner_heeds():
    """``[guardrails] names`` restricts the energy to some heads; an unknown name is refused in one line."""

    class TwoHeads(PointMassModel):
        def heads(self, z, a=None):  # a second head that always fires
            zone = super().heads(z, a)
            return torch.cat([zone, torch.ones_like(zone)], -1)

    model = TwoHeads(unsafe=DISC)
    model.guardrail_names = ("restricted_zone", "always")
    seq = actions(n=6)
    z0, goal = torch.zeros(2), torch.tensor([0.4, 0.0])
    guard = GuardrailConfig(mode="penalty", weight=1.0)
    heeded = Energy(model, PlannerConfig(), dataclasses.replace(guard, names=("restricted_zone",)))
    only_zone = Energy(PointMassModel(unsafe=DISC), PlannerConfig(), guard)
    both = Energy(model, PlannerConfig(), guard)
    torch.testing.assert_close(heeded.low_objective(z0, goal)(seq).cost, only_zone.low_objective(z0, goal)(seq).cost)
    extra = both.low_objective(z0, goal)(seq).cost - only_zone.low_objective(z0, goal)(seq).cost
    torch.testing.assert_close(extra, torch.full_like(extra, float(seq.shape[1])))  # the always-head: 1 per step
    with pytest.raises(HplanError, match=r"\[guardrails\] names: unknown guardrail\(s\) \['lava'\]"):
        Energy(model, PlannerConfig(), dataclasses.replace(guard, names=("lava",)))


def test_guardrails_members_max_asks_the_model_for_its_most_pessimistic_member():
    """``[guardrails] members = "max"`` passes ``combine="max"`` to the model; the default (mean)
    calls ``heads`` without it, so a model with a single head needs no such argument."""

    class Ensemble(PointMassModel):
        def heads(self, z, a=None, combine="mean"):
            zone = super().heads(z, a)
            return zone if combine == "mean" else torch.ones_like(zone)  # one member always fires

    seq = actions(n=5)
    z0, goal = torch.zeros(2), torch.tensor([0.4, 0.0])
    guard = GuardrailConfig(mode="penalty", weight=1.0)
    single = Energy(PointMassModel(unsafe=DISC), PlannerConfig(), guard).low_objective(z0, goal)(seq).cost
    mean = Energy(Ensemble(unsafe=DISC), PlannerConfig(), guard).low_objective(z0, goal)(seq).cost
    worst = Energy(Ensemble(unsafe=DISC), PlannerConfig(), dataclasses.replace(guard, members="max"))
    torch.testing.assert_close(mean, single)
    task = Energy(PointMassModel(), PlannerConfig(), GuardrailConfig(mode="off")).low_objective(z0, goal)(seq).cost
    torch.testing.assert_close(worst.low_objective(z0, goal)(seq).cost, task + seq.shape[1])
