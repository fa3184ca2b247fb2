"""The real pipeline under a study, at tiny scale: collect → train (Lightning) → run episodes.

Two grid trials (flat vs hierarchical planner) share one dataset and one trained model (they
differ only in planner settings), and Optuna reads the real metrics back from SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from hplan.studies.loading import load_study
from hplan.studies.workers import run_study

TINY = """
name = "tiny"
scenario = "point_two_rooms"
pipeline = "full"
n_trials = 2
seeds = 1
episodes_per_seed = 1
collect_episodes = 16
max_epochs = 1
[overrides.collect]
steps_per_episode = 24
num_envs = 16
episodes_per_shard = 16
[overrides.train]
batch_size = 16
rollout_horizon = 4
window_stride = 4
guardrail_fit_steps = 5
distance_fit_steps = 5
subgoal_fit_steps = 5
predictor_fit_steps = 5
device = "cpu"
[overrides.model]
hidden_dim = 32
latent_dim = 8
[overrides.env]
max_steps = 6
[overrides.planner]
device = "cpu"
[overrides.planner.search]
population = 16
elites = 4
iterations = 1
[overrides.planner.codes]
population = 16
elites = 4
iterations = 1
[[objectives]]
metric = "success_rate"
[[constraints]]
metric = "violation_rate"
max = 0.5
[[params]]
target = "planner.kind"
choices = ["flat", "hier"]
[sampler]
kind = "grid"
[pruner]
kind = "median"
n_startup_trials = 0
n_warmup_steps = 5
"""


@pytest.mark.slow
def test_real_pipeline_tiny_study_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    study = load_study(path)
    out = tmp_path / "out"
    url = f"sqlite:///{out / 'study.db'}"
    run_study(study, url, out, progress=False)

    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert {t.params["planner.kind"] for t in trials} == {"flat", "hier"}
    records = [json.loads((Path(t.user_attrs["run_dir"]) / "trial.json").read_text()) for t in trials]
    # one model trained once, shared by both planner arms; evaluated with real episode logs
    assert records[0]["model_dirs"] == records[1]["model_dirs"]
    model_dir = Path(records[0]["model_dirs"][0])
    assert (model_dir / "model.pt").exists() and (model_dir / "metrics.csv").exists()
    for t in trials:
        attrs = t.user_attrs
        assert 0.0 <= attrs["success_rate"] <= 1.0 and t.value == attrs["success_rate"]
        assert attrs["val_loss"] > 0 and attrs["episodes"] == 1
        assert 1 <= attrs["mean_steps"] <= 6
        assert t.constraints["violation_rate_le_0.5"] == pytest.approx(attrs["violation_rate"] - 0.5)
        logs = list((Path(attrs["run_dir"]) / "seed-0" / "episodes").rglob("*.jsonl"))
        assert logs
    # a study's episodes replay like any run's: the log names the trial's model, and re-running the
    # agent from it reproduces every action
    from hplan.replay import verify_log

    report = verify_log(logs[0], mode="agent")
    assert report.agent_ok is True and report.verified
