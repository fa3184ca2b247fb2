"""The results command end to end at tiny scale, its definition's checks, and its statistics."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_support import run_cli
from hplan.errors import ConfigError
from hplan.results.definition import load_definition
from hplan.results.stats import mean_interval, paired, sign_test, wilson

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_results.toml"


def test_results_command_measures_every_table_then_reuses_the_cache(tmp_path, monkeypatch, capsys) -> None:
    out, runs = tmp_path / "docs" / "results.md", tmp_path / "runs"
    args = ("results", "--definition", str(TINY), "--out", str(out), "--runs", str(runs))
    code, stdout, stderr = run_cli(monkeypatch, capsys, *args)
    assert code == 0, stderr
    text = out.read_text()
    assert "## Tiny four rooms: flat against hierarchical" in text and "## Tiny world model on held-out data" in text
    assert "| hier |" in text and "| flat |" in text and "hier vs flat" in text
    assert "Not measured yet" not in text
    assert "hplan results --only tiny_planning" in text
    assert (out.parent / "results" / "tiny_planning.png").stat().st_size > 0
    # two training seeds x two arms, evaluated on the test split, each with its own model
    evals = sorted(p.relative_to(runs / "evals") for p in (runs / "evals").glob("*/*/*"))
    assert [str(p) for p in evals] == ["tiny_planning/flat/seed0-test-2ep", "tiny_planning/flat/seed1-test-2ep",
                                       "tiny_planning/hier/seed0-test-2ep", "tiny_planning/hier/seed1-test-2ep"]
    assert sorted(p.name for p in (runs / "models" / "tiny_four_rooms-4ep").iterdir()) == ["seed0", "seed1"]
    held = runs / "data" / "tiny_four_rooms-4ep-heldout4" / "manifest.json"
    assert '"split": "heldout"' in held.read_text()
    import json
    import re

    marker = json.loads((runs / "evals" / "tiny_planning" / "hier" / "seed0-test-2ep" / "results_key.json").read_text())
    assert set(marker["measured"]) == {"date", "commit", "dirty"}  # each evaluation says when and from what code
    assert re.search(r"Measured \d{4}-\d\d-\d\d \d\d:\d\d( to .*)? UTC at commits? `", text)

    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.suffix in (".pt", ".parquet", ".npz")
              and "tables" not in p.parts}
    code, stdout, _ = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "train " not in stdout and "test episodes" not in stdout and "diagnostics" not in stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}  # nothing re-collected, re-trained or re-run

    # --page-only never waits for an evaluation another run holds: it reads what is finished
    from hplan.io import file_lock

    held = runs / "locks" / "evals+tiny_planning+hier+seed0-test-2ep.lock"
    assert held.exists()  # the lock the evaluation run took
    with file_lock(held):
        code, _, _ = run_cli(monkeypatch, capsys, *args, "--page-only")
    assert code == 0 and "**Incomplete:**" not in out.read_text()

    # --page-only measures nothing and says what is missing
    shutil.rmtree(runs / "evals" / "tiny_planning" / "flat" / "seed1-test-2ep")
    code, stdout, _ = run_cli(monkeypatch, capsys, *args, "--page-only")
    assert code == 0 and "test episodes" not in stdout
    assert "**Incomplete:**" in out.read_text() and not (runs / "evals" / "tiny_planning" / "flat" / "seed1-test-2ep").exists()

    # one table re-measured after its evaluations were lost; the other keeps its section
    shutil.rmtree(runs / "evals" / "tiny_planning" / "flat")
    code, stdout, _ = run_cli(monkeypatch, capsys, *args, "--only", "tiny_planning")
    assert code == 0 and "tiny_planning flat, training seed 0" in stdout and "held-out diagnostics" not in stdout
    assert "## Tiny world model on held-out data" in out.read_text()

    # --remeasure plays one table's evaluations again (after a planner change the key cannot see),
    # keeping the models and the other table's held-out scores
    models = {p: p.stat().st_mtime_ns for p in (runs / "models").rglob("*.pt")}
    heldout = {p: p.stat().st_mtime_ns for p in (runs / "evals" / "tiny_heldout").rglob("*.json")}
    code, stdout, _ = run_cli(monkeypatch, capsys, *args, "--only", "tiny_planning", "--remeasure")
    assert code == 0 and "tiny_planning: cached evaluations discarded" in stdout
    assert all(f"tiny_planning {arm}, training seed {seed}" in stdout for arm in ("flat", "hier") for seed in (0, 1))
    assert "train " not in stdout and models == {p: p.stat().st_mtime_ns for p in models}
    assert heldout and heldout == {p: p.stat().st_mtime_ns for p in heldout}
    assert not list((runs / "evals").glob(".*discarded*"))
    for refused in (("--remeasure", "--page-only"), ("--remeasure",)):  # nothing to play; no table named
        code, _, stderr = run_cli(monkeypatch, capsys, *args, *refused)
        assert code != 0 and "--remeasure" in stderr and "Traceback" not in stderr
    assert list((runs / "evals" / "tiny_heldout").rglob("*.json"))  # nothing was discarded

    # a fresh clone (no cache at all): the page keeps every section it had, the README its rows
    from hplan.results.page import README_BEGIN, README_END

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_BEGIN}\nold\n{README_END}\n")
    code, _, stderr = run_cli(monkeypatch, capsys, *args, "--page-only", "--readme", str(readme))
    assert code == 0, stderr
    page_before, readme_before = out.read_text(), readme.read_text()
    assert "| [Tiny four rooms](" in readme_before and "not measured yet" not in readme_before
    fresh = ("results", "--definition", str(TINY), "--out", str(out), "--runs", str(tmp_path / "fresh"))
    code, _, stderr = run_cli(monkeypatch, capsys, *fresh, "--page-only", "--readme", str(readme))
    assert code == 0, stderr
    sections = lambda text: text[text.index("\n## "):]  # noqa: E731 - the header carries the date
    assert sections(out.read_text()) == sections(page_before) and "Not measured yet" not in out.read_text()
    assert readme.read_text() == readme_before


def test_the_readme_headline_table_is_rewritten_between_its_markers(tmp_path, monkeypatch, capsys) -> None:
    from hplan.results.page import README_BEGIN, README_END

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_BEGIN}\nold\n{README_END}\n\nafter\n")
    code, _, stderr = run_cli(monkeypatch, capsys, "results", "--definition", str(TINY), "--page-only",
                              "--out", str(tmp_path / "docs" / "results.md"), "--runs", str(tmp_path / "runs"),
                              "--readme", str(readme))
    assert code == 0, stderr
    text = readme.read_text()
    assert "old" not in text and text.endswith("after\n") and "not measured yet" in text
    assert "(docs/results.md#tiny_planning)" in text
    unmarked = tmp_path / "plain.md"
    unmarked.write_text("# no markers\n")
    code, _, stderr = run_cli(monkeypatch, capsys, "results", "--definition", str(TINY), "--page-only",
                              "--out", str(tmp_path / "r.md"), "--runs", str(tmp_path / "runs"), "--readme", str(unmarked))
    assert code != 0 and "no results markers" in stderr and not (tmp_path / "r.md").exists()


def test_a_table_never_measured_says_how_to_measure_it(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "results.md"
    code, _, stderr = run_cli(monkeypatch, capsys, "results", "--definition", str(TINY), "--out", str(out),
                              "--runs", str(tmp_path / "runs"), "--page-only")
    assert code == 0, stderr
    assert out.read_text().count("**Not measured yet.**") == 2
    assert f"from [`{TINY.name}`](" in out.read_text() and "benchmarks/results.toml" not in out.read_text()


@pytest.mark.parametrize("edit, field", [
    ('label = "flat"', "tables[0].arms[1].label"),
    ('sets = ["planner.search.population=8"]', "tables[0].arms[1].sets"),
    ('compare = [["hier", "flat"]]', "tables[0].compare[0]"),
    ('name = "tiny_heldout"', "tables[1].name"),
])
def test_a_bad_definition_is_refused_in_one_line_naming_the_field(tmp_path, monkeypatch, capsys, edit, field) -> None:
    replacement = {
        'label = "flat"': 'label = "HIER"',  # the same folder name as "hier"
        'sets = ["planner.search.population=8"]': 'sets = ["planner.search.population=0"]',
        'compare = [["hier", "flat"]]': 'compare = [["hier", "nobody"]]',
        'name = "tiny_heldout"': 'name = "tiny_planning"',
    }[edit]
    bad = tmp_path / "bad.toml"
    text = TINY.read_text().replace(edit, replacement, 1)
    bad.write_text(text.replace('"tiny_four_rooms.toml"', f'"{FIXTURES}/tiny_four_rooms.toml"'))
    with pytest.raises(ConfigError) as err:
        load_definition(bad)
    assert err.value.field == field
    code, stdout, stderr = run_cli(monkeypatch, capsys, "results", "--definition", str(bad),
                                   "--out", str(tmp_path / "r.md"), "--runs", str(tmp_path / "runs"))
    assert code != 0 and field in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.md").exists()


def test_only_an_unknown_table_is_refused(tmp_path, monkeypatch, capsys) -> None:
    code, _, stderr = run_cli(monkeypatch, capsys, "results", "--definition", str(TINY), "--only", "nope",
                              "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "r.md"))
    assert code != 0 and "--only: nope" in stderr and not (tmp_path / "runs").exists()


def test_the_committed_definition_loads() -> None:
    definition = load_definition()
    names = [t.name for t in definition.tables]
    for headline in ("four_rooms", "two_rooms", "maze3x3", "zones", "corridor", "spiral", "pillars"):
        assert headline in names
        assert definition.split(definition.tables[names.index(headline)]) == "test"
        assert len(definition.seeds(definition.tables[names.index(headline)])) >= 3


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 500), st.data())
def test_the_wilson_interval_holds_the_rate_and_stays_in_range(trials: int, data: st.DataObject) -> None:
    successes = data.draw(st.integers(0, trials))
    ci = wilson(successes, trials)
    assert 0.0 <= ci.low <= ci.estimate <= ci.high <= 1.0
    assert ci.estimate == successes / trials
    if 0 < successes < trials:
        assert ci.low < ci.estimate < ci.high


def test_wilson_matches_a_known_value() -> None:
    ci = wilson(7, 8)  # the README once quoted 53-98 % for 7 of 8
    assert round(ci.low, 2) == 0.53 and round(ci.high, 2) == 0.98


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=10))
def test_the_seed_interval_is_centred_on_the_mean_and_widens_with_spread(values: list[float]) -> None:
    ci = mean_interval(values)
    assert ci.low <= ci.estimate <= ci.high
    assert math.isclose(ci.estimate - ci.low, ci.high - ci.estimate, abs_tol=1e-12)
    spread = [v * 0.5 for v in values]
    narrower = mean_interval(spread)
    assert narrower.high - narrower.low <= ci.high - ci.low + 1e-12


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=2, max_size=60))
def test_paired_counts_discordant_episodes_and_is_antisymmetric(pairs: list[tuple[bool, bool]]) -> None:
    a, b = [float(x) for x, _ in pairs], [float(y) for _, y in pairs]
    ab, ba = paired(a, b), paired(b, a)
    assert ab.a_only == ba.b_only and ab.b_only == ba.a_only
    assert math.isclose(ab.difference.estimate, -ba.difference.estimate, abs_tol=1e-12)
    assert math.isclose(ab.difference.estimate, (ab.a_only - ab.b_only) / len(pairs))
    assert ab.p_value == ba.p_value and 0.0 < ab.p_value <= 1.0


def test_student_quantiles_continue_smoothly_past_the_table() -> None:
    from hplan.results.stats import t975

    assert math.isclose(t975(30), 2.042, abs_tol=1e-3) and math.isclose(t975(31), 2.0395, abs_tol=2e-4)
    assert math.isclose(t975(49), 2.0096, abs_tol=2e-4) and math.isclose(t975(120), 1.9799, abs_tol=2e-4)
    assert all(t975(d) > t975(d + 1) for d in range(1, 200))


def test_comparisons_take_the_episode_as_the_unit() -> None:
    """Three training seeds replaying the same four episodes: four pairs, not twelve."""
    import pandas as pd

    from hplan.results.page import comparisons

    rows = [{"arm": arm, "training_seed": s, "seed": e, "success": arm == "A" or e == 0}
            for arm in ("A", "B") for s in range(3) for e in range(4)]
    (result,) = comparisons(pd.DataFrame(rows), [("A", "B")])
    assert result["pairs"] == 4 and result["a_only"] == 3 and result["b_only"] == 0
    assert math.isclose(result["difference"], 0.75)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=2, max_size=60))
def test_a_paired_difference_interval_stays_within_plus_and_minus_one(pairs: list[tuple[bool, bool]]) -> None:
    """Success differences lie in [-1, 1] however lopsided the episodes (the t-interval alone
    reached +100.1 pp on the page for 148 of 150 against 3)."""
    import pandas as pd

    from hplan.results.page import comparisons

    rows = [{"arm": arm, "training_seed": 0, "seed": e, "success": outcome[arm == "B"]}
            for e, outcome in enumerate(pairs) for arm in ("A", "B")]
    (result,) = comparisons(pd.DataFrame(rows), [("A", "B")])
    assert -1.0 <= result["low"] <= result["difference"] <= result["high"] <= 1.0


def test_the_sign_test_matches_exact_binomial_values() -> None:
    assert sign_test(0, 0) == 1.0
    assert math.isclose(sign_test(0, 5), 2 / 32)
    assert math.isclose(sign_test(1, 9), 2 * 11 / 1024)


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args, needle in (((("--out", str(tmp_path)), "--out")), ((("--runs", str(blocker / "runs")), "--runs"))):
        full = {"--out": str(tmp_path / "r.md"), "--runs": str(tmp_path / "runs"), **dict([args])}
        code, _, stderr = run_cli(monkeypatch, capsys, "results", "--definition", str(TINY),
                                  "--out", full["--out"], "--runs", full["--runs"])
        assert code != 0 and needle in stderr and "Traceback" not in stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "r.md").exists()


def test_a_changed_scenario_is_measured_again_and_changed_data_settings_are_refused(tmp_path, monkeypatch,
                                                                                     capsys) -> None:
    """The cache is keyed by what an evaluation recorded, not by the definition's text: editing the
    scenario file (or a default) re-measures; a dataset collected otherwise is not silently reused."""
    scenario = tmp_path / "tiny_four_rooms.toml"
    scenario.write_text((FIXTURES / "tiny_four_rooms.toml").read_text())
    definition = tmp_path / "results.toml"
    definition.write_text(TINY.read_text().replace("training_seeds = [0, 1]", "training_seeds = [0]"))
    args = ("results", "--definition", str(definition), "--only", "tiny_planning", "--out", str(tmp_path / "r.md"),
            "--runs", str(tmp_path / "runs"))
    assert run_cli(monkeypatch, capsys, *args)[0] == 0
    code, stdout, _ = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "test episodes" not in stdout
    scenario.write_text(scenario.read_text().replace('mode = "penalty"', 'mode = "penalty"\nweight = 4.0'))
    code, stdout, _ = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "hier, training seed 0: 2 test episodes" in stdout and "train " not in stdout
    scenario.write_text(scenario.read_text().replace('policy = "momentum"', 'policy = "momentum"\nturn_prob = 0.2'))
    code, _, stderr = run_cli(monkeypatch, capsys, *args)
    assert code != 0 and "cached dataset with other settings" in stderr and "Traceback" not in stderr


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.integers(1, 300), min_size=1, max_size=60),
       tiers=st.lists(st.integers(1, 299), min_size=1, max_size=4, unique=True).map(sorted))
def test_tiers_partition_every_episode_by_its_start_goal_distance(steps: list[int], tiers: list[int]) -> None:
    from hplan.results.page import tier_labels, tier_summary

    frame = pd.DataFrame({"arm": "a", "start_geodesic_steps": steps,
                          "success": [i % 3 == 0 for i in range(len(steps))]})
    summary = tier_summary(frame, ["a"], tiers)
    assert summary["episodes"].sum() == len(steps)
    assert set(summary["tier"]) <= set(tier_labels(tiers)) and len(tier_labels(tiers)) == len(tiers) + 1
    below = sum(s < tiers[0] for s in steps)
    first = summary[summary["tier"] == f"< {tiers[0]}"]["episodes"].sum()
    assert first == below
    assert ((summary["low"] <= summary["success"]) & (summary["success"] <= summary["high"])).all()


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_group_row_pools_its_arms_episodes_per_training_seed(data: st.DataObject) -> None:
    """With equal episodes per arm, a group's success per training seed is the mean of its arms'
    (OGBench's figure: the mean over its five tasks); arms outside the group do not count."""
    from hplan.results.definition import Arm, Table
    from hplan.results.page import arm_summary, with_groups

    seeds, episodes = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 6))
    arms = [Arm(label=f"task {k}", group="mean") for k in range(data.draw(st.integers(1, 4)))] + [Arm(label="other")]
    rows = [{"arm": arm.label, "training_seed": s, "seed": e, "success": data.draw(st.booleans()), "steps": 10,
             "violations": 0, "violation": False, "act_ms": 1.0, "act_cpu_ms": 1.0, "model_evals": 100}
            for arm in arms for s in range(seeds) for e in range(episodes)]
    frame, groups = with_groups(pd.DataFrame(rows), Table(name="t", title="t", scenario="x", arms=tuple(arms)))
    assert groups == ["mean"]
    summary = arm_summary(frame, [a.label for a in arms] + groups).set_index("arm")
    members = [a.label for a in arms if a.group]
    for s in range(seeds):
        expected = sum(summary.loc[m, "success_per_seed"][s] for m in members) / len(members)
        assert math.isclose(summary.loc["mean", "success_per_seed"][s], expected)
    assert summary.loc["mean", "episodes"] == len(members) * seeds * episodes
    partial, names = with_groups(pd.DataFrame(rows).query("arm != @members[0]"),
                                 Table(name="t", title="t", scenario="x", arms=tuple(arms)))
    if len(members) > 1:  # a group missing an arm says so in its name
        assert names == [f"mean ({len(members) - 1} of {len(members)} measured)"]
    else:
        assert names == []
    if seeds > 1 and len(members) > 1:  # a seed that lacks one arm leaves the group (as one still being measured)
        last = seeds - 1
        uneven, names = with_groups(pd.DataFrame(rows).query("not (arm == @members[0] and training_seed == @last)"),
                                    Table(name="t", title="t", scenario="x", arms=tuple(arms)))
        kept = list(range(last))
        assert names == [f"mean (training seed{'s' if len(kept) > 1 else ''} {', '.join(map(str, kept))})"]
        assert set(uneven[uneven["arm"] == names[0]]["training_seed"]) == set(kept)


def test_a_group_named_like_an_arm_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    text = TINY.read_text().replace('label = "flat"', 'label = "flat"\ngroup = "hier"', 1)
    bad.write_text(text.replace('"tiny_four_rooms.toml"', f'"{FIXTURES}/tiny_four_rooms.toml"'))
    with pytest.raises(ConfigError) as err:
        load_definition(bad)
    assert err.value.field == "tables[0].arms[1].group"


def test_a_page_written_elsewhere_leaves_the_readme_alone(tmp_path, monkeypatch, capsys) -> None:
    """The committed definition writing a draft page (--out elsewhere) must not point the README's
    headline table at the draft: it rewrote README.md with links into /tmp."""
    readme = Path(__file__).resolve().parent.parent / "README.md"
    before = readme.read_text()
    code, stdout, stderr = run_cli(monkeypatch, capsys, "results", "--page-only", "--only", "corridor",
                                   "--out", str(tmp_path / "draft.md"), "--runs", str(tmp_path / "runs"))
    assert code == 0, stderr
    assert (tmp_path / "draft.md").exists() and "rewrote the headline table" not in stdout
    assert readme.read_text() == before


def test_an_evaluation_recorded_before_a_new_setting_is_reused_at_its_default(tmp_path) -> None:
    """Runs recorded before ``guardrails.risk`` and ``task.task_id`` existed still serve the page
    (it went blank when they were added); a recorded value that differs still does not."""
    import json

    from hplan.config import load_scenario
    from hplan.configio import to_mapping
    from hplan.results.definition import Arm
    from hplan.results.measure import DONE_MARKER, cached_evaluation, expected_run

    scenario = load_scenario(FIXTURES / "tiny_four_rooms.toml")
    arm = Arm(label="hier", planner="hier", guardrails="off")
    expected = expected_run(scenario, arm, "test", 2, "abc")
    out = tmp_path / "eval"
    (out / "episodes").mkdir(parents=True)
    guardrails = {k: v for k, v in expected["guardrails"].items() if k != "risk"}
    task = {k: v for k, v in expected["task"].items() if k != "task_id"}
    run = {"seed": expected["seed"], "split": "test", "episodes": 2, "checkpoint_sha256": "abc",
           "planner": to_mapping(scenario.planner) | {"kind": "hier"}, "guardrails": guardrails}
    (out / "run.json").write_text(json.dumps(run))
    (out / "episodes" / "ep-0000.jsonl").write_text(json.dumps({"scenario": {"env": expected["env"], "task": task}}) + "\n")
    pd.DataFrame({"success": [True, False]}).to_parquet(out / "episodes.parquet")
    (out / DONE_MARKER).write_text("{}")
    assert cached_evaluation(out, expected) is not None
    (out / "episodes" / "ep-0000.jsonl").write_text(
        json.dumps({"scenario": {"env": expected["env"], "task": task | {"task_id": 2}}}) + "\n")
    assert cached_evaluation(out, expected) is None


def test_a_table_names_every_commit_that_played_part_of_it() -> None:
    from hplan.results.page import measured, measured_text

    frame = pd.DataFrame({"measured_date": ["2026-12-06 15:00 UTC", "2026-12-06 20:00 UTC", "2026-12-06 15:00 UTC"],
                          "measured_commit": ["aaa", "bbb", "aaa"], "measured_dirty": [False, True, False]})
    meta = {"date": "2026-12-07 09:00 UTC", "commit": "ccc"}
    assert measured(frame, meta) == (["2026-12-06 15:00 UTC", "2026-12-06 20:00 UTC"], ["aaa", "bbb (uncommitted changes)"])
    assert measured_text(frame, meta) == ("2026-12-06 15:00 to 2026-12-06 20:00 UTC at commits `aaa`, "
                                          "`bbb (uncommitted changes)`")
    assert measured(frame.drop(columns=["measured_date", "measured_commit", "measured_dirty"]), meta) == (
        ["2026-12-07 09:00 UTC"], ["ccc"])


def test_provenance_names_the_commit_the_process_started_at(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long ``hplan results`` outlives commits: every evaluation it plays is stamped with the
    commit it started with, not the one HEAD has moved to since."""
    import subprocess
    import types

    from hplan.results import measure

    heads = iter(["aaaaaaa", "", "bbbbbbb", " M x.py"])  # rev-parse, status, then HEAD moves on

    def fake_run(argv, **kwargs):
        return types.SimpleNamespace(stdout=next(heads) + "\n")

    monkeypatch.setattr(measure, "_CODE", {})
    monkeypatch.setattr(subprocess, "run", fake_run)
    first, later = measure.provenance("cpu"), measure.provenance("cpu")
    assert (first["commit"], first["dirty"]) == ("aaaaaaa", False)
    assert (later["commit"], later["dirty"]) == ("aaaaaaa", False)


TINY_SUITE = f"""name = "tiny"
description = "two shifts of the tiny scenario"
seed = 0
episodes = 1
episodes_per_cell = 1

[[scenarios]]
scenario = "{FIXTURES}/tiny_four_rooms.toml"
max_steps = 4

[planner.search]
population = 8
iterations = 1
elites = 2

[[shifts]]
name = "none"
severities = [0]

[[shifts]]
name = "obs_noise"
severities = [1, 2]

[[thresholds]]
metric = "success_rate"
min = 2.0
"""


def _stress_definition(tmp_path: Path, suite_text: str = TINY_SUITE) -> Path:
    (tmp_path / "tiny_suite.toml").write_text(suite_text)
    definition = tmp_path / "stress_results.toml"
    definition.write_text(f"""[defaults]
training_seeds = [0, 1]
episodes = 2

[[tables]]
name = "tiny_stress"
title = "Tiny stress suite"
kind = "stress"
scenario = "{FIXTURES}/tiny_four_rooms.toml"
suite = "tiny_suite.toml"
""")
    return definition


def test_a_stress_table_runs_its_suite_on_each_training_seeds_model(tmp_path, monkeypatch, capsys) -> None:
    definition = _stress_definition(tmp_path)
    out, runs = tmp_path / "r.md", tmp_path / "runs"
    args = ("results", "--definition", str(definition), "--out", str(out), "--runs", str(runs))
    code, stdout, stderr = run_cli(monkeypatch, capsys, *args)
    assert code == 0, stderr
    text = out.read_text()
    assert "stress suite `" in text and "Not measured yet" not in text
    # the one threshold (success ≥ 2, impossible) fails for each training seed, and the page says where
    assert text.count("FAIL (worst") == 2 and "| training seed 0 | training seed 1 |" in text
    assert "fails at tiny_four_rooms/none/s0" in text
    for shift, severity in (("none", 0), ("obs_noise", 1), ("obs_noise", 2)):
        assert f"| {shift} | {severity} | 1 |" in text
    for seed in (0, 1):
        assert (runs / "stress" / "tiny_stress" / f"seed{seed}" / "suite" / "summary.csv").exists()
    stamps = {p: p.stat().st_mtime_ns for p in (runs / "stress").rglob("*.parquet")}
    code, stdout, _ = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "stress suite" not in stdout  # reused, not run again
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    # the same scenario read from another checkout (a measuring worktree): its suites are the same ones
    elsewhere = tmp_path / "checkout" / "tiny_four_rooms.toml"
    elsewhere.parent.mkdir()
    shutil.copy(FIXTURES / "tiny_four_rooms.toml", elsewhere)
    moved = tmp_path / "moved_results.toml"
    moved.write_text(definition.read_text().replace(f"{FIXTURES}/tiny_four_rooms.toml", str(elsewhere)))
    code, stdout, stderr = run_cli(monkeypatch, capsys, "results", "--definition", str(moved), "--out",
                                   str(tmp_path / "moved.md"), "--runs", str(runs), "--page-only")
    assert code == 0, stderr
    moved_page = (tmp_path / "moved.md").read_text()
    assert "Not measured yet" not in moved_page and "| obs_noise | 2 | 1 |" in moved_page
    # an edited suite file runs again (from scratch: its cells would not resume)
    suite = tmp_path / "tiny_suite.toml"
    suite.write_text(suite.read_text().replace("severities = [1, 2]", "severities = [1]"))
    code, stdout, stderr = run_cli(monkeypatch, capsys, *args, "--only", "tiny_stress")
    assert code == 0, stderr
    assert "stress suite" in stdout and "| obs_noise | 2 |" not in out.read_text()


@pytest.mark.parametrize("edit, replacement", [
    ('suite = "tiny_suite.toml"', ""),                  # a stress table without its suite
    ('kind = "stress"', 'kind = "heldout"'),            # a suite on another kind of table
])
def test_a_stress_table_is_checked_with_its_suite(tmp_path, edit, replacement) -> None:
    definition = _stress_definition(tmp_path)
    definition.write_text(definition.read_text().replace(edit, replacement))
    with pytest.raises(ConfigError) as err:
        load_definition(definition)
    assert err.value.field == "tables[0].suite" and "only a stress table" in str(err.value)


def test_a_stress_table_refuses_a_suite_of_another_scenario(tmp_path) -> None:
    definition = _stress_definition(tmp_path, TINY_SUITE.replace(f"{FIXTURES}/tiny_four_rooms.toml", "point_two_rooms"))
    with pytest.raises(ConfigError) as err:
        load_definition(definition)
    assert err.value.field == "tables[0].suite" and "point_two_rooms" in str(err.value)


OBJECTIVES = f"""[defaults]
training_seeds = [0]

[[tables]]
name = "tiny_objectives"
title = "Tiny objectives on held-out data"
kind = "heldout"
scenario = "{FIXTURES}/tiny_four_rooms.toml"
heldout_episodes = 4

[[tables.arms]]
label = "sigreg (the scenario's)"

[[tables.arms]]
label = "recon"
sets = ["model.regularizer=recon"]
"""


def test_a_heldout_table_scores_one_model_per_arm_on_the_same_held_out_data(tmp_path, monkeypatch, capsys) -> None:
    definition = tmp_path / "objectives.toml"
    definition.write_text(OBJECTIVES)
    out, runs = tmp_path / "r.md", tmp_path / "runs"
    args = ("results", "--definition", str(definition), "--out", str(out), "--runs", str(runs))
    code, stdout, stderr = run_cli(monkeypatch, capsys, *args)
    assert code == 0, stderr
    models = sorted(p.parent.name for p in (runs / "models").glob("*/seed0"))
    assert len(models) == 2 and models[0] == "tiny_four_rooms-4ep"  # the recon arm trained its own model
    assert [p.name for p in (runs / "data").iterdir() if "heldout" in p.name] == ["tiny_four_rooms-4ep-heldout4"]
    text = out.read_text()
    assert "| metric | sigreg (the scenario's) | recon |" in text
    rank = next(line for line in text.splitlines() if line.startswith("| latent_effective_rank |"))
    assert all(float(cell.split()[0]) >= 1.0 for cell in rank.strip("|").split("|")[1:])  # a rank, not a share
    csv = pd.read_csv(out.parent / "results" / "tiny_objectives.csv")
    assert sorted(csv["arm"]) == ["recon", "sigreg (the scenario's)"] and "latent_effective_rank" in csv
    code, stdout, _ = run_cli(monkeypatch, capsys, *args)
    assert code == 0 and "diagnostics" not in stdout and "train " not in stdout  # both arms reused


@pytest.mark.parametrize("arm, field", [
    ('planner = "hier"', "tables[0].arms[1]"),                       # not planned with
    ('sets = ["collect.episodes=8"]', "tables[0].arms[1].sets"),     # every arm shares the table's data
    ('sets = ["planner.horizon=3"]', "tables[0].arms[1].sets"),      # would not change the model
])
def test_a_heldout_arm_may_change_only_its_model(tmp_path, arm, field) -> None:
    definition = tmp_path / "objectives.toml"
    definition.write_text(OBJECTIVES.replace('sets = ["model.regularizer=recon"]', arm))
    with pytest.raises(ConfigError) as err:
        load_definition(definition)
    assert err.value.field == field
