"""Scenario file parsing: every malformed input is one ConfigError naming the file and the field."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.config import (CollectConfig, ModelConfig, ScenarioConfig, SCENARIO_DIR, TrainConfig, builtin_scenarios,
                          load_scenario, resolve_scenario_path)
from hplan.configio import from_mapping, to_mapping
from hplan.errors import ConfigError

VALID = """
name = "t"
seed = 3
[env]
id = "hplan/PointRooms-v0"
obs_mode = "state"
[env.kwargs]
layout = "two_rooms"
[collect]
episodes = 10
steps_per_episode = 20
"""

# (what is wrong, text appended/replaced, expected field, expected words in the message)
STRUCTURAL_CASES = [
    ("unknown top-level key", "colour = 1\n" + VALID, "colour", "unknown key"),
    ("unknown nested key", VALID.replace("episodes = 10", "episodez = 10"), "collect.episodez", "unknown key"),
    ("wrong type", VALID.replace("episodes = 10", 'episodes = "many"'), "collect.episodes", "expected an integer"),
    ("bool is not an int", VALID.replace("seed = 3", "seed = true"), "seed", "expected an integer"),
    ("out of range", VALID.replace("episodes = 10", "episodes = 0"), "collect.episodes", "must be >= 1"),
    ("probability above 1", VALID + "turn_prob = 1.5\n", "collect.turn_prob", "must be <= 1"),
    ("bad literal", VALID.replace('obs_mode = "state"', 'obs_mode = "pixels"'), "env.obs_mode", "must be one of"),
    ("unknown policy", VALID + 'policy = "greedy"\n', "collect.policy", "must be one of"),
    ("section is not a table", VALID.replace("seed = 3", "seed = 3\ntask = 5"), "task", "expected a table"),
    ("missing env id", VALID.replace('id = "hplan/PointRooms-v0"', ""), "env.id", "missing required key"),
    ("missing env section", "name = 'x'\n", "env", "missing required key"),
]


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_file_parses_into_frozen_dataclasses(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, VALID))
    assert scenario.seed == 3 and scenario.env.kwargs == {"layout": "two_rooms"}
    assert scenario.collect.episodes == 10 and scenario.collect.policy == CollectConfig().policy
    assert scenario.source.endswith("s.toml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        scenario.seed = 4  # type: ignore[misc]


@pytest.mark.parametrize("case, text, field, words", STRUCTURAL_CASES, ids=[c[0] for c in STRUCTURAL_CASES])
def test_structural_errors_name_file_and_field(tmp_path: Path, case: str, text: str, field: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    err = info.value
    assert err.file == str(path) and err.field == field, case
    assert words in err.message
    assert str(err).startswith(f"{path}: {field}: ") and "\n" not in str(err)


def test_bad_toml_missing_file_and_directory(tmp_path: Path) -> None:
    bad = write(tmp_path, "name = \n[env\n")
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        load_scenario(bad)
    assert info.value.file == str(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_scenario(tmp_path / "nope.toml")
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_scenario(folder)


def test_builtin_names_resolve_and_typos_list_the_builtins() -> None:
    assert resolve_scenario_path("point_four_rooms") == SCENARIO_DIR / "point_four_rooms.toml"
    with pytest.raises(ConfigError, match="built-ins: .*point_four_rooms") as info:
        load_scenario("point_four_room")
    assert info.value.file == "point_four_room"


def test_builtin_scenarios_are_the_files_on_disk() -> None:
    names = builtin_scenarios()
    assert names == sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))
    assert {"point_four_rooms", "point_custom_map", "cartpole"} <= set(names)


def test_overrides_merge_deeply(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, VALID), overrides={"collect": {"episodes": 7}})
    assert scenario.collect.episodes == 7 and scenario.collect.steps_per_episode == 20
    with pytest.raises(ConfigError, match="collect.episodes: must be >= 1"):
        load_scenario(write(tmp_path, VALID), overrides={"collect": {"episodes": 0}})


collect_values = st.builds(
    dict,
    episodes=st.integers(1, 10_000), steps_per_episode=st.integers(1, 1000),
    policy=st.sampled_from(["random", "momentum", "minigrid_explore"]), num_envs=st.integers(1, 4096),
    episodes_per_shard=st.integers(1, 512), start=st.sampled_from(["anywhere", "task"]),
    turn_prob=st.floats(0.0, 1.0), interact_prob=st.floats(0.0, 1.0),
)


@settings(max_examples=60, deadline=None)
@given(collect=collect_values, seed=st.integers(0, 2**31 - 1), obs_mode=st.sampled_from(["state", "image", "both"]))
def test_to_mapping_round_trips(collect: dict, seed: int, obs_mode: str) -> None:
    data = {"name": "rt", "seed": seed, "env": {"id": "hplan/PointRooms-v0", "obs_mode": obs_mode,
                                                "kwargs": {"layout": "four_rooms"}}, "collect": collect}
    scenario = from_mapping(ScenarioConfig, data, source="<test>")
    again = from_mapping(ScenarioConfig, to_mapping(scenario), source="<test>")
    assert again == scenario


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.integers(-5, 0), st.floats(-1e6, 0.0)))
def test_nonpositive_episode_counts_are_always_rejected(value: float) -> None:
    with pytest.raises(ConfigError, match="collect.episodes"):
        from_mapping(ScenarioConfig, {"name": "x", "env": {"id": "a"}, "collect": {"episodes": value}}, source="f")


@settings(max_examples=40, deadline=None)
@given(dropped=st.sampled_from(sorted(to_mapping(ModelConfig()))), changed=st.booleans())
def test_settings_recorded_before_a_field_existed_match_it_at_its_default(dropped: str, changed: bool) -> None:
    """A run or dataset recorded before a field existed is the same as one with that field at its
    default, and never the same as one with another value (a new field keeps the old behaviour)."""
    from hplan.configio import defaults_of, with_new_defaults

    current = {"model": to_mapping(ModelConfig()), "train": to_mapping(TrainConfig())}
    recorded = {section: dict(fields) for section, fields in current.items()}
    del recorded["model"][dropped]
    default = current["model"][dropped]
    if changed:
        other = not default if isinstance(default, bool) else (
            default + 1 if isinstance(default, (int, float)) else f"{default}-other")
        current = {**current, "model": {**current["model"], dropped: other}}
    merged = with_new_defaults(recorded, current, defaults_of(model=ModelConfig()))
    assert (merged["model"] == current["model"]) is (not changed)
    assert merged["model"].get(dropped, "absent") == ("absent" if changed else default)
