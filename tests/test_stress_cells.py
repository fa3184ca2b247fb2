"""Cells end to end with a scripted straight-line agent whose answers are known.

The open map and physics (no friction, full speed reached in one step, speed 0.4 = the nominal
speed that geodesic steps are measured in) make the agent move exactly 0.4 cells per step straight
at the goal, so H50, recovery time and surprise have answers that follow from geometry alone.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.config import load_scenario
from hplan.stress.cells import Cell, CellJob, run_cell
from hplan.stress.suite import H50Config, RecoveryConfig, SuiteConfig, SuiteScenario, SuiteShift

OPEN = "\n" + "\n".join(["#" * 17] + ["#" + "." * 15 + "#"] * 15 + ["#" * 17]) + "\n"
SPEED = 0.4


def open_scenario(max_steps: int = 60):
    return load_scenario("point_four_rooms", {
        "env": {"obs_mode": "state", "max_steps": max_steps,
                "kwargs": {"layout": OPEN, "friction": 0.0, "action_gain": 0.5, "max_speed": SPEED}},
        "task": {"min_rooms_apart": 0}})


class StraightLineAgent:
    """Full thrust straight at the goal; surprise = how far the new position is from where the
    previous position plus the observed velocity says it should be (large only for teleports)."""

    discrete = False

    def reset(self, goal_obs, seed):
        self.goal = np.asarray(goal_obs[:2], dtype=np.float64)
        self.prev = None

    def set_goal(self, goal_obs):
        self.goal = np.asarray(goal_obs[:2], dtype=np.float64)

    def act(self, obs):
        pos, vel = np.asarray(obs[:2], np.float64), np.asarray(obs[2:4], np.float64)
        surprise = 0.0 if self.prev is None else float(np.hypot(*(pos - self.prev - vel)))
        self.prev = pos
        delta = self.goal - pos
        action = (delta / max(np.hypot(*delta), 1e-9)).astype(np.float32)
        info = SimpleNamespace(guardrail_probs={"wall_contact": 0.2}, predicted_risk=0.2, surprise=surprise,
                               extra={"planned_actions": np.stack([action] * 4)})
        return action, info


def scripted(scenario, seed):
    return StraightLineAgent()


def make_suite(**changes) -> SuiteConfig:
    base = SuiteConfig(name="test", scenarios=(SuiteScenario("point_four_rooms"),), shifts=(SuiteShift("none", (0,)),),
                       episodes=4, episodes_per_cell=4,
                       h50=H50Config(enabled=True, separations=(0, 10, 18, 30, 40)),
                       recovery=RecoveryConfig(onset_min=5, onset_max=8))
    return dataclasses.replace(base, **changes)


def job(shift: str, severity: int, episodes: tuple[int, ...], suite: SuiteConfig | None = None, max_steps: int = 60):
    suite = suite or make_suite()
    return CellJob(Cell("open", shift, severity, 0, episodes), open_scenario(max_steps), "unused", suite)


def test_severity_zero_reproduces_nominal_exactly():
    nominal = run_cell(job("none", 0, (0, 1, 2)), scripted)
    for shift in ("obs_noise", "kidnap", "friction", "action_delay"):
        zero = run_cell(job(shift, 0, (0, 1, 2)), scripted)
        cols = ["seed", "success", "steps", "violations", "return", "start_geodesic", "final_geodesic",
                "trajectory_sha256"]
        pd.testing.assert_frame_equal(zero.episodes[cols], nominal.episodes[cols])
        assert (zero.episodes["perturbation_onset"] == -1).all()
    # and a shift at severity > 0 really is different
    noisy = run_cell(job("obs_noise", 2, (0, 1, 2)), scripted)
    assert (noisy.episodes["trajectory_sha256"] != nominal.episodes["trajectory_sha256"]).all()


def test_severity_zero_matches_the_library_runner():
    from hplan.runner import run_episodes

    suite = make_suite(h50=H50Config(enabled=False))
    cell = run_cell(job("obs_noise", 0, (0, 1, 2), suite), scripted)
    plain = run_episodes(open_scenario(), None, episodes=3, seed=suite.seed,
                         make_agent=lambda model, planner, guard, seed, device: StraightLineAgent())
    for col in ("seed", "success", "steps", "violations", "return", "start_geodesic_steps"):
        assert cell.episodes[col].tolist() == plain[col].tolist()


def test_h50_of_straight_line_agent_equals_its_step_budget():
    from hplan.metrics import h50, success_by_separation

    budget = 18  # steps: separations <= 18 nominal steps are reachable, long ones are not
    suite = make_suite(episodes=16)
    result = run_cell(job("none", 0, tuple(range(16)), suite, max_steps=budget), scripted)
    eps = result.episodes
    table = success_by_separation(eps["start_geodesic_steps"], eps["success"], suite.h50.separations)
    assert table["episodes"].tolist() == [4, 4, 4, 4]  # one bin per episode index, round robin
    assert table["success"].tolist()[:2] == [1.0, 1.0]
    assert table["success"].tolist()[3] == 0.0
    assert h50(eps["start_geodesic_steps"], eps["success"], suite.h50.separations) == 18.0


def test_kidnap_recovery_time_and_surprise_match_geometry():
    from hplan.metrics import surprise_auroc

    suite = make_suite(h50=H50Config(enabled=False))
    result = run_cell(job("kidnap", 1, tuple(range(6)), suite, max_steps=150), scripted)
    eps, steps = result.episodes, result.steps
    perturbed = eps[eps["perturbation_onset"] >= 0]  # an episode may end before its onset
    assert len(perturbed) >= 4 and perturbed["perturbation_onset"].between(5, 8).all()
    assert eps["success"].all()  # the straight-line agent always gets there: recovery rate 1
    for _, ep in perturbed.iterrows():
        s = steps[steps["episode"] == ep["episode"]].set_index("t")
        onset = int(ep["perturbation_onset"])
        before = s.loc[onset - 1, "distance"]
        after_jump = s.loc[onset, "distance"] + SPEED  # the onset step starts at the teleport target
        expected = max(1, math.ceil((after_jump - before) / SPEED))  # a jump towards the goal: recovered at once
        assert abs(ep["recovery_time"] - expected) <= 1, (ep["recovery_time"], expected)
    # teleports are the only impossible transitions, and the agent's surprise flags each of them
    assert (perturbed["impossible_steps"] == 1).all() and eps["impossible_steps"].sum() == len(perturbed)
    assert surprise_auroc(steps) == 1.0


def test_branches_label_the_planned_action_not_the_executed_one():
    result = run_cell(job("action_noise", 3, (0, 1), make_suite(h50=H50Config(enabled=False))), scripted)
    steps = result.steps
    assert {"p:wall_contact", "y:wall_contact", "yb:wall_contact", "plan_violation"} <= set(steps.columns)
    # the straight-line plan never touches a wall in the open room; noisy execution sometimes does not either,
    # but the branch label must follow the *plan*
    assert not steps["yb:wall_contact"].any()
    assert not steps["plan_violation"].any()


def test_branch_copies_are_independent_and_bullet_worlds_are_refused():
    import gymnasium as gym

    import hplan.envs  # noqa: F401
    from hplan.stress.recorder import branch_copy

    env = gym.make("hplan/PointRooms-v0")
    env.reset(seed=0)
    before = env.unwrapped.pos
    copy = branch_copy(env)
    assert copy.world is env.unwrapped.world  # the static map is shared, not copied
    for _ in range(5):
        copy.step(np.array([1.0, 0.0], dtype=np.float32))
    assert not np.allclose(copy.pos, before)
    np.testing.assert_array_equal(env.unwrapped.pos, before)  # stepping the branch leaves the real env alone
    pusher = gym.make("hplan/Pusher-v0")
    pusher.reset(seed=0)
    assert branch_copy(pusher) is None  # a deepcopy would share the Bullet physics server
    pusher.close()


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=12), st.text(min_size=1, max_size=12))
def test_two_scenario_labels_never_share_a_result_file(a: str, b: str) -> None:
    """Labels that differ only in characters unsafe in file names (``"t a"``, ``"t-a"``) once shared
    their result files: one cell never ran, the other's episodes appeared twice."""
    from hplan.stress.cells import Cell, file_label

    ids = {Cell(label, "friction", 1, 0, (0,)).id for label in (a, b)}
    assert (len(ids) == 2) == (a != b)
    assert all("/" not in i and "\x00" not in i for i in ids)
    assert file_label("t a") != file_label("t-a")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_long_scenario_labels_make_short_distinct_file_names(a: str, b: str) -> None:
    """Escaping makes a label up to 9x longer: 60 "é" once made a result file name past the file
    system's 255 bytes (an OSError after ``--check`` passed). Long labels are shortened with a hash
    of the whole label, still one file per label."""
    from hplan.stress.cells import Cell

    cells = [Cell(label, "friction", 3, 12, (0,)) for label in (a, b, a + "x", "é" * 60)]
    for cell in cells:
        assert len((cell.id + ".steps.parquet").encode()) <= 255 and "/" not in cell.id
    assert (cells[0].id == cells[1].id) == (a == b)
    assert cells[0].id != cells[2].id
