"""The evaluation protocol: disjoint val/test episodes, a held-out collection stream, --set
overrides validated like the file, the search-budget rule, and the per-step cost of everything a
planner computes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_support import run_cli
from test_runner_support import TINY_PLANNER, one_torch_thread, tiny_checkpoint, two_rooms  # noqa: F401

from hplan.config import load_scenario
from hplan.errors import ConfigError, HplanError
from hplan.seeding import eval_episode_seed

FIXTURES = Path(__file__).parent / "fixtures"


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31 - 1), st.lists(st.integers(0, 10**6), min_size=1, max_size=50),
       st.lists(st.integers(0, 10**6), min_size=1, max_size=50))
def test_val_and_test_episodes_never_share_a_seed(base: int, val_indices: list[int], test_indices: list[int]) -> None:
    val = {eval_episode_seed(base, "val", i) for i in val_indices}
    test = {eval_episode_seed(base, "test", i) for i in test_indices}
    assert not val & test
    assert all(0 <= s < 2**31 for s in val | test)


def test_an_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="split"):
        eval_episode_seed(0, "train", 0)


def test_run_plays_other_episodes_on_val_and_records_the_split(tmp_path, monkeypatch, capsys) -> None:
    from test_runner_support import make_greedy_agent

    from hplan.runner import run_episodes

    scenario = two_rooms(max_steps=3)
    frames = {split: run_episodes(scenario, None, episodes=3, seed=0, split=split, make_agent=make_greedy_agent,
                                  log_dir=tmp_path / split) for split in ("val", "test")}
    assert not set(frames["val"]["seed"]) & set(frames["test"]["seed"])
    assert set(frames["val"]["split"]) == {"val"}
    assert '"split": "val"' in (tmp_path / "val" / "run.json").read_text()
    header = (tmp_path / "val" / "episodes" / "ep-0000.jsonl").read_text().splitlines()[0]
    assert '"split": "val"' in header
    code, _, stderr = run_cli(monkeypatch, capsys, "run", "point_two_rooms", "-c", str(tmp_path), "--split", "train")
    assert code != 0 and "--split" in stderr and "Traceback" not in stderr


def test_heldout_collection_draws_other_episodes_and_training_refuses_it(tmp_path) -> None:
    from hplan.data.collect import collect
    from hplan.data.shards import load_episodes
    from hplan.models.training import train_world_model

    scenario = load_scenario(FIXTURES / "tiny_four_rooms.toml", sets=["env.obs_mode=state"])
    collect(scenario, tmp_path / "train")
    collect(scenario, tmp_path / "heldout", split="heldout")
    train_seeds = set(load_episodes(tmp_path / "train")["episode_seed"].tolist())
    heldout_seeds = set(load_episodes(tmp_path / "heldout")["episode_seed"].tolist())
    assert train_seeds and heldout_seeds and not train_seeds & heldout_seeds
    with pytest.raises(HplanError, match="split: this is a held-out dataset"):
        train_world_model(scenario, tmp_path / "heldout", tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(HplanError, match="settings.split"):  # resuming a training set as held-out is refused
        collect(scenario, tmp_path / "train", split="heldout")


@pytest.mark.parametrize("assignment, field", [
    ("planner.horizon=0", "planner.horizon"),
    ("planner.horizonn=3", "planner.horizonn"),
    ("guardrails.weight=inf", "guardrails.weight"),
    ("model.regularizer=vicregg", "model.regularizer"),
    ("planner", "planner"),
])
def test_a_bad_set_is_refused_in_one_line_naming_it(assignment: str, field: str, monkeypatch, capsys,
                                                     tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        load_scenario("point_two_rooms", sets=[assignment])
    assert err.value.file == "--set" and err.value.field.startswith(field)
    for command in (["scenario", "check", "point_two_rooms"], ["collect", "point_two_rooms", "-o", str(tmp_path / "d")],
                    ["train", "point_two_rooms", "-d", str(tmp_path), "-o", str(tmp_path / "r")]):
        code, _, stderr = run_cli(monkeypatch, capsys, *command, "--set", assignment)
        assert code != 0 and "--set" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "d").exists() and not (tmp_path / "r").exists()


def test_set_values_reach_the_scenario_and_later_ones_win() -> None:
    scenario = load_scenario("point_two_rooms", sets=["planner.horizon=7", "model.regularizer=sigreg",
                                                      "planner.horizon=9"])
    assert scenario.planner.horizon == 9 and scenario.model.regularizer == "sigreg"


def test_a_budget_and_a_population_in_one_layer_are_refused(tmp_path) -> None:
    path = tmp_path / "s.toml"
    text = (Path("scenarios") / "point_two_rooms.toml").read_text()
    path.write_text(text.replace("[planner]\n", "[planner]\nsearch = {population = 64}\nbudget = {evals = 2000}\n"))
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert err.value.file == str(path) and err.value.field == "planner.search.population"
    with pytest.raises(ConfigError) as err:
        load_scenario("point_two_rooms", sets=["planner.search.population=64", "planner.budget.evals=2000"])
    assert err.value.file == "--set"


def test_a_later_population_turns_an_earlier_budget_off_and_a_later_budget_wins(tmp_path) -> None:
    base = tmp_path / "s.toml"
    base.write_text((Path("scenarios") / "point_two_rooms.toml").read_text())
    with_budget = load_scenario(base, sets=["planner.budget.evals=1000"])
    assert with_budget.planner.budget.evals == 1000
    suite_sized = load_scenario(base, overrides={"planner": {"search": {"population": 64, "iterations": 2}}},
                                sets=["planner.budget.evals=1000"])
    assert suite_sized.planner.budget.evals == 1000  # --set comes last
    sized = load_scenario(with_budget.source, overrides={"planner": {"budget": {"evals": 1000}}},
                          sets=["planner.search.population=32"])
    assert sized.planner.budget.evals == 0 and sized.planner.search.population == 32


def test_stress_suite_explicit_search_is_the_search_it_gets() -> None:
    from hplan.planning.budget import resolve_budget
    from hplan.stress.suite import load_suite, resolve_suite

    suite = load_suite("stress/standard.toml")
    item = resolve_suite(suite, "tests")[0]  # any existing directory stands in for the checkpoint
    budget = resolve_budget(item.config.planner)
    assert (budget.low.population, budget.low.iterations) == (64, 2)


def test_the_landmark_agent_reports_head_rows_graph_time_and_its_setup_once(tmp_path) -> None:
    from hplan.models.checkpoint import load_world_model
    from hplan.runner import run_episodes, summarize

    scenario = two_rooms(max_steps=4, planner={**TINY_PLANNER, "high": "landmarks"})
    model = load_world_model(tiny_checkpoint(tmp_path / "ckpt", scenario), device="cpu")
    frame = run_episodes(scenario, model, planner_kind="hier", guardrails="penalty", episodes=2, seed=0,
                         log_dir=tmp_path / "run", device="cpu")
    summary = summarize(frame)
    assert summary["distance_evals_per_step"] > 0 and summary["guardrail_evals_per_step"] > 0
    assert summary["graph_ms_per_step"] > 0 and summary["setup_ms_per_step"] > 0
    assert summary["total_ms_per_step"] > summary["ms_per_step"]
    lines = (tmp_path / "run" / "episodes" / "ep-0000.jsonl").read_text().splitlines()
    import json

    computes = [json.loads(line)["plan"]["compute"] for line in lines if '"type": "step"' in line]
    assert "setup_ms" in computes[0] and all("setup_ms" not in c for c in computes[1:])
    # the build (all-pairs waypoint distances) is reported apart from the first step's own work,
    # and counted once in the episode's totals
    waypoints = 16
    assert computes[0]["setup_distance_evals"] >= waypoints * waypoints
    assert computes[0]["distance_evals"] < computes[0]["setup_distance_evals"]
    row = frame.iloc[0]
    assert row["distance_evals"] == sum(c["distance_evals"] + c.get("setup_distance_evals", 0) for c in computes)


def test_a_long_thin_map_gets_enough_pixels_per_cell_and_built_ins_keep_64() -> None:
    from hplan.data.validate import MIN_PIXELS_PER_CELL
    from hplan.envs.layouts import load_layout
    from hplan.envs.world import auto_image_size

    assert auto_image_size(load_layout("four_rooms")) == 64
    corridor = load_scenario("point_corridor", sets=["env.obs_mode=image"])
    from hplan.envs.factory import make_env

    env = make_env(corridor)
    try:
        size = env.observation_space.shape[0]
        cells = max(env.unwrapped.world.layout.width, env.unwrapped.world.layout.height)
    finally:
        env.close()
    assert size / cells >= MIN_PIXELS_PER_CELL and size > 64


@pytest.mark.parametrize("edit, field", [
    (("max = 0.1", "max = nan"), "thresholds[0].max"),
    (("[[scenarios]]\nscenario = \"point_four_rooms\"\nmax_steps = 100\n", "scenarios = []\n"), "scenarios"),
])
def test_a_suite_with_nan_or_no_scenarios_fails_its_check(tmp_path, edit, field) -> None:
    from hplan.stress.suite import load_suite

    text = Path("stress/standard.toml").read_text()
    old, new = edit
    assert old in text
    bad = tmp_path / "suite.toml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_suite(bad)
    assert err.value.field == field


def test_a_non_finite_number_in_a_scenario_is_refused(tmp_path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(Path("scenarios/point_two_rooms.toml").read_text().replace("weight = 3.0", "weight = inf"))
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert err.value.field == "guardrails.weight" and "finite" in err.value.message


def test_a_study_set_is_a_later_layer_than_the_study_file(tmp_path) -> None:
    """A study whose overrides fix a budget, run with ``--set planner.search.population=32``: the
    command line is the later layer, so its population turns the budget off (not refused as if
    one file had set both)."""
    from hplan.studies.loading import load_study, rescale
    from hplan.studies.space import trial_scenario

    text = Path("studies/smoke.toml").read_text().replace(
        "[overrides.planner.search]\npopulation = 16\nelites = 4\niterations = 1\n[overrides.planner.codes]\npopulation = 16\n",
        "[overrides.planner.budget]\nevals = 500\n[overrides.planner.search]\nelites = 4\niterations = 1\n"
        "[overrides.planner.codes]\n")
    path = tmp_path / "study.toml"
    path.write_text(text)
    study = load_study(path)
    assert trial_scenario(study, {}).planner.budget.evals == 500
    rescaled = rescale(study, sets=("planner.search.population=32",))
    scenario = trial_scenario(rescaled, {})
    assert scenario.planner.budget.evals == 0 and scenario.planner.search.population == 32
    with pytest.raises(ConfigError) as err:
        rescale(study, sets=("planner.horizon=0",))
    assert "planner.horizon" in str(err.value)
