"""Many seeded episodes of one scenario with one model: a table of results plus episode logs.

Episode ``i`` of split ``val`` or ``test`` of a run with master seed ``s`` resets the env with
``eval_episode_seed(s, split, i)`` and seeds the agent with the same value. The two splits are
disjoint seed streams: settings are chosen on ``val``, numbers are reported on ``test``. Each episode gets a fresh environment and a fresh agent,
so an episode depends only on its own seed and settings — which is what lets ``hplan replay``
re-run any single episode from its log.

The environment and agent factories are injected (``make_env`` / ``make_agent``; the library's
defaults are imported lazily) so tests and the stress suite can substitute their own.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch

from hplan.config import ScenarioConfig
from hplan.configio import to_mapping
from hplan.io import write_dataframe, write_json
from hplan.planning.config import GuardrailConfig
from hplan.provenance import package_versions
from hplan.runner.lockstep import SharedTime, play_episodes, resolve_lockstep
from hplan.runner.logs import LogHeader, write_episode_log
from hplan.runner.loop import EpisodeRecord, StepEvent, StepHook, run_episode
from hplan.runner.settings import checkpoint_sha256, resolve_guardrails, resolve_planner, source_sha256
from hplan.runner.summary import summarize
from hplan.seeding import EVAL_SPLITS, eval_episode_seed

EPISODE_DIR = "episodes"
EPISODES_TABLE = "episodes.parquet"
RUN_SUMMARY = "run.json"

EnvFactory = Callable[..., Any]
AgentFactory = Callable[..., Any]


def episode_seed(seed: int, index: int, split: str = "test") -> int:
    return eval_episode_seed(seed, split, index)


def episode_log_path(log_dir: str | Path, index: int) -> Path:
    return Path(log_dir) / EPISODE_DIR / f"ep-{index:04d}.jsonl"


def clear_earlier_run(log_dir: str | Path) -> None:
    """Remove what an earlier run left in ``log_dir`` (episode logs, table, summary).

    A run with fewer episodes would otherwise leave the earlier run's later logs beside its own,
    and ``hplan replay DIR --verify`` would check them as if they belonged to it.
    """
    log_dir = Path(log_dir)
    for path in sorted((log_dir / EPISODE_DIR).glob("ep-*.jsonl")):
        path.unlink()
    for name in (EPISODES_TABLE, RUN_SUMMARY):
        (log_dir / name).unlink(missing_ok=True)


def run_episodes(scenario: ScenarioConfig, model: Any, *, planner_kind: str | None = None,
                 guardrails: str | GuardrailConfig | None = None, episodes: int, seed: int | None = None,
                 log_dir: str | Path | None = None, wrap_env: Callable[[Any], Any] | None = None,
                 hooks: Sequence[StepHook] = (), checkpoint: str | Path | None = None,
                 device: str | None = None, env_overrides: dict[str, Any] | None = None,
                 make_env: EnvFactory | None = None, make_agent: AgentFactory | None = None,
                 progress: bool = False, split: str = "test",
                 overrides: Sequence[str] = (), lockstep: int | None = None) -> pd.DataFrame:
    """Run ``episodes`` seeded episodes; one row per episode (see :func:`episode_row`).

    ``split`` (``val`` or ``test``) picks the episode seed stream; it is in every row, log and
    summary. ``overrides`` are the ``--set`` assignments the scenario was loaded with (recorded in
    ``run.json`` so every variant has its command).
    ``planner_kind``/``guardrails``/``device`` override the scenario (see
    :mod:`hplan.runner.settings`); ``seed`` defaults to the scenario's master seed.
    ``checkpoint`` (run dir) is recorded with the sha256 of its ``model.pt`` so a replay can
    verify it reloads the same weights; it defaults to ``model.run_dir`` when the model has one.
    ``wrap_env(env) -> env`` wraps each fresh env (stress shifts); if it has a JSON-friendly
    ``replay_spec`` attribute, that is logged so a replay can rebuild the wrapper.
    With ``log_dir``, writes ``episodes/ep-NNNN.jsonl`` per episode, ``episodes.parquet`` and
    ``run.json`` (settings and aggregate metrics), all atomically.

    ``lockstep`` episodes are played together (:mod:`hplan.runner.lockstep`; default
    :data:`~hplan.runner.lockstep.DEFAULT_LOCKSTEP`, at most ``episodes``): one batched model call per kind of call for
    all of them, each episode the same as played alone (``lockstep = 1``). Rows, logs, hooks and
    the progress bar still come per episode, in episode order; with ``lockstep > 1`` the ``hooks``
    see each episode after it ended (its calls are replayed in order: ``on_reset`` gets the
    episode's env, by then closed), and the rows' and logs' ``act_ms`` is the wall time of ``act`` divided by the
    episodes stepped together at the time (what a step costs; its latency is that many times longer).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    make_env = make_env or _default_make_env
    make_agent = make_agent or _default_make_agent
    seed = scenario.seed if seed is None else int(seed)
    planner = resolve_planner(scenario.planner, planner_kind, device)
    guard = resolve_guardrails(scenario.guardrails, guardrails)
    checkpoint = checkpoint if checkpoint is not None else getattr(model, "run_dir", None)
    base_header = log_header(scenario, planner, guard, checkpoint=checkpoint, env_overrides=env_overrides,
                             wrappers=_wrapper_spec(wrap_env), split=split)
    ckpt_hash, agent_device = base_header.checkpoint_sha256, base_header.device
    rows = []
    lockstep = resolve_lockstep(lockstep, episodes)
    threaded = lockstep > 1 and model is not None and episodes > 1

    def play(index: int, view: Any) -> tuple[EpisodeRecord, _HookCalls | None]:
        ep_seed = episode_seed(seed, index, split)
        env = make_env(scenario, **(env_overrides or {}))
        if wrap_env is not None:
            env = wrap_env(env)
        calls = _HookCalls() if threaded and hooks else None
        try:
            agent = make_agent(model if view is None else view, planner, guard, ep_seed, planner.device)
            if threaded:
                agent = SharedTime(agent, view)
            record = run_episode(env, agent, ep_seed, max_steps=scenario.env.max_steps,
                                 hooks=(calls,) if calls is not None else hooks)
        finally:
            env.close()
        if threaded:
            record = agent.amortise(record)
        return record, calls

    with _progress(progress, episodes, f"{scenario.name} {planner.kind} guardrails={guard.mode}") as advance:
        def deliver(index: int, result: tuple[EpisodeRecord, _HookCalls | None]) -> None:
            record, calls = result
            if calls is not None:
                calls.replay(hooks)
            log_path = episode_log_path(log_dir, index) if log_dir is not None else None
            row = episode_row(record, index=index, scenario=scenario.name, planner=planner.kind,
                              guardrails=guard.mode, log=log_path, split=split)
            if log_path is not None:
                write_logged_episode(log_path, base_header, record, row, index=index,
                                     lockstep=lockstep if model is not None else None)
            rows.append(row)
            advance(row)

        play_episodes(episodes, play, deliver, model=model, lockstep=lockstep)
    frame = pd.DataFrame(rows)
    if log_dir is not None:
        write_dataframe(Path(log_dir) / EPISODES_TABLE, frame)
        write_json(Path(log_dir) / RUN_SUMMARY, {
            "scenario": scenario.name, "scenario_source": scenario.source, "seed": seed, "split": split,
            "episodes": episodes, "overrides": list(overrides),
            "planner": to_mapping(planner), "guardrails": to_mapping(guard),
            "checkpoint": base_header.checkpoint_path, "checkpoint_sha256": ckpt_hash, "device": agent_device,
            "lockstep": lockstep, "versions": base_header.versions, "summary": summarize(frame)})
    return frame


def log_header(scenario: ScenarioConfig, planner: Any, guard: GuardrailConfig, *, checkpoint: str | Path | None,
               split: str, env_overrides: dict[str, Any] | None = None, wrappers: str | None = None,
               stress: dict[str, Any] | None = None) -> LogHeader:
    """The header every episode log of one run shares (``episode``/``seed`` are set per episode):
    what a replay needs to rebuild env, model and agent. The runner's and the stress cells' logs
    are made here, so both replay the same way."""
    return LogHeader(
        episode=0, seed=0, scenario=to_mapping(scenario),
        env={"id": scenario.env.id, "obs_mode": scenario.env.obs_mode, "kwargs": to_mapping(scenario.env.kwargs),
             "overrides": to_mapping(env_overrides or {})},
        planner=to_mapping(planner), guardrails=to_mapping(guard), max_steps=scenario.env.max_steps,
        checkpoint_path=str(Path(checkpoint).resolve()) if checkpoint is not None else None,
        checkpoint_sha256=checkpoint_sha256(checkpoint) if checkpoint is not None else None,
        device=_device_name(planner.device), torch_threads=torch.get_num_threads(),
        versions=package_versions(), wrappers=wrappers, source_sha256=source_sha256(), split=split, stress=stress)


def write_logged_episode(log_path: Path, header: LogHeader, record: EpisodeRecord, row: dict[str, Any], *,
                         index: int, lockstep: int | None) -> None:
    """Episode ``index``'s log: the run's header with its index, seed and lockstep, its steps, its row."""
    header = dataclasses.replace(header, episode=index, seed=record.seed, lockstep=lockstep)
    write_episode_log(log_path, header, record, _json_row(row))


class _HookCalls:
    """A step hook that keeps an episode's hook calls, to replay them to the run's hooks in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def on_reset(self, env: Any, obs: Any, info: Any) -> None:
        self.calls.append(("on_reset", (env, obs, info)))

    def on_step(self, event: StepEvent) -> None:
        self.calls.append(("on_step", (event,)))

    def on_episode_end(self, record: EpisodeRecord) -> None:
        self.calls.append(("on_episode_end", (record,)))

    def replay(self, hooks: Sequence[StepHook]) -> None:
        for name, args in self.calls:
            for hook in hooks:
                method = getattr(hook, name, None)
                if method is not None:
                    method(*args)


def episode_row(record: EpisodeRecord, *, index: int, scenario: str = "", planner: str = "",
                guardrails: str = "", log: Path | None = None, split: str = "test") -> dict[str, Any]:
    """One row of the results table.

    ``violations``: steps with at least one real violation; ``violations_<name>``: steps on which
    that flag was set; ``violation``: at least one violating step; ``plan_ms``: mean agent-reported
    planning time per step; ``act_ms``: mean wall time of ``agent.act`` measured by the runner
    (what tables report as planning ms per step); ``act_cpu_ms``: mean CPU time of the calling
    thread during ``act`` (equals the compute when torch uses one thread; GPU work is not in it);
    ``model_evals``: predictor evaluations spent in
    the episode; ``final_geodesic``: shortest-path distance to the goal at the end (maps only).
    """
    row: dict[str, Any] = {
        "scenario": scenario, "planner": planner, "guardrails": guardrails, "split": split, "episode": index,
        "seed": record.seed, "success": record.success, "steps": record.num_steps,
        "violations": record.violation_steps, "violation": record.violation_steps > 0,
    }
    for name, count in record.violations_by_kind().items():
        row[f"violations_{name}"] = count
    row.update({
        "plan_ms": record.mean("plan_ms"),
        "act_ms": float(np.mean([s.act_ms for s in record.steps])) if record.steps else float("nan"),
        "act_cpu_ms": float(np.mean([s.act_cpu_ms for s in record.steps])) if record.steps else float("nan"),
        "model_evals": int(record.total("model_evals")),
        **compute_totals(record),
        "return": record.total_return,
        "start_geodesic": _nan(record.start_geodesic),
        "start_geodesic_steps": -1 if record.start_geodesic_steps is None else int(record.start_geodesic_steps),
        "final_geodesic": _nan(record.final_geodesic),
        "log": "" if log is None else str(log),
    })
    return row


COMPUTE_TOTALS = ("distance_evals", "guardrail_evals", "distance_ms", "guardrail_ms", "graph_ms", "setup_ms")
"""Per-episode totals of what the agent computed besides predictor evaluations (PlanInfo.compute).
Head rows and head / graph time include the agent's build once per episode (its ``setup_<kind>``
figures); ``setup_ms`` is the build's wall time, which ``act_ms`` does not contain."""


def compute_totals(record: EpisodeRecord) -> dict[str, float]:
    """Sums over the episode's steps of each :data:`COMPUTE_TOTALS` entry (0 when not reported),
    the build's share of head rows and head / graph time added in."""
    totals = dict.fromkeys(COMPUTE_TOTALS, 0.0)
    for step in record.steps:
        for key, value in (step.plan.get("compute") or {}).items():
            name = key[len("setup_"):] if key.startswith("setup_") and key != "setup_ms" else key
            if name in totals and value is not None:
                totals[name] += float(value)
    return {key: (int(v) if key.endswith("_evals") else round(v, 3)) for key, v in totals.items()}


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the log's summary line stores it (NaN → None: JSON has no NaN)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _wrapper_spec(wrap_env: Callable[[Any], Any] | None) -> str | None:
    if wrap_env is None:
        return None
    spec = getattr(wrap_env, "replay_spec", None)
    if spec is not None:
        import json

        return json.dumps(spec, sort_keys=True)
    return f"unreplayable:{getattr(wrap_env, '__qualname__', type(wrap_env).__name__)}"


def _device_name(requested: str) -> str:
    from hplan.device import resolve_device

    return str(resolve_device(requested))


def _default_make_env(scenario: ScenarioConfig, **overrides: Any) -> Any:
    from hplan.envs.factory import make_env

    return make_env(scenario, **overrides)


def _default_make_agent(model: Any, planner: Any, guardrails: Any, seed: int, device: Any) -> Any:
    from hplan.planning.agent import make_agent

    return make_agent(model, planner, guardrails, seed, device)


class _progress:
    """A rich progress bar with running success / violation counts (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label = enabled, total, label
        self.successes = self.violations = self.done = 0

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        if not self.enabled:
            return lambda row: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(), transient=False)
        self.bar.__enter__()
        self.task = self.bar.add_task(self.label, total=self.total, stats="")
        return self._advance

    def _advance(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.successes += int(bool(row["success"]))
        self.violations += int(bool(row["violation"]))
        self.bar.update(self.task, advance=1,
                        stats=f"success {self.successes}/{self.done}  violating {self.violations}/{self.done}")

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)
