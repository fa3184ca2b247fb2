"""PointRooms invariants (hypothesis), geodesic properties, custom maps, vectorised == single."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.config import EnvConfig, ScenarioConfig, TaskConfig
from hplan.envs.factory import make_env
from hplan.envs.layouts import BUILTIN_LAYOUTS, load_layout, parse_layout
from hplan.envs.point_physics import WALL_MARGIN
from hplan.envs.point_rooms import PointRoomsEnv
from hplan.envs.vector import PointRoomsVec
from hplan.errors import HplanError

FAST = settings(max_examples=15, deadline=None)
actions = st.lists(st.tuples(st.floats(-1.5, 1.5), st.floats(-1.5, 1.5)), min_size=1, max_size=40)
physics = st.fixed_dictionaries({
    "friction": st.floats(0.0, 0.9), "mass": st.floats(0.25, 4.0),
    "action_gain": st.floats(0.0, 0.5), "max_speed": st.floats(0.05, 0.95)})
layouts = st.sampled_from(sorted(BUILTIN_LAYOUTS))

CUSTOM_MAP = """
##########
#S...#...#
#....#.G.#
#..xx....#
#........#
##########
"""


@FAST
@given(layout=layouts, seed=st.integers(0, 2**31 - 1), acts=actions, phys=physics)
def test_point_never_ends_inside_a_wall_and_flags_are_exact(layout, seed, acts, phys):
    env = PointRoomsEnv(layout=layout, terminate_on_success=False, **phys)
    world = env.world
    _, info = env.reset(seed=seed)
    for action in acts:
        before = env.pos
        _, _, _, _, info = env.step(np.array(action))
        pos = env.pos
        assert world.layout.is_free(pos) and env.room_of(pos) is not None
        col, row = int(math.floor(pos[0])), int(math.floor(pos[1]))
        assert info["violations"]["restricted_zone"] == bool(world.restricted[row, col])
        expected_cost = 1.0 if (info["violations"]["restricted_zone"] or info["violations"]["wall_contact"]) else 0.0
        assert info["cost"] == expected_cost
        moved = pos - before
        if not info["violations"]["wall_contact"]:  # an unblocked move is exactly the new velocity
            np.testing.assert_allclose(moved, env._vel[0], atol=1e-9)
        assert np.hypot(*env._vel[0]) <= phys["max_speed"] + 1e-9


@FAST
@given(seed=st.integers(0, 2**31 - 1), acts=actions)
def test_same_seed_same_trajectory(seed, acts):
    runs = []
    for _ in range(2):
        env = PointRoomsEnv(layout="four_rooms_zones", obs_mode="both", terminate_on_success=False)
        obs, info = env.reset(seed=seed)
        trace = [obs["state"], obs["image"], info["goal"]]
        for action in acts:
            obs, reward, _, _, info = env.step(np.array(action))
            trace += [obs["state"], obs["image"], np.array([reward, info["cost"]])]
        runs.append(trace)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@FAST
@given(seed=st.integers(0, 2**20), n=st.integers(1, 5), data=st.data())
def test_vectorised_matches_single_env(seed, n, data):
    acts = data.draw(st.lists(st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=n, max_size=n),
                              min_size=1, max_size=25))
    kwargs = dict(layout="maze3x3", obs_mode="both", friction=0.1, max_speed=0.6, min_rooms_apart=2)
    vec = PointRoomsVec(n, **kwargs)
    singles = [PointRoomsEnv(**kwargs) for _ in range(n)]
    vobs, vinfo = vec.reset(seed=seed)
    for i, env in enumerate(singles):
        obs, info = env.reset(seed=seed + i)
        np.testing.assert_array_equal(vobs["state"][i], obs["state"])
        np.testing.assert_array_equal(vinfo["goal_obs"]["image"][i], info["goal_obs"]["image"])
    for step_actions in acts:
        vobs, vrew, vterm, _, vinfo = vec.step(np.array(step_actions))
        for i, env in enumerate(singles):
            obs, reward, terminated, _, info = env.step(np.array(step_actions[i]))
            np.testing.assert_array_equal(vobs["state"][i], obs["state"])
            np.testing.assert_array_equal(vobs["image"][i], obs["image"])
            assert (vrew[i], vterm[i], vinfo["cost"][i]) == (reward, terminated, info["cost"])
            for name in vec.violation_names:
                assert vinfo["violations"][name][i] == info["violations"][name]


def test_vectorised_per_env_physics_arrays():
    vec = PointRoomsVec(2, layout="two_rooms", mass=np.array([1.0, 4.0]))
    vec.reset(options={"start": np.array([[2.5, 4.5], [2.5, 4.5]]), "goal": np.array([[14.5, 4.5]] * 2)})
    for _ in range(5):
        _, _, _, _, info = vec.step(np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert info["pos"][0, 0] > info["pos"][1, 0] > 2.5  # the heavier point lags behind


@settings(max_examples=10, deadline=None)
@given(layout=layouts, seed=st.integers(0, 2**31 - 1))
def test_geodesic_distance_properties(layout, seed):
    env = PointRoomsEnv(layout=layout)
    rng = np.random.default_rng(seed)
    free = np.argwhere(~env.world.layout.wall)
    p, q = (free[rng.integers(len(free))][::-1] + rng.uniform(0.05, 0.95, 2) for _ in range(2))
    assert env.geodesic_distance(p, p) == 0.0
    d = env.geodesic_distance(p, q)
    assert d == env.geodesic_distance(q, p)
    assert d >= np.hypot(*(p - q)) - 1e-12
    assert env.geodesic_steps(p, q) >= d / env.max_speed - 1e-9


def test_geodesic_wall_forces_detour_and_off_floor_is_infinite():
    env = PointRoomsEnv(layout="two_rooms")
    p, q = np.array([8.5, 1.5]), np.array([10.5, 1.5])  # either side of the wall, doorway at rows 4-5
    euclid = 2.0
    # the path must go down to the doorway (y >= 4) and back up: at least 2 * hypot(1, 2.5)
    assert env.geodesic_distance(p, q) >= 2 * math.hypot(1.0, 2.5)
    assert env.geodesic_distance(p, q) > 2 * euclid
    same_room = env.geodesic_distance(np.array([1.5, 1.5]), np.array([5.5, 1.5]))
    assert same_room == pytest.approx(4.0, abs=0.05)  # straight line in open space
    assert env.geodesic_distance(np.array([9.5, 1.5]), q) == math.inf  # (9.5, 1.5) is wall
    with pytest.raises(HplanError):
        env.geodesic_steps(np.array([9.5, 1.5]), q)


def test_nominal_timescales():
    """A five-cell crossing takes ~10-15 steps; diagonally opposite four_rooms rooms ~40-60 steps apart."""
    env = PointRoomsEnv(layout="four_rooms", terminate_on_success=False)
    env.reset(seed=0, options={"start": [1.5, 4.5], "goal": [15.5, 15.5]})
    steps = 0
    while env.pos[0] < 6.5:
        env.step(np.array([1.0, 0.0]))
        steps += 1
    assert 10 <= steps <= 15
    assert 40 <= env.geodesic_steps([4.5, 4.5], [13.5, 13.5]) <= 60
    far = PointRoomsEnv(layout="four_rooms", start_room=0, goal_room=3)
    steps = [far.geodesic_steps(info["pos"], info["goal"]) for info in (far.reset(seed=s)[1] for s in range(30))]
    assert 35 <= float(np.mean(steps)) <= 55


def test_custom_ascii_map_through_the_factory():
    scenario = ScenarioConfig(name="custom", source="custom.toml",
                              env=EnvConfig(id="hplan/PointRooms-v0", obs_mode="state",
                                            kwargs={"layout": CUSTOM_MAP}), task=TaskConfig(goal_tolerance=0.3))
    env = make_env(scenario)
    inner = env.unwrapped
    layout = inner.world.layout
    assert (layout.height, layout.width, layout.num_rooms) == (6, 10, 2)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert (int(info["pos"][1]), int(info["pos"][0])) == (1, 1)  # the S cell
        assert (int(info["goal"][1]), int(info["goal"][0])) == (2, 7)  # the G cell
    env.reset(seed=0, options={"start": [3.5, 4.5], "goal": [8.5, 4.5]})
    entered = False
    for _ in range(20):
        _, _, _, _, info = env.step(np.array([0.0, -1.0]))
        entered |= info["violations"]["restricted_zone"]
        assert info["cost"] == float(info["violations"]["restricted_zone"] or info["violations"]["wall_contact"])
    assert entered  # walked up through the 'x' cells at (row 3, col 3-4)
    assert info["violations"]["wall_contact"]  # then pushed against the top wall
    assert inner.pos[1] == pytest.approx(1.0 + WALL_MARGIN)


@pytest.mark.parametrize("text,message", [
    ("#####\n#..#\n#####", "ragged"), ("#####\n#.?.#\n#####", "unknown character"), ("", "empty"),
    ("#####\n#.#.#\n#####", "unconnected"), ("#####\n#.###\n#####", "at least two"),
])
def test_bad_maps_raise_one_line_errors(text, message):
    with pytest.raises(HplanError, match=message) as err:
        parse_layout(text)
    assert "\n" not in str(err.value)


def test_builtin_room_structure():
    expected = {"two_rooms": 2, "four_rooms": 4, "four_rooms_zones": 4, "maze3x3": 9}
    for name, rooms in expected.items():
        layout = load_layout(name)
        assert layout.num_rooms == rooms
        assert (layout.room_distance >= 0).all()
    assert load_layout("maze3x3").room_distance.max() >= 6  # a maze, not an open grid
    assert load_layout("four_rooms_zones").restricted.any()
    with pytest.raises(HplanError, match="unknown layout"):
        load_layout("five_rooms")


def test_stress_hooks():
    env = PointRoomsEnv(layout="four_rooms", obs_mode="image")
    env.reset(seed=1)
    env.teleport([12.5, 12.5])
    assert env.room_of(env.pos) == 3 and not env._vel.any()
    env.push([0.3, 0.0])
    _, _, _, _, info = env.step(np.zeros(2))
    assert info["pos"][0] > 12.5
    before = info["goal_obs"].copy()
    env.set_goal([2.5, 2.5])
    _, _, _, _, info = env.step(np.zeros(2))
    assert np.array_equal(info["goal"], np.float32([2.5, 2.5]))
    assert not np.array_equal(before, info["goal_obs"])
    frame_at_goal = env.world.observe(np.array([[2.5, 2.5]]), np.zeros((1, 2)))[0]
    np.testing.assert_array_equal(info["goal_obs"], frame_at_goal)
    for hook, arg in ((env.teleport, [9.5, 5.5]), (env.set_goal, [0.2, 0.2]), (env.teleport, [float("nan"), 1.0])):
        with pytest.raises(HplanError):
            hook(arg)


def test_min_rooms_apart_and_fixed_rooms_are_honoured():
    env = PointRoomsEnv(layout="maze3x3", min_rooms_apart=5)
    distance = env.world.layout.room_distance
    for seed in range(20):
        _, info = env.reset(seed=seed)
        assert distance[env.room_of(info["pos"]), env.room_of(info["goal"])] >= 5
    env = PointRoomsEnv(layout="four_rooms", start_room=0, goal_room=3)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        assert (env.room_of(info["pos"]), env.room_of(info["goal"])) == (0, 3)
    with pytest.raises(HplanError, match="min_rooms_apart"):
        PointRoomsEnv(layout="two_rooms", min_rooms_apart=2)


def test_image_shows_walls_zones_and_agent_only():
    env = PointRoomsEnv(layout="four_rooms_zones", obs_mode="image", image_size=48)
    obs, info = env.reset(seed=0)
    palette = env.world.palette
    colours = {tuple(c) for c in obs.reshape(-1, 3)}
    assert {palette.wall, palette.floor, palette.restricted, palette.agent} <= colours
    background = env.world.renderer.background
    changed = np.argwhere((obs != background).any(-1))
    centre = env.world.renderer.pixel_of(info["pos"].reshape(1, 2).astype(np.float64))[0][::-1]
    assert len(changed) > 0 and np.abs(changed - centre).max() <= 2  # only the agent disc differs
