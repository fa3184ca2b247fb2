"""Built-in scenario files and `hplan scenario check|list`: valid files pass, every malformed
input is exactly one line `error: <file>: <field>: <message>` on stderr with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cli_support import run_cli  # noqa: E402
from hplan.config import SCENARIO_DIR, builtin_scenarios, load_scenario
from hplan.data.validate import validate_scenario
from hplan.errors import ConfigError

BUILTINS = builtin_scenarios()
EXPECTED = {"point_two_rooms", "point_four_rooms", "point_four_rooms_zones", "point_maze3x3", "point_custom_map",
            "minigrid_fourrooms", "minigrid_doorkey", "minigrid_lavacrossing", "pusher", "cartpole"}

TEMPLATE = """name = "t"
[env]
id = "{id}"
obs_mode = "state"
[env.kwargs]
{kwargs}
[task]
{task}
[collect]
{collect}
"""

# (case, env id, [env.kwargs] lines, [task] lines, [collect] lines, field, words in the message)
SEMANTIC_CASES = [
    ("unknown env id", "hplan/Nope-v0", "", "", "", "env.id", "unknown env id"),
    ("ragged layout", "hplan/PointRooms-v0", "layout = '''\n#####\n#..\n#####\n'''", "", "", "env.kwargs.layout",
     "ragged"),
    ("bad layout character", "hplan/PointRooms-v0", "layout = '''\n#####\n#.?.#\n#####\n'''", "", "",
     "env.kwargs.layout", "unknown character '?'"),
    ("unknown layout name", "hplan/PointRooms-v0", "layout = 'five_rooms'", "", "", "env.kwargs.layout",
     "unknown layout"),
    ("layout of the wrong type", "hplan/PointRooms-v0", "layout = 3", "", "", "env.kwargs.layout", "got int"),
    ("unknown env keyword", "hplan/PointRooms-v0", "wobble = 3", "", "", "env.kwargs.wobble", "unknown keyword"),
    ("physics out of range", "hplan/PointRooms-v0", "friction = 3.0", "", "", "env.kwargs.friction", "out of range"),
    ("room index out of range", "hplan/PointRooms-v0", "layout = 'four_rooms'", "start_room = 7", "",
     "task.start_room", "has 4 rooms"),
    ("rooms too far apart", "hplan/PointRooms-v0", "layout = 'two_rooms'", "min_rooms_apart = 3", "",
     "task.min_rooms_apart", "at most 1 apart"),
    ("task field the env lacks", "hplan/MiniGridFourRooms-v0", "", "min_rooms_apart = 1", "start = 'task'",
     "task.min_rooms_apart", "does not support"),
    ("policy that does not fit the actions", "hplan/PointRooms-v0", "", "", "policy = 'minigrid_explore'",
     "collect.policy", "discrete actions"),
    ("seeking without an object", "hplan/PointRooms-v0", "", "", "seek_prob = 0.5", "collect.seek_prob",
     "object to push"),
    ("start anywhere without a map", "hplan/MiniGridDoorKey-v0", "", "", "start = 'anywhere'", "collect.start",
     "needs a PointRooms map"),
]
STRUCTURAL_CASES = [  # (case, file text, field)
    ("unknown key", TEMPLATE.format(id="hplan/PointRooms-v0", kwargs="", task="", collect="episodez = 3"),
     "collect.episodez"),
    ("wrong type", TEMPLATE.format(id="hplan/PointRooms-v0", kwargs="", task="", collect="episodes = 'x'"),
     "collect.episodes"),
    ("out of range", TEMPLATE.format(id="hplan/PointRooms-v0", kwargs="", task="", collect="num_envs = 0"),
     "collect.num_envs"),
    ("bad TOML", "name = \n[env\n", ""),
]


def assert_one_error_line(err: str, path: Path | str, field: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    where = f"{path}: {field}: " if field else f"{path}: "
    assert lines[0].startswith(f"error: {where}"), lines[0]


# ----------------------------------------------------------------------------- built-in files
def test_all_built_in_scenarios_exist_and_names_match_files() -> None:
    assert EXPECTED <= set(BUILTINS)
    for name in BUILTINS:
        scenario = load_scenario(name)
        assert scenario.name == name, f"{name}.toml declares name={scenario.name!r}"
        assert scenario.description, f"{name}.toml has no description"
        text = (SCENARIO_DIR / f"{name}.toml").read_text()
        for section in ("[env]", "[collect]", "[model]", "[train]", "[planner]", "[guardrails]"):
            assert section in text, f"{name}.toml lacks {section}"
        assert text.count("#") >= 3, f"{name}.toml has no explanatory comments"


@pytest.mark.parametrize("name", BUILTINS)
def test_built_in_scenario_validates_fully(name: str) -> None:
    report = validate_scenario(name)
    assert report.scenario.name == name
    if report.scenario.env.id == "hplan/PointRooms-v0":
        assert report.num_rooms is not None and report.num_rooms >= 2


def test_default_scenario_starts_and_goals_are_in_diagonally_opposite_rooms() -> None:
    from hplan.envs.factory import make_env

    scenario = load_scenario("point_four_rooms")
    assert scenario.env.obs_mode == "image"
    env = make_env(scenario)
    pairs = set()
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        pairs.add(frozenset({env.unwrapped.room_of(info["pos"]), env.unwrapped.room_of(info["goal"])}))
    env.close()
    assert pairs <= {frozenset({0, 3}), frozenset({1, 2})} and pairs


def test_custom_map_scenario_uses_its_start_and_goal_cells() -> None:
    from hplan.envs.factory import make_env

    env = make_env(load_scenario("point_custom_map"))
    layout = env.unwrapped.world.layout
    assert layout.name == "custom"
    start_cells = {tuple(c) for c in layout.start_cells}
    goal_cells = {tuple(c) for c in layout.goal_cells}
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert set(obs) == {"state", "image"}
        assert (int(info["pos"][1]), int(info["pos"][0])) in start_cells
        assert (int(info["goal"][1]), int(info["goal"][0])) in goal_cells
    env.close()


# ----------------------------------------------------------------------------- malformed input
def _write_case(tmp_path: Path, env_id: str, kwargs: str, task: str, collect: str) -> Path:
    path = tmp_path / "case.toml"
    path.write_text(TEMPLATE.format(id=env_id, kwargs=kwargs, task=task, collect=collect))
    return path


@pytest.mark.parametrize("case, env_id, kwargs, task, collect, field, words", SEMANTIC_CASES,
                         ids=[c[0] for c in SEMANTIC_CASES])
def test_semantic_errors_through_the_library(tmp_path: Path, case: str, env_id: str, kwargs: str, task: str,
                                             collect: str, field: str, words: str) -> None:
    path = _write_case(tmp_path, env_id, kwargs, task, collect)
    load_scenario(path)  # structurally fine: only the env can judge these
    with pytest.raises(ConfigError) as info:
        validate_scenario(path)
    assert (info.value.file, info.value.field) == (str(path), field), case
    assert words in info.value.message


@pytest.mark.parametrize("case, env_id, kwargs, task, collect, field, words", SEMANTIC_CASES,
                         ids=[c[0] for c in SEMANTIC_CASES])
def test_semantic_errors_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str], case: str, env_id: str, kwargs: str,
                                         task: str, collect: str, field: str, words: str) -> None:
    path = _write_case(tmp_path, env_id, kwargs, task, collect)
    code, out, err = run_cli(monkeypatch, capsys, "scenario", "check", str(path))
    assert code != 0 and out == ""
    assert_one_error_line(err, path, field)
    assert words in err


@pytest.mark.parametrize("case, text, field", STRUCTURAL_CASES, ids=[c[0] for c in STRUCTURAL_CASES])
def test_structural_errors_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], case: str, text: str, field: str) -> None:
    path = tmp_path / "case.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert info.value.field == field
    code, out, err = run_cli(monkeypatch, capsys, "scenario", "check", str(path))
    assert code == 2 and out == ""
    assert_one_error_line(err, path, field)


def test_missing_file_and_unknown_name_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    code, out, err = run_cli(monkeypatch, capsys, "scenario", "check", str(missing))
    assert code == 2 and out == ""
    assert_one_error_line(err, missing, "")
    assert "file not found" in err
    code, _, err = run_cli(monkeypatch, capsys, "scenario", "check", "point_four_room")
    assert code == 2
    assert_one_error_line(err, "point_four_room", "")
    assert "built-ins" in err


def test_console_script_prints_one_line_for_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[env]\nid = "hplan/PointRooms-v0"\nbogus = 1\n')
    proc = subprocess.run([sys.executable, "-m", "hplan", "scenario", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"error: {path}: env.bogus: unknown key (expected one of: id, kwargs, max_steps, " \
                                  "obs_mode)"


# ----------------------------------------------------------------------------- summaries
def test_check_prints_a_summary_of_a_valid_file(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "scenario", "check", str(SCENARIO_DIR / "point_four_rooms.toml"))
    assert code == 0 and err == ""
    assert "ok" in out and "point_four_rooms" in out
    from hplan.envs.layouts import load_layout

    layout = load_layout("four_rooms")
    assert f"four_rooms ({layout.width}×{layout.height} cells, 4 rooms, 0 restricted cells)" in out
    assert "Box(64, 64, 3) uint8" in out


def test_list_prints_every_built_in_with_its_description(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "scenario", "list")
    assert code == 0
    for name in BUILTINS:
        line = next((ln for ln in out.splitlines() if ln.startswith(name + " ")), None)
        assert line is not None, name
        assert load_scenario(name).description in line
