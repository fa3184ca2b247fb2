"""Episode shards on disk: the format collection writes and training reads.

A dataset directory holds ``manifest.json`` and ``shards/shard-NNNNN.npz``. Each shard stores
fixed-length episodes as arrays with a leading episode axis (``E``) and time axis (``T`` steps,
``T + 1`` observations), which loads straight into multi-step JEPA training without re-slicing:

==============  ========================  ==============================================
key             shape                     meaning
==============  ========================  ==============================================
obs             (E, T+1, *obs_shape)      observations (uint8 HWC images or float32)
state_obs       (E, T+1, S)               state-vector observations when obs_mode=both
action          (E, T, A)                 float32; discrete actions stored as int index in A=1
reward          (E, T)                    float32
cost            (E, T)                    float32, 1.0 on a violating step
violations      (E, T, K)                 bool, names in manifest["violation_names"]
true_state      (E, T+1, P)               float32 ground truth (names in manifest["state_names"])
valid           (E, T)                    bool, False after an episode terminated early
pos             (E, T+1, 2)               float32 ``info["pos"]`` (optional: envs that report it)
room            (E, T+1)                  int16 room of ``pos``, -1 off-room (PointRooms, MiniGrid FourRooms)
episode_seed    (E,)                      int64 ``env.reset`` seed of each episode (collection)
==============  ========================  ==============================================

After an early termination (MiniGrid goal or lava, CartPole) the remaining steps repeat the last
observation/state with zero reward, cost and violations, and ``valid`` is False there.

The manifest (written by :mod:`hplan.data.collect`) records, besides ``shards`` (``file``,
``index``, ``first_episode``, ``episodes``, ``transitions`` and per-shard counts): ``format``,
``settings`` (the fingerprint a resume must match), ``env_id``, ``env_kwargs``, ``obs_mode``,
``obs_shape``, ``obs_dtype``, ``state_obs_shape`` (obs_mode both), ``action_spec`` (``discrete``,
``dim``, ``n``/``start`` or ``low``/``high``; matches ``ActionSpec``), ``violation_names``,
``state_names``, ``steps_per_episode``, ``seed``, ``policy``, ``episodes``, ``transitions``,
``violation_rate`` (episodes with >= 1 violation), ``violations_per_1000_steps``,
``violation_step_rates``, ``room_visits`` / ``room_coverage`` / ``rooms_visited`` / ``num_rooms``
(envs with rooms), ``complete`` and ``versions``.

Shards are written atomically (temp file + rename) and listed in the manifest only once
complete, so an interrupted collection never exposes a half-written shard and resumes by
skipping the shards already listed — after checking them (:func:`shard_problem`): a listed shard
damaged since (truncated, emptied) is collected again, and training refuses it by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hplan.errors import HplanError
from hplan.io import atomic_path, read_json_object, write_json
from hplan.vocabulary.protocol import ActionSpec

MANIFEST = "manifest.json"
SHARD_DIR = "shards"
REQUIRED_KEYS = ("obs", "action", "reward", "cost", "violations", "true_state", "valid")


@dataclass
class EpisodeData:
    """All episodes of a dataset, concatenated along the episode axis."""

    arrays: dict[str, np.ndarray]
    manifest: dict[str, Any]
    root: Path | None = None

    @property
    def num_obs(self) -> np.ndarray:
        """``(E,)`` real observations per episode: its leading valid transitions plus one (the
        outcome of the last one, e.g. the step onto a goal or into lava)."""
        valid = self.arrays["valid"].astype(bool)
        return 1 + np.where(valid.all(1), valid.shape[1], np.argmin(valid, axis=1)).astype(np.int64)

    def model_actions(self) -> tuple[ActionSpec, np.ndarray]:
        """The manifest's action space and the actions as a model reads them: float32, one-hot
        for discrete actions (stored as an index, offset by the space's ``start``)."""
        spec, offset = action_spec_from_manifest(self.manifest, self.arrays["action"], str(self._manifest_path))
        action = self.arrays["action"].astype(np.float32)
        if spec.discrete:
            index = np.clip(action[..., 0].astype(np.int64) - offset, 0, spec.dim - 1)
            action = np.eye(spec.dim, dtype=np.float32)[index]
        return spec, action

    @property
    def _manifest_path(self) -> Path | str:
        return self.root / MANIFEST if self.root is not None else MANIFEST

    @property
    def num_episodes(self) -> int:
        return int(self.arrays["action"].shape[0])

    @property
    def steps_per_episode(self) -> int:
        return int(self.arrays["action"].shape[1])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


def action_spec_from_manifest(manifest: dict[str, Any], action: np.ndarray, source: str) -> tuple[ActionSpec, int]:
    """ActionSpec (+ discrete index offset) from the manifest's ``action_spec`` (or the array)."""
    spec = manifest.get("action_spec")
    if spec is None:
        return ActionSpec(dim=int(action.shape[-1])), 0
    try:
        if spec.get("discrete"):
            return ActionSpec(dim=int(spec["dim"]), discrete=True, low=0.0, high=1.0), int(spec.get("start", 0))
        return ActionSpec(dim=int(spec["dim"]), low=float(spec.get("low", -1.0)), high=float(spec.get("high", 1.0))), 0
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise HplanError(f"{source}: action_spec: malformed ({err})") from None


def shard_path(root: Path, index: int) -> Path:
    return Path(root) / SHARD_DIR / f"shard-{index:05d}.npz"


def write_shard(root: Path, index: int, arrays: dict[str, np.ndarray]) -> Path:
    """Write one shard atomically; returns its path (relative names go in the manifest)."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"shard is missing arrays: {missing}")
    path = shard_path(root, index)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return path


def shard_problem(path: Path, episodes: int | None = None) -> str | None:
    """What is wrong with the shard file at ``path`` (None when it opens, holds every required array
    and, given ``episodes``, that many episodes). Reads the zip directory and the small ``valid``
    array only, so checking every listed shard on resume is cheap."""
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        with np.load(path) as shard:
            missing = [k for k in REQUIRED_KEYS if k not in shard.files]
            if missing:
                return f"lacks arrays {', '.join(missing)}"
            count = int(shard["valid"].shape[0])
    except Exception as err:  # a truncated zip: BadZipFile; an emptied one: EOFError; damaged data: ValueError
        return f"unreadable ({type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]})"
    if episodes is not None and count != int(episodes):
        return f"holds {count} episodes, the manifest lists {int(episodes)}"
    return None


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    try:
        return read_json_object(path)
    except FileNotFoundError:
        raise HplanError(f"{path}: no dataset here (run `hplan collect` first)") from None


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> None:
    write_json(Path(root) / MANIFEST, manifest)


def load_episodes(root: str | Path, max_episodes: int | None = None) -> EpisodeData:
    """Load every shard listed in the manifest into memory (concatenated per key)."""
    root = Path(root)
    manifest = read_manifest(root)
    parts: dict[str, list[np.ndarray]] = {}
    total = 0
    for entry in manifest.get("shards", []):
        path = root / entry["file"]
        problem = shard_problem(path, entry.get("episodes"))
        if problem is None:
            try:
                with np.load(path) as shard:
                    for key in shard.files:
                        parts.setdefault(key, []).append(shard[key])
            except Exception as err:  # damaged past the zip directory: a bad CRC, a short member
                problem = f"unreadable ({type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]})"
        if problem is not None:
            raise HplanError(f"{path}: damaged shard: {problem}; re-run `hplan collect` with the same settings "
                             "and --out to collect it again")
        total += int(entry["episodes"])
        if max_episodes is not None and total >= max_episodes:
            break
    if not parts:
        raise HplanError(f"{root / MANIFEST}: dataset lists no complete shards")
    arrays = {k: np.concatenate(v, axis=0)[:max_episodes] for k, v in parts.items()}
    return EpisodeData(arrays=arrays, manifest=manifest, root=root)
