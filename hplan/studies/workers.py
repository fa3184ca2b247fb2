"""Create studies, build samplers and pruners, and run workers that share one storage.

A worker is a loop of ``study.optimize(objective, n_trials=1)`` on a study loaded from the shared
storage. Before each trial it fails stale trials (their WAITING retries are then picked up first),
and it stops when the study's budget is used: every complete, pruned, running or waiting trial
counts; a failed one does not (it is replaced by its heartbeat retry, by a re-queue when the
study is resumed, or by a fresh sample), and a worker gives up after three failures in a row. When the budget is used but other
workers' trials are still running, a worker on a heartbeat storage stays until they finish, so a
retry of a trial whose worker died is never left waiting without anyone to run it.

Between the budget check and the trial's creation there is a window of milliseconds in which two
workers can both start "the last" trial; a study can therefore end up to ``workers - 1`` trials
over budget, never under it, and no trial is run twice.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from hplan.configio import to_mapping
from hplan.errors import HplanError
from hplan.seeding import derive_seed
from hplan.studies.config import StudyConfig
from hplan.studies.full import full_pipeline
from hplan.studies.objective import StudyObjective
from hplan.studies.pipeline import Pipeline
from hplan.studies.space import grid_size, grid_space
from hplan.studies.storage import open_storage, redact
from hplan.studies.synthetic import synthetic_pipeline

if TYPE_CHECKING:
    import optuna

# A worker gives up after this many failed trials in a row (a broken pipeline, not a bad configuration).
MAX_CONSECUTIVE_FAILURES = 3

# Exceptions a trial may raise without stopping its worker (HplanError includes the objective's
# TrialFailure): recorded as FAIL with the message. Anything else is a bug and stops the worker.
TRIAL_ERRORS: tuple[type[BaseException], ...] = (HplanError, RuntimeError, ValueError, FloatingPointError)

# The pipelines a study file can name (``pipeline = "full" | "synthetic"``). Here, above the
# pipeline seam, so that hplan.studies.pipeline imports neither of the pipelines built on it.
PIPELINES: dict[str, Pipeline] = {"full": full_pipeline, "synthetic": synthetic_pipeline}


def get_pipeline(name: str) -> Pipeline:
    """The pipeline a study file names; ``KeyError`` for an unknown name."""
    if name not in PIPELINES:
        raise KeyError(f"unknown pipeline {name!r}")
    return PIPELINES[name]


def make_sampler(study: StudyConfig, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler; each worker gets its own seed so random start-up trials differ."""
    import optuna

    cfg = study.sampler
    seed = derive_seed(cfg.seed, "worker", worker_index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if cfg.kind == "grid":
            return optuna.samplers.GridSampler(grid_space(study.params), seed=seed)
        if cfg.kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials,
                                              multivariate=True, constant_liar=True)
        if cfg.kind == "nsgaii":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=cfg.population_size)
        return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(study: StudyConfig) -> optuna.pruners.BasePruner:
    import optuna

    cfg = study.pruner
    if cfg.kind == "median" and not study.multi_objective:
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps)
    if cfg.kind == "hyperband" and not study.multi_objective:
        max_resource = max(cfg.min_resource + 1, _max_epochs(study))
        return optuna.pruners.HyperbandPruner(min_resource=cfg.min_resource, max_resource=max_resource,
                                              reduction_factor=cfg.reduction_factor)
    return optuna.pruners.NopPruner()


def _max_epochs(study: StudyConfig) -> int:
    if study.pipeline == "synthetic":
        return study.synthetic.epochs
    from hplan.config import deep_merge, parse_sets

    overrides = deep_merge(study.scenario_overrides(), parse_sets(study.sets))
    return study.max_epochs or int(overrides.get("train", {}).get("max_epochs", 10))


def budget(study: StudyConfig, n_trials: int | None = None) -> int:
    """Trials the study should end with: ``n_trials`` (default: the file's), at most the grid size."""
    total = n_trials if n_trials is not None else study.n_trials
    if study.sampler.kind == "grid":
        total = min(total, grid_size(study.params))
    return total


def budget_used(trials: Sequence[optuna.trial.FrozenTrial], *, count_failures: bool = False) -> int:
    """Trials that count against the budget.

    Complete, pruned, running and waiting trials always count. A failed trial that was replaced
    (by its heartbeat retry, or re-queued by :func:`requeue_failed` on resume) never counts. Other
    failures count only with ``count_failures`` (grid studies: a failed arm is visited, and is
    re-run when the study is resumed); otherwise a fresh sample replaces them.
    """
    from optuna.trial import TrialState

    replaced = _replaced(trials)
    return sum(1 for t in trials
               if t.state != TrialState.FAIL or (count_failures and t.number not in replaced))


def _replaced(trials: Sequence[optuna.trial.FrozenTrial]) -> set[int]:
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return replaced | {int(t.user_attrs["requeue_of"]) for t in trials if "requeue_of" in t.user_attrs}


def requeue_failed(handle: optuna.Study) -> list[int]:
    """Enqueue the parameters of every failed trial that nothing has replaced yet (study resume).

    A grid ablation must measure every arm: the grid sampler counts a failed grid point as
    visited, so after a crash (or a fixed bug) the resumed study re-runs that exact point.
    A trial recorded before the planner was nested names its planner parameters flat
    (``planner.population``); they are queued under today's names, which the study file uses.
    Returns the numbers of the failed trials that were queued again.
    """
    from optuna.trial import TrialState

    from hplan.planning.migration import nest_target

    trials = handle.get_trials(deepcopy=False)
    replaced = _replaced(trials)
    queued = []
    for t in trials:
        if t.state == TrialState.FAIL and t.number not in replaced and t.params:
            params = {nest_target(name): value for name, value in t.params.items()}
            handle.enqueue_trial(params, user_attrs={"requeue_of": t.number}, skip_if_exists=False)
            queued.append(t.number)
    return queued


def create_study(study: StudyConfig, storage_url: str, out_dir: Path) -> optuna.Study:
    """Create the study in the storage (or load it when it exists with the same objectives)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, study.storage)
    created = optuna.create_study(study_name=study.name, storage=storage, directions=study.directions,
                                  sampler=make_sampler(study), pruner=make_pruner(study), load_if_exists=True)
    existing = [d.name.lower() for d in created.directions]
    if existing != [d.lower() for d in study.directions]:
        raise HplanError(f"{redact(storage_url)}: study {study.name!r} exists with directions {existing}, "
                         f"but {study.source} asks for {study.directions}; rename the study")
    if "hplan_config" not in created.user_attrs:
        created.set_user_attr("hplan_config", to_mapping(study))
        created.set_user_attr("out_dir", str(Path(out_dir).resolve()))
        created.set_user_attr("objectives", [o.metric for o in study.objectives])
    return created


def load(study: StudyConfig, storage_url: str, *, worker_index: int = 0, must_exist: bool = True) -> optuna.Study:
    """Load an existing study by name from the storage, with this worker's sampler."""
    import optuna

    storage = open_storage(storage_url, study.storage, must_exist=must_exist)
    try:
        return optuna.load_study(study_name=study.name, storage=storage,
                                 sampler=make_sampler(study, worker_index), pruner=make_pruner(study))
    except KeyError:
        raise HplanError(f"{redact(storage_url)}: no study named {study.name!r} "
                         "(run `hplan study run` first, or pass the right --storage)") from None


def run_worker(study: StudyConfig, storage_url: str, out_dir: str | Path, *, n_trials: int | None = None,
               worker_index: int = 0, pipeline: Pipeline | None = None,
               on_trial: Callable[[optuna.Study], None] | None = None) -> list[int]:
    """Run trials until the study's budget is used; returns the numbers of the trials this worker ran."""
    import optuna
    from optuna.trial import TrialState

    # ERROR: a failed trial is reported by _recording in one line (Optuna's own warning repeated it)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):  # Trainer start-up chatter per trial
        logging.getLogger(name).setLevel(logging.WARNING)
    target = budget(study, n_trials)
    handle = load(study, storage_url, worker_index=worker_index)
    objective = StudyObjective(study, out_dir, pipeline or get_pipeline(study.pipeline),
                               worker=f"{socket.gethostname()}:{os.getpid()}/{worker_index}")
    heartbeat = _heartbeat_enabled(handle)
    ran: list[int] = []

    def remember(_: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        ran.append(trial.number)

    failures = 0
    while True:
        optuna.storages.fail_stale_trials(handle)
        trials = handle.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if waiting or budget_used(trials, count_failures=study.sampler.kind == "grid") < target:
            handle.optimize(_recording(objective, len(study.objectives)), n_trials=1, catch=TRIAL_ERRORS,
                            callbacks=[remember],
                            gc_after_trial=True)
            if on_trial is not None:
                on_trial(handle)
            last = handle.trials[ran[-1]] if ran else None
            failures = failures + 1 if last is not None and last.state == TrialState.FAIL else 0
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise HplanError(f"study {study.name}: {failures} trials in a row failed in this worker; last: "
                                 f"{last.user_attrs.get('error', 'see the log above')}")  # type: ignore[union-attr]
            continue
        if heartbeat and any(t.state == TrialState.RUNNING for t in trials):
            time.sleep(min(2.0, study.storage.heartbeat_interval))
            continue
        if ran and all(handle.trials[number].state == TrialState.FAIL for number in ran):
            # nothing this worker ran succeeded: a failure of the study, not of one configuration
            raise HplanError(f"study {study.name}: every trial this worker ran failed ({len(ran)}); last: "
                             f"{handle.trials[ran[-1]].user_attrs.get('error', 'see the log above')}")
        return ran


def _recording(objective: StudyObjective, objectives: int) -> Callable[[Any], Any]:
    """Wrap the objective so a failing trial keeps its error message as a user attribute, says
    so in one line, and is recorded as failed (a NaN value: Optuna's FAIL, without the traceback
    Optuna logs for a raised error)."""

    def wrapped(trial: Any) -> Any:
        try:
            return objective(trial)
        except TRIAL_ERRORS as err:
            message = f"{type(err).__name__}: {err}"[:500]
            trial.set_user_attr("error", message)
            print(f"trial {trial.number} failed: {message}", file=sys.stderr, flush=True)
            return float("nan") if objectives == 1 else tuple(float("nan") for _ in range(objectives))

    return wrapped


def _heartbeat_enabled(study: optuna.Study) -> bool:
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    return isinstance(storage, BaseHeartbeat) and is_heartbeat_enabled(storage)


def _worker_main(study: StudyConfig, storage_url: str, out_dir: str, n_trials: int | None, index: int) -> None:
    from hplan.device import flush_denormals

    flush_denormals()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    run_worker(study, storage_url, out_dir, n_trials=n_trials, worker_index=index)


def run_study(study: StudyConfig, storage_url: str, out_dir: str | Path, *, n_trials: int | None = None,
              workers: int = 1, pipeline: Pipeline | None = None, progress: bool = True) -> optuna.Study:
    """Create (or resume) the study and run ``workers`` local processes on it until its budget is used."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = create_study(study, storage_url, out_dir)
    requeue_failed(handle)
    target = budget(study, n_trials)
    columns = (TextColumn(f"study {study.name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("trials", total=target)

        def update(current: optuna.Study) -> None:
            bar.update(task, completed=_finished(current))

        update(handle)
        if workers <= 1:
            run_worker(study, storage_url, out_dir, n_trials=n_trials, pipeline=pipeline, on_trial=update)
        else:
            if pipeline is not None:
                raise HplanError("an injected pipeline runs in-process only; use workers=1")
            context = multiprocessing.get_context("spawn")
            procs = [context.Process(target=_worker_main, args=(study, storage_url, str(out_dir), n_trials, i),
                                     name=f"hplan-study-worker-{i}") for i in range(workers)]
            for proc in procs:
                proc.start()
            while any(p.is_alive() for p in procs):
                update(handle)
                time.sleep(1.0)
            update(handle)
            failed = [p.name for p in procs if p.exitcode != 0]
            if failed:
                raise HplanError(f"study {study.name}: worker(s) {', '.join(failed)} exited with an error "
                                 "(see their output above); finished trials are kept in the storage")
    return handle


def _finished(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
