"""Bad inputs from issue 25: each is refused in one line (file and field), before any work.

Tiny workloads only: logs of a few steps from a greedy controller or an untrained checkpoint, the
synthetic study pipeline, no training.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from test_runner_support import TINY_PLANNER, make_greedy_agent, one_torch_thread, tiny_checkpoint, toml_lines, two_rooms  # noqa: F401

from hplan.runner import run_episodes
from hplan.runner.episodes import episode_log_path
from hplan.runner.logs import _chain
from cli_support import TINY_TWO_ROOMS_TOML, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rewrite(path: Path, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    """Edit a log's JSON lines and recompute the chain (as a careful forger would)."""
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    edit(objects)
    previous = ""
    for obj in objects:
        obj.pop("chain", None)
        obj["chain"] = previous = _chain(previous, obj)
    path.write_text("\n".join(json.dumps(o) for o in objects) + "\n")


def _one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# ------------------------------------------------------------------ item 7: replay --verify
@pytest.fixture(scope="module")
def greedy_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 6-step episode log of the greedy controller (no checkpoint recorded)."""
    root = tmp_path_factory.mktemp("greedy")
    run_episodes(two_rooms(max_steps=6), None, episodes=1, seed=0, log_dir=root, make_agent=make_greedy_agent)
    return episode_log_path(root, 0)


@pytest.mark.parametrize(("edit", "where"), [
    (lambda o: o[3].update(cost="x"), "line 4: 'cost': expected a number"),
    (lambda o: o[3].update(action="abc"), "line 4: 'action'"),
    (lambda o: o[3].update(plan=[1]), "line 4: 'plan': expected a table"),
    (lambda o: o[3].update(violations=[1]), "line 4: 'violations': expected a table"),
    (lambda o: o[0].update(scenario="x"), "line 1: 'scenario': expected a table"),
    (lambda o: o[0].update(env=[1]), "line 1: 'env': expected a table"),
    (lambda o: o[0].update(checkpoint_path=5), "line 1: 'checkpoint_path': expected a string"),
    (lambda o: o[1].update(violation_names=5), "line 2: 'violation_names': expected a list"),
    (lambda o: o[-1].update(final_geodesic="x"), "'final_geodesic': expected a number"),
])
def test_replay_verify_names_a_wrongly_typed_log_value(greedy_log: Path, tmp_path: Path, edit: Any, where: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ep.jsonl"
    shutil.copy(greedy_log, path)
    _rewrite(path, edit)
    code, out, err = run_cli(monkeypatch, capsys, "replay", str(path), "--verify")
    line = _one_line_error(code, err)
    assert str(path) in line and where in line
    assert "reproduced" not in out


def test_replay_verify_never_reports_a_skipped_agent_rerun_as_reproduced(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A forged plan with a recomputed chain passes the actions replay and the chain; with the
    checkpoint gone the agent cannot be re-run, so --verify must fail rather than say reproduced."""
    from hplan.models.checkpoint import load_world_model

    scenario = two_rooms(max_steps=6, planner=TINY_PLANNER)
    ckpt = tiny_checkpoint(tmp_path / "ckpt", scenario)
    run_episodes(scenario, load_world_model(ckpt, device="cpu"), planner_kind="hier", guardrails="penalty",
                 episodes=1, seed=4, log_dir=tmp_path / "run", checkpoint=ckpt, device="cpu")
    path = episode_log_path(tmp_path / "run", 0)
    _rewrite(path, lambda o: o[3]["plan"].update(subgoal_index=o[3]["plan"]["subgoal_index"] + 7))
    (ckpt / "model.pt").unlink()
    code, out, err = run_cli(monkeypatch, capsys, "replay", str(tmp_path / "run"), "--verify")
    line = _one_line_error(code, err)
    assert str(path) in line and "agent not re-run" in line and "not available" in line
    assert "0/1 episode logs reproduced" in out
    code, out, err = run_cli(monkeypatch, capsys, "replay", str(tmp_path / "run"), "--verify", "--actions-only")
    assert code == 0, err
    assert "reproduced" not in out and "agent not re-run: --actions-only" in out


# ------------------------------------------------------------ item 6: output paths checked first

SUITE_TOML = """
name = "tiny"
episodes = 1
episodes_per_cell = 1
checkpoint = "{ckpt}"
[[scenarios]]
scenario = "{scenario}"
[[shifts]]
name = "none"
severities = [0]
"""

SYNTHETIC_STUDY = """
name = "tiny_synthetic"
scenario = "point_two_rooms"
pipeline = "synthetic"
n_trials = 1
[synthetic]
epochs = 1
[[objectives]]
metric = "success_rate"
"""


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A state-observation scenario file, an untrained checkpoint for it, a one-cell suite, a synthetic study."""
    root = tmp_path_factory.mktemp("files")
    scenario = root / "tiny.toml"
    scenario.write_text(TINY_TWO_ROOMS_TOML.format(planner=toml_lines(TINY_PLANNER)))
    ckpt = tiny_checkpoint(root / "ckpt", two_rooms(max_steps=5, planner=TINY_PLANNER))
    suite = root / "suite.toml"
    suite.write_text(SUITE_TOML.format(ckpt=ckpt, scenario=scenario))
    study = root / "study.toml"
    study.write_text(SYNTHETIC_STUDY)
    return {"scenario": scenario, "ckpt": ckpt, "suite": suite, "study": study}


def _command(kind: str, files: dict[str, Path], out: Path) -> list[str]:
    return {
        "train": ["train", str(files["scenario"]), "--data", str(out.parent / "no_data"), "--out", str(out)],
        "run": ["run", str(files["scenario"]), "--checkpoint", str(files["ckpt"]), "--episodes", "1", "--device", "cpu",
                "--out", str(out)],
        "stress": ["stress", str(files["suite"]), "--out", str(out), "--no-report"],
        "study": ["study", "run", str(files["study"]), "--out", str(out)],
        "collect": ["collect", str(files["scenario"]), "--episodes", "1", "--out", str(out)],
        "demo": ["demo", "--scenario", str(files["scenario"]), "--quick", "--fresh", "--device", "cpu", "--out", str(out)],
    }[kind]


UNWRITABLE = Path("/proc/hplan-output-check")
"""A place no one can make a folder in, root included (``os.access`` said yes to root everywhere)."""


@pytest.mark.parametrize("kind", ["train", "run", "stress", "study", "collect", "demo"])
@pytest.mark.parametrize("place", ["existing file", "under a file", "unrelated directory", "unwritable"])
def test_output_path_is_checked_before_any_work(tiny_files: dict[str, Path], tmp_path: Path, kind: str, place: str,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("mine\n")
    unrelated = tmp_path / "my_notes"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("mine\n")
    out = {"existing file": blocker, "under a file": blocker / "sub", "unrelated directory": unrelated,
           "unwritable": UNWRITABLE}[place]
    code, _, err = run_cli(monkeypatch, capsys, *_command(kind, tiny_files, out))
    line = _one_line_error(code, err)
    assert f"{out}: --out:" in line
    assert blocker.read_text() == "mine\n"
    assert [p.name for p in unrelated.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("place", ["a directory", "under a file", "unwritable"])
def test_replay_render_path_is_checked_before_the_replay(tiny_files: dict[str, Path], tmp_path: Path, place: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(monkeypatch, capsys, *_command("run", tiny_files, tmp_path / "eval"))
    assert code == 0, err
    blocker = tmp_path / "a_file"
    blocker.write_text("mine\n")
    render = {"a directory": tmp_path, "under a file": blocker / "x.gif", "unwritable": UNWRITABLE / "x.gif"}[place]
    code, out, err = run_cli(monkeypatch, capsys, "replay", str(tmp_path / "eval" / "episodes" / "ep-0000.jsonl"),
                             "--render", str(render))
    line = _one_line_error(code, err)
    assert f"{render}: --render:" in line and "replay" not in out
    assert blocker.read_text() == "mine\n"


def test_run_into_an_earlier_run_leaves_no_stale_logs(tiny_files: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    args = _command("run", tiny_files, out)
    code, _, err = run_cli(monkeypatch, capsys, *[a if a != "1" else "2" for a in args])
    assert code == 0, err
    assert len(list((out / "episodes").glob("ep-*.jsonl"))) == 2
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert [p.name for p in (out / "episodes").glob("ep-*.jsonl")] == ["ep-0000.jsonl"]


# ------------------------------------------- item 2: a study's scenario is checked at load, --check
@pytest.mark.parametrize(("extra", "field"), [
    ('[overrides.env.kwargs]\nlayout = "nope"\n', "scenario/overrides"),
    ('[[params]]\ntarget = "env.kwargs.layout"\nchoices = ["two_rooms", "nope"]\n', "params[0] (env.kwargs.layout)"),
    ('stress_suite = "no_such_suite"\n', "stress_suite"),
])
def test_study_that_makes_an_invalid_scenario_is_refused_by_check(tmp_path: Path, extra: str, field: str,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study.toml"
    top, tables = (extra, "") if extra.startswith("stress_suite") else ("", extra)
    study.write_text(SYNTHETIC_STUDY.replace('pipeline = "synthetic"\n', f'pipeline = "synthetic"\n{top}') + tables)
    code, _, err = run_cli(monkeypatch, capsys, "study", "run", str(study), "--check", "--out", str(tmp_path / "o"))
    line = _one_line_error(code, err)
    assert line.startswith(f"error: {study}: {field}:")
    assert "nope" in line or "no_such_suite" in line
    assert not (tmp_path / "o").exists()


def test_study_run_check_validates_and_runs_nothing(tiny_files: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "study", "run", str(tiny_files["study"]), "--check",
                             "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert out.startswith(f"ok {tiny_files['study']}") and not (tmp_path / "o").exists()


# ---------------------------------------------------------------- item 4: sane upper bounds
@pytest.mark.parametrize(("assignment", "field"), [
    ("planner.search.population=1000000000", "planner.search.population: must be <= 65536"),
    ("planner.codes.iterations=100000", "planner.codes.iterations: must be <= 1000"),
    ("collect.episodes=1000000000000", "collect.episodes: must be <= 1000000"),
    ("collect.steps_per_episode=1000000000", "collect.steps_per_episode: must be <= 100000"),
    ("train.max_epochs=1000000000", "train.max_epochs: must be <= 10000"),
    ("train.batch_size=1000000000000", "train.batch_size: must be <= 65536"),
    ("train.label_budget=1000000000000", "train.label_budget: must be <= 10000000"),
    ("train.predictor_fit_steps=1000000000", "train.predictor_fit_steps: must be <= 1000000"),
    ("train.guardrail_weak_rows=1000000000", "train.guardrail_weak_rows: must be <= 10000000"),
    ("train.guardrail_weak_batch=1000000000", "train.guardrail_weak_batch: must be <= 65536"),
    ("train.window_stride=1000000000", "train.window_stride: must be <= 100000"),
    # finite but absurd values of fields without a bound of their own: configio's generic size limit
    ("train.pred_weight=1e300", "train.pred_weight: must be at most 1,000,000 in size"),
    ("guardrails.weight=1e30", "guardrails.weight: must be at most 1,000,000 in size"),
    ("planner.route.patience=10000000000", "planner.route.patience: must be at most 1,000,000 in size"),
])
def test_absurd_sizes_are_refused_by_scenario_check(assignment: str, field: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "scenario", "check", "point_two_rooms", "--set", assignment)
    assert field in _one_line_error(code, err)


def test_collect_with_a_huge_episode_count_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "collect", "point_two_rooms", "-n", "1000000000000",
                           "--out", str(tmp_path / "data"))
    assert code == 2 and "--episodes" in err and "1000000" in err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("kind", ["suite file", "stress --episodes", "run --episodes", "study file", "study --episodes"])
def test_huge_episode_counts_are_refused_before_any_work(tiny_files: dict[str, Path], tmp_path: Path, kind: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """10^12 episodes per cell passed ``stress --check`` and ended in a MemoryError traceback with
    ``suite.json`` left behind; study seeds and ``run --episodes`` had no bound either."""
    huge, out = "1000000000000", tmp_path / "out"
    suite, study = tmp_path / "suite.toml", tmp_path / "study.toml"
    suite.write_text(tiny_files["suite"].read_text().replace("episodes = 1\n", f"episodes = {huge}\n", 1))
    study.write_text(SYNTHETIC_STUDY.replace("n_trials = 1\n", f"n_trials = 1\nseeds = {huge}\n"))
    args = {"suite file": ["stress", str(suite), "--out", str(out), "--no-report"],
            "stress --episodes": ["stress", str(tiny_files["suite"]), "--episodes", huge, "--out", str(out)],
            "run --episodes": _command("run", tiny_files, out)[:-2] + ["--episodes", huge, "--out", str(out)],
            "study file": ["study", "run", str(study), "--out", str(out)],
            "study --episodes": ["study", "run", str(tiny_files["study"]), "--episodes", huge, "--out", str(out)]}[kind]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and ("1,000,000" in err or "1000000" in err), err
    assert "Traceback" not in err and not out.exists()


def test_study_parameters_valid_alone_but_not_together_are_refused_by_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """population 32..64 with elites 4..48: each range is valid, the corner (32, 48) is not; the check
    passed and the trial failed with a traceback."""
    study = tmp_path / "study.toml"
    study.write_text(SYNTHETIC_STUDY + '[[params]]\ntarget = "planner.search.population"\nkind = "int"\nlow = 32\n'
                     'high = 64\n[[params]]\ntarget = "planner.search.elites"\nkind = "int"\nlow = 4\nhigh = 48\n')
    code, _, err = run_cli(monkeypatch, capsys, "study", "run", str(study), "--check", "--out", str(tmp_path / "o"))
    line = _one_line_error(code, err)
    assert line.startswith(f"error: {study}: params: rejected together by the scenario (")
    assert "planner.search.population = 32" in line and "planner.search.elites = 48" in line
    assert not (tmp_path / "o").exists()


def test_a_study_whose_every_trial_fails_exits_non_zero_without_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A failing trial printed Optuna's traceback; now one line per failed trial, and a study whose
    trials all fail ends with one error line and a non-zero exit."""
    from hplan.errors import HplanError
    from hplan.studies import workers

    def broken(ctx):  # noqa: ANN001, ANN202 - the pipeline seam
        raise HplanError("simulated pipeline failure")

    monkeypatch.setitem(workers.PIPELINES, "synthetic", broken)
    study = tmp_path / "study.toml"
    study.write_text(SYNTHETIC_STUDY)
    code, _, err = run_cli(monkeypatch, capsys, "study", "run", str(study), "--out", str(tmp_path / "o"))
    assert code == 2 and "Traceback" not in err, err
    assert "trial 0 failed: HplanError: simulated pipeline failure" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: study tiny_synthetic:") and last.endswith("simulated pipeline failure")


def test_a_grid_study_whose_only_arm_fails_exits_non_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A grid counts failed arms against its budget, so one failed arm ended the study, exit 0."""
    from hplan.errors import HplanError
    from hplan.studies import workers

    def broken(ctx):  # noqa: ANN001, ANN202 - the pipeline seam
        raise HplanError("simulated pipeline failure")

    monkeypatch.setitem(workers.PIPELINES, "synthetic", broken)
    study = tmp_path / "study.toml"
    study.write_text(SYNTHETIC_STUDY + '[sampler]\nkind = "grid"\n[[params]]\ntarget = "planner.kind"\n'
                                       'choices = ["flat"]\n')
    code, _, err = run_cli(monkeypatch, capsys, "study", "run", str(study), "--out", str(tmp_path / "o"))
    assert code == 2 and "Traceback" not in err, err
    assert "every trial this worker ran failed (1); last: HplanError: simulated pipeline failure" in err


def test_the_synthetic_pipeline_runs_a_scenario_shorter_than_twenty_steps(tiny_files: dict[str, Path], tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Successful episodes' lengths were drawn from [20, max_steps]: every trial of a 5-step scenario
    failed with ``ValueError: low >= high``."""
    study = tmp_path / "study.toml"
    study.write_text(SYNTHETIC_STUDY.replace('scenario = "point_two_rooms"', f'scenario = "{tiny_files["scenario"]}"'))
    code, _, err = run_cli(monkeypatch, capsys, "study", "run", str(study), "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "failed" not in err


def test_study_parameter_with_a_huge_bound_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study.toml"
    study.write_text(SYNTHETIC_STUDY + '[[params]]\ntarget = "planner.search.population"\nkind = "int"\nlow = 16\nhigh = 1e12\n')
    code, _, err = run_cli(monkeypatch, capsys, "study", "run", str(study), "--check")
    line = _one_line_error(code, err)
    assert f"{study}: params[0] (planner.search.population)" in line and "must be <= 65536" in line


# ------------------------------------------------------------------------------------- item 8
def test_files_are_written_with_the_usual_permissions(tmp_path: Path) -> None:
    """mkstemp's 0600 used to survive the atomic rename: every report, table and model was private."""
    import os

    import pandas as pd

    from hplan.io import write_dataframe, write_json

    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_dataframe(tmp_path / "b.csv", pd.DataFrame({"x": [1]}))
        os.umask(0o077)
        write_json(tmp_path / "private.json", {"x": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600  # the umask still rules


def test_seed_past_32_bits_is_refused(tiny_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "train", str(tiny_files["scenario"]), "--data", str(tmp_path / "d"),
                           "--out", str(tmp_path / "run"), "--seed", str(2**64))
    assert code == 2 and "--seed" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    code, _, err = run_cli(monkeypatch, capsys, "scenario", "check", "point_two_rooms", "--set", f"seed={2**32}")
    assert "seed: must be <= 4294967295" in _one_line_error(code, err)


def test_device_hplan_cannot_run_on_is_refused(tiny_files: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = _command("run", tiny_files, tmp_path / "eval")
    args[args.index("cpu")] = "meta"
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert "device 'meta'" in _one_line_error(code, err)
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("kind", ["scenario", "suite", "study"])
def test_empty_name_is_refused(tiny_files: dict[str, Path], tmp_path: Path, kind: str,
                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"{kind}.toml"
    text = tiny_files[kind].read_text()
    path.write_text(text.replace('name = "tiny_two_rooms"', 'name = ""').replace('name = "tiny"', 'name = " "')
                    .replace('name = "tiny_synthetic"', 'name = ""'))
    argv = {"scenario": ["scenario", "check", str(path)], "suite": ["stress", str(path), "--check", "--out", "o"],
            "study": ["study", "run", str(path), "--check"]}[kind]
    code, _, err = run_cli(monkeypatch, capsys, *argv)
    assert f"{path}: name: must not be empty" in _one_line_error(code, err)


def test_resumed_training_keeps_the_lightning_metrics_rows(tmp_path: Path) -> None:
    """Lightning deletes logs/version_0/metrics.csv when its CSV writer starts: a resume lost the
    rows of the epochs before it."""
    from synthetic_episodes import ENV_ID, make_dataset

    from hplan.config import EnvConfig, ScenarioConfig
    from hplan.models.training import train_world_model

    data = make_dataset(tmp_path / "data", episodes=8, steps=16, obs="state")
    scenario = ScenarioConfig(name="synthetic", env=EnvConfig(id=ENV_ID, obs_mode="state"))
    tiny = dict(latent_dim=8, hidden_dim=16, code_dim=2, subgoal_interval=3, distance_dim=8, batch_size=8,
                rollout_horizon=2, label_budget=20, guardrail_fit_steps=2, distance_fit_steps=2, subgoal_fit_steps=2,
                predictor_fit_steps=2, val_fraction=0.3, device="cpu")
    run = train_world_model(scenario, data, tmp_path / "run", max_epochs=1, **tiny)
    metrics = run / "logs" / "version_0" / "metrics.csv"
    first = metrics.read_text().splitlines()
    assert len(first) > 1
    train_world_model(scenario, data, tmp_path / "run", max_epochs=2, **tiny)
    rows = list(csv.DictReader(metrics.read_text().splitlines()))
    assert {row["epoch"] for row in rows} == {"0", "1"}
    assert len(rows) > len(first) - 1


# ------------------------------------------------------------------------------------- item 5
@pytest.mark.parametrize("content", [b"\xff\xfe", b"[]", b"{not json"])
@pytest.mark.parametrize("command", ["run", "inspect"])
def test_damaged_run_config_is_one_line(tiny_files: dict[str, Path], tmp_path: Path, content: bytes, command: str,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_files["ckpt"], ckpt)
    (ckpt / "metrics.csv").write_text("epoch\n0\n")
    (ckpt / "config.json").write_bytes(content)
    args = ["inspect", str(ckpt)] if command == "inspect" else [
        "run", str(tiny_files["scenario"]), "--checkpoint", str(ckpt), "--device", "cpu", "--out", str(tmp_path / "e")]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{ckpt / 'config.json'}:" in err and not (tmp_path / "e").exists()


@pytest.mark.parametrize("content", [b"\xff", b"[]"])
def test_damaged_dataset_manifest_is_one_line(tmp_path: Path, content: bytes) -> None:
    from hplan.data.shards import read_manifest
    from hplan.errors import HplanError

    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(HplanError, match="manifest.json"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("content", [b"\xff", b"[]", b"{"])
def test_damaged_stress_marker_is_called_damaged_not_another_suite(tiny_files: dict[str, Path], tmp_path: Path,
                                                                 content: bytes, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "stress"
    out.mkdir()
    (out / "suite.json").write_bytes(content)
    code, _, err = run_cli(monkeypatch, capsys, "stress", str(tiny_files["suite"]), "--out", str(out), "--no-report")
    line = _one_line_error(code, err)
    assert f"{out / 'suite.json'}:" in line and "cannot be resumed" in line and "different suite" not in line
    assert (out / "suite.json").read_bytes() == content


SYNTHETIC_SCENARIO = """
name = "synthetic"
[env]
id = "hplan/SyntheticRooms-v0"
obs_mode = "state"
[model]
latent_dim = 8
hidden_dim = 16
code_dim = 2
subgoal_interval = 3
distance_dim = 8
[train]
max_epochs = 1
batch_size = 8
rollout_horizon = 2
label_budget = 20
guardrail_fit_steps = 2
distance_fit_steps = 2
subgoal_fit_steps = 2
predictor_fit_steps = 2
val_fraction = 0.3
device = "cpu"
cpu_threads = 1
"""


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A synthetic state dataset (2 shards), a scenario file for it, and a one-epoch training run."""
    from synthetic_episodes import make_dataset

    from hplan.models.training import train_world_model

    root = tmp_path_factory.mktemp("synthetic")
    data = make_dataset(root / "data", episodes=8, steps=16, obs="state")
    scenario = root / "synthetic.toml"
    scenario.write_text(SYNTHETIC_SCENARIO)
    run = train_world_model(scenario, data, root / "run")
    return {"data": data, "scenario": scenario, "run": run}


def _train_args(files: dict[str, Path], data: Path, out: Path) -> list[str]:
    return ["train", str(files["scenario"]), "--data", str(data), "--out", str(out)]


@pytest.mark.parametrize("damage", ["empty", "corrupt"])
def test_damaged_last_checkpoint_is_one_line_on_resume(synthetic_run: dict[str, Path], tmp_path: Path, damage: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """An empty last.ckpt exited 130 with no message (click turns EOFError into Abort); a corrupt
    one was a RuntimeError traceback from inside Lightning's fit."""
    run = tmp_path / "run"
    shutil.copytree(synthetic_run["run"], run)
    ckpt = run / "checkpoints" / "last.ckpt"
    blob = ckpt.read_bytes()
    ckpt.write_bytes(b"" if damage == "empty" else blob[:64] + bytes(200) + blob[264:])
    before = (run / "metrics.csv").read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, *_train_args(synthetic_run, synthetic_run["data"], run),
                           "--max-epochs", "2")
    line = _one_line_error(code, err)
    assert f"{ckpt}:" in line and "delete it" in line
    assert (run / "metrics.csv").read_bytes() == before


def _damage(path: Path, damage: str) -> None:
    blob = path.read_bytes()
    path.write_bytes(b"" if damage == "empty" else blob[: len(blob) // 2])


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_collect_resume_collects_a_damaged_listed_shard_again(tmp_path: Path, damage: str,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A listed shard that no longer opens used to count as done: the dataset was called complete."""
    from hplan.data.shards import read_manifest, shard_path

    out = tmp_path / "data"
    args = ["collect", "point_two_rooms", "-n", "4", "--out", str(out), "--set", "env.obs_mode=state",
            "--set", "collect.steps_per_episode=5", "--set", "collect.episodes_per_shard=2", "--set", "collect.num_envs=2"]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    shard = shard_path(out, 0)
    original = shard.read_bytes()
    _damage(shard, damage)
    code, out_text, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "damaged shard" in out_text and "1 shards written, 1 already complete" in out_text
    assert shard.read_bytes() == original  # the same episodes, collected again
    manifest = read_manifest(out)
    assert manifest["complete"] and [e["index"] for e in manifest["shards"]] == [0, 1]


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_train_refuses_a_damaged_shard_in_one_line(synthetic_run: dict[str, Path], tmp_path: Path, damage: str,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """An empty shard exited 130 with no message (np.load's EOFError); a truncated one was a traceback."""
    from hplan.data.shards import shard_path

    data = tmp_path / "data"
    shutil.copytree(synthetic_run["data"], data)
    _damage(shard_path(data, 1), damage)
    code, _, err = run_cli(monkeypatch, capsys, *_train_args(synthetic_run, data, tmp_path / "run"))
    line = _one_line_error(code, err)
    assert f"{shard_path(data, 1)}: damaged shard" in line and "hplan collect" in line
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def image_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An untrained image-observation checkpoint of tests/fixtures/tiny_four_rooms.toml, and the same
    scenario with state observations."""
    import torch

    from hplan.config import load_scenario
    from hplan.envs.factory import make_env
    from hplan.models.checkpoint import save_world_model
    from hplan.models.world_model import LatentWorldModel
    from hplan.vocabulary.protocol import ActionSpec

    root = tmp_path_factory.mktemp("image")
    fixture = Path(__file__).parent / "fixtures" / "tiny_four_rooms.toml"
    scenario = load_scenario(fixture)
    env = make_env(scenario)
    try:
        shape, names = tuple(env.observation_space.shape), tuple(env.unwrapped.violation_names)
    finally:
        env.close()
    torch.manual_seed(0)
    model = LatentWorldModel(scenario.model, obs_kind="image", obs_shape=shape, action_spec=ActionSpec(dim=2),
                             guardrail_names=names, env_id=scenario.env.id)
    save_world_model(model, root / "ckpt" / "model.pt")
    state = root / "tiny_state.toml"
    state.write_text(fixture.read_text().replace('obs_mode = "image"', 'obs_mode = "state"'))
    suite = root / "suite.toml"
    suite.write_text(SUITE_TOML.format(ckpt=root / "ckpt", scenario=state))
    return {"ckpt": root / "ckpt", "state": state, "suite": suite}


@pytest.mark.parametrize("command", ["run", "stress --check", "stress"])
def test_image_checkpoint_with_a_state_scenario_is_one_line(image_checkpoint: dict[str, Path], tmp_path: Path,
                                                            command: str, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = {"run": ["run", str(image_checkpoint["state"]), "--checkpoint", str(image_checkpoint["ckpt"]),
                    "--episodes", "1", "--device", "cpu", "--out", str(out)],
            "stress --check": ["stress", str(image_checkpoint["suite"]), "--check", "--out", str(out)],
            "stress": ["stress", str(image_checkpoint["suite"]), "--out", str(out), "--no-report"]}[command]
    code, _, err = run_cli(monkeypatch, capsys, *args)
    line = _one_line_error(code, err)
    assert f"{image_checkpoint['ckpt'] / 'model.pt'}: trained on image observations (64, 64, 3)" in line
    assert f"{image_checkpoint['state']} (env.obs_mode = 'state') gives state observations" in line
    assert not out.exists()


@pytest.mark.parametrize(("other", "field"), [
    ({"env_id": "hplan/PointRooms-v0"}, "env_id: collected on 'hplan/PointRooms-v0'"),
    ({"obs": "image"}, "obs_shape: (16, 16, 3)"),
])
def test_inspect_data_from_another_environment_is_one_line(synthetic_run: dict[str, Path], tmp_path: Path,
                                                           other: dict[str, str], field: str,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from synthetic_episodes import make_dataset

    data = make_dataset(tmp_path / "other", episodes=4, steps=8, **other)
    code, out, err = run_cli(monkeypatch, capsys, "inspect", str(synthetic_run["run"]), "--data", str(data))
    line = _one_line_error(code, err)
    assert f"{data / 'manifest.json'}: {field}" in line
    assert out == ""  # refused before the epoch tables are printed


# ------------------------------------------------------------------------------------- item 3
@pytest.mark.parametrize("check", [True, False])
def test_threshold_that_selects_no_rows_is_refused(tiny_files: dict[str, Path], tmp_path: Path, check: bool,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A rule covering no (shift, severity) the suite runs used to vanish from the verdict, exit 0."""
    suite = tmp_path / "suite.toml"
    suite.write_text(tiny_files["suite"].read_text() + '[[thresholds]]\nmetric = "success_rate"\nmin = 0.5\n'
                     '[[thresholds]]\nmetric = "violation_rate"\nmax = 0.1\nshift = "none"\nmin_severity = 1\n')
    out = tmp_path / "out"
    code, _, err = run_cli(monkeypatch, capsys, "stress", str(suite), "--out", str(out), "--no-report",
                           *(["--check"] if check else []))
    line = _one_line_error(code, err)
    assert line.startswith(f"error: {suite}: thresholds[1]: violation_rate <= 0.1 (shift none, severity 1-3) "
                           "selects no rows (the suite runs none [0])")
    assert not out.exists()


def test_a_perturbation_that_could_never_strike_is_refused_by_check(tiny_files: dict[str, Path], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Onsets from step 10 in a 5-step scenario: ``--check`` passed and the run said only ``worst nan FAIL``.
    A budget shortened on the command line (a quick run) is let through: its rows are undefined instead."""
    suite = tmp_path / "suite.toml"
    suite.write_text(tiny_files["suite"].read_text().replace('name = "none"', 'name = "kidnap"').replace(
        "severities = [0]", "severities = [1]") + "[recovery]\nonset_min = 10\nonset_max = 12\n")
    code, _, err = run_cli(monkeypatch, capsys, "stress", str(suite), "--check", "--out", str(tmp_path / "o"))
    line = _one_line_error(code, err)
    assert line.startswith(f"error: {suite}: recovery.onset_min: 10 is not before scenario") and "never strike" in line
    code, _, err = run_cli(monkeypatch, capsys, "stress", str(suite), "--check", "--max-steps", "4",
                           "--out", str(tmp_path / "o"))
    assert code == 0, err


def test_a_perturbation_that_never_fired_does_not_count_as_a_pass() -> None:
    """Kidnap onsets 8-20 with a 4-step budget: no episode is ever kidnapped. The kidnap row measured
    the nominal world, so a rule on it is undefined (its ``undefined`` setting decides), not a pass."""
    import dataclasses

    from test_stress_cells import job, make_suite, scripted

    from hplan.stress.cells import run_cell
    from hplan.stress.suite import H50Config, RecoveryConfig, Threshold
    from hplan.stress.summary import evaluate_thresholds, summary_table

    suite = make_suite(h50=H50Config(enabled=False), recovery=RecoveryConfig(onset_min=8, onset_max=20))
    unfired = run_cell(job("kidnap", 2, (0, 1), suite, max_steps=4), scripted)
    assert (unfired.episodes["perturbation_onset"] == -1).all()
    rules = (Threshold("success_rate", min=0.0, shift="kidnap"), Threshold("violation_rate", max=1.0, shift="kidnap"),
             Threshold("recovery_rate", min=0.0, shift="kidnap"))
    verdicts = evaluate_thresholds(summary_table(unfired.episodes, unfired.steps, suite), rules)
    assert [v.passed for v in verdicts] == [False, False, False]
    assert "undefined (the perturbation fired in no episode" in verdicts[0].line()
    lenient = tuple(dataclasses.replace(rule, undefined="pass") for rule in rules)
    assert all(v.passed for v in evaluate_thresholds(summary_table(unfired.episodes, unfired.steps, suite), lenient))
    # once it fires in an episode, the row measures the shift again
    fired = run_cell(job("kidnap", 2, (0, 1), suite, max_steps=30), scripted)
    assert (fired.episodes["perturbation_onset"] >= 0).any()
    verdicts = evaluate_thresholds(summary_table(fired.episodes, fired.steps, suite), rules[:2])
    assert all(v.passed and not v.never_fired for v in verdicts)


# ------------------------------------------------------------ command-line values: one line too
@pytest.mark.parametrize(("argv", "named"), [
    (["collect", "point_two_rooms", "-n", "1000000000000"], "Invalid value for '--episodes' / '-n'"),
    (["train", "point_two_rooms", "--data", "d", "--out", "o", "--seed", str(2**64)], "Invalid value for '--seed'"),
    (["train", "point_two_rooms", "--data", "d", "--out", "o", "--max-epochs", "1000000000"],
     "Invalid value for '--max-epochs'"),
    (["run", "point_two_rooms", "-c", "x", "--episodes", "abc"], "Invalid value for '--episodes' / '-n'"),
    (["collect", "point_two_rooms", "--bogus"], "No such option: --bogus"),
])
def test_command_line_value_errors_are_one_line(tmp_path: Path, argv: list[str], named: str,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """click printed its usage line and a hint above the error: three lines for one bad value."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, *argv)
    line = _one_line_error(code, err)
    assert line.startswith(f"error: {named}") and f"(see `hplan {argv[0]} --help`)" in line
    assert out == "" and list(tmp_path.iterdir()) == []
