"""Re-execute and verify episode logs.

Two checks, cheapest first:

1. **Actions replay** (needs no model): rebuild the env from the logged scenario, reset it with
   the logged seed, step the logged actions and compare, step by step, the true state, the
   observation digest, reward, real cost, violation flags and termination with the log. Then walk
   the log's line chain (:mod:`hplan.runner.logs`), which catches edits that change nothing the
   env can see (a logged probability, a subgoal index).
2. **Agent replay** (needs the checkpoint): reload the model from the logged run dir after checking
   the sha256 of its ``model.pt``, rebuild the agent with the logged planner and guardrail settings
   and seed, run the episode again through the runner and compare actions, states, costs, digests
   and the agent's logged choices (subgoal index, model evaluations).

The first mismatch raises :class:`~hplan.errors.ReplayDivergence` (exit 3) naming the file, the
step and the field. Deterministic replays are promised on CPU; a log recorded on a GPU is
re-executed on CPU for the actions check only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from hplan.config import ScenarioConfig
from hplan.configio import from_mapping
from hplan.errors import CheckpointError, ConfigError, HplanError, ReplayDivergence
from hplan.planning.config import GuardrailConfig, PlannerConfig
from hplan.planning.migration import nest_planner, nest_scenario_planner
from hplan.runner.lockstep import alone
from hplan.runner.logs import EpisodeLog, read_episode_log
from hplan.runner.loop import EpisodeRecord, StepRecord, obs_digest, obs_equal, run_episode
from hplan.runner.settings import checkpoint_sha256, model_file

ReplayMode = Literal["auto", "actions", "agent"]
FrameHook = Callable[[Any, Any, dict[str, Any], StepRecord | None], None]
"""Called as ``frame(env, obs, info, step)`` after reset (``step=None``) and after every replayed step."""

ENV_FIELDS: tuple[str, ...] = ("true_state", "obs_sha256", "reward", "cost", "violations", "success",
                               "terminated", "truncated", "goal_changed")
"""Fields of a step the environment alone determines (checked by the actions replay)."""

AGENT_PLAN_FIELDS: tuple[str, ...] = ("subgoal_index", "model_evals", "replanned_high", "plan_reason")
"""PlanInfo fields compared exactly by the agent replay (timings are not reproducible)."""

AGENT_PLAN_CLOSE: tuple[str, ...] = ("guardrail_probs", "subgoal_latent", "predicted_cost", "predicted_risk",
                                     "lagrange_multiplier")
"""PlanInfo fields compared to within the rounding they are logged with."""


@dataclass
class ReplayReport:
    """What a replay checked."""

    path: Path
    steps: int
    actions_ok: bool
    chain_ok: bool
    agent_ok: bool | None  # None: not run (see agent_note)
    agent_note: str = ""

    @property
    def verified(self) -> bool:
        return self.actions_ok and self.chain_ok and self.agent_ok is not False


def scenario_of(log: EpisodeLog) -> ScenarioConfig:
    """The logged scenario, validated again (a hand-edited header fails with file and field); a
    log recorded before the planner was nested has its flat ``planner`` table migrated."""
    data = nest_scenario_planner(log.header.scenario, source=f"{log.path}: header.scenario")
    data["source"] = str(log.path)
    return from_mapping(ScenarioConfig, data, source=f"{log.path}: header.scenario")


def replay_actions(log: EpisodeLog, *, make_env: Callable[..., Any] | None = None,
                   wrap_env: Callable[[Any], Any] | None = None, strict: bool = True,
                   frame: FrameHook | None = None) -> str:
    """Step the logged actions through a fresh env; return '' or the first divergence.

    With ``strict`` the first divergence raises :class:`ReplayDivergence`; otherwise it is
    returned and the replay stops there (what a plain ``hplan replay`` shows as a warning).
    """
    env = _build_env(log, make_env, wrap_env)
    try:
        obs, info = env.reset(seed=log.header.seed)
        record = log.record
        problem = _compare_reset(log, obs, info)
        if frame is not None:
            frame(env, obs, info, None)
        goal_obs = info.get("goal_obs")
        for step in record.steps:
            if problem:
                break
            action = action_from_json(step.action, env.action_space)
            obs, reward, terminated, truncated, info = env.step(action)
            new_goal = info.get("goal_obs", goal_obs)
            changed = new_goal is not goal_obs and not obs_equal(new_goal, goal_obs)
            goal_obs = new_goal
            replayed = {
                "true_state": [float(v) for v in np.asarray(info.get("true_state"), dtype=np.float64).ravel()],
                "obs_sha256": obs_digest(obs), "reward": float(reward), "cost": float(info.get("cost", 0.0)),
                "violations": {str(k): bool(v) for k, v in dict(info.get("violations", {})).items()},
                "success": bool(info.get("success", False)), "terminated": bool(terminated),
                "truncated": bool(truncated), "goal_changed": changed,
            }
            for name in ENV_FIELDS:
                if getattr(step, name) != replayed[name]:
                    problem = _divergence(log, step.t, name, getattr(step, name), replayed[name],
                                          hint="the logged action does not reproduce the logged outcome")
                    break
            if frame is not None and not problem:
                frame(env, obs, info, step)
        if not problem:
            problem = _check_ending(log)
    finally:
        env.close()
    if problem and strict:
        raise ReplayDivergence(problem)
    return problem


def check_chain(log: EpisodeLog) -> str:
    """'' when every line's chain digest matches its content, else which line was edited."""
    if log.chain_ok:
        return ""
    line = log.first_bad_line
    step = next((t for t, number in log.step_lines.items() if number == line), None)
    where = f"step {step} (line {line})" if step is not None else f"line {line}"
    return f"{log.path}: {where}: content digest mismatch — the log was edited after it was written"


def replay_agent(log: EpisodeLog, *, device: str = "cpu", make_env: Callable[..., Any] | None = None,
                 make_agent: Callable[..., Any] | None = None, load_model: Callable[..., Any] | None = None,
                 wrap_env: Callable[[Any], Any] | None = None) -> None:
    """Re-run the episode with a freshly built agent; raise ReplayDivergence on the first mismatch.

    The checkpoint must hash to the logged sha256 (a retrained or edited ``model.pt`` cannot
    reproduce the episode: :class:`CheckpointError` says so in one line).
    """
    header = log.header
    if header.checkpoint_path is None:
        raise CheckpointError(f"{log.path}: the log records no checkpoint, cannot re-run the agent")
    path = model_file(header.checkpoint_path)
    if not path.is_file():
        raise CheckpointError(f"{log.path}: logged checkpoint {path} not found")
    digest = checkpoint_sha256(header.checkpoint_path)
    if header.checkpoint_sha256 is not None and digest != header.checkpoint_sha256:
        raise CheckpointError(f"{log.path}: checkpoint {path} has sha256 {digest[:12]}…, the log was recorded "
                              f"with {header.checkpoint_sha256[:12]}… (model changed since)")
    source = f"{log.path}: header.planner"
    planner = from_mapping(PlannerConfig, nest_planner(header.planner, source=source, section=""), source=source)
    planner = dataclasses.replace(planner, device=device)
    guardrails = from_mapping(GuardrailConfig, header.guardrails, source=f"{log.path}: header.guardrails")
    load_model = load_model or _default_load_model
    make_agent = make_agent or _default_make_agent
    try:
        model = load_model(header.checkpoint_path, device=device)
    except CheckpointError as err:
        raise CheckpointError(f"{err}{_code_changed_note(header)}") from None
    env = _build_env(log, make_env, wrap_env)
    try:
        from hplan.device import torch_threads

        with torch_threads(header.torch_threads):  # CPU reductions are exact only at the same thread count
            if header.lockstep is not None:  # played through the lockstep view: re-run through it, alone
                model = alone(model)
            agent = make_agent(model, planner, guardrails, header.seed, device)
            rerun = run_episode(env, agent, header.seed, max_steps=header.max_steps)
    finally:
        env.close()
    problem = compare_records(log, rerun)
    if problem:
        raise ReplayDivergence(problem + _code_changed_note(header))


def compare_records(log: EpisodeLog, rerun: EpisodeRecord) -> str:
    """'' when a re-run matches the log step for step, else the first divergence."""
    logged = log.record
    if rerun.reset_true_state != logged.reset_true_state:
        return _divergence(log, None, "true_state", logged.reset_true_state, rerun.reset_true_state)
    for old, new in zip(logged.steps, rerun.steps):
        for name in ("action", *ENV_FIELDS):
            if getattr(old, name) != getattr(new, name):
                return _divergence(log, old.t, name, getattr(old, name), getattr(new, name),
                                   hint="the agent chose differently" if name == "action" else "")
        # Only fields the log has (older logs lack newer PlanInfo fields; the chain guards deletions).
        for name in AGENT_PLAN_FIELDS:
            if name in old.plan and old.plan[name] != new.plan.get(name):
                return _divergence(log, old.t, f"plan.{name}", old.plan.get(name), new.plan.get(name))
        for name in AGENT_PLAN_CLOSE:
            if name in old.plan and not _close(old.plan[name], new.plan.get(name)):
                return _divergence(log, old.t, f"plan.{name}", old.plan.get(name), new.plan.get(name))
    if len(logged.steps) != len(rerun.steps):
        t = min(len(logged.steps), len(rerun.steps))
        return (f"{log.path}: step {t}: episode length differs (log {len(logged.steps)} steps, "
                f"re-run {len(rerun.steps)} steps)")
    return ""


def verify_log(path: str | Path, *, mode: ReplayMode = "auto", device: str = "cpu",
               make_env: Callable[..., Any] | None = None, make_agent: Callable[..., Any] | None = None,
               load_model: Callable[..., Any] | None = None, wrap_env: Callable[[Any], Any] | None = None,
               frame: FrameHook | None = None) -> ReplayReport:
    """Verify one log: actions replay and chain always; agent replay per ``mode``.

    ``auto`` runs the agent replay when the logged checkpoint exists and the log was recorded on
    CPU, and notes why it was skipped otherwise; ``agent`` insists on it; ``actions`` skips it.
    """
    log = read_episode_log(path)
    replay_actions(log, make_env=make_env, wrap_env=wrap_env, frame=frame)
    problem = check_chain(log)
    if problem:
        raise ReplayDivergence(problem)
    report = ReplayReport(path=log.path, steps=log.record.num_steps, actions_ok=True, chain_ok=True, agent_ok=None)
    skip = _agent_skip_reason(log, mode)
    if skip:
        report.agent_note = skip
        return report
    replay_agent(log, device=device, make_env=make_env, make_agent=make_agent, load_model=load_model,
                 wrap_env=wrap_env)
    report.agent_ok = True
    return report


def log_paths(target: str | Path) -> list[Path]:
    """A log file, or every ``*.jsonl`` under a run directory (sorted)."""
    target = Path(target)
    if target.is_dir():
        paths = sorted(target.rglob("*.jsonl"))
        if not paths:
            raise HplanError(f"{target}: no episode logs (*.jsonl) found")
        return paths
    if not target.exists():
        raise ConfigError(str(target), "", "episode log not found")
    return [target]


def action_from_json(value: Any, space: Any) -> Any:
    """A logged action in the form the env expects (int, or an array of the space's dtype)."""
    if isinstance(value, int):
        return value
    dtype = getattr(space, "dtype", None) or np.float32
    return np.asarray(value, dtype=dtype).reshape(getattr(space, "shape", None) or (-1,))


# ----------------------------------------------------------------------------------- internals
def _agent_skip_reason(log: EpisodeLog, mode: ReplayMode) -> str:
    if mode == "actions":
        return "skipped: --actions-only"
    header = log.header
    reason = ""
    if header.checkpoint_path is None:
        reason = "no checkpoint recorded in the log"
    elif not model_file(header.checkpoint_path).is_file():
        reason = f"checkpoint {model_file(header.checkpoint_path)} not available"
    elif not str(header.device).startswith("cpu"):
        reason = f"recorded on {header.device}: bit-exact agent replays are promised on CPU only"
    if reason and mode == "agent":
        raise CheckpointError(f"{log.path}: cannot re-run the agent: {reason}")
    return f"skipped: {reason}" if reason else ""


def _build_env(log: EpisodeLog, make_env: Callable[..., Any] | None,
               wrap_env: Callable[[Any], Any] | None) -> Any:
    scenario = scenario_of(log)
    if make_env is None:
        from hplan.envs.factory import make_env as default_make_env

        make_env = default_make_env
    overrides = log.header.env.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(str(log.path), "line 1", f"'env.overrides': expected a table, got {type(overrides).__name__}")
    overrides = dict(overrides)
    if log.header.stress is not None:  # a stress episode: the same shifted world, from the same builder
        from hplan.stress.cells import stress_setting_of, stressed_env

        setting = stress_setting_of(log.header.stress, f"{log.path} (line 1)")
        return stressed_env(scenario, setting, log.header.episode, log.header.seed, make_env)[0]
    env = make_env(scenario, **overrides)
    wrappers = log.header.wrappers
    if wrappers is not None:
        if wrap_env is None:
            env.close()
            raise HplanError(f"{log.path}: the episode ran inside env wrappers ({wrappers}); replay it through "
                             "hplan.replay.verify_log(..., wrap_env=...) with the same wrapper")
        env = wrap_env(env)
    return env


def _compare_reset(log: EpisodeLog, obs: Any, info: dict[str, Any]) -> str:
    record = log.record
    state = [float(v) for v in np.asarray(info.get("true_state"), dtype=np.float64).ravel()]
    if state != record.reset_true_state:
        return _divergence(log, None, "true_state", record.reset_true_state, state)
    if obs_digest(obs) != record.reset_obs_sha256:
        return _divergence(log, None, "obs_sha256", record.reset_obs_sha256, obs_digest(obs))
    if obs_digest(info.get("goal_obs")) != record.goal_obs_sha256:
        return _divergence(log, None, "goal_obs_sha256", record.goal_obs_sha256, obs_digest(info.get("goal_obs")))
    return ""


def _check_ending(log: EpisodeLog) -> str:
    """A log must stop exactly where the runner stops: first ending step, or the step budget."""
    steps = log.record.steps
    for step in steps[:-1]:
        if step.terminated or step.truncated or step.success:
            return f"{log.path}: step {step.t}: the episode ended here but the log goes on"
    last = steps[-1] if steps else None
    ended = last is not None and (last.terminated or last.truncated or last.success)
    if not ended and len(steps) < log.header.max_steps:
        return (f"{log.path}: step {len(steps)}: log ends after {len(steps)} steps but the episode had not "
                f"ended (budget {log.header.max_steps}) — truncated log?")
    return ""


def _divergence(log: EpisodeLog, t: int | None, name: str, logged: Any, replayed: Any, hint: str = "") -> str:
    where = "reset" if t is None else f"step {t}"
    line = log.step_lines.get(t) if t is not None else None
    where += f" (line {line})" if line else ""
    text = f"{log.path}: {where}: {name} diverges (log {_short(logged)}, replay {_short(replayed)})"
    return f"{text}; {hint}" if hint else text


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _close(a: Any, b: Any, tol: float = 2e-4) -> bool:
    """Equal within logging precision (rounded floats may differ by one unit in the last place)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)
    return a == b


def _code_changed_note(header: Any) -> str:
    """A hint when the hplan sources differ from those that recorded the log."""
    from hplan.runner.settings import source_sha256

    if header.source_sha256 is None or header.source_sha256 == source_sha256():
        return ""
    return " (note: the hplan source code changed since this log was recorded)"


def _default_load_model(checkpoint: str, device: str = "cpu") -> Any:
    from hplan.models.checkpoint import load_world_model

    return load_world_model(checkpoint, device=device)


def _default_make_agent(model: Any, planner: Any, guardrails: Any, seed: int, device: Any) -> Any:
    from hplan.planning.agent import make_agent

    return make_agent(model, planner, guardrails, seed, device)
