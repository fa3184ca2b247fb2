"""MiniGrid, Pusher and CartPole adapters: violations, goal observations, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.envs.cartpole import CartPoleEnv
from hplan.envs.minigrid_adapters import MiniGridDoorKey, MiniGridFourRooms, MiniGridLavaCrossing
from hplan.envs.pusher import BLOCK_HALF, PUSHER_RADIUS, WORKSPACE, PusherEnv, push_goal_pusher
from hplan.errors import HplanError

LEFT, RIGHT, FORWARD, PICKUP, TOGGLE = range(5)


def _face(env, target):
    """Put the agent on a free cell next to ``target`` facing it; returns False if none is free."""
    grid = env._env.grid
    for direction, (dx, dy) in enumerate(((1, 0), (0, 1), (-1, 0), (0, -1))):
        x, y = target[0] - dx, target[1] - dy
        if 0 < x < grid.width - 1 and 0 < y < grid.height - 1 and grid.get(x, y) is None:
            env._env.agent_pos = np.array([x, y])
            env._env.agent_dir = direction
            return True
    return False


def test_lava_is_a_violation_with_cost_and_ends_the_episode():
    env = MiniGridLavaCrossing(obs_mode="state")
    env.reset(seed=4)
    lava = next((i % env._width, i // env._width) for i, obj in enumerate(env._env.grid.grid)
                if obj is not None and obj.type == "lava" and _face(env, (i % env._width, i // env._width)))
    _, _, terminated, _, info = env.step(FORWARD)
    assert tuple(info["pos"].astype(int)) == lava
    assert info["violations"] == {"lava": True} and info["cost"] == 1.0 and terminated


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), acts=st.lists(st.integers(0, 2), min_size=1, max_size=30))
def test_minigrid_same_seed_same_trajectory_and_cost_matches_lava(seed, acts):
    traces = []
    for _ in range(2):
        env = MiniGridLavaCrossing(obs_mode="both")
        obs, info = env.reset(seed=seed)
        trace = [obs["image"], obs["state"]]
        for action in acts:
            obs, _, terminated, _, info = env.step(action)
            cell = env._env.grid.get(*env._env.agent_pos)
            assert info["cost"] == (1.0 if cell is not None and cell.type == "lava" else 0.0)
            trace += [obs["image"], obs["state"]]
            if terminated:
                break
        traces.append(trace)
    for a, b in zip(*traces):
        np.testing.assert_array_equal(a, b)


def test_doorkey_state_tracks_key_and_door_and_goal_obs_is_the_solved_state():
    env = MiniGridDoorKey(obs_mode="both")
    _, info = env.reset(seed=0)
    goal_state = info["goal_obs"]["state"]
    assert goal_state[6] == 1.0 and goal_state[7] == 1.0  # key carried, door open
    assert tuple(goal_state[:2]) == tuple(info["goal"])
    assert _face(env, env._key_pos)
    obs, _, _, _, info = env.step(PICKUP)
    assert obs["state"][6] == 1.0 and info["true_state"][3] == 1.0
    assert _face(env, env._door[:2])
    obs, _, _, _, info = env.step(TOGGLE)
    assert obs["state"][7] == 1.0 and info["true_state"][4] == 1.0
    assert not np.array_equal(obs["image"], info["goal_obs"]["image"])


def test_minigrid_image_marks_agent_heading_and_actions_are_restricted():
    env = MiniGridFourRooms(obs_mode="image")
    assert env.action_space.n == 3 and MiniGridDoorKey().action_space.n == 5
    obs, _ = env.reset(seed=1)
    turned, _, _, _, _ = env.step(LEFT)
    assert not np.array_equal(obs, turned)  # only the heading changed, and the image shows it
    with pytest.raises(HplanError):
        env.step(4)
    with pytest.raises(HplanError, match="odd"):
        MiniGridLavaCrossing(size=8)


def test_minigrid_set_goal_moves_the_goal_and_goal_obs():
    env = MiniGridFourRooms(obs_mode="state")
    _, info = env.reset(seed=2)
    free = next((x, y) for y in range(1, 18) for x in range(1, 18)
                if env._env.grid.get(x, y) is None and (x, y) != tuple(env._env.agent_pos))
    env.set_goal(free)
    _, _, _, _, info = env.step(LEFT)
    assert tuple(info["goal"].astype(int)) == free and tuple(info["goal_obs"][:2].astype(int)) == free
    with pytest.raises(HplanError):
        env.set_goal((0, 0))


def test_pusher_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(15, 2))
    runs = []
    for _ in range(2):
        env = PusherEnv(obs_mode="state")
        obs, _ = env.reset(seed=5)
        runs.append([obs] + [env.step(a)[0] for a in actions])
        env.close()
    np.testing.assert_array_equal(np.array(runs[0]), np.array(runs[1]))


def _ram(env, steps=25):
    """Drive the pusher straight at the block at full speed; returns the infos."""
    _, info = env.reset(seed=3)
    infos = []
    for _ in range(steps):
        gap = info["true_state"][2:4] - info["true_state"][0:2]
        _, _, _, _, info = env.step(gap / np.linalg.norm(gap))
        infos.append(info)
    return infos


def test_pusher_contact_force_violation_depends_on_the_limit():
    strict, lax = PusherEnv(force_limit=0.5), PusherEnv(force_limit=50.0)
    strict_infos, lax_infos = _ram(strict), _ram(lax)
    assert max(i["contact_force"] for i in lax_infos) > 0.5  # the pusher did touch the block
    assert any(i["violations"]["contact_force"] for i in strict_infos)
    assert not any(i["violations"]["contact_force"] for i in lax_infos)
    for info in strict_infos:
        assert info["cost"] == float(any(info["violations"].values()))


def test_pusher_forbidden_zone_flags_the_block_inside():
    env = PusherEnv()
    _, info = env.reset(seed=1)
    assert not info["violations"]["forbidden_zone"]
    bx, by = info["pos"]
    env.forbidden_zone = np.array([bx - 0.1, by - 0.1, bx + 0.1, by + 0.1])
    _, _, _, _, info = env.step(np.zeros(2))
    assert info["violations"]["forbidden_zone"] and info["cost"] == 1.0


def test_pusher_goal_obs_shows_block_at_target():
    env = PusherEnv(obs_mode="both")
    obs, info = env.reset(seed=2)
    np.testing.assert_allclose(info["goal_obs"]["state"][2:4], info["goal"])
    # the state a straight push leaves: block at rest at its present yaw, the pusher behind it
    np.testing.assert_allclose(info["goal_obs"]["state"][4:6], obs["state"][4:6], atol=1e-6)
    np.testing.assert_array_equal(info["goal_obs"]["state"][6:8], [0.0, 0.0])
    np.testing.assert_allclose(info["goal_obs"]["state"][0:2],
                               push_goal_pusher(obs["state"][2:4], info["goal"]), atol=1e-6)
    env.set_goal([0.3, 0.3])
    _, _, _, _, moved = env.step(np.zeros(2))
    assert not np.array_equal(moved["goal_obs"]["image"], info["goal_obs"]["image"])
    np.testing.assert_allclose(moved["goal"], [0.3, 0.3])
    with pytest.raises(HplanError):
        env.set_goal([2.0, 0.0])


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.floats(-0.25, 0.25), st.floats(-0.25, 0.25)), st.tuples(st.floats(-0.3, 0.3), st.floats(-0.3, 0.3)))
def test_push_goal_pusher_sits_behind_the_block_on_the_push_line(block, goal):
    block, goal = np.array(block), np.array(goal)
    pusher = push_goal_pusher(block, goal)
    assert np.all(np.abs(pusher) <= WORKSPACE)
    back = goal - pusher
    gap = np.hypot(*back)
    assert gap > BLOCK_HALF * np.sqrt(2) + PUSHER_RADIUS  # clear of the block's corners
    push = goal - block
    if np.hypot(*push) > 1e-6:  # on the line from the block to the target, on the block's side
        assert abs(back[0] * push[1] - back[1] * push[0]) <= 1e-9 + 1e-6 * gap
        assert back @ push > 0


@pytest.mark.parametrize("turns", [1, 2, -1])
def test_pusher_observes_the_square_block_modulo_a_quarter_turn(turns):
    """Two poses of the square block a quarter turn apart are one physical state: one observation."""
    states = []
    for yaw in (0.3, 0.3 + turns * np.pi / 2):
        env = PusherEnv(obs_mode="state")
        env.reset(seed=4)
        env._bodies = env._build(env._p, (0.3, 0.3), (0.0, 0.0), yaw)
        states.append(env._true_state())
        env.close()
    np.testing.assert_allclose(states[0], states[1], atol=1e-5)
    assert not np.allclose(states[0][4:6], [1.0, 0.0], atol=1e-2)  # yaw is still observed


def test_cartpole_pole_angle_violation_and_factors():
    env = CartPoleEnv(angle_limit_deg=4.0)
    _, info = env.reset(seed=0)
    violated = False
    for _ in range(200):
        _, _, terminated, _, info = env.step(1)
        expected = abs(info["true_state"][2]) > np.radians(4.0)
        assert info["violations"]["pole_angle"] == expected and info["cost"] == float(expected)
        violated |= expected
        if terminated:
            break
    assert violated and terminated
    heavy = CartPoleEnv(masspole=1.0)
    assert heavy._env.total_mass == pytest.approx(2.0) and heavy._env.polemass_length == pytest.approx(0.5)
