"""Optuna studies: study files, search space, metrics, SQLite end to end, exports, dashboard, CLI errors.

Most tests use the synthetic pipeline (analytic metrics in milliseconds) so they exercise Optuna's
storage, samplers, constraints and pruning for real without training models; the real pipeline
has its own tiny end-to-end test in ``test_studies_full.py``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.errors import ConfigError, HplanError
from hplan.studies.config import ConstraintSpec, StorageConfig
from hplan.studies.loading import load_study
from hplan.studies.metrics import METRICS, compute_all
from hplan.studies.space import check_target, grid_space, nested, overrides_from_params
from hplan.studies.storage import open_storage
from hplan.studies.workers import budget_used, run_study

REPO = Path(__file__).resolve().parent.parent

BASE = """
name = "{name}"
scenario = "point_two_rooms"
pipeline = "synthetic"
n_trials = {n_trials}
seeds = 2
episodes_per_seed = 6
[synthetic]
epochs = 3
[[objectives]]
metric = "success_rate"
[[constraints]]
metric = "violation_rate"
max = 0.3
[[params]]
target = "planner.kind"
choices = ["flat", "hier"]
[[params]]
target = "planner.horizon"
kind = "int"
low = 4
high = 24
[[params]]
target = "guardrails.weight"
kind = "log_float"
low = 0.1
high = 30.0
"""


def write_study(tmp_path: Path, text: str | None = None, *, name: str = "syn", n_trials: int = 6) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text if text is not None else BASE.format(name=name, n_trials=n_trials))
    return path


# ------------------------------------------------------------------------------ study files

BAD_FILES = [
    # (replace this, with this, field named in the error)
    ('target = "planner.horizon"', 'target = "planner.horizn"', "params[1].target"),
    ('target = "planner.horizon"', 'target = "planner"', "params[1].target"),
    ('target = "planner.horizon"', 'target = "seed"', "params[1].target"),
    ("low = 4", "low = 0", "params[1] (planner.horizon)"),
    ('choices = ["flat", "hier"]', 'choices = ["flat", "tree"]', "params[0] (planner.kind)"),
    ('choices = ["flat", "hier"]', "choices = []", "params[0]"),
    ("low = 0.1", "low = -1.0", "params[2]"),
    ('metric = "success_rate"', 'metric = "sucess_rate"', "objectives[0].metric"),
    ("max = 0.3", "max = 0.3\nmin = 0.1", "constraints[0]"),
    ('pipeline = "synthetic"', 'pipeline = "magic"', "pipeline"),
    ("n_trials = 6", "n_trials = 0", "n_trials"),
    ('scenario = "point_two_rooms"', 'scenario = "no_such_scenario"', "scenario/overrides"),
    ('[synthetic]', '[[objectives]]\nmetric = "violation_rate"\n[synthetic]', "<root>"),  # multi-objective + pruner
    ('metric = "success_rate"', 'metric = "stress_success_rate"', "objectives[0].metric"),  # needs stress_suite
]


@pytest.mark.parametrize(("old", "new", "field"), BAD_FILES)
def test_bad_study_file_fails_with_one_line_naming_file_and_field(tmp_path: Path, old: str, new: str,
                                                                  field: str) -> None:
    text = BASE.format(name="bad", n_trials=6)
    assert old in text
    path = write_study(tmp_path, text.replace(old, new, 1), name="bad")
    with pytest.raises(ConfigError) as info:
        load_study(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and field in message


def test_grid_sampler_rejects_continuous_parameters(tmp_path: Path) -> None:
    text = BASE.format(name="g", n_trials=4) + '[sampler]\nkind = "grid"\n'
    with pytest.raises(ConfigError, match=r"sampler.kind: grid sampler: parameter guardrails.weight"):
        load_study(write_study(tmp_path, text, name="g"))


def test_canned_studies_all_load() -> None:
    files = sorted((REPO / "studies").glob("*.toml"))
    names = {f.stem for f in files}
    assert {"smoke", "search", "ablate_planner", "ablate_jepa_vs_recon", "ablate_regularizer",
            "ablate_guardrails"} <= names
    for path in files:
        study = load_study(path)
        if study.name.startswith("ablate_"):
            assert study.sampler.kind == "grid" and study.pruner.kind == "none"
            # an ablation runs every grid point, with several seeds for a fair comparison
            assert study.n_trials >= math.prod(len(v) for v in grid_space(study.params).values())
            assert study.seeds >= 2


# ------------------------------------------------------------------------------ search space

targets = st.lists(st.sampled_from(["model.latent_dim", "model.regularizer", "planner.horizon", "planner.kind",
                                    "guardrails.weight", "train.label_budget", "collect.episodes"]),
                   unique=True, min_size=1)


@given(targets, st.integers(0, 1000))
@settings(max_examples=40, deadline=None)
def test_overrides_from_params_put_every_value_at_its_target(names: list[str], value: int) -> None:
    params = {name: value + i for i, name in enumerate(names)}
    tree = overrides_from_params(params)
    for i, name in enumerate(names):
        section, key = name.split(".")
        assert tree[section][key] == value + i
        assert nested(name, value + i) == {section: {key: value + i}}
        check_target(name)
    assert sum(len(v) for v in tree.values()) == len(names)


@given(st.floats(-10, 10, allow_nan=False), st.floats(-10, 10, allow_nan=False))
def test_constraint_is_feasible_exactly_when_the_bound_holds(bound: float, value: float) -> None:
    upper = ConstraintSpec(metric="violation_rate", max=bound)
    lower = ConstraintSpec(metric="success_rate", min=bound)
    assert (upper.violation(value) <= 0) == (value <= bound)
    assert (lower.violation(value) <= 0) == (value >= bound)


def test_grid_space_enumerates_choices_and_stepped_ranges(tmp_path: Path) -> None:
    text = BASE.format(name="g", n_trials=40).replace('kind = "int"\nlow = 4\nhigh = 24',
                                                      'kind = "int"\nlow = 4\nhigh = 24\nstep = 10')
    text = text.replace('kind = "log_float"\nlow = 0.1\nhigh = 30.0', 'kind = "float"\nlow = 0.0\nhigh = 1.0\nstep = 0.5')
    study = load_study(write_study(tmp_path, text + '[sampler]\nkind = "grid"\n', name="g"))
    space = grid_space(study.params)
    assert space == {"planner.kind": ["flat", "hier"], "planner.horizon": [4, 14, 24], "guardrails.weight": [0.0, 0.5, 1.0]}


# ------------------------------------------------------------------------------ metrics

def test_metric_table_on_a_hand_computed_episode_table() -> None:
    episodes = pd.DataFrame({"success": [True, False, True, True], "steps": [10, 100, 40, 50],
                             "violations": [0, 3, 1, 0], "act_ms": [2.0, 1.0, 4.0, 2.0],
                             "model_evals": [100, 1000, 400, 500], "seed_index": [0, 0, 1, 1]})
    values = compute_all(episodes, {"val/loss": 0.25})
    assert values["success_rate"] == 0.75
    assert values["violation_rate"] == 0.5
    assert values["violations_per_1k_steps"] == pytest.approx(1000 * 4 / 200)
    assert values["mean_steps"] == 50.0
    assert values["plan_ms"] == pytest.approx((20 + 100 + 160 + 100) / 200)
    assert values["model_evals_per_step"] == pytest.approx(10.0)
    assert values["success_rate_seed_std"] == pytest.approx(math.sqrt(0.125))  # per-seed 0.5 and 1.0
    assert values["val_loss"] == 0.25
    assert "probe_r2" not in values and "stress_success_rate" not in values  # absent sources are left out
    assert set(values) <= set(METRICS)


# ------------------------------------------------------------------------------ end to end (SQLite)

def test_study_runs_end_to_end_on_default_sqlite_and_optuna_reads_it_back(tmp_path: Path) -> None:
    study = load_study(write_study(tmp_path, n_trials=6))
    out = tmp_path / "out"
    url = f"sqlite:///{out / 'study.db'}"
    run_study(study, url, out, progress=False)

    # Read back through Optuna's own API, from a fresh storage object.
    loaded = optuna.load_study(study_name="syn", storage=url)
    trials = loaded.get_trials()
    assert len(trials) == 6
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for t in complete:
        assert set(t.params) == {"planner.kind", "planner.horizon", "guardrails.weight"}
        assert t.value == t.user_attrs["success_rate"]
        assert t.user_attrs["episodes"] == 12  # 2 seeds x 6 episodes
        run_dir = Path(t.user_attrs["run_dir"])
        record = json.loads((run_dir / "trial.json").read_text())
        assert record["params"] == t.params and len(record["seeds"]) == 2
        assert (run_dir / "seed-0" / "metrics.csv").exists() and (run_dir / "episodes.parquet").exists()
        # the risk budget is an Optuna constraint: feasible iff violation_rate <= 0.3
        (name, value), = t.constraints.items()
        assert value == pytest.approx(t.user_attrs["violation_rate"] - 0.3)
    # The dataset is collected once and reused by every later trial (same env/collect settings).
    reused = sorted((t.number, t.user_attrs["data_reused"]) for t in trials if "data_reused" in t.user_attrs)
    assert reused[0][1] is False and all(r for _, r in reused[1:])
    assert len({t.user_attrs["data_dir"] for t in trials if "data_dir" in t.user_attrs}) == 1
    # Seeds are common random numbers: identical for every trial.
    assert len({tuple(json.loads((Path(t.user_attrs["run_dir"]) / "trial.json").read_text())["seeds"])
                for t in complete}) == 1

    # Resuming with a larger budget adds exactly the missing trials.
    run_study(study, url, out, n_trials=8, progress=False)
    assert len(optuna.load_study(study_name="syn", storage=url).trials) == 8


def test_export_plots_and_dashboard_read_the_same_storage(tmp_path: Path) -> None:
    from hplan.studies.report import export, plots, trials_frame

    text = BASE.format(name="mo", n_trials=6).replace(
        "[synthetic]", '[pruner]\nkind = "none"\n[sampler]\nkind = "nsgaii"\npopulation_size = 4\n[synthetic]')
    text = text.replace('[[constraints]]', '[[objectives]]\nmetric = "violation_rate"\n[[constraints]]')
    study = load_study(write_study(tmp_path, text, name="mo"))
    out = tmp_path / "out"
    url = f"sqlite:///{out / 'study.db'}"
    handle = run_study(study, url, out, progress=False)

    frame = trials_frame(handle)
    path = export(handle, tmp_path / "trials.parquet")
    back = pd.read_parquet(path)
    assert len(back) == 6 == len(frame)
    assert {"params_planner.horizon", "user_attrs_run_dir", "user_attrs_violation_rate", "values_0", "values_1",
            "feasible"} <= set(back.columns)
    assert list(back["values_1"]) == pytest.approx(list(back["user_attrs_violation_rate"]))

    written = plots(handle, study, tmp_path / "plots")
    names = {p.name for p in written}
    assert {"history_success_rate.png", "history_violation_rate.png", "pareto_front.png"} <= names
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # optuna-dashboard serves the same storage: its WSGI app lists the study.
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    app = wsgi(url)

    def get(path: str) -> dict:
        status: list[str] = []
        environ: dict = {"REQUEST_METHOD": "GET", "PATH_INFO": path}
        setup_testing_defaults(environ)
        body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), status
        return json.loads(body)

    (summary,) = [s for s in get("/api/studies")["study_summaries"] if s["study_name"] == "mo"]
    detail = get(f"/api/studies/{summary['study_id']}")
    assert len(detail["trials"]) == 6


def test_pruning_uses_the_lightning_callback_in_the_objective_direction(tmp_path: Path) -> None:
    import lightning.pytorch as pl
    import torch

    from hplan.studies.pipeline import TrialMonitor

    class Line(pl.LightningModule):
        def __init__(self, offset: float) -> None:
            super().__init__()
            self.offset = offset
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, _):  # noqa: ANN001
            return ((self.w - 1.0) ** 2).sum()

        def validation_step(self, batch, _):  # noqa: ANN001
            self.log("val/loss", ((self.w - 1.0) ** 2).sum() + self.offset)

        def configure_optimizers(self):  # noqa: ANN201
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=2)

    def objective(trial: optuna.Trial) -> float:
        offset = trial.suggest_float("offset", 0.0, 10.0)
        monitor = TrialMonitor(trial, enabled=True, sign=-1.0)  # maximised objective: report -val/loss
        trainer = pl.Trainer(max_epochs=4, callbacks=monitor.lightning_callbacks(), logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        trainer.fit(Line(offset), data, data)
        monitor.after_fit()
        return -offset

    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    for offset in (0.0, 0.1, 5.0, 0.02):
        study.enqueue_trial({"offset": offset})
    study.optimize(objective, n_trials=4)
    states = [t.state for t in study.trials]
    # Low loss is good: the high-offset trial is pruned, the good ones complete.
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.COMPLETE,
                      optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]
    assert study.trials[2].intermediate_values[0] < study.trials[0].intermediate_values[0]


# ------------------------------------------------------------------------------ CLI errors

def _hplan(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI entry point in-process (as the console script does); returns (exit code, stderr)."""
    from hplan.cli import main

    monkeypatch.setattr(sys, "argv", ["hplan", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return int(info.value.code or 0), capsys.readouterr().err


def test_unreachable_storage_fails_fast_with_one_line(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(HplanError) as info:
        # 10.255.255.1 is unroutable: the connection times out rather than being refused
        open_storage("postgresql+psycopg2://user:secret@10.255.255.1:5432/db", StorageConfig(connect_timeout=2))
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "\n" not in message and "secret" not in message and "10.255.255.1" in message
    with pytest.raises(HplanError, match="not a storage URL"):
        open_storage("not a url", StorageConfig())


def test_cli_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # keep rich from wrapping the one line
    bad = write_study(tmp_path, BASE.format(name="b", n_trials=2).replace("planner.horizon", "planner.horizn"),
                      name="b")
    code, err = _hplan(monkeypatch, capsys, "study", "run", str(bad), "--out", str(tmp_path / "o"))
    assert code == 2
    assert err.strip().count("\n") == 0 and "params[1].target" in err
    assert not (tmp_path / "o").exists()  # nothing written for a bad file
    good = write_study(tmp_path, name="g", n_trials=2)
    code, err = _hplan(monkeypatch, capsys, "study", "show", str(good), "--storage",
                       "postgresql+psycopg2://u:pw@127.0.0.1:1/x")
    assert code == 2 and "pw@" not in err and "cannot open study storage" in err
    code, err = _hplan(monkeypatch, capsys, "study", "export", str(good), "--study-dir", str(tmp_path / "none"),
                       "--out", str(tmp_path / "t.parquet"))
    assert code == 2 and "no study storage here" in err and not (tmp_path / "none").exists()


def test_budget_counts_everything_but_failures() -> None:
    from optuna.trial import TrialState, create_trial

    trials = [create_trial(state=TrialState.COMPLETE, value=1.0), create_trial(state=TrialState.FAIL),
              create_trial(state=TrialState.WAITING), create_trial(state=TrialState.PRUNED, value=0.0),
              create_trial(state=TrialState.FAIL)]
    assert budget_used(trials) == 3


def test_a_failed_trial_recorded_with_flat_planner_names_is_queued_under_todays_names() -> None:
    """A study stored before the planner was nested named its parameters ``planner.population``;
    resumed with today's study file (``planner.search.population``) the failed trial runs again
    with the same values."""
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState, create_trial

    from hplan.studies.workers import requeue_failed

    handle = optuna.create_study()
    handle.add_trial(create_trial(state=TrialState.FAIL, params={"planner.population": 64, "planner.horizon": 9},
                                  distributions={"planner.population": IntDistribution(16, 512),
                                                 "planner.horizon": IntDistribution(4, 24)}))
    assert requeue_failed(handle) == [0]
    (queued,) = [t for t in handle.get_trials() if t.state == TrialState.WAITING]
    assert queued.system_attrs["fixed_params"] == {"planner.search.population": 64, "planner.horizon": 9}


def test_resuming_a_grid_study_reruns_the_arm_that_failed_and_a_broken_pipeline_stops(tmp_path: Path) -> None:
    from hplan.studies.synthetic import synthetic_pipeline

    text = BASE.format(name="grid", n_trials=2).replace(
        '[[params]]\ntarget = "planner.horizon"\nkind = "int"\nlow = 4\nhigh = 24\n', "").replace(
        '[[params]]\ntarget = "guardrails.weight"\nkind = "log_float"\nlow = 0.1\nhigh = 30.0\n', "")
    study = load_study(write_study(tmp_path, text + '[sampler]\nkind = "grid"\n', name="grid"))
    assert [p.target for p in study.params] == ["planner.kind"]
    out, url = tmp_path / "out", f"sqlite:///{tmp_path / 'out' / 'study.db'}"
    broken = {"flat"}

    def flaky(ctx):  # noqa: ANN001, ANN202 - the injected pipeline seam
        if ctx.scenario.planner.kind in broken:
            raise HplanError("simulated pipeline failure")
        return synthetic_pipeline(ctx)

    run_study(study, url, out, pipeline=flaky, progress=False)
    trials = optuna.load_study(study_name="grid", storage=url).trials
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.params["planner.kind"] for t in failed] == ["flat"]
    assert failed[0].user_attrs["error"] == "HplanError: simulated pipeline failure"

    broken.clear()  # "fix the bug" and resume: the failed arm runs again with the same parameters
    run_study(study, url, out, pipeline=flaky, progress=False)
    trials = optuna.load_study(study_name="grid", storage=url).trials
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["planner.kind"] for t in complete) == ["flat", "hier"]
    (rerun,) = [t for t in complete if t.params["planner.kind"] == "flat"]
    assert rerun.user_attrs["requeue_of"] == failed[0].number

    # A pipeline that always fails stops the worker after three failures in a row (no endless loop).
    search = load_study(write_study(tmp_path, name="allfail", n_trials=10))

    def broken_pipeline(ctx):  # noqa: ANN001, ANN202
        raise HplanError("always broken")

    with pytest.raises(HplanError, match="3 trials in a row failed in this worker; last: HplanError: always broken"):
        run_study(search, url, out, pipeline=broken_pipeline, progress=False)
    assert len(optuna.load_study(study_name="allfail", storage=url).trials) == 3


def _open_fresh(path: str) -> None:
    open_storage(f"sqlite:///{path}", StorageConfig())


def test_workers_opening_a_fresh_storage_together_do_not_trip_over_table_creation(tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(2):
        path = str(tmp_path / f"fresh-{round_}.db")
        procs = [context.Process(target=_open_fresh, args=(path,)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=60)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        assert optuna.get_all_study_summaries(f"sqlite:///{path}") == []


def test_journal_file_storage_runs_and_reads_back(tmp_path: Path) -> None:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    study = load_study(write_study(tmp_path, name="journal", n_trials=3))
    log = tmp_path / "out" / "study.log"
    run_study(study, f"journal:{log}", tmp_path / "out", progress=False)
    back = optuna.load_study(study_name="journal", storage=JournalStorage(JournalFileBackend(str(log))))
    assert len(back.trials) == 3
    assert all("run_dir" in t.user_attrs for t in back.trials)


def test_cache_keys_follow_what_changes_the_artefact() -> None:
    from hplan.config import load_scenario
    from hplan.studies.full import model_key
    from hplan.studies.pipeline import dataset_key

    base = load_scenario("point_two_rooms")
    data = Path("/cache/abc")

    def with_(**sections: dict) -> object:
        return load_scenario("point_two_rooms", sections)

    # planner and guardrail arms share data and models; seeds, model and collect settings do not
    assert dataset_key(with_(planner={"kind": "flat"})) == dataset_key(base)
    assert model_key(with_(planner={"kind": "flat"}, guardrails={"mode": "off"}), data) == model_key(base, data)
    assert dataset_key(with_(collect={"episodes": 7})) != dataset_key(base)
    assert dataset_key(with_(seed=5)) != dataset_key(base)
    assert model_key(with_(model={"regularizer": "sigreg"}), data) != model_key(base, data)
    assert model_key(with_(train={"lr": 0.5}), data) != model_key(base, data)
    assert model_key(base, Path("/cache/other")) != model_key(base, data)
