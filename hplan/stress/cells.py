"""Cells: the unit of stress-suite work — one scenario × shift × severity × block of seeds.

A cell runs its episodes with the library's own loop (``hplan.runner.run_episode``) in a fresh,
shifted environment per episode, stepped together (:mod:`hplan.runner.lockstep`), and returns two tables: one row per episode and one row per
step (the :class:`~hplan.stress.recorder.StressRecorder` columns). Episode ``i`` uses the seed
``episode_seed(suite.seed, i, suite.split)`` in *every* cell, so the same seeds meet every shift and severity 0
reproduces the nominal episodes exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from hplan.config import ScenarioConfig
from hplan.configio import from_mapping, meta, to_mapping
from hplan.stress.geometry import SeparationPlacement, has_map
from hplan.metrics import recovery_time
from hplan.stress.recorder import StressRecorder, agent_plan
from hplan.stress.shifts import Onset, get_shift
from hplan.stress.suite import ResolvedScenario, SuiteConfig

AgentFactory = Callable[[ScenarioConfig, int], Any]
"""``(scenario, episode_seed) -> agent``; the default loads the checkpoint and calls ``make_agent``."""


@dataclass(frozen=True)
class Cell:
    """One scenario × shift × severity × seed block."""

    scenario: str
    shift: str
    severity: int
    block: int
    episodes: tuple[int, ...]

    @property
    def id(self) -> str:
        return f"{file_label(self.scenario)}+{self.shift}+s{self.severity}+b{self.block:03d}"


@dataclass(frozen=True)
class StressSetting:
    """How one stress episode's world was shifted, as its episode log records it (``stress``), so
    that ``hplan replay`` rebuilds the same world: the runner's own episodes and these go through
    one builder, :func:`stressed_env`."""

    shift: str = field(metadata=meta("the shift's name (hplan.stress.shifts)"))
    severity: int = field(metadata=meta("its severity", ge=0))
    onset_min: int = field(metadata=meta("earliest perturbation step", ge=0))
    onset_max: int = field(metadata=meta("latest perturbation step", ge=0))
    separations: tuple[int, ...] | None = field(metadata=meta(
        "H50 bin edges the start and goal were placed by (None: the scenario's own start and goal)"))

    @classmethod
    def of(cls, cell: Cell, suite: SuiteConfig) -> "StressSetting":
        return cls(cell.shift, cell.severity, suite.recovery.onset_min, suite.recovery.onset_max,
                   tuple(suite.h50.separations) if suite.h50.enabled else None)


def stressed_env(scenario: ScenarioConfig, setting: StressSetting, index: int, seed: int,
                 make_env: Callable[..., Any] | None = None) -> tuple[Any, SeparationPlacement | None]:
    """Episode ``index``'s shifted environment (and its H50 placement, None without a map).

    The shift's env settings, the placement's bin and the shift's randomness (onset, noise) all
    follow from the setting, the index and the seed: nothing else, which is what a replay needs."""
    if make_env is None:
        from hplan.envs.factory import make_env
    spec = get_shift(setting.shift)
    env = make_env(scenario, **spec.env_overrides(scenario, setting.severity))
    placement = None
    if setting.separations is not None and has_map(env):
        placement = SeparationPlacement(env, setting.separations)
        placement.target = index
        env = placement
    env = spec.make(env, setting.severity, np.random.default_rng(seed), Onset(setting.onset_min, setting.onset_max))
    return env, placement


def stress_setting_of(recorded: Any, source: str) -> StressSetting:
    """A log's ``stress`` entry as a :class:`StressSetting` (a one-line error naming the field)."""
    return from_mapping(StressSetting, recorded, source=source, section="stress")


@dataclass(frozen=True)
class CellJob:
    """Everything a worker process needs to run a cell (picklable)."""

    cell: Cell
    scenario: ScenarioConfig
    checkpoint: str
    suite: SuiteConfig
    alias_of: Cell | None = None
    """Set for a severity-0 cell served by relabelling the nominal cell (``suite.reuse_nominal``)."""
    log_dir: str | None = None
    """Where the cell writes one episode log per episode (``<log_dir>/<cell id>/ep-NNNN.jsonl``;
    ``hplan replay`` re-runs them); None: no logs."""

    def source(self) -> "CellJob":
        """The job that actually runs for this cell (itself, or the nominal cell it copies)."""
        if self.alias_of is None:
            return self
        return CellJob(self.alias_of, self.scenario, self.checkpoint, self.suite, log_dir=self.log_dir)


@dataclass
class CellResult:
    episodes: pd.DataFrame
    steps: pd.DataFrame


def plan_cells(suite: SuiteConfig, scenarios: tuple[ResolvedScenario, ...]) -> list[CellJob]:
    """All cells of a suite, in a stable order (scenario, shift, severity, block)."""
    jobs = []
    for item in scenarios:
        for shift in suite.shifts:
            for severity in shift.severities:
                for block in range(suite.blocks):
                    first = block * suite.episodes_per_cell
                    episodes = tuple(range(first, min(first + suite.episodes_per_cell, suite.episodes)))
                    cell = Cell(item.label, shift.name, int(severity), block, episodes)
                    alias = None
                    if suite.reuse_nominal and severity == 0 and shift.name != "none":
                        alias = Cell(item.label, "none", 0, block, episodes)
                    jobs.append(CellJob(cell, item.config, str(item.checkpoint), suite, alias))
    return jobs


_MODELS: dict[tuple[str, str], Any] = {}


def cell_model(job: CellJob) -> Any:
    """The cell's world model, loaded once per process."""
    from hplan.models.checkpoint import load_world_model

    key = (job.checkpoint, job.scenario.planner.device)
    if key not in _MODELS:
        _MODELS[key] = load_world_model(job.checkpoint, device=job.scenario.planner.device,
                                        expect_env_id=job.scenario.env.id)
    return _MODELS[key]


def checkpoint_agent_factory(job: CellJob, model: Any = None) -> AgentFactory:
    """A fresh ``LatentAgent`` per episode on ``model`` (default: the cell's checkpoint, loaded once)."""
    from hplan.planning.agent import make_agent

    model = cell_model(job) if model is None else model

    def factory(scenario: ScenarioConfig, seed: int) -> Any:
        return make_agent(model, scenario.planner, scenario.guardrails, seed, scenario.planner.device)

    return factory


def run_cell(job: CellJob, make_agent: AgentFactory | None = None, lockstep: int | None = None) -> CellResult:
    """Run every episode of a cell; see the module docstring.

    Without an injected ``make_agent``, the cell's episodes are stepped together (``lockstep``:
    :func:`hplan.runner.lockstep.play_episodes`, default all of the cell's, at most
    ``DEFAULT_LOCKSTEP``), each the same as played alone; an injected factory plays them one at a time.
    """
    from hplan.runner import episode_row, episode_seed, run_episode
    from hplan.runner.episodes import log_header, write_logged_episode
    from hplan.runner.lockstep import SharedTime, play_episodes, resolve_lockstep

    cell, scenario, suite = job.cell, job.scenario, job.suite
    model = None if make_agent is not None else cell_model(job)
    lockstep = resolve_lockstep(lockstep, max(1, len(cell.episodes)))
    threaded = model is not None and lockstep > 1
    setting = StressSetting.of(cell, suite)
    header = None
    if job.log_dir is not None and make_agent is None:  # an injected agent cannot be re-run from a log
        header = log_header(scenario, scenario.planner, scenario.guardrails, checkpoint=job.checkpoint,
                            split=suite.split, env_overrides=get_shift(cell.shift).env_overrides(scenario, cell.severity),
                            stress=to_mapping(setting))
    episode_rows, step_frames = [], []

    def play(position: int, view: Any) -> tuple[Any, StressRecorder, SeparationPlacement | None]:
        index = cell.episodes[position]
        seed = episode_seed(suite.seed, index, suite.split)
        env, placement = stressed_env(scenario, setting, index, seed)
        agent = make_agent(scenario, seed) if make_agent is not None else \
            checkpoint_agent_factory(job, view)(scenario, seed)
        if threaded:
            agent = SharedTime(agent, view)
        recorder = StressRecorder(plan_source=agent_plan(agent), branch=suite.guardrail_eval.branch,
                                  branch_every=suite.guardrail_eval.branch_every)
        try:
            record = run_episode(env, agent, seed, max_steps=scenario.env.max_steps, hooks=[recorder])
        finally:
            env.close()
        return (agent.amortise(record) if threaded else record), recorder, placement

    def deliver(position: int, result: tuple[Any, StressRecorder, SeparationPlacement | None]) -> None:
        record, recorder, placement = result
        index = cell.episodes[position]
        steps = recorder.frame()
        log_path = cell_log_path(job.log_dir, cell, index) if header is not None else None
        row = episode_row(record, index=index, scenario=cell.scenario, planner=scenario.planner.kind,
                          guardrails=scenario.guardrails.mode, split=suite.split, log=log_path)
        if log_path is not None:
            write_logged_episode(log_path, header, record, row, index=index, lockstep=lockstep)
        onset_step = int(steps["perturbation_onset"].max()) if len(steps) else -1
        row.update({
            "shift": cell.shift, "severity": cell.severity, "block": cell.block, "cell": cell.id,
            "guardrail_threshold": scenario.guardrails.threshold,
            "separation_bin": (index % placement.bins) if placement is not None else -1,
            "perturbation_onset": onset_step,
            "recovery_time": (recovery_time(steps["distance"].to_numpy(), onset_step, recorder.reset_distance)
                              if onset_step >= 0 else float("nan")),
            "impossible_steps": int(steps["impossible"].sum()) if len(steps) else 0,
            "trajectory_sha256": _trajectory_digest(record),
        })
        episode_rows.append(row)
        if len(steps):
            steps.insert(0, "episode", index)
            steps.insert(0, "severity", cell.severity)
            steps.insert(0, "shift", cell.shift)
            steps.insert(0, "scenario", cell.scenario)
            step_frames.append(steps)

    if cell.episodes:
        play_episodes(len(cell.episodes), play, deliver, model=model, lockstep=lockstep)
    return CellResult(pd.DataFrame(episode_rows),
                      pd.concat(step_frames, ignore_index=True) if step_frames else pd.DataFrame())


def relabel(result: CellResult, cell: Cell) -> CellResult:
    """A nominal cell's tables presented as ``cell`` (a severity-0 cell of another shift)."""
    episodes = result.episodes.copy()
    episodes["shift"] = cell.shift
    episodes["cell"] = cell.id
    steps = result.steps.copy()
    if len(steps):
        steps["shift"] = cell.shift
    return CellResult(episodes, steps)


def _trajectory_digest(record: Any) -> str:
    """One hash over every observation and action of the episode (severity-0 reproduction checks)."""
    digest = hashlib.sha256(record.reset_obs_sha256.encode())
    for step in record.steps:
        digest.update(step.obs_sha256.encode())
        digest.update(repr(step.action).encode())
    return digest.hexdigest()


def file_label(label: str) -> str:
    """A scenario label as part of a file name, one to one: letters, digits, ``-``, ``_`` and ``.``
    stay, every other character becomes ``%XX`` (its UTF-8 bytes), so ``"t a"`` and ``"t-a"`` can
    never share a result file (they once did, and one cell's episodes silently replaced the other's).
    ``+`` separates the parts of a cell id and is always escaped here.

    A label whose escaped form is longer than :data:`LABEL_CHARS` keeps its first characters and
    ends in ``~`` and a hash of the whole label (``~`` is always escaped otherwise, so a shortened
    name never equals a whole one): escaping makes a name up to 9x longer, and 60 "é" made a file
    name past the file system's 255 bytes, an OSError after ``--check`` had passed."""
    keep = set("-_.")
    escaped = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in keep else "".join(f"%{b:02X}" for b in ch.encode())
                      for ch in label)
    if len(escaped) <= LABEL_CHARS:
        return escaped
    head = escaped[:LABEL_CHARS - 17]
    head = head[:head.rfind("%")] if "%" in head[-2:] else head  # never cut a %XX in two
    return f"{head}~{hashlib.sha256(label.encode()).hexdigest()[:16]}"


LABEL_CHARS = 96
"""Longest scenario part of a cell id: with the shift, severity, block and ``.steps.parquet`` a
result file's name stays well under 255 bytes."""


def cell_log_path(log_dir: str | Path, cell: Cell, index: int) -> Path:
    """``<log_dir>/<cell id>/ep-NNNN.jsonl``: episode ``index`` of ``cell``."""
    return Path(log_dir) / cell.id / f"ep-{index:04d}.jsonl"


def cell_paths(out_dir: Path, cell: Cell) -> tuple[Path, Path]:
    """``cells/<id>.parquet`` (episodes; its presence marks the cell done) and ``cells/<id>.steps.parquet``."""
    base = Path(out_dir) / "cells"
    return base / f"{cell.id}.parquet", base / f"{cell.id}.steps.parquet"
