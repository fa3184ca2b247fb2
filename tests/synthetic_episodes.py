"""A tiny synthetic PointRooms-like dataset for model tests (written through hplan.data.shards).

A point mass in an 8×8 box split by a wall at x = 4 with a doorway at 3 ≤ y ≤ 5, a restricted
zone in the lower-left, momentum exploration. Observations are the state ``[x, y, vx, vy]`` or a
small image with the agent as a bright pixel blob, so a useful latent *must* carry the position.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hplan.data.shards import write_manifest, write_shard

ENV_ID = "hplan/SyntheticRooms-v0"
WALL_X, DOOR = 4.0, (3.0, 5.0)
ZONE = (1.0, 2.5, 5.5, 7.0)  # x0, x1, y0, y1


def _step(pos: np.ndarray, vel: np.ndarray, act: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vel = 0.5 * vel + 0.4 * act
    speed = np.linalg.norm(vel, axis=1, keepdims=True)
    vel = np.where(speed > 0.6, vel * 0.6 / np.maximum(speed, 1e-9), vel)
    new = pos + vel
    contact = np.zeros(len(pos), dtype=bool)
    out = (new < 0.05) | (new > 7.95)
    contact |= out.any(1)
    new = np.clip(new, 0.05, 7.95)
    crosses = (np.sign(pos[:, 0] - WALL_X) != np.sign(new[:, 0] - WALL_X))
    in_door = (new[:, 1] >= DOOR[0]) & (new[:, 1] <= DOOR[1])
    blocked = crosses & ~in_door
    new[blocked, 0] = np.where(pos[blocked, 0] < WALL_X, WALL_X - 0.05, WALL_X + 0.05)
    vel = np.where(out | blocked[:, None], 0.0, vel)
    contact |= blocked
    return new, vel, contact


def render(pos: np.ndarray, size: int) -> np.ndarray:
    """``(N, 2)`` positions → ``(N, size, size, 3)`` uint8 frames (wall column + agent blob)."""
    n = len(pos)
    img = np.full((n, size, size, 3), 220, dtype=np.uint8)
    wall_col = int(WALL_X / 8 * size)
    door = slice(int(DOOR[0] / 8 * size), int(np.ceil(DOOR[1] / 8 * size)))
    img[:, :, wall_col] = 40
    img[:, door, wall_col] = 220
    px = np.clip((pos * size / 8).astype(int), 0, size - 1)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            r, c = np.clip(px[:, 1] + dy, 0, size - 1), np.clip(px[:, 0] + dx, 0, size - 1)
            img[np.arange(n), r, c] = (30, 90, 230)
    return img


def make_dataset(root: str | Path, *, episodes: int = 24, steps: int = 32, obs: str = "state", image_size: int = 16,
                 seed: int = 0, env_id: str = ENV_ID, shards: int = 2, terminate_at: int | None = None,
                 violations: bool = True) -> Path:
    """Write a dataset directory with ``episodes`` × ``steps`` transitions; returns its path.

    ``terminate_at``: every episode ends after that many transitions, stored as collection stores an
    early termination (``valid`` False after it, the last state repeated); the actions after it are
    NaN so that a reader that trains on them shows it. ``violations = False``: an env without any
    (no violation names, a ``(E, T, 0)`` array), as MiniGrid FourRooms and OGBench's mazes."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.5, 7.5, (episodes, 2))
    vel = np.zeros((episodes, 2))
    heading = rng.uniform(0, 2 * np.pi, episodes)
    states = [np.concatenate([pos, vel], 1)]
    actions, contacts, zones = [], [], []
    for _ in range(steps):
        turn = rng.random(episodes) < 0.15
        heading = np.where(turn, rng.uniform(0, 2 * np.pi, episodes), heading)
        act = np.stack([np.cos(heading), np.sin(heading)], 1) * rng.uniform(0.3, 1.0, (episodes, 1))
        pos, vel, contact = _step(pos, vel, act)
        heading = np.where(contact, rng.uniform(0, 2 * np.pi, episodes), heading)
        zone = (pos[:, 0] >= ZONE[0]) & (pos[:, 0] <= ZONE[1]) & (pos[:, 1] >= ZONE[2]) & (pos[:, 1] <= ZONE[3])
        actions.append(act)
        contacts.append(contact)
        zones.append(zone)
        states.append(np.concatenate([pos, vel], 1))
    true_state = np.stack(states, 1).astype(np.float32)
    arrays = {
        "action": np.stack(actions, 1).astype(np.float32),
        "violations": np.stack([np.stack(contacts, 1), np.stack(zones, 1)], -1),
        "true_state": true_state,
        "valid": np.ones((episodes, steps), dtype=bool),
        "reward": np.zeros((episodes, steps), dtype=np.float32),
    }
    if terminate_at is not None:
        arrays["valid"][:, terminate_at:] = False
        arrays["action"][:, terminate_at:] = np.nan
        arrays["violations"][:, terminate_at:] = False
        true_state[:, terminate_at + 1:] = true_state[:, terminate_at:terminate_at + 1]
    names = ["wall_contact", "restricted_zone"]
    if not violations:
        arrays["violations"], names = arrays["violations"][..., :0], []
    arrays["cost"] = arrays["violations"].any(-1).astype(np.float32)
    if obs == "image":
        arrays["obs"] = render(true_state[..., :2].reshape(-1, 2), image_size).reshape(
            episodes, steps + 1, image_size, image_size, 3)
    else:
        arrays["obs"] = true_state.copy()
    entries = []
    bounds = np.linspace(0, episodes, shards + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        path = write_shard(root, i, {k: v[a:b] for k, v in arrays.items()})
        entries.append({"file": str(path.relative_to(root)), "index": i, "episodes": int(b - a)})
    write_manifest(root, {
        "env_id": env_id, "obs_mode": obs, "obs_shape": list(arrays["obs"].shape[2:]),
        "obs_dtype": str(arrays["obs"].dtype),
        "action_spec": {"discrete": False, "dim": 2, "low": -1.0, "high": 1.0},
        "violation_names": names, "state_names": ["x", "y", "vx", "vy"],
        "steps_per_episode": steps, "shards": entries,
    })
    return root
