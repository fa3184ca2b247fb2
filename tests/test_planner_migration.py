"""Planner settings recorded flat (before [planner] was nested) still mean what they meant.

Every evaluation cached under ``runs/results`` recorded its planner flat; if the fingerprint the
results cache compares changed for those records, every table would be measured again. So: every
flat record of the shipped results arms (written by the code before the nesting, in
``fixtures/flat_planner_records.json``) must fingerprint equal to the same arm loaded today, and so
must any valid flat mapping against the nested config built from it by hand. Files a user edits
are not migrated: an old key there is a one-line error naming its new place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.config import load_scenario
from hplan.configio import from_mapping, to_mapping
from hplan.errors import ConfigError, HplanError
from hplan.planning.config import (CODE_PRIOR_STD, MAX_ITERATIONS, MAX_POPULATION, BudgetConfig, CodesConfig,
                                   CorrectionConfig, EnergyConfig, GradConfig, ImaginedConfig, PlannerConfig,
                                   RouteConfig, SearchConfig)
from hplan.planning.migration import MOVED, REMOVED, nest_planner, nest_scenario_planner, nest_target
from hplan.results.definition import Arm, load_definition
from hplan.results.measure import DONE_MARKER, cached_evaluation, expected_run, search_fingerprint
from hplan.runner.settings import resolve_planner

FIXTURES = Path(__file__).parent / "fixtures"
RECORDS = json.loads((FIXTURES / "flat_planner_records.json").read_text())
OLD_DEFAULTS: dict[str, Any] = RECORDS["defaults"]
KEPT = ("kind", "low", "high", "horizon", "device")
"""Flat keys that kept their name and place."""
FLAT_REMOVED = {key for key in REMOVED if "." not in key}
"""Flat keys that became constants (the dotted ones in ``REMOVED`` became constants after the nesting)."""


def by_hand(flat: dict[str, Any]) -> PlannerConfig:
    """The nested config a flat record means, written out field by field (independent of ``MOVED``)."""
    f = {**OLD_DEFAULTS, **flat}
    return PlannerConfig(
        kind=f["kind"], low=f["low"], high=f["high"], horizon=f["horizon"], device=f["device"],
        search=SearchConfig(population=f["population"], iterations=f["iterations"], elites=f["elites"],
                            init_std=f["init_std"], min_std=f["min_std"], momentum=f["momentum"],
                            temperature=f["temperature"], noise_beta=f["noise_beta"],
                            execute_mean=f["execute_mean"], warm_start=f["warm_start"], max_batch=f["max_batch"]),
        grad=GradConfig(lr=f["grad_lr"], restarts=f["grad_restarts"], steps=f["grad_steps"]),
        energy=EnergyConfig(task_cost=f["task_cost"], running_weight=f["running_weight"],
                            goal_ends_episode=f["goal_ends_episode"]),
        correction=CorrectionConfig(memory=f["correction_memory"], threshold=f["correction_threshold"]),
        codes=CodesConfig(optimizer=f["high_optimizer"], horizon=f["high_horizon"], population=f["high_population"],
                          iterations=f["high_iterations"], elites=f["high_elites"], bound=f["code_bound"],
                          running_weight=f["high_running_weight"], reach_weight=f["reach_weight"],
                          replan_every=f["replan_every"], direct_reach=f["direct_reach"]),
        route=RouteConfig(edge=f["landmark_edge"], attach=f["landmark_attach"], patience=f["landmark_patience"],
                          edge_samples=f["landmark_edge_samples"]),
        imagined=ImaginedConfig(branches=f["imagine_branches"], frontier=f["imagine_frontier"],
                                depth=f["imagine_depth"], nodes=f["imagine_nodes"],
                                regrow_on_stall=f["imagine_regrow_on_stall"]),
        budget=BudgetConfig(evals=f["eval_budget"]))


def migrated(flat: dict[str, Any]) -> PlannerConfig:
    return from_mapping(PlannerConfig, nest_planner(flat, source="run.json"), source="run.json")


def fingerprint(cfg: PlannerConfig) -> Any:
    """The results cache's comparison form (JSON, as it compares), or the error resolving it gives."""
    try:
        return json.loads(json.dumps(search_fingerprint(cfg)))
    except HplanError as err:
        return str(err)


def test_every_flat_key_has_exactly_one_place_and_every_field_one_flat_key() -> None:
    assert set(MOVED) | FLAT_REMOVED | set(KEPT) == set(OLD_DEFAULTS)
    assert not set(MOVED) & FLAT_REMOVED and not set(KEPT) & (set(MOVED) | FLAT_REMOVED)
    leaves: set[str] = set()
    for name, value in to_mapping(PlannerConfig()).items():
        leaves |= {f"{name}.{key}" for key in value} if isinstance(value, dict) else {name}
    assert (set(MOVED.values()) - set(REMOVED)) | set(KEPT) == leaves and len(set(MOVED.values())) == len(MOVED)
    # a knob that became a constant after the nesting became the value every record held by default
    for path, removed in REMOVED.items():
        flat = next((old for old, new in MOVED.items() if new == path), path)
        assert removed.value == OLD_DEFAULTS[flat], path
    # the defaults did not move: an old record at its defaults is today's default config
    assert migrated(OLD_DEFAULTS) == PlannerConfig() == by_hand({})
    assert REMOVED["high_init_std"].value == CODE_PRIOR_STD == OLD_DEFAULTS["high_init_std"]
    assert REMOVED["imagine_rebuild"].value == OLD_DEFAULTS["imagine_rebuild"]


def test_the_flat_records_of_every_shipped_arm_match_the_arm_loaded_today() -> None:
    """What the cached evaluations of ``benchmarks/results.toml`` and of every scenario recorded
    (before the nesting) is what the converted files give today: no cached table is re-measured."""
    definition = load_definition()
    arms = {(table.name, arm.label): (table, arm) for table in definition.tables for arm in table.arms}
    checked = 0
    for record in RECORDS["records"]:
        flat = {**OLD_DEFAULTS, **record["planner"]}
        for where in record["where"]:
            if "table" in where:
                table, arm = arms[(where["table"], where["arm"])]
                scenario = load_scenario(table.scenario, sets=list(table.sets + arm.sets))
                today = resolve_planner(scenario.planner, arm.planner, "cpu")
            else:
                today = resolve_planner(load_scenario(where["scenario"]).planner, where["kind"], "cpu")
            assert migrated(flat) == today, where
            assert fingerprint(migrated(flat)) == fingerprint(today), where
            checked += 1
    assert checked == sum(len(r["where"]) for r in RECORDS["records"]) > 60


def _value(hint: Any, meta: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Valid values of one field (its bounds, kept small where none is given)."""
    if hint is bool:
        return st.booleans()
    low = next((b for b in (meta["ge"], meta["gt"]) if b is not None), 0)
    high = next((b for b in (meta["le"], meta["lt"]) if b is not None), low + 2000)
    if hint is int:
        return st.integers(int(low), int(min(high, low + 2000)))
    return st.floats(low, high, exclude_min=meta["gt"] is not None, exclude_max=meta["lt"] is not None)


def _flat_fields() -> dict[str, st.SearchStrategy[Any]]:
    """A strategy per flat key, from the field it moved to (the removed ones only hold their constant)."""
    import dataclasses
    import typing

    strategies: dict[str, st.SearchStrategy[Any]] = {
        "kind": st.sampled_from(["flat", "hier"]), "low": st.sampled_from(["cem", "mppi", "grad"]),
        "high": st.sampled_from(["codes", "landmarks", "imagined"]), "device": st.sampled_from(["cpu", "auto"]),
        "horizon": st.integers(1, 40),
        "task_cost": st.sampled_from(["temporal", "l2"]), "high_optimizer": st.sampled_from(["cem", "mppi"]),
        "eval_budget": st.sampled_from([0, 0, 480, 960, 3850, 20000]),
        "population": st.integers(2, 600), "high_population": st.integers(2, 600),
        "iterations": st.integers(1, 5), "high_iterations": st.integers(1, 5), "grad_steps": st.integers(1, 30),
        "elites": st.integers(1, 16), "high_elites": st.integers(1, 16), "grad_restarts": st.integers(1, 16),
    }
    for flat, path in MOVED.items():
        if path in REMOVED:
            strategies[flat] = st.just(REMOVED[path].value)
        if flat in strategies:
            continue
        section, name = path.split(".")
        cls = typing.get_type_hints(PlannerConfig)[section]
        fld = {f.name: f for f in dataclasses.fields(cls)}[name]
        strategies[flat] = _value(typing.get_type_hints(cls)[name], dict(fld.metadata))
    for flat in FLAT_REMOVED:
        strategies[flat] = st.just(REMOVED[flat].value)
    assert set(strategies) == set(OLD_DEFAULTS)
    return strategies


FLAT_FIELDS = _flat_fields()


@st.composite
def flat_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid flat planner record: any subset of the keys (older records lack the newer ones)."""
    keys = draw(st.sets(st.sampled_from(sorted(FLAT_FIELDS))))
    record = {key: draw(FLAT_FIELDS[key]) for key in sorted(keys)}
    full = {**OLD_DEFAULTS, **record}
    if full["elites"] > full["population"] or full["high_elites"] > full["high_population"]:
        record["elites"], record["high_elites"] = 1, 1
    if full["min_std"] > full["init_std"]:
        record["min_std"] = full["init_std"]
    return record


@settings(max_examples=300, deadline=None)
@given(flat=flat_records())
def test_any_flat_record_fingerprints_like_the_nested_config_of_the_same_settings(flat: dict[str, Any]) -> None:
    nested = by_hand(flat)
    assert migrated(flat) == nested
    assert fingerprint(migrated(flat)) == fingerprint(nested)
    assert nest_planner(nest_planner(flat, source="x"), source="x") == nest_planner(flat, source="x")
    assert nest_planner(to_mapping(nested), source="x") == to_mapping(nested)  # today's records pass through


def test_a_cached_evaluation_recorded_flat_is_reused_and_one_with_other_settings_is_not(tmp_path: Path) -> None:
    scenario = load_scenario(FIXTURES / "tiny_four_rooms.toml")
    arm = Arm(label="hier", planner="hier", guardrails="off")
    expected = expected_run(scenario, arm, "test", 2, "abc")
    flat = {**OLD_DEFAULTS, "kind": "hier", "horizon": 3, "population": 16, "iterations": 1, "elites": 4,
            "high_horizon": 2, "high_population": 16, "high_iterations": 1, "high_elites": 4, "device": "cpu"}
    out = tmp_path / "eval"
    (out / "episodes").mkdir(parents=True)
    run = {"seed": expected["seed"], "split": "test", "episodes": 2, "checkpoint_sha256": "abc", "planner": flat,
           "guardrails": expected["guardrails"]}
    (out / "run.json").write_text(json.dumps(run))
    header = {"scenario": {"env": expected["env"], "task": expected["task"]}}
    (out / "episodes" / "ep-0000.jsonl").write_text(json.dumps(header) + "\n")
    pd.DataFrame({"success": [True, False]}).to_parquet(out / "episodes.parquet")
    (out / DONE_MARKER).write_text("{}")
    assert cached_evaluation(out, expected) is not None
    for changed in ({"high_population": 32}, {"imagine_rebuild": 5}):
        (out / "run.json").write_text(json.dumps({**run, "planner": {**flat, **changed}}))
        assert cached_evaluation(out, expected) is None


def test_every_knob_made_a_constant_reads_as_the_constant_the_code_uses() -> None:
    """A record holding a removed knob at ``REMOVED[...].value`` is read as today's settings, so that
    value must be the constant the planner now reads: were the constant changed, old records would
    silently mean settings they were not made with."""
    import hplan.planning.config as planner_config

    dotted = {key: removed for key, removed in REMOVED.items() if "." in key or key == "subgoal_reached"}
    assert dotted, "no knob became a constant after the nesting"
    for key, removed in dotted.items():
        constant = removed.reason.rsplit("hplan.planning.config.", 1)[-1]
        assert getattr(planner_config, constant) == removed.value, key


def test_a_removed_knob_recorded_at_another_value_cannot_be_reproduced() -> None:
    with pytest.raises(ConfigError, match=r"run.json: planner.high_init_std: recorded as 2.0, .* always 1.0 now"):
        nest_planner({"high_init_std": 2.0}, source="run.json")
    assert nest_planner({"high_init_std": 1.0, "imagine_rebuild": 0}, source="run.json") == {}


def test_a_recorded_scenario_and_a_recorded_trial_parameter_are_migrated() -> None:
    scenario = load_scenario(FIXTURES / "tiny_four_rooms.toml")
    recorded = to_mapping(scenario)
    recorded["planner"] = {"kind": "hier", "horizon": 3, "population": 16, "iterations": 1, "elites": 4,
                           "high_horizon": 2, "high_population": 16, "high_iterations": 1, "high_elites": 4,
                           "device": "cpu", "high_init_std": 1.0}
    from hplan.config import ScenarioConfig

    assert from_mapping(ScenarioConfig, nest_scenario_planner(recorded, source="config.json"),
                        source="config.json") == scenario
    assert nest_target("planner.population") == "planner.search.population"
    assert nest_target("planner.horizon") == "planner.horizon" and nest_target("model.latent_dim") == "model.latent_dim"


@pytest.mark.parametrize("old,new", [("population", "planner.search.population"),
                                     ("eval_budget", "planner.budget.evals"),
                                     ("landmark_edge_samples", "planner.route.edge_samples")])
def test_an_old_key_in_a_scenario_file_names_its_new_place(tmp_path: Path, old: str, new: str) -> None:
    path = tmp_path / "mine.toml"
    text = (Path(__file__).parent.parent / "scenarios" / "point_two_rooms.toml").read_text()
    path.write_text(text.replace("[planner]\n", f"[planner]\n{old} = {json.dumps(OLD_DEFAULTS[old])}\n"))
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert str(err.value) == f"{path}: planner.{old}: moved to {new}"
    with pytest.raises(ConfigError) as err:
        load_scenario("point_two_rooms", sets=[f"planner.{old}=1"])
    assert str(err.value) == f"--set: planner.{old}: moved to {new}"


def test_a_removed_key_in_a_scenario_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--set: planner.high_init_std: removed: the codes are whitened"):
        load_scenario("point_two_rooms", sets=["planner.high_init_std=1.0"])
    for target in ("planner.correction.radius", "planner.route.slack", "planner.subgoal_reached",
                   "planner.correction_radius"):
        with pytest.raises(ConfigError, match=rf"^--set: {target}: removed: a constant now, hplan.planning.config"):
            load_scenario("point_two_rooms", sets=[f"{target}=1.0"])
    path = tmp_path / "mine.toml"
    text = (Path(__file__).parent.parent / "scenarios" / "point_two_rooms.toml").read_text()
    path.write_text(text + "\n[planner.imagined]\nmerge = 0.5\n")
    with pytest.raises(ConfigError, match=rf"^{path}: planner.imagined.merge: removed: a constant now"):
        load_scenario(path)
    from hplan.studies.space import check_target

    with pytest.raises(ValueError, match=r"^target 'planner.budget.high_share': removed: a constant now"):
        check_target("planner.budget.high_share")


@pytest.mark.parametrize("record", [{"route": {"edge": 16.0, "slack": 4.0}}, {"landmark_slack": 4.0},
                                    {"subgoal_reached": 2.0, "correction": {"radius": 1.0, "memory": 8}}])
def test_a_knob_made_a_constant_reads_at_its_value_and_is_refused_at_another(record: dict[str, Any]) -> None:
    """Models, evaluations and logs recorded while these were settings (always at these values: no
    shipped file set them) still read as today's settings; another value cannot be reproduced."""
    kept = nest_planner(record, source="run.json")
    assert "slack" not in json.dumps(kept) and "radius" not in json.dumps(kept) and "subgoal_reached" not in kept
    assert from_mapping(PlannerConfig, kept, source="run.json").correction.memory == kept.get(
        "correction", {}).get("memory", PlannerConfig().correction.memory)
    doubled = json.loads(json.dumps(record).replace("4.0", "8.0").replace("2.0", "5.0").replace("1.0", "3.0"))
    with pytest.raises(ConfigError, match=r"^run.json: planner.*recorded as .* cannot be reproduced"):
        nest_planner(doubled, source="run.json", section="planner")


def test_an_old_study_target_and_an_old_suite_key_name_their_new_place(tmp_path: Path) -> None:
    from hplan.studies.space import check_target
    from hplan.stress.suite import load_suite

    with pytest.raises(ValueError, match=r"^target 'planner.high_population': moved to planner.codes.population$"):
        check_target("planner.high_population")
    suite = tmp_path / "suite.toml"
    text = (Path(__file__).parent.parent / "stress" / "smoke.toml").read_text()
    suite.write_text(text.replace("[planner.search]", "[planner]\niterations = 2\n\n[planner.search]", 1))
    with pytest.raises(ConfigError, match=rf"^{suite}: planner.iterations: moved to planner.search.iterations$"):
        load_suite(suite)


def test_the_search_bounds_did_not_move() -> None:
    """The bounds that guard a typo (a population of 10^9) are on the fields' new places."""
    with pytest.raises(ConfigError, match=rf"planner.codes.population: must be <= {MAX_POPULATION}"):
        load_scenario("point_two_rooms", sets=[f"planner.codes.population={MAX_POPULATION + 1}"])
    with pytest.raises(ConfigError, match=rf"planner.grad.steps: must be <= {MAX_ITERATIONS}"):
        load_scenario("point_two_rooms", sets=[f"planner.grad.steps={MAX_ITERATIONS + 1}"])
