"""Generated room-mazes: every spec parses into its rooms, a seed fixes the maze, envs switch maze per episode."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hplan.envs.layouts import parse_layout
from hplan.envs.maze_generator import MazeSpec, always_free, generate_room_maze, maze_spec
from hplan.envs.point_rooms import PointRoomsEnv
from hplan.envs.vector import PointRoomsVec
from hplan.errors import HplanError

SPECS = st.builds(lambda rows, cols, room, door, loops: MazeSpec(rows, cols, room, min(door, room - 2), loops),
                  st.integers(1, 5), st.integers(2, 5), st.integers(4, 8), st.integers(1, 3), st.floats(0.0, 1.0))


@settings(max_examples=60, deadline=None)
@given(spec=SPECS, seed=st.integers(0, 2**40))
def test_every_maze_parses_into_its_rooms_all_connected(spec: MazeSpec, seed: int) -> None:
    text = generate_room_maze(spec, seed)
    layout = parse_layout(text)  # raises if any floor is cut off
    assert layout.num_rooms == spec.rows * spec.cols
    assert (layout.width, layout.height) == (spec.width, spec.height)
    assert generate_room_maze(spec, seed) == text
    free = ~layout.wall
    assert free[always_free(spec)].all()  # room insides are floor in every maze
    # a spanning tree joins all rooms: at least rooms - 1 doorways; no loops means exactly a tree
    if spec.loops == 0.0:
        assert (layout.room_distance.max() >= 1) and (layout.room_distance >= 0).all()


def test_seeds_give_different_mazes_and_loops_add_shortcuts() -> None:
    spec = MazeSpec(rows=3, cols=3)
    mazes = {generate_room_maze(spec, seed) for seed in range(50)}
    assert len(mazes) == 50
    tree = parse_layout(generate_room_maze(MazeSpec(loops=0.0), 7)).room_distance
    loopy = parse_layout(generate_room_maze(MazeSpec(loops=1.0), 7)).room_distance
    assert loopy.max() < tree.max()  # every wall opened: corner to corner is the Manhattan distance
    assert loopy.max() == 4


def test_bad_maze_settings_are_refused_naming_the_field() -> None:
    with pytest.raises(HplanError, match="maze.door"):
        maze_spec("generated", {"room": 4, "door": 3})
    with pytest.raises(HplanError, match="maze.rooms"):
        maze_spec("generated", {"rooms": 3})
    with pytest.raises(HplanError, match="only used with layout"):
        PointRoomsEnv(layout="four_rooms", maze={"rows": 2})


def test_env_plays_a_new_maze_each_episode_and_the_vector_env_matches_it() -> None:
    env = PointRoomsEnv(layout="generated", obs_mode="image", maze={"rows": 2, "cols": 3})
    first, _ = env.reset(seed=11)
    walls_first = env.world.layout.wall.copy()
    env.reset(seed=12)
    assert not np.array_equal(env.world.layout.wall, walls_first)
    again, _ = env.reset(seed=11)
    assert np.array_equal(again, first) and np.array_equal(env.world.layout.wall, walls_first)
    same_maze, _ = env.reset(seed=99, options={"layout_seed": 11})
    assert np.array_equal(env.world.layout.wall, walls_first)
    vec = PointRoomsVec(3, layout="generated", obs_mode="image", maze={"rows": 2, "cols": 3})
    obs, _ = vec.reset(seed=[11, 12, 13])  # the batch plays the first env's maze
    assert np.array_equal(vec.world.layout.wall, walls_first)
    assert np.array_equal(obs[0], first)
    obs, _ = vec.reset(seed=[99, 12, 13], options={"layout_seed": 11})
    assert np.array_equal(obs[0], same_maze)
    rng = np.random.default_rng(0)
    for _ in range(50):  # every sampled start and goal lies on the floor of its maze
        _, info = vec.reset(seed=[int(s) for s in rng.integers(0, 2**31, 3)])
        for point in (*info["pos"], *info["goal"]):
            assert vec.world.layout.is_free(point)


def test_held_out_diagnostics_use_no_single_map_for_mazes_that_change_per_episode() -> None:
    from hplan.diagnostics.heldout import layout_geodesic

    assert layout_geodesic(PointRoomsEnv(layout="generated")) is None
    fixed = PointRoomsEnv(layout="four_rooms")
    assert layout_geodesic(fixed) == fixed.geodesic_steps
    # per episode, the env answers for the maze it is playing
    env = PointRoomsEnv(layout="generated", min_rooms_apart=2)
    _, info = env.reset(seed=4)
    assert env.geodesic_steps(info["pos"], info["goal"]) == env.world.geodesic_steps(info["pos"], info["goal"])
