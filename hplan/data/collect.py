"""Offline data collection: exploration episodes written as resumable shards with a manifest.

``collect(scenario, out_dir)`` runs ``[collect].episodes`` fixed-length episodes of the scenario's
env under its exploration policy (:mod:`hplan.data.policies`), ``num_envs`` at a time
(:mod:`hplan.data.sources`), and writes them in the shard format of :mod:`hplan.data.shards`.

Seeds. Episode ``i`` resets its env with ``derive_seed(seed, "collect", "env", i)`` and draws its
policy noise (and, with ``start = "anywhere"``, its start position) from a generator seeded with
``derive_seed(seed, "collect", "policy", i)``. Episodes are therefore independent of batching,
and shard ``k`` (episodes ``k·E … (k+1)·E - 1``) is the same whichever run writes it.

Early termination. Episodes are fixed-length blocks of ``steps_per_episode`` steps; an env that
terminates (MiniGrid goal or lava, CartPole falling) is not auto-reset. Its remaining steps repeat
the last observation and state with zero reward and cost, and are marked ``valid = False``.
PointRooms is collected with goal termination off, so all its steps are valid.

Resume. Shards are written atomically and the manifest is rewritten (atomically) after each one,
so a crash leaves either a listed complete shard or nothing visible. A listed shard that no longer
opens with its episodes (truncated or emptied since) is collected again, never called complete. Re-running the same command
on the same directory skips the listed shards and produces exactly the dataset an uninterrupted
run would have; a directory collected with other settings is refused (:mod:`hplan.data.manifest`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from hplan.config import ScenarioConfig
from hplan.configio import to_mapping
from hplan.data.manifest import FORMAT, open_existing, remove_temporaries, settings_fingerprint
from hplan.data.policies import PolicyContext, policy_for
from hplan.data.shards import shard_problem, write_manifest, write_shard
from hplan.data.sources import BatchSource, open_source
from hplan.data.stats import aggregate, shard_counts
from hplan.data.validate import check_collect_fits
from hplan.errors import ConfigError
from hplan.io import check_out_dir
from hplan.provenance import package_versions
from hplan.seeding import COLLECT_SPLITS, collect_stream, derive_seed


@dataclass(frozen=True)
class ShardPlan:
    """Which episodes one shard holds."""

    index: int
    first_episode: int
    episodes: int


@dataclass(frozen=True)
class CollectResult:
    """What a collection did (for the CLI summary); the manifest holds the dataset-level numbers."""

    out_dir: Path
    manifest: dict[str, Any]
    shards_written: int
    shards_skipped: int
    transitions_written: int
    seconds: float
    shards_damaged: tuple[str, ...] = ()
    """Listed shards found damaged on resume (``file: problem``), collected again."""

    @property
    def transitions_per_second(self) -> float:
        return self.transitions_written / self.seconds if self.seconds > 0 else 0.0


def plan_shards(episodes: int, per_shard: int) -> list[ShardPlan]:
    """Split ``episodes`` into shards of ``per_shard`` (the last one may be shorter)."""
    return [ShardPlan(k, start, min(per_shard, episodes - start))
            for k, start in enumerate(range(0, episodes, per_shard))]


def episode_seeds(seed: int, first: int, count: int, split: str = "train") -> tuple[list[int], list[np.random.Generator]]:
    """Env reset seeds and policy generators of episodes ``first … first+count-1`` of ``split``."""
    stream = collect_stream(split)
    env_seeds = [derive_seed(seed, stream, "env", i) for i in range(first, first + count)]
    rngs = [np.random.default_rng(derive_seed(seed, stream, "policy", i)) for i in range(first, first + count)]
    return env_seeds, rngs


def collect(scenario: ScenarioConfig, out_dir: str | Path, *, episodes: int | None = None,
            on_episodes: Callable[[int], None] | None = None,
            on_shard: Callable[[int, dict[str, Any]], None] | None = None,
            on_start: Callable[[int, int], None] | None = None, split: str = "train") -> CollectResult:
    """Collect (or resume collecting) a dataset into ``out_dir``.

    ``episodes`` overrides ``[collect].episodes``. ``split = "heldout"`` draws the episodes from a
    seed stream training never uses (for diagnostics); training refuses such a dataset. Hooks: ``on_start(total_episodes,
    already_done)``, ``on_episodes(n)`` after every finished batch, ``on_shard(index, entry)``
    after a shard and the manifest listing it are on disk (an exception there interrupts the
    run exactly as a crash would).
    """
    if episodes is not None and episodes < 1:
        raise ConfigError("--episodes", "", f"must be >= 1, got {episodes}")
    cfg = scenario.collect
    total = cfg.episodes if episodes is None else episodes
    root = Path(out_dir)
    if split not in COLLECT_SPLITS:
        raise ConfigError("--split", "", f"must be one of {', '.join(COLLECT_SPLITS)}, got {split!r}")
    check_out_dir(root, option="--out")  # a file in the way or an unwritable place: refused before any episode
    settings = settings_fingerprint(scenario, split)
    existing = open_existing(root, settings)
    remove_temporaries(root)
    plans = plan_shards(total, cfg.episodes_per_shard)

    source = open_source(scenario, min(cfg.num_envs, max(p.episodes for p in plans)), cfg.steps_per_episode)
    try:
        check_collect_fits(scenario, source.action_space, source.state_names)
        manifest = _new_manifest(scenario, source, settings) if existing is None else dict(existing)
        manifest["versions"] = package_versions()
        listed = manifest.get("shards", [])
        problems = {int(e["index"]): shard_problem(root / e["file"], e.get("episodes")) for e in listed}
        done = {int(e["index"]): e for e in listed if problems[int(e["index"])] is None}
        damaged = tuple(f"{e['file']}: {problems[int(e['index'])]}" for e in listed
                        if problems[int(e["index"])] not in (None, "missing"))
        manifest["shards"] = sorted(done.values(), key=lambda e: e["index"])
        _finish_manifest(manifest, source, complete=False, target=total)
        write_manifest(root, manifest)

        todo = [p for p in plans if p.index not in done or done[p.index]["episodes"] < p.episodes]
        if on_start is not None:
            on_start(total, sum(p.episodes for p in plans) - sum(p.episodes for p in todo))
        started = time.perf_counter()
        written_transitions = 0
        arrays: dict[str, np.ndarray] | None = None
        for plan in todo:
            shard_start = time.perf_counter()
            arrays = collect_shard(scenario, source, plan, on_episodes=on_episodes, reuse=arrays, split=split)
            path = write_shard(root, plan.index, arrays)
            entry = {"index": plan.index, "file": str(path.relative_to(root)), "first_episode": plan.first_episode,
                     **shard_counts(arrays, source.violation_names, source.num_rooms),
                     "seconds": round(time.perf_counter() - shard_start, 3)}
            done[plan.index] = entry
            manifest["shards"] = sorted(done.values(), key=lambda e: e["index"])
            _finish_manifest(manifest, source, complete=False, target=total)
            write_manifest(root, manifest)
            written_transitions += entry["transitions"]
            if on_shard is not None:
                on_shard(plan.index, entry)
        seconds = time.perf_counter() - started
        _finish_manifest(manifest, source, complete=True, target=total)
        write_manifest(root, manifest)
    finally:
        source.close()
    return CollectResult(out_dir=root, manifest=manifest, shards_written=len(todo),
                         shards_skipped=len(plans) - len(todo), transitions_written=written_transitions,
                         seconds=seconds, shards_damaged=damaged)


def collect_shard(scenario: ScenarioConfig, source: BatchSource, plan: ShardPlan,
                  on_episodes: Callable[[int], None] | None = None,
                  reuse: dict[str, np.ndarray] | None = None, split: str = "train") -> dict[str, np.ndarray]:
    """Run the episodes of one shard, ``source.num_envs`` at a time, straight into shard-sized arrays.

    ``reuse``: the arrays a previous call returned, once written out; their memory is filled again
    when the shapes match (every entry is overwritten), which saves page-faulting fresh memory
    (~60 MB per 50 image episodes) for every shard.
    """
    buffers: _Buffers | None = _Buffers.adopt(reuse, plan.episodes) if reuse is not None else None
    for first in range(plan.first_episode, plan.first_episode + plan.episodes, source.num_envs):
        count = min(source.num_envs, plan.first_episode + plan.episodes - first)
        buffers = _run_episodes(scenario, source, first, count, buffers, total=plan.episodes,
                                offset=first - plan.first_episode, split=split)
        if on_episodes is not None:
            on_episodes(count)
    assert buffers is not None  # a shard holds at least one episode
    return buffers.arrays()


def run_batch(scenario: ScenarioConfig, source: BatchSource, first: int, count: int) -> dict[str, np.ndarray]:
    """Episodes ``first … first+count-1`` (``count <= source.num_envs``), stepped together."""
    return _run_episodes(scenario, source, first, count, None, total=count, offset=0).arrays()


def _run_episodes(scenario: ScenarioConfig, source: BatchSource, first: int, count: int, buffers: _Buffers | None,
                  *, total: int, offset: int, split: str = "train") -> _Buffers:
    """Step one batch for ``steps_per_episode`` steps, writing rows ``offset … offset+count-1``."""
    cfg = scenario.collect
    steps = cfg.steps_per_episode
    env_seeds, rngs = episode_seeds(scenario.seed, first, count, split)
    starts = np.stack([source.sample_anywhere(rng) for rng in rngs]) if cfg.start == "anywhere" else None
    policy = policy_for(cfg, source.action_space)
    policy.begin(rngs, steps)

    batch = source.reset(env_seeds, starts)
    if buffers is None:
        buffers = _Buffers(batch, total, steps, source.action_space)
    rows = slice(offset, offset + count)
    buffers.episode_seed[rows] = env_seeds
    buffers.put(rows, 0, batch, np.ones(count, dtype=bool))
    active = np.ones(count, dtype=bool)
    for t in range(steps):
        ctx = PolicyContext(t=t, blocked=batch.blocked(source.violation_names), interact=batch.interact,
                            seek=source.seek_vector(batch), pos=batch.pos, expert=batch.expert)
        actions = policy.act(ctx)
        buffers.valid[rows, t] = active
        batch = source.step(actions, active)
        buffers.record(rows, t, actions, batch, active)
        active &= ~batch.done
    return buffers


class _Buffers:
    """Pre-allocated arrays of one shard (shapes from the first reset); frozen rows — episodes that
    already ended — keep repeating their last observation."""

    def __init__(self, reset: Any, n: int, steps: int, action_space: gym.Space) -> None:
        discrete = isinstance(action_space, gym.spaces.Discrete)
        action_dim = 1 if discrete else int(np.prod(action_space.shape))
        self.obs = np.empty((n, steps + 1, *reset.obs.shape[1:]), dtype=reset.obs.dtype)
        self.state_obs = None if reset.state_obs is None else np.empty(
            (n, steps + 1, *reset.state_obs.shape[1:]), dtype=np.float32)
        self.true_state = np.empty((n, steps + 1, reset.true_state.shape[1]), dtype=np.float32)
        self.pos = None if reset.pos is None else np.empty((n, steps + 1, reset.pos.shape[1]), dtype=np.float32)
        self.room = None if reset.room is None else np.empty((n, steps + 1), dtype=np.int16)
        self.action = np.zeros((n, steps, action_dim), dtype=np.float32)
        self.reward = np.zeros((n, steps), dtype=np.float32)
        self.cost = np.zeros((n, steps), dtype=np.float32)
        self.violations = np.zeros((n, steps, reset.violations.shape[1]), dtype=bool)
        self.valid = np.zeros((n, steps), dtype=bool)
        self.episode_seed = np.zeros(n, dtype=np.int64)

    @classmethod
    def adopt(cls, arrays: dict[str, np.ndarray], n: int) -> _Buffers | None:
        """Buffers over existing arrays of a previous shard of ``n`` episodes (None when sizes differ)."""
        if arrays["valid"].shape[0] != n:
            return None
        buffers = cls.__new__(cls)
        for name in ("obs", "state_obs", "true_state", "pos", "room", "action", "reward", "cost", "violations",
                     "valid", "episode_seed"):
            setattr(buffers, name, arrays.get(name))
        return buffers

    def put(self, rows: slice, index: int, batch: Any, fresh: np.ndarray) -> None:
        """Observation-like arrays at time ``index``: from ``batch`` where ``fresh``, else repeated."""
        for name in ("obs", "state_obs", "true_state", "pos", "room"):
            target = getattr(self, name)
            if target is None:
                continue
            value = getattr(batch, name)
            if fresh.all():
                target[rows, index] = value
            else:
                keep = fresh.reshape(-1, *([1] * (value.ndim - 1)))
                target[rows, index] = np.where(keep, value, target[rows, index - 1])

    def record(self, rows: slice, t: int, actions: np.ndarray, batch: Any, active: np.ndarray) -> None:
        self.action[rows, t] = np.asarray(actions, dtype=np.float32).reshape(len(active), -1)
        self.reward[rows, t] = np.where(active, batch.reward, 0.0)
        self.cost[rows, t] = np.where(active, batch.cost, 0.0)
        self.violations[rows, t] = batch.violations & active[:, None]
        self.put(rows, t + 1, batch, active)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"obs": self.obs, "action": self.action, "reward": self.reward, "cost": self.cost,
               "violations": self.violations, "true_state": self.true_state, "valid": self.valid,
               "episode_seed": self.episode_seed}
        for name in ("state_obs", "pos", "room"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def action_spec(space: gym.Space) -> dict[str, Any]:
    """JSON description of the action space (matches :class:`hplan.vocabulary.protocol.ActionSpec`).

    Discrete actions are stored as an index in a length-1 action axis; ``dim`` is the one-hot width.
    """
    if isinstance(space, gym.spaces.Discrete):
        return {"discrete": True, "dim": int(space.n), "n": int(space.n), "start": int(space.start),
                "stored_dim": 1, "low": 0.0, "high": 1.0}
    low, high = np.asarray(space.low, dtype=np.float64).reshape(-1), np.asarray(space.high, dtype=np.float64).reshape(-1)
    return {"discrete": False, "dim": int(np.prod(space.shape)), "shape": list(space.shape), "stored_dim":
            int(np.prod(space.shape)), "low": float(low.min()), "high": float(high.max()),
            "low_per_dim": low.tolist(), "high_per_dim": high.tolist()}


def _new_manifest(scenario: ScenarioConfig, source: BatchSource, settings: dict[str, Any]) -> dict[str, Any]:
    space = source.observation_space
    image_space = space["image"] if isinstance(space, gym.spaces.Dict) else space
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "scenario": scenario.name,
        "scenario_source": scenario.source,
        "settings": settings,
        "env_id": scenario.env.id,
        "env_kwargs": to_mapping(scenario.env.kwargs),
        "obs_mode": scenario.env.obs_mode,
        "obs_shape": list(image_space.shape),
        "obs_dtype": str(np.dtype(image_space.dtype)),
        "action_spec": action_spec(source.action_space),
        "violation_names": list(source.violation_names),
        "state_names": list(source.state_names),
        "steps_per_episode": scenario.collect.steps_per_episode,
        "episodes_per_shard": scenario.collect.episodes_per_shard,
        "seed": scenario.seed,
        "split": settings.get("split", "train"),
        "policy": {"name": scenario.collect.policy, "turn_prob": scenario.collect.turn_prob,
                   "action_noise": scenario.collect.action_noise,
                   "interact_prob": scenario.collect.interact_prob, "start": scenario.collect.start},
        "early_termination": "steps after an episode ends repeat its last observation and are valid=False",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shards": [],
    }
    if isinstance(space, gym.spaces.Dict):
        manifest["state_obs_shape"] = list(space["state"].shape)
    return manifest


def _finish_manifest(manifest: dict[str, Any], source: BatchSource, *, complete: bool, target: int) -> None:
    """Refresh the dataset-level numbers from the shard entries."""
    manifest.update(aggregate(manifest["shards"], source.violation_names, source.num_rooms))
    manifest["target_episodes"] = target
    manifest["complete"] = complete
    manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
