"""The study objective: one trial = sample settings, run the pipeline per seed, score, record.

Every trial keeps a run directory (``<out>/trials/trial-NNNNN/``, one ``seed-i/`` per seed) and
names it in the ``run_dir`` user attribute; ``trial.json`` there holds the parameters, seeds and
every metric. All metrics of the table become user attributes, objectives are returned in the
study's order, and each risk budget is set with ``trial.set_constraint`` so constrained samplers
(TPE, NSGA-II) treat unsafe settings as infeasible. The seeds are the same for every trial
(common random numbers), so differences between trials are differences between settings.
"""

from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path
from typing import Any

import pandas as pd

from hplan.errors import HplanError
from hplan.io import write_dataframe, write_json
from hplan.seeding import derive_seed
from hplan.studies.config import StudyConfig
from hplan.studies.metrics import compute_all
from hplan.studies.pipeline import Pipeline, SeedContext, SeedResult, TrialMonitor
from hplan.studies.space import suggest, trial_scenario

# Constraint value recorded when a constraint's metric is undefined (nan): clearly infeasible.
UNDEFINED_CONSTRAINT = 1e6


class TrialFailure(HplanError):
    """A trial could not produce its objective values (the study records it as FAIL and goes on)."""


def study_seeds(study: StudyConfig, base_seed: int) -> list[int]:
    """The training/evaluation seeds every trial uses: the same for every trial and every study of a
    scenario, so arms of different ablations can share trained models and be compared directly."""
    return [derive_seed(base_seed, "study-seed", i) for i in range(study.seeds)]


def trial_dir(out_dir: Path, study_name: str, number: int) -> Path:
    """``<out>/trials/<study>/trial-NNNNN``: several studies may share one output folder and storage."""
    return Path(out_dir) / "trials" / study_name / f"trial-{number:05d}"


class StudyObjective:
    """Callable objective for ``study.optimize``; the pipeline is injected (see ``pipeline.py``)."""

    def __init__(self, study: StudyConfig, out_dir: str | Path, pipeline: Pipeline, *, worker: str = "") -> None:
        self.study = study
        self.out_dir = Path(out_dir)
        self.pipeline = pipeline
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.prune = study.pruner.kind != "none" and not study.multi_objective
        self.prune_sign = -1.0 if study.directions[0] == "maximize" else 1.0

    def __call__(self, trial: Any) -> float | tuple[float, ...]:
        started = time.time()
        params = suggest(trial, self.study.params)
        run_dir = trial_dir(self.out_dir, self.study.name, trial.number)
        run_dir.mkdir(parents=True, exist_ok=True)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("worker", self.worker)
        # A heartbeat retry is a copy of the stale trial, user attributes included.
        previous = trial.user_attrs.get("trial_number")
        if previous is not None and previous != trial.number:
            trial.set_user_attr("retry_of", int(previous))
        trial.set_user_attr("trial_number", trial.number)

        base = trial_scenario(self.study, params)
        seeds = study_seeds(self.study, base.seed)
        results: list[SeedResult] = []
        for index, seed in enumerate(seeds):
            ctx = SeedContext(
                study=self.study, scenario=trial_scenario(self.study, params, seed), data_scenario=base,
                seed=seed, seed_index=index, run_dir=run_dir / f"seed-{index}",
                cache_dir=self.out_dir / "data", monitor=TrialMonitor(trial, enabled=self.prune and index == 0,
                                                                sign=self.prune_sign),
                trial_number=trial.number)
            result = self.pipeline(ctx)
            results.append(result)
            if result.data_dir is not None and index == 0:
                trial.set_user_attr("data_dir", str(Path(result.data_dir).resolve()))
                trial.set_user_attr("data_reused", bool(result.data_reused))

        metrics = score(results)
        for name, value in metrics.items():
            trial.set_user_attr(name, value)
        for spec in self.study.constraints:
            value = metrics.get(spec.metric, math.nan)
            trial.set_constraint(spec.name, UNDEFINED_CONSTRAINT if math.isnan(value) else spec.violation(value))
        trial.set_user_attr("seconds", round(time.time() - started, 3))
        _write_record(run_dir, trial.number, params, seeds, metrics, results)

        values = []
        for spec in self.study.objectives:
            value = metrics.get(spec.metric, math.nan)
            if math.isnan(value):
                raise TrialFailure(f"trial {trial.number}: objective metric {spec.metric!r} is undefined "
                                   f"(available: {', '.join(sorted(k for k, v in metrics.items() if not math.isnan(v)))})")
            values.append(value)
        return values[0] if len(values) == 1 else tuple(values)


def score(results: list[SeedResult]) -> dict[str, float]:
    """Pool every seed's episodes (metrics over all episodes), average training metrics over seeds."""
    episodes = pd.concat([r.episodes.assign(seed_index=i) for i, r in enumerate(results)], ignore_index=True)
    train_keys = sorted({k for r in results for k in r.train})
    train = {k: _mean([r.train.get(k) for r in results]) for k in train_keys}
    stress_frames = [r.stress.assign(seed_index=i) for i, r in enumerate(results) if r.stress is not None]
    stress = pd.concat(stress_frames, ignore_index=True) if stress_frames else None
    metrics = compute_all(episodes, train, stress)
    metrics["episodes"] = float(len(episodes))
    return metrics


def _mean(values: list[Any]) -> float:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


def _write_record(run_dir: Path, number: int, params: dict[str, Any], seeds: list[int],
                  metrics: dict[str, float], results: list[SeedResult]) -> None:
    episodes = pd.concat([r.episodes.assign(seed_index=i) for i, r in enumerate(results)], ignore_index=True)
    write_dataframe(run_dir / "episodes.parquet", episodes)
    write_json(run_dir / "trial.json", {
        "trial": number, "params": params, "seeds": seeds, "metrics": metrics,
        "model_dirs": [str(r.model_dir) if r.model_dir else None for r in results],
    })
