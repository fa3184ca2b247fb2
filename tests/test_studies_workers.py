"""Studies with several workers on one storage: heartbeats, retries of killed workers, no lost trials.

Workers are real ``hplan study run`` processes (as on separate machines) on the synthetic pipeline.
The PostgreSQL cases need a server: CI starts one on loopback (``.ci/postgres-up``) and exports
``HPLAN_TEST_POSTGRES_URL``; without it they are skipped with that reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hplan.studies.config import SyntheticConfig
from hplan.studies.loading import load_study
from hplan.studies.workers import create_study, load, run_worker

POSTGRES_URL = os.environ.get("HPLAN_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="HPLAN_TEST_POSTGRES_URL is unset (CI starts a server with .ci/postgres-up)")

STUDY = """
name = "{name}"
scenario = "point_two_rooms"
pipeline = "synthetic"
n_trials = {n_trials}
seeds = 1
episodes_per_seed = 4
[synthetic]
epochs = {epochs}
epoch_seconds = {epoch_seconds}
[pruner]
kind = "none"
[storage]
heartbeat_interval = 1
grace_period = {grace}
[[objectives]]
metric = "success_rate"
[[params]]
target = "planner.horizon"
kind = "int"
low = 4
high = 64
"""


def storages(tmp_path: Path) -> dict[str, str]:
    return {"sqlite": f"sqlite:///{tmp_path / 'study.db'}", "postgres": POSTGRES_URL or ""}


def _study_file(tmp_path: Path, **fields: object) -> tuple[Path, str]:
    name = f"w{uuid.uuid4().hex[:10]}"  # unique: PostgreSQL tests share one database
    path = tmp_path / f"{name}.toml"
    path.write_text(STUDY.format(name=name, **fields))
    return path, name


def _worker(study: Path, url: str, out: Path, n_trials: int | None = None) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "hplan", "study", "run", str(study), "--storage", url, "--out", str(out)]
    if n_trials is not None:
        args += ["--n-trials", str(n_trials)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=[needs_postgres, pytest.mark.postgres])])
def test_a_killed_worker_leaves_a_trial_that_is_retried_not_stuck_running(tmp_path: Path, backend: str) -> None:
    url = storages(tmp_path)[backend]
    path, name = _study_file(tmp_path, n_trials=2, epochs=40, epoch_seconds=0.25, grace=3)
    study = load_study(path)
    out = tmp_path / "out"
    create_study(study, url, out)

    victim = _worker(path, url, out)
    handle = optuna.load_study(study_name=name, storage=url)
    _wait_for(lambda: any(t.state == TrialState.RUNNING for t in handle.get_trials()), 60, "a running trial")
    time.sleep(1.5)  # at least one heartbeat recorded
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    (stuck,) = [t for t in handle.get_trials() if t.state == TrialState.RUNNING]
    assert victim.returncode == -signal.SIGKILL

    time.sleep(3.5)  # > grace_period without heartbeats: the trial is stale
    fast = replace(study, synthetic=SyntheticConfig(epochs=2, epoch_seconds=0.0))
    ran = run_worker(fast, url, out, worker_index=1)

    trials = {t.number: t for t in optuna.load_study(study_name=name, storage=url).get_trials()}
    assert trials[stuck.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == stuck.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.number in ran
    assert retry.params == stuck.params and retry.user_attrs["retry_of"] == stuck.number
    assert retry.user_attrs["run_dir"] != stuck.user_attrs["run_dir"]
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # budget: the stale trial is replaced by its retry, so 2 trials count and both are complete
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 2


@needs_postgres
@pytest.mark.postgres
def test_two_workers_on_postgres_complete_a_study_together_without_duplicates_or_losses(tmp_path: Path) -> None:
    url = POSTGRES_URL or ""
    n_trials = 10
    path, name = _study_file(tmp_path, n_trials=n_trials, epochs=4, epoch_seconds=0.25, grace=20)
    out = tmp_path / "out"
    workers = [_worker(path, url, out), _worker(path, url, out)]
    for proc in workers:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()[-2000:]

    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    states = [t.state for t in trials]
    # every trial finished; none failed, none left running or waiting (nothing lost)
    assert set(states) == {TrialState.COMPLETE}
    # the budget is met; a race at the very end can add at most (workers - 1) trials
    assert n_trials <= len(trials) <= n_trials + 1
    # no trial was run twice: distinct numbers, distinct run dirs, each with its own record
    assert len({t.number for t in trials}) == len(trials)
    run_dirs = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(run_dirs)) == len(trials)
    assert all((Path(d) / "trial.json").exists() for d in run_dirs)
    assert not any("retry_of" in t.user_attrs for t in trials)
    # both workers contributed
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    # and `hplan study show` on the same storage reads them back
    shown = load(load_study(path), url)
    assert len(shown.trials) == len(trials)
