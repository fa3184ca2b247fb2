"""Episode logs: one JSONL file per episode, enough to re-run and verify it step for step.

Line layout (every line is a JSON object with a ``type``):

==========  ===================================================================================
type        holds
==========  ===================================================================================
header      format version, episode index and seed, the resolved scenario (``to_mapping``), env
            id/kwargs, planner and guardrail settings, checkpoint path + sha256 of ``model.pt``,
            torch device and thread count, package versions
reset       digests of the first observation and of the goal observation, the true start state,
            start-goal geodesic distance (and steps) where the env has a map
step        ``t``, action, reward, real cost and violation flags, success/terminated/truncated,
            true state and position, sha256 of the observation after the step, wall time of the
            agent's ``act`` and the agent's ``PlanInfo`` (subgoal index and rounded latent,
            predicted guardrail probabilities, predicted cost, plan_ms, model_evals, ...)
summary     the episode's row of ``episodes.parquet``
==========  ===================================================================================

Every line also carries ``chain``: the first 16 hex digits of
``sha256(previous chain + canonical JSON of the line without chain)``. Re-execution catches edits
that change what happens; the chain also catches edits that would not (e.g. to a logged
probability) and names the first edited line. Why a per-line chain rather than one file hash:
so the error can say *which* step was touched. The chain is not a signature: anyone can recompute
it, so it protects against accidental and careless edits only; a forged plan with a recomputed
chain is caught by re-running the agent (``hplan replay --verify`` with the checkpoint).

Files are written atomically; a malformed file (bad JSON, a missing key, a value of the wrong
type) raises a one-line ``ConfigError`` naming the file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hplan.configio import coerce
from hplan.errors import ConfigError
from hplan.io import atomic_open, json_default
from hplan.runner.loop import EpisodeRecord, StepRecord

LOG_FORMAT = "hplan-episode-log"
LOG_VERSION = 1
CHAIN_HEX = 16

_RESET_TYPES: dict[str, Any] = {"obs_sha256": str, "goal_obs_sha256": str, "true_state": list[float],
                                "violation_names": tuple[str, ...], "start_geodesic": float | None,
                                "start_geodesic_steps": int | None}
"""The reset line's fields and their types (checked on read like the header and step fields)."""


@dataclass(frozen=True)
class LogHeader:
    """The first line of an episode log: what is needed to rebuild env, model and agent."""

    episode: int
    seed: int
    scenario: dict[str, Any]
    env: dict[str, Any]
    planner: dict[str, Any]
    guardrails: dict[str, Any]
    max_steps: int
    checkpoint_path: str | None = None
    checkpoint_sha256: str | None = None
    device: str = "cpu"
    torch_threads: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    wrappers: str | None = None
    source_sha256: str | None = None
    split: str = "test"
    lockstep: int | None = None
    """Episodes the run stepped together (:mod:`hplan.runner.lockstep`); None: the agent called the
    model directly (logs from before lockstep evaluation), and a replay does the same."""
    stress: dict[str, Any] | None = None
    """The stress shift the episode ran under (:class:`hplan.stress.cells.StressSetting`: shift,
    severity, perturbation onsets, H50 placement); a replay rebuilds that world. None: unshifted."""


@dataclass
class EpisodeLog:
    """A parsed episode log."""

    path: Path
    header: LogHeader
    record: EpisodeRecord
    summary: dict[str, Any]
    chain_ok: bool = True
    first_bad_line: int | None = None
    step_lines: dict[int, int] = field(default_factory=dict)  # step t -> line number (1-based)


def episode_log_lines(header: LogHeader, record: EpisodeRecord, summary: dict[str, Any]) -> list[str]:
    """The chained JSONL lines of one episode log."""
    objects: list[dict[str, Any]] = [
        {"type": "header", "format": LOG_FORMAT, "format_version": LOG_VERSION, **dataclasses.asdict(header)},
        {"type": "reset", "obs_sha256": record.reset_obs_sha256, "goal_obs_sha256": record.goal_obs_sha256,
         "true_state": record.reset_true_state, "violation_names": list(record.violation_names),
         "start_geodesic": record.start_geodesic, "start_geodesic_steps": record.start_geodesic_steps},
    ]
    objects += [{"type": "step", **dataclasses.asdict(step)} for step in record.steps]
    objects.append({"type": "summary", "final_geodesic": record.final_geodesic, **summary})
    lines, chain = [], ""
    for obj in objects:
        chain = _chain(chain, obj)
        lines.append(json.dumps({**obj, "chain": chain}, allow_nan=False, default=json_default))
    return lines


def write_episode_log(path: str | Path, header: LogHeader, record: EpisodeRecord,
                      summary: dict[str, Any]) -> Path:
    """Write one episode log atomically and return its path."""
    path = Path(path)
    lines = episode_log_lines(header, record, summary)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def read_episode_log(path: str | Path) -> EpisodeLog:
    """Parse and validate an episode log; malformed content raises a one-line ConfigError."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "episode log not found") from None
    except IsADirectoryError:
        raise ConfigError(source, "", "is a directory, expected an episode log (.jsonl)") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "", "not a UTF-8 text file") from None
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(source, f"line {number}", f"not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise ConfigError(source, f"line {number}", "expected a JSON object with a 'type'")
        rows.append((number, obj))
    if not rows:
        raise ConfigError(source, "", "empty episode log")
    first_line, first = rows[0]
    if first.get("type") != "header" or first.get("format") != LOG_FORMAT:
        raise ConfigError(source, f"line {first_line}", f"not an hplan episode log (expected a '{LOG_FORMAT}' header)")
    if first.get("format_version") != LOG_VERSION:
        raise ConfigError(source, f"line {first_line}",
                          f"unsupported log format_version {first.get('format_version')!r} (expected {LOG_VERSION})")
    header = _build(LogHeader, first, source, first_line, skip=("type", "format", "format_version", "chain"))
    if len(rows) < 2 or rows[1][1].get("type") != "reset":
        raise ConfigError(source, f"line {rows[1][0] if len(rows) > 1 else first_line}", "expected a 'reset' line")
    reset_line, reset = rows[1]
    for key in ("obs_sha256", "goal_obs_sha256", "true_state"):
        if key not in reset:
            raise ConfigError(source, f"line {reset_line}", f"reset line is missing '{key}'")
    reset = {key: _typed(hint, reset[key], source, reset_line, key) for key, hint in _RESET_TYPES.items() if key in reset}
    record = EpisodeRecord(seed=header.seed, reset_obs_sha256=reset["obs_sha256"],
                           reset_true_state=reset["true_state"], goal_obs_sha256=reset["goal_obs_sha256"],
                           violation_names=tuple(reset.get("violation_names", ())),
                           start_geodesic=reset.get("start_geodesic"),
                           start_geodesic_steps=reset.get("start_geodesic_steps"))
    summary: dict[str, Any] | None = None
    step_lines: dict[int, int] = {}
    for number, obj in rows[2:]:
        kind = obj["type"]
        if summary is not None:
            raise ConfigError(source, f"line {number}", "content after the summary line")
        if kind == "step":
            step = _build(StepRecord, obj, source, number, skip=("type", "chain"))
            if step.t != len(record.steps):
                raise ConfigError(source, f"line {number}", f"step t={step.t} out of order (expected {len(record.steps)})")
            record.steps.append(step)
            step_lines[step.t] = number
        elif kind == "summary":
            summary = {k: v for k, v in obj.items() if k not in ("type", "chain")}
            record.final_geodesic = _typed(float | None, summary.get("final_geodesic"), source, number,
                                           "final_geodesic")
        else:
            raise ConfigError(source, f"line {number}", f"unknown line type {kind!r}")
    if summary is None:
        raise ConfigError(source, f"line {rows[-1][0]}", "log ends without a summary line (truncated file?)")
    bad = _first_broken_link([obj for _, obj in rows])
    return EpisodeLog(path=path, header=header, record=record, summary=summary, chain_ok=bad is None,
                      first_bad_line=None if bad is None else rows[bad][0], step_lines=step_lines)


def _build(cls: type, obj: dict[str, Any], source: str, line: int, *, skip: tuple[str, ...]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    data = {k: v for k, v in obj.items() if k not in skip}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(source, f"line {line}", f"unknown key {unknown[0]!r}")
    missing = [name for name, f in fields.items() if name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(source, f"line {line}", f"missing key {missing[0]!r}")
    hints = typing.get_type_hints(cls, globalns=vars(sys.modules[cls.__module__]))
    return cls(**{name: _typed(hints[name], value, source, line, name) for name, value in data.items()})


def _typed(hint: Any, value: Any, source: str, line: int, name: str) -> Any:
    """``value`` checked against the field's annotation: a hand-edited log with a wrong type
    (``"cost": "x"``) must be a one-line error here, not a TypeError deep inside the replay."""
    try:
        return coerce(hint, value, source=source, path=name)
    except ConfigError as err:
        raise ConfigError(source, f"line {line}", f"{name!r}: {err.message}") from None


def _chain(previous: str, obj: dict[str, Any]) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=json_default)
    return hashlib.sha256((previous + canonical).encode()).hexdigest()[:CHAIN_HEX]


def _first_broken_link(objects: list[dict[str, Any]]) -> int | None:
    """Index of the first line whose stored chain does not match its content, or None."""
    previous = ""
    for index, obj in enumerate(objects):
        stored = obj.get("chain")
        body = {k: v for k, v in obj.items() if k != "chain"}
        if not isinstance(stored, str) or _chain(previous, body) != stored:
            return index
        previous = stored
    return None
