"""The dataset directory's identity: which settings produced it, and whether a run may add to it.

A collection resumes by skipping shards the manifest lists as complete. That is only safe when the
existing shards came from the same settings, so the manifest records a *settings fingerprint* —
everything that changes the data (env, task, master seed, policy, episode length, shard size) and
nothing that does not (episode count, ``num_envs``, the step budget of evaluation episodes) — and a
mismatch is an error that names the first differing field instead of silently mixing datasets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hplan.config import CollectConfig, ScenarioConfig, TaskConfig
from hplan.configio import defaults_of, to_mapping, with_new_defaults
from hplan.data.shards import MANIFEST, SHARD_DIR, read_manifest
from hplan.envs.registry import ENVS
from hplan.errors import HplanError

_SETTING_DEFAULTS = defaults_of(task=TaskConfig(), collect=CollectConfig())
"""Defaults of the recorded settings sections whose fields may be newer than a dataset."""

FORMAT = "hplan-episodes/1"
"""Manifest format tag; bump when the shard layout changes incompatibly."""

_NOT_DATA = {"collect": ("episodes", "num_envs"), "env": ("max_steps",)}
"""Fields that do not change a single collected episode, so they may differ on resume.

``num_envs`` only batches episodes (each episode is seeded on its own); ``episodes`` only adds or
removes whole episodes; ``env.max_steps`` is raised to at least ``steps_per_episode`` for collection.
"""


def settings_fingerprint(scenario: ScenarioConfig, split: str = "train") -> dict[str, Any]:
    """JSON-normalised settings that determine the collected data (see module docstring).

    A held-out dataset records ``split``; a training one does not (datasets collected before
    splits existed are training data, and resume as such)."""
    settings: dict[str, Any] = {
        "env": to_mapping(scenario.env),
        "task": to_mapping(scenario.task),
        "collect": to_mapping(scenario.collect),
        "seed": scenario.seed,
    }
    if split != "train":
        settings["split"] = split
    for section, names in _NOT_DATA.items():
        for name in names:
            settings[section].pop(name, None)
    return _without_replaced(json.loads(json.dumps(settings)))


def _without_replaced(settings: Any) -> Any:
    """``settings`` without the task fields the collector replaces for its env (OGBench collects
    from random cells whatever ``task.task_id`` an evaluation asks for): they do not change the data."""
    if not isinstance(settings, dict) or not isinstance(settings.get("task"), dict):
        return settings
    env_id = (settings.get("env") or {}).get("id") if isinstance(settings.get("env"), dict) else None
    replaced = ENVS[env_id].collector_task_fields if env_id in ENVS else ()
    return {**settings, "task": {k: v for k, v in settings["task"].items() if k not in replaced}}


def first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """Dotted path of the first field where two JSON values differ, or None when equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    return None if old == new else path


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def open_existing(root: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest of a compatible dataset at ``root``; None for a new/empty directory.

    Raises HplanError (one line, naming the file and field) for a directory that holds something
    else, or a dataset collected with different settings.
    """
    if root.exists() and not root.is_dir():
        raise HplanError(f"{root}: exists and is not a directory")
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        leftovers = [p for p in root.iterdir() if p.name != SHARD_DIR] if root.exists() else []
        shard_dir = root / SHARD_DIR
        if shard_dir.is_dir():
            leftovers += [p for p in shard_dir.iterdir() if not p.name.startswith(".")]
        if leftovers:
            raise HplanError(f"{root}: --out: not empty and not an hplan dataset (no {MANIFEST}); choose another --out")
        return None
    manifest = read_manifest(root)
    if manifest.get("format") != FORMAT:
        raise HplanError(f"{manifest_path}: format: expected {FORMAT!r}, got {manifest.get('format')!r} "
                         "(collect into a new directory)")
    recorded = with_new_defaults(_without_replaced(manifest.get("settings")), settings, _SETTING_DEFAULTS)
    field = first_difference(recorded, settings)
    if field is not None:
        raise HplanError(f"{manifest_path}: settings.{field}: the dataset here was collected with "
                         f"{_get(recorded, field)!r}, this run asks for {_get(settings, field)!r} "
                         "(use another --out, or delete the directory to start over)")
    return manifest


def remove_temporaries(root: Path) -> int:
    """Delete temp files a killed writer left behind (hidden ``.*.tmp`` siblings); returns how many."""
    removed = 0
    for folder in (root, root / SHARD_DIR):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink()
                removed += 1
    return removed
