"""Every shift really changes what it claims at severity > 0, and is exactly the identity at 0."""

from __future__ import annotations

import numpy as np
import pytest

from hplan.config import load_scenario
from hplan.envs.factory import make_env
from hplan.errors import HplanError
from hplan.stress.shifts import SHIFTS, Onset, factor_value

STEPS = 30
ONSET = Onset(6, 6)


def scenario_for(shift: str):
    name = "point_four_rooms_zones" if shift == "moved_zones" else "point_four_rooms"
    return load_scenario(name, {"env": {"obs_mode": "both", "kwargs": {"image_size": 32}}})


def rollout(shift: str, severity: int, seed: int = 3, scenario_of: str | None = None):
    """Run a fixed seeded action sequence; return per-step observations and infos (reset included)."""
    scenario = scenario_for(scenario_of or shift)
    spec = SHIFTS[shift]
    env = spec.make(make_env(scenario, **spec.env_overrides(scenario, severity)), severity,
                    np.random.default_rng(0), ONSET)
    actions = np.random.default_rng(42).uniform(-1, 1, size=(STEPS, 2)).astype(np.float32)
    obs, info = env.reset(seed=seed)
    out_obs, out_info = [obs], [info]
    for a in actions:
        obs, _, term, trunc, info = env.step(a)
        out_obs.append(obs)
        out_info.append(info)
        if term or trunc:
            break
    return env, out_obs, out_info


def images(obs):
    return np.stack([o["image"] for o in obs])


def states(obs):
    return np.stack([o["state"] for o in obs])


def positions(infos):
    return np.stack([i["pos"] for i in infos])


POINT_SHIFTS = sorted(name for name, spec in SHIFTS.items() if "hplan/PointRooms-v0" in spec.applies_to)


@pytest.mark.parametrize("shift", POINT_SHIFTS)
def test_severity_zero_is_identity(shift):
    _, obs0, info0 = rollout(shift, 0)
    _, obsn, infon = rollout("none", 0, scenario_of=shift)
    assert len(obs0) == len(obsn)
    np.testing.assert_array_equal(images(obs0), images(obsn))
    np.testing.assert_array_equal(states(obs0), states(obsn))
    np.testing.assert_array_equal(positions(info0), positions(infon))
    for info in info0:
        assert info["shift"] == shift and info["severity"] == 0 and info["perturbation_onset"] == -1


def _obs_differ(shift, nominal, shifted):
    diff = images(shifted[1])[1:] != images(nominal[1])[1:]
    assert diff.mean() > 0.001, f"{shift}: images unchanged"
    # the world itself is untouched by sensor shifts
    np.testing.assert_array_equal(positions(shifted[2]), positions(nominal[2]))


def _dynamics_differ(shift, nominal, shifted):
    gap = np.abs(positions(shifted[2]) - positions(nominal[2])).max()
    assert gap > 0.05, f"{shift}: trajectory unchanged (max gap {gap})"


def test_observation_shifts_change_observations_only():
    for shift in ("obs_noise", "occlusion", "distractors"):
        _obs_differ(shift, rollout(shift, 0), rollout(shift, 2))
    # state noise changes the state vector too
    a, b = rollout("obs_noise", 0), rollout("obs_noise", 1)
    assert np.abs(states(a[1]) - states(b[1])).max() > 0


@pytest.mark.parametrize("shift", ["friction", "mass", "action_gain", "action_noise", "action_delay"])
def test_dynamics_shifts_change_trajectories(shift):
    nominal, shifted = rollout(shift, 0), rollout(shift, 3)
    _dynamics_differ(shift, nominal, shifted)


@pytest.mark.parametrize("shift,attr", [("friction", "friction"), ("mass", "mass"), ("action_gain", "action_gain")])
def test_factor_shifts_set_validated_values(shift, attr):
    scenario = scenario_for(shift)
    nominal = rollout(shift, 0)[0].unwrapped
    values = [getattr(rollout(shift, s)[0].unwrapped, attr) for s in (1, 2, 3)]
    base = getattr(nominal, attr)
    assert all(v != base for v in values)
    assert values == sorted(values) or values == sorted(values, reverse=True)  # monotone in severity
    assert factor_value(scenario, shift, 2)[1] == pytest.approx(values[1])


def test_moved_zones_move_restricted_cells():
    nominal, shifted = rollout("moved_zones", 0)[0].unwrapped.world, rollout("moved_zones", 2)[0].unwrapped.world
    assert nominal.restricted.any() and shifted.restricted.any()
    assert not np.array_equal(nominal.restricted, shifted.restricted)
    np.testing.assert_array_equal(nominal.layout.wall, shifted.layout.wall)


def test_unseen_layouts_change_the_map():
    walls = [rollout("unseen_layout", s)[0].unwrapped.world.layout.wall for s in range(4)]
    for s in (1, 2, 3):
        assert walls[s].shape == walls[0].shape and not np.array_equal(walls[s], walls[0])


def test_kidnap_teleports_at_onset():
    env, obs, infos = rollout("kidnap", 2)
    pos = positions(infos)
    jumps = np.hypot(*np.diff(pos, axis=0).T)
    onset = ONSET.low
    assert jumps[onset] > 2.0  # the step taken at the onset starts from the teleport target
    assert np.delete(jumps, onset).max() <= env.unwrapped.max_speed + 1e-6
    assert [i["perturbation_onset"] for i in infos[onset:onset + 2]] == [-1, onset]
    assert [i["impossible_transition"] for i in infos].count(True) == 1
    assert infos[onset + 1]["impossible_transition"]


def test_push_changes_velocity_after_onset_only():
    nominal, shifted = rollout("push", 0), rollout("push", 2)
    p0, p1 = positions(nominal[2]), positions(shifted[2])
    np.testing.assert_array_equal(p0[:ONSET.low + 1], p1[:ONSET.low + 1])
    assert np.abs(p0 - p1).max() > 0.3
    assert shifted[2][-1]["perturbation_onset"] == ONSET.low
    assert not any(i["impossible_transition"] for i in shifted[2])


def test_goal_move_updates_goal_and_goal_obs():
    _, _, infos = rollout("goal_move", 2)
    onset = ONSET.low
    before, after = infos[onset], infos[onset + 1]
    assert np.hypot(*(after["goal"] - before["goal"])) > 2.0
    assert not np.array_equal(after["goal_obs"]["image"], before["goal_obs"]["image"])
    assert after["perturbation_onset"] == onset


def test_shift_randomness_is_seeded_per_episode():
    a = images(rollout("obs_noise", 2, seed=5)[1])
    b = images(rollout("obs_noise", 2, seed=5)[1])
    c = images(rollout("obs_noise", 2, seed=6)[1])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_not_applicable_shift_fails_clearly():
    lava = load_scenario("minigrid_lavacrossing")
    with pytest.raises(HplanError, match="does not apply to hplan/MiniGridLavaCrossing-v0"):
        SHIFTS["kidnap"].env_overrides(lava, 1)
    with pytest.raises(HplanError, match="severity 4 out of range"):
        SHIFTS["obs_noise"].make(make_env(scenario_for("obs_noise")), 4, np.random.default_rng(0))
    assert SHIFTS["occlusion"].check(load_scenario("point_four_rooms", {"env": {"obs_mode": "state"}}))
    assert SHIFTS["moved_zones"].check(load_scenario("point_four_rooms"))
