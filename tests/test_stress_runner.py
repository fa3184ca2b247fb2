"""Suite runner: resume after a crash, parallel workers, thresholds, bad suite files, the report."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from hplan.errors import ConfigError, HplanError
from hplan.stress.cells import CellJob, CellResult, run_cell
from hplan.stress.runner import run_suite
from hplan.stress.suite import (H50Config, ResolvedScenario, SuiteShift, Threshold, load_suite, resolve_suite)
from hplan.stress.summary import evaluate_thresholds, verdict_table
from test_runner_support import one_torch_thread, tiny_checkpoint, two_rooms  # noqa: F401 (a fixture)
from test_stress_cells import StraightLineAgent, make_suite, open_scenario

CALLS: list[str] = []
CRASH_AFTER: list[int] = []


def scripted_cell(job: CellJob) -> CellResult:
    """Real cells with the scripted agent; crashes once CRASH_AFTER cells have run (an interrupted suite)."""
    if CRASH_AFTER and len(CALLS) >= CRASH_AFTER[0]:
        raise RuntimeError("simulated crash")
    CALLS.append(job.cell.id)
    return run_cell(job, lambda scenario, seed: StraightLineAgent())


def synthetic_cell(job: CellJob) -> CellResult:
    """No environment at all: a cheap cell for the process-pool test (runs in spawned workers)."""
    cell = job.cell
    rows = [{"scenario": cell.scenario, "shift": cell.shift, "severity": cell.severity, "episode": i, "seed": i,
             "success": bool(i % 2), "steps": 10, "violations": int(cell.severity > 1), "violations_wall_contact": 0,
             "guardrail_threshold": 0.5, "separation_bin": -1, "start_geodesic_steps": -1,
             "perturbation_onset": -1, "recovery_time": np.nan, "cell": cell.id, "pid": os.getpid()}
            for i in cell.episodes]
    return CellResult(pd.DataFrame(rows), pd.DataFrame())


def resolved() -> tuple[ResolvedScenario, ...]:
    return (ResolvedScenario("open", open_scenario(max_steps=40), Path(".")),)


def suite_for_resume():
    return make_suite(shifts=(SuiteShift("none", (0,)), SuiteShift("obs_noise", (0, 1, 2)), SuiteShift("kidnap", (1,))),
                      episodes=2, episodes_per_cell=1, h50=H50Config(enabled=True, separations=(0, 10, 20)),
                      thresholds=(Threshold("violation_rate", max=0.5), Threshold("success_rate", min=1.01, max_severity=0)))


def test_interrupted_suite_resumes_with_the_remaining_cells_only(tmp_path):
    suite = suite_for_resume()
    CALLS.clear()
    CRASH_AFTER[:] = [3]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_suite(suite, resolved(), tmp_path, cell_fn=scripted_cell, progress=False)
    first = list(CALLS)
    assert len(first) == 3
    assert sorted(p.name for p in (tmp_path / "cells").glob("*.steps.parquet")) == sorted(f"{c}.steps.parquet" for c in first)
    assert not (tmp_path / "results.parquet").exists()

    CALLS.clear()
    CRASH_AFTER.clear()
    outcome = run_suite(suite, resolved(), tmp_path, cell_fn=scripted_cell, progress=False)
    # 2 blocks x (none/0, obs_noise/1, obs_noise/2, kidnap/1) really run; obs_noise/0 are relabelled nominal cells
    assert set(CALLS).isdisjoint(first)
    assert len(first) + len(CALLS) == 8
    assert not any("obs_noise__s0" in c for c in first + CALLS)
    assert sorted(outcome.skipped) == sorted(first)
    results = pd.read_parquet(tmp_path / "results.parquet")
    assert len(results) == 10 and results.groupby(["shift", "severity"]).size().to_dict() == {
        ("kidnap", 1): 2, ("none", 0): 2, ("obs_noise", 0): 2, ("obs_noise", 1): 2, ("obs_noise", 2): 2}
    # the severity-0 rows of a shift are the nominal episodes, exactly
    nominal = results[results["shift"] == "none"].reset_index(drop=True)
    zero = results[(results["shift"] == "obs_noise") & (results["severity"] == 0)].reset_index(drop=True)
    assert zero["trajectory_sha256"].tolist() == nominal["trajectory_sha256"].tolist()

    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 5 and {"h50", "guardrail_auroc", "recovery_rate", "surprise_auroc"} <= set(summary.columns)
    verdicts = pd.read_csv(tmp_path / "thresholds.csv")
    assert verdicts["status"].tolist() == ["PASS", "FAIL"]  # nobody succeeds more than 100 %
    assert {(v.shift, v.severity) for v in outcome.failures} == {("none", 0)}  # the nominal world, reported once

    html = (tmp_path / "report.html").read_text()
    assert "Pass / fail" in html and html.count("data:image/png;base64,") >= 3
    assert "http://" not in html and "https://" not in html and "<script" not in html
    for shift in ("kidnap", "obs_noise", "none"):
        assert shift in html

    # a third run finds everything done
    CALLS.clear()
    again = run_suite(suite, resolved(), tmp_path, cell_fn=scripted_cell, progress=False, report=False)
    assert CALLS == [] and again.ran == [] and len(again.episodes) == 10


def test_resume_refuses_a_different_suite(tmp_path):
    suite = make_suite(shifts=(SuiteShift("none", (0,)),), episodes=1, episodes_per_cell=1)
    run_suite(suite, resolved(), tmp_path, cell_fn=synthetic_cell, progress=False, report=False)
    with pytest.raises(HplanError, match="different suite"):
        run_suite(dataclasses.replace(suite, seed=7), resolved(), tmp_path, cell_fn=synthetic_cell, progress=False)


def test_resume_refuses_results_made_against_another_scenario(tmp_path):
    """Editing the scenario a suite runs (here its step budget) invalidates finished cells."""
    suite = make_suite(shifts=(SuiteShift("none", (0,)),), episodes=1, episodes_per_cell=1)
    run_suite(suite, resolved(), tmp_path, cell_fn=synthetic_cell, progress=False, report=False)
    edited = (ResolvedScenario("open", open_scenario(max_steps=41), Path(".")),)
    with pytest.raises(HplanError, match="different suite"):
        run_suite(suite, edited, tmp_path, cell_fn=synthetic_cell, progress=False, report=False)


def test_cells_run_in_spawned_worker_processes(tmp_path):
    suite = make_suite(shifts=(SuiteShift("none", (0,)), SuiteShift("obs_noise", (1, 2, 3))), episodes=4,
                       episodes_per_cell=2, reuse_nominal=False)
    outcome = run_suite(suite, resolved(), tmp_path, workers=2, cell_fn=synthetic_cell, progress=False, report=False)
    assert len(outcome.ran) == 8 and len(outcome.episodes) == 16
    assert os.getpid() not in set(outcome.episodes["pid"])
    assert len(list((tmp_path / "cells").glob("*.steps.parquet"))) == 8


def test_threshold_selection_by_shift_and_severity():
    summary = pd.DataFrame({"scenario": ["a"] * 5, "shift": ["none", "x", "x", "y", "x"], "severity": [0, 1, 3, 2, 0],
                            "violation_rate": [0.0, 0.05, 0.5, np.nan, 0.0]})
    rules = (Threshold("violation_rate", max=0.1, max_severity=1),
             Threshold("violation_rate", max=0.1, shift="x"),
             Threshold("violation_rate", max=0.1, shift="y", undefined="pass"))
    verdicts = evaluate_thresholds(summary, rules)
    table = verdict_table(verdicts)
    # x at severity 0 is the nominal world again: checked under "none" only for "*" rules, but by a rule on x
    assert table["checked"].tolist() == [2, 3, 1]
    assert table["status"].tolist() == ["PASS", "FAIL", "PASS"]
    assert table["failures"].tolist()[1] == "a/x/s3"


SUITE_OK = """
name = "t"
checkpoint = "{ckpt}"
[[scenarios]]
scenario = "point_four_rooms"
[[shifts]]
name = "obs_noise"
severities = [0, 1]
"""


@pytest.mark.parametrize("edit,field,message", [
    (("obs_noise", "obs_nois"), "shifts[0].name", "unknown shift 'obs_nois'"),
    (("[0, 1]", "[0, 4]"), "shifts[0].severities[1]", "severity 4 out of range"),
    (('"point_four_rooms"', '"no_such_scenario"'), "scenarios[0].scenario", "cannot load scenario"),
    (("[0, 1]\n", '[0, 1]\n[[thresholds]]\nmetric = "h50"\nmin = 1\nshift = "push"\n'),
     "thresholds[0].shift", "not in this suite"),
    ((("[0, 1]\n", '[0, 1]\n[[shifts]]\nname = "kidnap"\n'), ('"point_four_rooms"', '"minigrid_lavacrossing"')),
     "shifts[1].name", "does not apply to hplan/MiniGridLavaCrossing-v0"),
    (("[0, 1]\n", '[0, 1]\n[[shifts]]\nname = "moved_zones"\n'), "shifts[1].name", "no restricted zones"),
    ((('"point_four_rooms"', '"pusher"'), ('"obs_noise"', '"occlusion"')), "shifts[0].name", "needs image observations"),
    (("[0, 1]\n", '[0, 1]\n[[thresholds]]\nmetric = "auroc"\nmax = 1\n'), "thresholds[0].metric", "must be one of"),
])
def test_bad_suite_files_fail_with_one_line(tmp_path, edit, field, message):
    path = tmp_path / "bad.toml"
    text = SUITE_OK.format(ckpt=tmp_path)
    for old, new in (edit if isinstance(edit[0], tuple) else (edit,)):
        text = text.replace(old, new)
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        resolve_suite(load_suite(path))
    assert err.value.file == str(path) and err.value.field == field
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_checkpoint_fails_before_anything_runs(tmp_path):
    from hplan.cli import app

    path = tmp_path / "s.toml"
    path.write_text(SUITE_OK.format(ckpt=tmp_path / "nope"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["stress", str(path), "--out", str(out)])
    assert isinstance(result.exception, ConfigError)
    assert result.exception.field == "checkpoint" and "not found" in str(result.exception)
    assert not out.exists()


def test_shipped_suites_parse():
    for name in ("smoke", "standard", "lavacrossing", "pusher"):
        suite = load_suite(name)
        assert suite.shifts and suite.scenarios and suite.thresholds


def test_cli_exit_code_names_the_failing_threshold(tmp_path, monkeypatch):
    """`hplan stress` end to end (validation stubbed to the scripted scenario): a failing threshold is
    a ThresholdFailure (exit code 1) whose one line names the rule and the failing cells."""
    import hplan.stress.api as api
    import hplan.stress.runner as runner
    from hplan.cli import app
    from hplan.errors import ThresholdFailure

    suite = make_suite(shifts=(SuiteShift("none", (0,)), SuiteShift("obs_noise", (2,))), episodes=1, episodes_per_cell=1,
                       h50=H50Config(enabled=False),
                       thresholds=(Threshold("success_rate", min=1.01, shift="obs_noise"), Threshold("violation_rate", max=1.0)))
    monkeypatch.setattr(api, "validate_suite", lambda path, checkpoint, **overrides: (suite, resolved()))
    real = runner.run_suite
    monkeypatch.setattr(runner, "run_suite", lambda *a, **k: real(*a, **{**k, "cell_fn": scripted_cell}))
    CALLS.clear()
    CRASH_AFTER.clear()
    result = CliRunner().invoke(app, ["stress", "x.toml", "--out", str(tmp_path), "--no-report"])
    assert isinstance(result.exception, ThresholdFailure) and result.exception.exit_code == 1
    message = str(result.exception)
    assert "success_rate >= 1.01 (shift obs_noise" in message and "obs_noise/s2" in message
    assert "violation_rate" not in message  # the passing rule is not named
    assert (tmp_path / "results.parquet").exists() and not (tmp_path / "report.html").exists()


def test_cli_overrides_change_the_suite_and_its_fingerprint():
    from hplan.stress.api import with_overrides

    suite = load_suite("standard")
    quick = with_overrides(suite, episodes=1, max_steps=30)
    assert quick.episodes == 1 and quick.episodes_per_cell == 1 and quick.blocks == 1
    assert all(s.max_steps == 30 for s in quick.scenarios)
    assert quick.fingerprint() != suite.fingerprint()  # a resume with other overrides is refused
    assert with_overrides(suite) == suite
    with pytest.raises(HplanError, match="--episodes must be >= 1"):
        with_overrides(suite, episodes=0)


def test_stress_episodes_are_logged_and_replay_under_their_shift(tmp_path, one_torch_thread):
    """Every stress episode writes a log that ``hplan replay --verify`` re-runs, agent included, in
    its shifted world (noise, kidnap onset, H50 placement), stepped in lockstep as the cell was.
    A replay that rebuilt the unshifted world diverges: the shift is really in the log."""
    from hplan.errors import ReplayDivergence
    from hplan.replay import verify_log
    from hplan.runner.logs import read_episode_log, write_episode_log

    scenario = two_rooms(max_steps=12, planner={"kind": "flat", "horizon": 3,
                                                "search": {"population": 8, "elites": 2, "iterations": 1}})
    ckpt = tiny_checkpoint(tmp_path / "ckpt", scenario)
    suite = make_suite(shifts=(SuiteShift("none", (0,)), SuiteShift("obs_noise", (0, 2)), SuiteShift("kidnap", (1,))),
                       episodes=2, episodes_per_cell=2, h50=H50Config(enabled=True, separations=(0, 6, 12)))
    out = tmp_path / "out"
    outcome = run_suite(suite, (ResolvedScenario("two rooms", scenario, ckpt),), out, progress=False, report=False)
    logs = sorted((out / "episodes").rglob("*.jsonl"))
    ran = {cell for cell in outcome.episodes["cell"] if "+obs_noise+s0+" not in cell}  # severity 0 reuses nominal
    assert {path.parent.name for path in logs} == ran and len(logs) == 2 * len(ran)
    assert set(outcome.episodes["log"]) == {str(path) for path in logs}
    for path in logs:
        report = verify_log(path, mode="agent")
        assert report.verified and report.agent_ok, path
    noisy = next(path for path in logs if "+obs_noise+s2+" in str(path))
    log = read_episode_log(noisy)
    unshifted = tmp_path / "unshifted.jsonl"
    write_episode_log(unshifted, dataclasses.replace(log.header, stress=None), log.record, log.summary)
    with pytest.raises(ReplayDivergence):
        verify_log(unshifted, mode="agent")
    damaged = tmp_path / "damaged.jsonl"  # a hand-edited stress entry: one error naming the file and field
    broken = {k: v for k, v in log.header.stress.items() if k != "severity"}
    write_episode_log(damaged, dataclasses.replace(log.header, stress=broken), log.record, log.summary)
    with pytest.raises(ConfigError, match=r"damaged\.jsonl.*stress\.severity"):
        verify_log(damaged, mode="agent")
