"""Measure one table: its dataset, one model per training seed, then every arm's episodes.

Everything is cached under ``runs/results`` with readable names and reused only when its
settings match (a dataset's manifest, a run's ``config.json``, an evaluation's ``run.json``), so a
re-run after a kill resumes where it stopped: collection and training resume themselves, and an
evaluation counts as done once its ``run.json`` is written (last, atomically).

Layout::

    runs/results/data/<scenario>-<N>ep[-<hash>]                  one dataset per table (hash: other data overrides)
    runs/results/data/<scenario>-<N>ep[-<hash>]-heldout<M>       heldout tables: M episodes from the heldout stream
    runs/results/models/<dataset>[-<hash>]/seed<k>               one model per training seed (hash: model/train overrides)
    runs/results/evals/<table>/<arm>/seed<k>-<split>-<E>ep       one evaluation per arm and training seed
    runs/results/stress/<table>/seed<k>/suite                    stress tables: the suite's output per training seed
    runs/results/tables/<table>.parquet (+ .json)                the table's episode rows and provenance
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from hplan.config import ScenarioConfig, load_scenario, parse_sets
from hplan.configio import from_mapping, to_mapping
from hplan.envs.config import EnvConfig, TaskConfig
from hplan.envs.registry import env_entry
from hplan.errors import HplanError
from hplan.io import write_dataframe, write_json
from hplan.planning.config import GuardrailConfig, PlannerConfig
from hplan.planning.migration import nest_planner
from hplan.runner.settings import checkpoint_sha256
from hplan.io import file_lock
from hplan.results.definition import (DATA_SECTIONS, RUN_ONLY_SECTIONS, Arm, ResultsDefinition, Table,
                                      override_section, override_target, slug)

Say = Callable[[str], None]


@dataclass(frozen=True)
class Paths:
    root: Path

    def data(self, scenario: ScenarioConfig, sets: tuple[str, ...], heldout: int = 0) -> Path:
        """The training dataset, or with ``heldout = N`` the N-episode held-out one (its own stream)."""
        # The collector replaces some task fields of some envs (OGBench: random cells, not the
        # evaluation task); overriding those does not change the data.
        replaced = {f"task.{name}" for name in env_entry(scenario.env.id).collector_task_fields}
        extra = _hash([s for s in sets if override_section(s) in DATA_SECTIONS
                       and override_target(s) not in ("collect.episodes", *replaced)])
        name = f"{scenario.name}-{scenario.collect.episodes}ep{extra}"
        return self.root / "data" / (f"{name}-heldout{heldout}" if heldout else name)

    def model(self, data_dir: Path, sets: tuple[str, ...], seed: int) -> Path:
        extra = _hash([s for s in sets if override_section(s) not in DATA_SECTIONS + RUN_ONLY_SECTIONS])
        return self.root / "models" / f"{data_dir.name}{extra}" / f"seed{seed}"

    def evaluation(self, table: Table, arm: Arm, seed: int, split: str, episodes: int) -> Path:
        return self.root / "evals" / table.name / slug(arm.label) / f"seed{seed}-{split}-{episodes}ep"

    def table(self, table: Table) -> Path:
        return self.root / "tables" / f"{table.name}.parquet"

    def measurements(self, table: Table) -> tuple[Path, ...]:
        """Every folder holding ``table``'s evaluations (planning and held-out: ``evals``; stress:
        ``stress``), not the datasets or models it shares with other tables."""
        return self.root / "evals" / table.name, self.root / "stress" / table.name

    def lock(self, path: Path) -> Path:
        """The lock file guarding ``path`` (kept apart, so cache folders hold only their content)."""
        return self.root / "locks" / (str(path.relative_to(self.root)).replace("/", "+") + ".lock")


def discard_measurements(paths: Paths, table: Table) -> int:
    """Delete ``table``'s cached evaluations so that the next measurement plays them again; returns
    how many folders went. Datasets and models stay: they are keyed by every setting that makes
    them, while an evaluation's key cannot see the planner's code, so after a change to it the
    cache would hand back episodes the old code played. Each folder is renamed aside first (one
    atomic step) and deleted after, so an interrupted discard leaves no half-deleted evaluation.
    """
    gone = 0
    for folder in paths.measurements(table):
        if not folder.exists():
            continue
        aside = folder.with_name(f".{folder.name}.discarded-{os.getpid()}")
        folder.rename(aside)
        shutil.rmtree(aside)
        gone += 1
    return gone


def measure_table(definition: ResultsDefinition, table: Table, paths: Paths, say: Say,
                  progress: bool = True, device: str = "cpu", cached_only: bool = False) -> pd.DataFrame | None:
    """Run (or reuse) everything ``table`` needs; returns its rows and writes them under ``paths``.
    The provenance is taken before anything runs: it names the code that did the measuring.
    ``cached_only``: collect, train and play nothing; assemble what is cached (None if nothing is)."""
    started = provenance(device)
    ran: list[str] = []  # what this call measured; a table served wholly from the cache keeps its old date
    if table.kind == "heldout":
        frame = _heldout_rows(definition, table, paths, say, device, ran, cached_only)
    elif table.kind == "stress":
        frame = _stress_rows(definition, table, paths, say, ran, cached_only)
    else:
        frame = _planning_rows(definition, table, paths, say, progress, device, ran, cached_only)
    out = paths.table(table)
    if frame is None:  # nothing cached: the page must say "not measured", not show stale rows
        for stale in (out, out.with_suffix(".json")):
            stale.unlink(missing_ok=True)
        return None
    if ran or not out.with_suffix(".json").exists():  # the provenance first: a kill between the two
        write_json(out.with_suffix(".json"), started)  # leaves a table without rows ("not measured")
    write_dataframe(out, frame)
    return frame


def _planning_rows(definition: ResultsDefinition, table: Table, paths: Paths, say: Say, progress: bool,
                   device: str, ran: list[str], cached_only: bool = False) -> pd.DataFrame | None:
    from hplan.models.checkpoint import load_world_model
    from hplan.runner import run_episodes

    split, episodes = definition.split(table), definition.episodes(table)
    earlier = _read_meta(paths.table(table).with_suffix(".json"))  # the table's own record, for old evaluations
    frames = []
    for seed, arm, scenario, sets, model_dir in _arm_models(definition, table, paths, say, cached_only):
        out = paths.evaluation(table, arm, seed, split, episodes)
        expected = expected_run(scenario, arm, split, episodes, checkpoint_sha256(model_dir))
        if cached_only:  # read, never wait: a finished evaluation's marker is written last, and an
            frame = cached_evaluation(out, expected)  # evaluation another run is still playing is left out
            if frame is not None:
                frames.append(_stamped(frame, out, earlier).assign(arm=arm.label, training_seed=seed))
            continue
        with file_lock(paths.lock(out)):
            frame = cached_evaluation(out, expected)
            if frame is None:
                say(f"[bold]{table.name}[/] {arm.label}, training seed {seed}: {episodes} {split} episodes")
                if out.exists():
                    shutil.rmtree(out)
                model = load_world_model(model_dir, device=device, expect_env_id=scenario.env.id)
                frame = run_episodes(scenario, model, planner_kind=arm.planner, guardrails=arm.guardrails,
                                     episodes=episodes, log_dir=out, checkpoint=model_dir, device=device,
                                     progress=progress, split=split, overrides=sets)
                write_json(out / DONE_MARKER, {"sets": list(sets), "model": str(model_dir),
                                               "measured": _stamp(provenance(device))})
                ran.append(str(out))
        frames.append(_stamped(frame, out, earlier).assign(arm=arm.label, training_seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else None


def _heldout_rows(definition: ResultsDefinition, table: Table, paths: Paths, say: Say, device: str,
                  ran: list[str], cached_only: bool = False) -> pd.DataFrame | None:
    from hplan.data.collect import collect
    from hplan.diagnostics.heldout import evaluate_heldout, layout_geodesic
    from hplan.envs.factory import make_env
    from hplan.models.checkpoint import load_world_model

    scenario = load_scenario(table.scenario, sets=table.sets)
    heldout_dir = paths.data(scenario, table.sets, heldout=table.heldout_episodes)
    if not _dataset_ready(scenario, heldout_dir, "heldout", cached_only):
        if cached_only:
            return None
        say(f"[bold]{table.name}[/]: held-out data, {table.heldout_episodes} episodes → {heldout_dir}")
        with file_lock(paths.lock(heldout_dir)):
            collect(scenario, heldout_dir, episodes=table.heldout_episodes, split="heldout")
    env = make_env(scenario).unwrapped
    geodesic = layout_geodesic(env)
    rows = []
    for seed, arm, _, _, model_dir in _arm_models(definition, table, paths, say, cached_only):
        folder = paths.measurements(table)[0]
        out = (folder / slug(arm.label) if table.arms else folder) / f"seed{seed}-heldout.json"
        key = {"model_sha256": checkpoint_sha256(model_dir), "data": str(heldout_dir),
               "episodes": table.heldout_episodes}
        try:
            cached = json.loads(out.read_text())
        except (OSError, ValueError):
            cached = {}
        if cached.get("key") != key and cached_only:
            continue
        if cached.get("key") != key:
            model = load_world_model(model_dir, device=device, expect_env_id=scenario.env.id)
            say(f"[bold]{table.name}[/] {arm.label + ', ' if arm.label else ''}training seed {seed}: "
                "held-out diagnostics")
            metrics = evaluate_heldout(model, heldout_dir, horizon=scenario.train.rollout_horizon,
                                       geodesic=geodesic, max_episodes=table.heldout_episodes)
            cached = {"key": key, "metrics": {k: float(v) for k, v in metrics.items()}}
            write_json(out, cached)
            ran.append(str(out))
        rows.append({**({"arm": arm.label} if table.arms else {}), "training_seed": seed, **cached["metrics"]})
    return pd.DataFrame(rows) if rows else None


def _stress_rows(definition: ResultsDefinition, table: Table, paths: Paths, say: Say, ran: list[str],
                 cached_only: bool = False) -> pd.DataFrame | None:
    """The suite's summary (one row per scenario × shift × severity) for each training seed's model.

    The suite runs into ``runs/results/stress/<table>/seed<k>`` and resumes there cell by cell (the
    stress runner's own resume); a folder made with another model is started afresh. Its cells run
    one after another at this process's threads, like every other evaluation of the results command."""
    from hplan.stress.api import run_suite
    from hplan.stress.suite import resolve_suite_path

    scenario = load_scenario(table.scenario, sets=table.sets)
    # what else decides the suite's episodes: its file and the scenario's settings (its planner and
    # guardrails are not part of the model), so an edit to either runs the suite again
    settings = {"suite_sha256": hashlib.sha256(resolve_suite_path(table.suite).read_bytes()).hexdigest(),
                "scenario": json.loads(json.dumps(to_mapping(scenario), default=str))}
    frames = []
    for seed, _, _, _, model_dir in _arm_models(definition, table, paths, say, cached_only):
        out = paths.measurements(table)[1] / f"seed{seed}"
        key = _placeless({"suite": table.suite, "checkpoint_sha256": checkpoint_sha256(model_dir), **settings})
        marker = _read_meta(out / DONE_MARKER) or {}
        if _placeless(marker.get("key")) != key:
            if cached_only:
                continue
            with file_lock(paths.lock(out)):
                if _placeless(_read_meta(out / "suite-key.json")) != key and out.exists():
                    shutil.rmtree(out)  # begun with another model: its cells would not resume
                out.mkdir(parents=True, exist_ok=True)
                write_json(out / "suite-key.json", key)
                say(f"[bold]{table.name}[/] training seed {seed}: stress suite {table.suite} → {out}")
                run_suite(table.suite, out_dir=out / "suite", checkpoint=model_dir, report=True)
                marker = {"key": key, "measured": _stamp(provenance("cpu"))}
                write_json(out / DONE_MARKER, marker)
                ran.append(str(out))
        summary = pd.read_csv(out / "suite" / "summary.csv")
        stamp = marker.get("measured") or {}
        frames.append(summary.assign(training_seed=seed, **{f"measured_{k}": stamp.get(k) for k in STAMP_KEYS}))
    return pd.concat(frames, ignore_index=True) if frames else None


def _placeless(key: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stress key without the scenario's file path: the same scenario in another checkout (a
    measuring worktree, a fresh clone) is the same scenario. Applied to the key made now and to keys
    stored before the path was left out."""
    if not key or not isinstance(key.get("scenario"), dict):
        return key
    return {**key, "scenario": {k: v for k, v in key["scenario"].items() if k != "source"}}


def _arm_models(definition: ResultsDefinition, table: Table, paths: Paths, say: Say,
                cached_only: bool) -> Iterator[tuple[int, Arm, ScenarioConfig, tuple[str, ...], Path]]:
    """Each training seed × arm of ``table`` (an arm-less table: one arm with the table's settings)
    with the arm's scenario, overrides and model: trained when missing, or, ``cached_only``, only
    those whose model is cached."""
    for seed in definition.seeds(table):
        for arm in table.arms or (Arm(label=""),):
            sets = table.sets + arm.sets
            scenario = load_scenario(table.scenario, sets=sets)
            model_dir = cached_model(scenario, sets, seed, paths) if cached_only else \
                ensure_model(scenario, sets, seed, paths, say)
            if model_dir is not None:
                yield seed, arm, scenario, sets, model_dir


def cached_model(scenario: ScenarioConfig, sets: tuple[str, ...], seed: int, paths: Paths) -> Path | None:
    """The finished model of one training seed if it is cached, else None (nothing is trained)."""
    from hplan.models.training import finished_run_matches

    data_dir = paths.data(scenario, sets)
    if not _dataset_ready(scenario, data_dir, "train", cached_only=True):
        return None
    model_dir = paths.model(data_dir, sets, seed)
    return model_dir if finished_run_matches(scenario, model_dir, seed=seed) else None


def ensure_model(scenario: ScenarioConfig, sets: tuple[str, ...], seed: int, paths: Paths, say: Say) -> Path:
    """The dataset and the trained model of ``scenario`` for one training seed (collected / trained,
    or resumed, only when missing)."""
    from hplan.data.collect import collect
    from hplan.models.training import ensure_calibration, finished_run_matches, train_world_model

    data_dir = paths.data(scenario, sets)
    with file_lock(paths.lock(data_dir)):  # two results runs never collect one dataset twice
        if not _dataset_ready(scenario, data_dir, "train", cached_only=False):
            say(f"collect {scenario.name}: {scenario.collect.episodes} episodes → {data_dir}")
            collect(scenario, data_dir)
    model_dir = paths.model(data_dir, sets, seed)
    with file_lock(paths.lock(model_dir)):  # ... nor train one model twice at once
        if not finished_run_matches(scenario, model_dir, seed=seed):
            say(f"train {scenario.name}, training seed {seed} → {model_dir}")
            train_world_model(scenario, data_dir, model_dir, progress=True, seed=seed)
        # a model cached from before guardrail calibration existed gets the file training now writes
        ensure_calibration(model_dir, data_dir, scenario.model, scenario.train, seed)
    return model_dir


def provenance(device: str) -> dict[str, Any]:
    """When, from which commit, on what machine and with which packages a table was measured."""
    import datetime as dt
    import os
    import platform
    import subprocess

    from hplan.provenance import package_versions

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                                  cwd=Path(__file__).resolve().parent).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    if not _CODE:  # once per process: the code that runs is the code there was when it started
        _CODE.update(commit=git("rev-parse", "--short", "HEAD"),
                     dirty=bool(git("status", "--porcelain", "--untracked-files=no")))
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **_CODE,
            "machine": f"{cpu}, {os.cpu_count()} cores", "device": device, "versions": package_versions()}


_CODE: dict[str, Any] = {}
"""Commit and dirty flag of the checkout when this process first asked (:func:`provenance`). Why
not ask each time: ``HEAD`` moves while a long ``hplan results`` runs, and evaluations played by
the code it started with were stamped with later commits (zones, seed 2: stamped ``1e30458``, played
by a process started at ``40ece14``)."""


DONE_MARKER = "results_key.json"
"""Written last into an evaluation folder: the evaluation finished (run.json alone may be a kill's leftover).
It also records when and from which commit the evaluation was played (``measured``)."""
STAMP_KEYS = ("date", "commit", "dirty")
"""The provenance every episode row carries (as ``measured_<key>``): a table mixes evaluations of
several runs, and its page names every commit that played a part of it."""


def _stamp(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in STAMP_KEYS}


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stamped(frame: pd.DataFrame, out: Path, earlier: dict[str, Any] | None) -> pd.DataFrame:
    """``frame`` with ``measured_date/commit/dirty`` columns from the evaluation's marker; an
    evaluation made before markers recorded it takes the table's earlier record, else the marker's
    file time and an unrecorded commit."""
    import datetime as dt

    marker = _read_meta(out / DONE_MARKER) or {}
    stamp = marker.get("measured") or (_stamp(earlier) if earlier else None)
    if not stamp:
        when = dt.datetime.fromtimestamp((out / DONE_MARKER).stat().st_mtime, dt.timezone.utc)
        stamp = {"date": when.strftime("%Y-%m-%d %H:%M UTC"), "commit": "unrecorded", "dirty": False}
    return frame.assign(**{f"measured_{key}": stamp.get(key) for key in STAMP_KEYS})


def expected_run(scenario: ScenarioConfig, arm: Arm, split: str, episodes: int, model_sha256: str) -> dict[str, Any]:
    """What an evaluation of ``arm`` must have recorded to be reused: the episodes, the model's
    weights, and the settings that decide what the agent does (planner search, guardrails, env, task)."""
    from hplan.runner.settings import resolve_guardrails, resolve_planner

    planner = resolve_planner(scenario.planner, arm.planner)
    guardrails = resolve_guardrails(scenario.guardrails, arm.guardrails)
    return {"seed": scenario.seed, "split": split, "episodes": episodes, "checkpoint_sha256": model_sha256,
            "planner": search_fingerprint(planner), "guardrails": to_mapping(guardrails),
            "env": to_mapping(scenario.env), "task": to_mapping(scenario.task)}


def search_fingerprint(planner: PlannerConfig) -> dict[str, Any]:
    """A planner's settings with its search sizes as resolved (so ``budget.evals = 3850`` and the
    populations it derives compare equal to those populations given directly); the device is left
    out (it does not change a CPU-seeded result's meaning)."""
    from hplan.planning.budget import resolve_budget

    mapping = to_mapping(planner)
    mapping.pop("device")
    mapping.pop("budget")
    for section in ("search", "codes"):
        for key in ("population", "iterations", "elites"):
            mapping[section].pop(key)
    budget = resolve_budget(planner)
    mapping["sizes"] = {"low": list(dataclasses.astuple(budget.low)),
                        "high": None if budget.high is None else list(dataclasses.astuple(budget.high))}
    return mapping


def cached_evaluation(out: Path, expected: dict[str, Any]) -> pd.DataFrame | None:
    """The finished evaluation in ``out`` if what it recorded (``run.json`` and its first episode
    log's header) matches ``expected``; None when it is missing, unfinished or made otherwise."""
    try:
        if not (out / DONE_MARKER).exists():
            return None
        run = json.loads((out / "run.json").read_text())
        with (out / "episodes" / "ep-0000.jsonl").open() as handle:
            header = json.loads(handle.readline())
        # read back through the config classes: a field added since the run was recorded takes its
        # default, which keeps the old behaviour (guardrails.risk, task.task_id); a planner recorded
        # flat (before it was nested) is migrated, so it matches the same settings written nested
        planner = nest_planner(run["planner"], source=str(out / "run.json"))
        recorded = {"seed": run["seed"], "split": run["split"], "episodes": run["episodes"],
                    "checkpoint_sha256": run["checkpoint_sha256"],
                    "planner": search_fingerprint(from_mapping(PlannerConfig, planner, source=str(out))),
                    "guardrails": to_mapping(from_mapping(GuardrailConfig, run["guardrails"], source=str(out))),
                    "env": to_mapping(from_mapping(EnvConfig, header["scenario"]["env"], source=str(out))),
                    "task": to_mapping(from_mapping(TaskConfig, header["scenario"]["task"], source=str(out)))}
        if json.loads(json.dumps(recorded)) != json.loads(json.dumps(expected)):
            return None
        return pd.read_parquet(out / "episodes.parquet")
    except (OSError, ValueError, KeyError, TypeError, HplanError):
        return None


def _dataset_ready(scenario: ScenarioConfig, data_dir: Path, split: str, cached_only: bool) -> bool:
    """True when ``data_dir`` holds a complete dataset collected with ``scenario``'s settings.
    One collected with other settings is refused in one line (or, ``cached_only``, left out)."""
    from hplan.data.manifest import open_existing, settings_fingerprint

    if not (data_dir / "manifest.json").exists():
        return False
    try:
        manifest = open_existing(data_dir, settings_fingerprint(scenario, split))
    except HplanError as err:
        if cached_only:
            return False
        raise HplanError(f"{data_dir}: a cached dataset with other settings ({err}); delete it or use another "
                         "--runs") from None
    return bool(manifest and manifest.get("complete"))


def _hash(sets: list[str]) -> str:
    if not sets:
        return ""
    canonical = json.dumps(parse_sets(list(sets)), sort_keys=True)  # later assignments win, as in the scenario
    return "-" + hashlib.sha256(canonical.encode()).hexdigest()[:8]
