"""Exploration policies, offline collection, shards/manifest, resume and `hplan collect`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_support import run_cli  # noqa: E402
from hplan.config import ScenarioConfig, load_scenario
from hplan.data import shards as shards_module
from hplan.data.collect import collect, episode_seeds, plan_shards, run_batch
from hplan.data.policies import POLICIES, MiniGridExplore, MomentumWalk, PolicyContext, make_policy
from hplan.data.shards import MANIFEST, load_episodes, read_manifest
from hplan.data.sources import open_source
from hplan.errors import HplanError

BOX = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)


def scenario(name: str = "point_four_rooms", obs_mode: str | None = "state", **collect_overrides: Any) -> ScenarioConfig:
    overrides: dict[str, Any] = {"collect": collect_overrides}
    if obs_mode is not None:
        overrides["env"] = {"obs_mode": obs_mode}
    return load_scenario(name, overrides=overrides)


def shard_arrays(root: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for entry in read_manifest(root)["shards"]:
        with np.load(root / entry["file"]) as data:
            out[entry["file"]] = {k: data[k] for k in data.files}
    return out


def assert_same_shards(a: Path, b: Path) -> None:
    left, right = shard_arrays(a), shard_arrays(b)
    assert left.keys() == right.keys() and left
    for name in left:
        assert left[name].keys() == right[name].keys()
        for key in left[name]:
            np.testing.assert_array_equal(left[name][key], right[name][key], err_msg=f"{name}:{key}")


def room_changes(rooms: np.ndarray) -> np.ndarray:
    """Per episode: how many times the room index changes (a doorway crossing)."""
    return (np.diff(rooms, axis=1) != 0).sum(axis=1)


# ----------------------------------------------------------------------------- shard plan
@settings(max_examples=80, deadline=None)
@given(episodes=st.integers(1, 5000), per_shard=st.integers(1, 700))
def test_shard_plan_covers_every_episode_once(episodes: int, per_shard: int) -> None:
    plans = plan_shards(episodes, per_shard)
    assert [p.index for p in plans] == list(range(len(plans)))
    covered = [e for p in plans for e in range(p.first_episode, p.first_episode + p.episodes)]
    assert covered == list(range(episodes))
    assert all(1 <= p.episodes <= per_shard for p in plans)
    assert all(p.episodes == per_shard for p in plans[:-1])


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), episodes=st.integers(1, 30), steps=st.integers(1, 12),
       cuts=st.lists(st.integers(1, 29), max_size=4))
def test_dataset_statistics_do_not_depend_on_how_episodes_are_sharded(seed: int, episodes: int, steps: int,
                                                                       cuts: list[int]) -> None:
    from hplan.data.stats import aggregate, shard_counts

    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, steps + 1, episodes)
    valid = np.arange(steps)[None, :] < lengths[:, None]
    violations = rng.random((episodes, steps, 2)) < 0.2
    arrays = {"valid": valid, "violations": violations, "cost": violations.any(axis=2).astype(np.float32),
              "room": rng.integers(-1, 3, (episodes, steps + 1))}
    bounds = sorted({0, episodes, *[c for c in cuts if c < episodes]})
    parts = [shard_counts({k: v[a:b] for k, v in arrays.items()}, ["a", "b"], 3) for a, b in zip(bounds, bounds[1:])]
    whole = aggregate([shard_counts(arrays, ["a", "b"], 3)], ["a", "b"], 3)
    assert aggregate(parts, ["a", "b"], 3) == whole
    assert whole["transitions"] == int(valid.sum())
    bad = (violations.any(axis=2) & valid).any(axis=1)
    assert whole["violation_rate"] == pytest.approx(bad.mean())
    reached = arrays["room"][:, 1:][valid]
    assert whole["room_visits"] == [int((reached == r).sum()) for r in range(3)]


# ----------------------------------------------------------------------------- policies
spaces = st.one_of(
    st.builds(lambda n: gym.spaces.Discrete(n), st.integers(3, 9)),
    st.builds(lambda d, lo, w: gym.spaces.Box(lo, lo + w, (d,), dtype=np.float32),
              st.integers(1, 4), st.floats(-3, 0), st.floats(0.1, 4)),
)


@settings(max_examples=40, deadline=None)
@given(space=spaces, name=st.sampled_from(["random", "momentum"]), n=st.integers(1, 6), steps=st.integers(1, 30),
       seed=st.integers(0, 2**31 - 1), turn_prob=st.floats(0, 1), action_noise=st.sampled_from([0.0, 0.5, 2.0]))
def test_policies_stay_in_the_action_space(space: gym.Space, name: str, n: int, steps: int, seed: int,
                                           turn_prob: float, action_noise: float) -> None:
    policy = make_policy(name, space, turn_prob=turn_prob, action_noise=action_noise)
    policy.begin([np.random.default_rng([seed, i]) for i in range(n)], steps)
    blocked_rng = np.random.default_rng(seed)
    for t in range(steps):
        actions = policy.act(PolicyContext(t=t, blocked=blocked_rng.random(n) < 0.2))
        assert actions.shape[0] == n
        for action in actions:
            assert space.contains(int(action) if isinstance(space, gym.spaces.Discrete) else action)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_an_episode_acts_the_same_in_any_batch_slot(name: str) -> None:
    space = gym.spaces.Discrete(5) if name == "minigrid_explore" else BOX
    solo, batch = make_policy(name, space), make_policy(name, space)
    solo.begin([np.random.default_rng(42)], 25)
    batch.begin([np.random.default_rng(1), np.random.default_rng(2), np.random.default_rng(42)], 25)
    for t in range(25):
        blocked = np.array([t % 7 == 3])
        interact = np.array([3 if t % 5 == 0 else -1])
        expert = np.array([[np.cos(t), np.sin(t)]])
        alone = solo.act(PolicyContext(t=t, blocked=blocked, interact=interact, expert=expert))
        together = batch.act(PolicyContext(t=t, blocked=np.r_[False, True, blocked],
                                           interact=np.r_[-1, 4, interact], expert=np.r_[[[1.0, 0.0], [0.0, 1.0]], expert]))
        np.testing.assert_array_equal(alone[0], together[2])


def test_momentum_keeps_its_heading_until_a_turn_or_a_wall() -> None:
    steady = MomentumWalk(BOX, turn_prob=0.0)
    steady.begin([np.random.default_rng(s) for s in range(4)], 40)
    actions = np.stack([steady.act(PolicyContext(t=t)) for t in range(40)], axis=1)
    assert np.all(actions == actions[:, :1])  # no turns: the same action every step
    assert np.all(np.linalg.norm(actions, axis=2) >= 0.5 - 1e-6)  # and it pushes, not jitters
    bumped = MomentumWalk(BOX, turn_prob=0.0)
    bumped.begin([np.random.default_rng(s) for s in range(4)], 40)
    before = [bumped.act(PolicyContext(t=t)) for t in range(10)][-1]
    after = bumped.act(PolicyContext(t=10, blocked=np.array([True, False, True, False])))
    assert not np.allclose(after[0], before[0]) and not np.allclose(after[2], before[2])
    np.testing.assert_array_equal(after[[1, 3]], before[[1, 3]])
    sliding = MomentumWalk(BOX, turn_prob=0.0)  # with positions: only a contact without progress turns
    sliding.begin([np.random.default_rng(s) for s in range(2)], 40)
    first = sliding.act(PolicyContext(t=0, pos=np.zeros((2, 2))))
    moved = np.array([[0.3, 0.0], [0.01, 0.0]])  # env 0 slides along the wall, env 1 is stuck
    second = sliding.act(PolicyContext(t=1, blocked=np.array([True, True]), pos=moved))
    np.testing.assert_array_equal(second[0], first[0])
    assert not np.allclose(second[1], first[1])
    discrete = MomentumWalk(gym.spaces.Discrete(4), turn_prob=1.0)
    discrete.begin([np.random.default_rng(0)], 200)
    values = np.array([discrete.act(PolicyContext(t=t))[0] for t in range(200)])
    assert set(values.tolist()) == {0, 1, 2, 3} and (values[1:] != values[:-1]).mean() > 0.6


def test_minigrid_explore_interacts_when_facing_a_key_or_door() -> None:
    policy = MiniGridExplore(gym.spaces.Discrete(5), interact_prob=1.0)
    policy.begin([np.random.default_rng(s) for s in range(200)], 50)
    walk = np.concatenate([policy.act(PolicyContext(t=t, interact=np.full(200, -1))) for t in range(50)])
    assert set(walk.tolist()) <= {0, 1, 2}
    assert 0.55 < (walk == 2).mean() < 0.65  # forward-biased: 60 % forward
    facing = policy.act(PolicyContext(t=0, interact=np.where(np.arange(200) % 2 == 0, 3, 4)))
    np.testing.assert_array_equal(facing, np.where(np.arange(200) % 2 == 0, 3, 4))
    with pytest.raises(HplanError, match="discrete actions"):
        MiniGridExplore(BOX)


def test_unknown_policy_is_an_error() -> None:
    with pytest.raises(HplanError, match="unknown exploration policy 'greedy'"):
        make_policy("greedy", BOX)


def test_momentum_walk_crosses_doorways_in_four_rooms() -> None:
    crossings = {}
    for name in ("random", "momentum"):
        config = scenario(policy=name, num_envs=200, steps_per_episode=100)
        source = open_source(config, 200, 100)
        rooms = run_batch(config, source, 0, 200)["room"]
        crossings[name] = (room_changes(rooms) > 0).mean()
    assert crossings["momentum"] >= 0.4
    assert crossings["momentum"] > crossings["random"] + 0.25


# ----------------------------------------------------------------------------- collection
def test_collected_point_rooms_dataset_is_complete_and_consistent(tmp_path: Path) -> None:
    config = scenario(episodes=24, steps_per_episode=60, episodes_per_shard=10, num_envs=7)
    result = collect(config, tmp_path / "d")
    manifest = read_manifest(tmp_path / "d")
    assert manifest["complete"] and manifest["episodes"] == 24 and result.shards_written == 3
    assert [s["episodes"] for s in manifest["shards"]] == [10, 10, 4]
    assert manifest["env_id"] == "hplan/PointRooms-v0" and manifest["obs_mode"] == "state"
    assert manifest["violation_names"] == ["wall_contact", "restricted_zone"]
    assert manifest["state_names"] == ["x", "y", "vx", "vy"]
    assert manifest["action_spec"]["dim"] == 2 and not manifest["action_spec"]["discrete"]
    assert manifest["versions"]["numpy"] == np.__version__
    assert manifest["policy"]["name"] == "momentum" and manifest["steps_per_episode"] == 60

    data = load_episodes(tmp_path / "d")
    assert data.num_episodes == 24 and data.steps_per_episode == 60
    assert data["obs"].shape == (24, 61, 4) and data["action"].shape == (24, 60, 2)
    assert data["violations"].shape == (24, 60, 2) and data["valid"].all()
    np.testing.assert_array_equal(data["obs"], data["true_state"])  # state obs is the true state
    assert np.abs(data["action"]).max() <= 1.0
    np.testing.assert_array_equal(data["cost"] == 1.0, data["violations"].any(axis=2))
    # rooms stored per observation agree with the layout, and the manifest's coverage with the rooms
    from hplan.envs.factory import make_vec_env

    world = make_vec_env(config, 1).world
    np.testing.assert_array_equal(data["room"], world.rooms_of(data["pos"].reshape(-1, 2)).reshape(24, 61))
    visits = np.bincount(data["room"][:, 1:].ravel(), minlength=4)
    assert manifest["room_visits"] == visits.tolist() and manifest["rooms_visited"] == 4
    assert sum(manifest["room_coverage"].values()) == pytest.approx(1.0)
    assert manifest["violation_rate"] == pytest.approx(data["cost"].any(axis=1).mean())
    # starts are spread over the whole map, not sampled by the task
    assert len(set(data["room"][:, 0].tolist())) == 4


def test_image_dataset_records_uint8_frames(tmp_path: Path) -> None:
    config = scenario(obs_mode="image", episodes=3, steps_per_episode=5, num_envs=3)
    collect(config, tmp_path)
    data = load_episodes(tmp_path)
    assert data["obs"].shape == (3, 6, 64, 64, 3) and data["obs"].dtype == np.uint8
    assert read_manifest(tmp_path)["obs_shape"] == [64, 64, 3]
    assert (data["obs"][:, 1:] != data["obs"][:, :-1]).any(axis=(2, 3, 4)).mean() > 0.5  # the point moves


def test_batching_and_extension_do_not_change_the_data(tmp_path: Path) -> None:
    collect(scenario(episodes=10, steps_per_episode=20, episodes_per_shard=4, num_envs=2), tmp_path / "a")
    collect(scenario(episodes=10, steps_per_episode=20, episodes_per_shard=4, num_envs=5), tmp_path / "b")
    assert_same_shards(tmp_path / "a", tmp_path / "b")
    small = scenario(episodes=6, steps_per_episode=20, episodes_per_shard=4, num_envs=3)
    collect(small, tmp_path / "c")
    result = collect(small, tmp_path / "c", episodes=10)  # grows 6 -> 10: shard 1 is redone, shard 2 added
    assert (result.shards_skipped, result.shards_written) == (1, 2)
    assert_same_shards(tmp_path / "a", tmp_path / "c")


def test_interrupted_collection_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    config = scenario(episodes=9, steps_per_episode=30, episodes_per_shard=3, num_envs=2)
    collect(config, tmp_path / "full")

    class Interrupt(Exception):
        pass

    def stop_after_first(index: int, entry: dict) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        collect(config, tmp_path / "cut", on_shard=stop_after_first)
    manifest = read_manifest(tmp_path / "cut")
    assert not manifest["complete"] and [s["index"] for s in manifest["shards"]] == [0]
    assert sorted(p.name for p in (tmp_path / "cut" / "shards").iterdir()) == ["shard-00000.npz"]

    result = collect(config, tmp_path / "cut")
    assert (result.shards_skipped, result.shards_written) == (1, 2)
    assert_same_shards(tmp_path / "full", tmp_path / "cut")
    full, cut = read_manifest(tmp_path / "full"), read_manifest(tmp_path / "cut")
    assert cut["complete"] and cut["room_visits"] == full["room_visits"] and cut["episodes"] == 9


def test_a_killed_collect_process_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """SIGKILL the real command mid-run (no clean-up code runs), then re-run it."""
    import os
    import signal
    import subprocess
    import time

    path = tmp_path / "s.toml"
    text = Path(load_scenario("point_four_rooms").source).read_text()
    path.write_text(text.replace("episodes_per_shard = 50", "episodes_per_shard = 2")
                        .replace("num_envs = 64", "num_envs = 2").replace("steps_per_episode = 100", "steps_per_episode = 40"))
    args = [sys.executable, "-m", "hplan", "collect", str(path), "--episodes", "30", "--out"]
    proc = subprocess.Popen([*args, str(tmp_path / "cut")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest_path = tmp_path / "cut" / MANIFEST
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest_path.exists() and json.loads(manifest_path.read_text() or "{}").get("shards"):
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the collection finished before it could be killed"
    listed = read_manifest(tmp_path / "cut")
    assert not listed["complete"] and 1 <= len(listed["shards"]) < 15
    for entry in listed["shards"]:  # everything listed is a complete, loadable shard
        with np.load(tmp_path / "cut" / entry["file"]) as shard:
            assert shard["obs"].shape[:2] == (entry["episodes"], 41) and entry["episodes"] == 2
    subprocess.run([*args, str(tmp_path / "cut")], check=True, capture_output=True, timeout=300)
    subprocess.run([*args, str(tmp_path / "full")], check=True, capture_output=True, timeout=300)
    assert_same_shards(tmp_path / "full", tmp_path / "cut")
    assert not list((tmp_path / "cut" / "shards").glob(".*"))  # no temp files left behind


def test_a_crash_while_writing_leaves_no_visible_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = scenario(episodes=4, steps_per_episode=10, episodes_per_shard=2, num_envs=2)
    real_savez = np.savez
    calls = {"n": 0}

    def savez_then_die(handle: Any, **arrays: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # second shard: write part of the file, then "crash"
            handle.write(b"PK\x03\x04 half a zip")
            raise OSError("disk full")
        real_savez(handle, **arrays)

    monkeypatch.setattr(shards_module.np, "savez", savez_then_die)
    with pytest.raises(OSError, match="disk full"):
        collect(config, tmp_path)
    monkeypatch.setattr(shards_module.np, "savez", real_savez)
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["shard-00000.npz"]
    assert [s["file"] for s in read_manifest(tmp_path)["shards"]] == ["shards/shard-00000.npz"]
    assert load_episodes(tmp_path).num_episodes == 2
    collect(config, tmp_path)
    assert load_episodes(tmp_path).num_episodes == 4


def test_leftover_temp_files_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    config = scenario(episodes=2, steps_per_episode=5, episodes_per_shard=1, num_envs=2)
    collect(config, tmp_path)
    junk = tmp_path / "shards" / ".shard-00001.npz.abc123.tmp"
    junk.write_bytes(b"partial")
    collect(config, tmp_path)
    assert not junk.exists()


def test_a_directory_with_other_settings_is_refused(tmp_path: Path) -> None:
    collect(scenario(policy="random", episodes=2, steps_per_episode=5), tmp_path)
    before = (tmp_path / MANIFEST).read_text()
    with pytest.raises(HplanError, match=r"manifest.json: settings.collect.policy: .*'random'.*'momentum'"):
        collect(scenario(policy="momentum", episodes=2, steps_per_episode=5), tmp_path)
    with pytest.raises(HplanError, match=r"settings.seed"):
        collect(load_scenario("point_four_rooms", overrides={"seed": 5, "env": {"obs_mode": "state"},
                                                             "collect": {"policy": "random", "episodes": 2,
                                                                         "steps_per_episode": 5}}), tmp_path)
    assert (tmp_path / MANIFEST).read_text() == before


def test_a_dataset_from_before_a_new_setting_matches_it_at_its_default(tmp_path: Path) -> None:
    """A field added to hplan later (``task.task_id``) defaults to the old behaviour: a dataset whose
    manifest predates it still resumes and is reused; asking for another value is refused."""
    from hplan.data.manifest import open_existing, settings_fingerprint

    base = scenario(policy="random", episodes=2, steps_per_episode=5)
    collect(base, tmp_path)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    del manifest["settings"]["task"]["task_id"]  # as written before the field existed
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    assert open_existing(tmp_path, settings_fingerprint(base))["complete"]
    other = load_scenario("point_four_rooms", overrides={"env": {"obs_mode": "state"}, "task": {"task_id": 3},
                                                         "collect": {"policy": "random", "episodes": 2,
                                                                     "steps_per_episode": 5}})
    with pytest.raises(HplanError, match=r"settings.task.task_id: .*None.*3"):
        open_existing(tmp_path, settings_fingerprint(other))


def test_a_directory_that_is_not_a_dataset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(HplanError, match="not an hplan dataset"):
        collect(scenario(episodes=1, steps_per_episode=5), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_early_termination_marks_the_rest_of_the_episode_invalid(tmp_path: Path) -> None:
    config = scenario("minigrid_lavacrossing", obs_mode=None, episodes=12, steps_per_episode=40, num_envs=4)
    collect(config, tmp_path)
    data = load_episodes(tmp_path)
    valid = data["valid"]
    assert (~valid).any(), "random walks in LavaCrossing should end early"
    assert np.all(np.diff(valid.astype(int), axis=1) <= 0)  # once invalid, always invalid
    lengths = valid.sum(axis=1)
    for e, length in enumerate(lengths):
        if length == valid.shape[1]:
            continue
        assert not data["cost"][e, length:].any() and not data["reward"][e, length:].any()
        frozen = data["obs"][e, length:]
        assert (frozen == frozen[0]).all()  # the last observation repeats
        assert data["cost"][e, length - 1] == 1.0 or data["reward"][e, length - 1] > 0  # lava or goal ended it
    manifest = read_manifest(tmp_path)
    assert manifest["transitions"] == int(valid.sum())
    assert manifest["violation_names"] == ["lava"] and manifest["action_spec"]["n"] == 3


def test_doorkey_exploration_picks_up_keys_and_opens_doors(tmp_path: Path) -> None:
    results = {}
    for prob in (0.0, 0.8):
        config = load_scenario("minigrid_doorkey", overrides={"collect": {"interact_prob": prob, "num_envs": 4}})
        source = open_source(config, 16, config.collect.steps_per_episode)
        state = run_batch(config, source, 0, 16)["true_state"]
        results[prob] = (state[..., 3].max(axis=1).mean(), state[..., 4].max(axis=1).mean())  # key, door
        source.close()
    assert results[0.0] == (0.0, 0.0)  # MiniGrid's walk alone never picks up or toggles
    assert results[0.8][0] >= 0.5 and results[0.8][1] >= 0.25


def test_lavacrossing_exploration_turns_away_from_lava_but_not_always() -> None:
    lava, valid = {}, {}
    for prob in (0.0, 0.8):
        config = load_scenario("minigrid_lavacrossing", overrides={"collect": {"interact_prob": prob}})
        source = open_source(config, 24, config.collect.steps_per_episode)
        arrays = run_batch(config, source, 0, 24)
        lava[prob], valid[prob] = arrays["cost"].any(axis=1).mean(), arrays["valid"].mean()
    assert lava[0.8] < lava[0.0] and valid[0.8] > valid[0.0] + 0.15
    assert lava[0.8] > 0.1  # the guardrail heads still get lava examples


def test_minigrid_fourrooms_data_reports_room_coverage(tmp_path: Path) -> None:
    config = scenario("minigrid_fourrooms", obs_mode="state", episodes=8, steps_per_episode=40, num_envs=4)
    collect(config, tmp_path)
    data, manifest = load_episodes(tmp_path), read_manifest(tmp_path)
    x, y = data["pos"][..., 0], data["pos"][..., 1]
    inside = (x != 9) & (y != 9)  # FourRooms: 19x19, walls through the middle row and column
    np.testing.assert_array_equal(data["room"][inside], ((x > 9) + 2 * (y > 9))[inside])
    assert manifest["num_rooms"] == 4 and manifest["rooms_visited"] >= 2
    assert sum(manifest["room_visits"]) == manifest["transitions"]


def test_seeking_exploration_pushes_the_block() -> None:
    moved = {}
    for prob in (0.0, 0.5):
        config = load_scenario("pusher", overrides={"collect": {"seek_prob": prob, "steps_per_episode": 50}})
        source = open_source(config, 6, 50)
        state = run_batch(config, source, 0, 6)["true_state"]
        source.close()
        block = state[..., 2:4]
        moved[prob] = np.linalg.norm(block[:, -1] - block[:, 0], axis=1)
    assert (moved[0.5] > 0.05).mean() >= 0.5  # most episodes push the block somewhere
    assert moved[0.5].mean() > 3 * moved[0.0].mean()


def test_episode_seeds_are_derived_per_episode() -> None:
    seeds_a, _ = episode_seeds(0, 0, 6)
    seeds_b, _ = episode_seeds(0, 4, 2)
    assert seeds_a[4:] == seeds_b and len(set(seeds_a)) == 6
    assert episode_seeds(1, 0, 1)[0] != seeds_a[:1]


# ----------------------------------------------------------------------------- CLI
def test_collect_command_writes_a_dataset_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "two.toml"
    text = Path(load_scenario("point_two_rooms").source).read_text()
    path.write_text(text.replace("steps_per_episode = 100", "steps_per_episode = 30"))
    out = tmp_path / "data"
    code, stdout, err = run_cli(monkeypatch, capsys, "collect", str(path), "--episodes", "5", "--out", str(out))
    assert code == 0, err
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["episodes"] == 5 and manifest["transitions"] == 150 and manifest["complete"]
    assert "5 (1 shards written, 0 already complete)" in stdout
    assert f"{manifest['rooms_visited']}/2 rooms visited" in stdout and "transitions/s" in stdout
    shard = out / manifest["shards"][0]["file"]
    stamp = shard.stat().st_mtime_ns
    code, stdout, _ = run_cli(monkeypatch, capsys, "collect", str(path), "--episodes", "5", "--out", str(out))
    assert code == 0 and "0 shards written, 1 already complete" in stdout
    assert shard.stat().st_mtime_ns == stamp


def test_collect_command_reports_bad_input_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "b"\n[env]\nid = "hplan/PointRooms-v0"\n[env.kwargs]\nlayout = "nine_rooms"\n')
    code, stdout, err = run_cli(monkeypatch, capsys, "collect", str(path), "--out", str(tmp_path / "d"))
    assert code == 2 and stdout == ""
    assert err.strip().startswith(f"error: {path}: env.kwargs.layout: unknown layout")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_momentum_action_noise_jitters_every_step_around_the_same_heading() -> None:
    """The jitter varies the action step to step (so the data show what an action does) while the
    heading persists; without it the random streams are exactly the old ones."""
    plain, noisy = MomentumWalk(BOX, turn_prob=0.0), MomentumWalk(BOX, turn_prob=0.0, action_noise=0.3)
    for policy in (plain, noisy):
        policy.begin([np.random.default_rng(s) for s in range(64)], 40)
    a = np.stack([plain.act(PolicyContext(t=t)) for t in range(40)], axis=1)
    b = np.stack([noisy.act(PolicyContext(t=t)) for t in range(40)], axis=1)
    assert np.all(a == a[:, :1])
    assert np.all(np.abs(np.diff(b, axis=1)).max(axis=(1, 2)) > 0.05)  # every episode jitters
    cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert np.median(cosine) > 0.8  # ... around the heading it keeps
