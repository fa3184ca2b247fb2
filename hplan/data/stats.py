"""Dataset statistics recorded in the manifest: room-visit coverage and violation rates.

Counts are kept per shard (so a resumed collection aggregates exactly what an uninterrupted one
would) and turned into rates over the whole dataset by :func:`aggregate`. Definitions follow
DESIGN.md's metrics: the violation rate is the fraction of *episodes* with at least one violating
step; violations per 1,000 steps counts violating steps among valid steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def shard_counts(arrays: dict[str, np.ndarray], violation_names: Sequence[str], num_rooms: int | None) -> dict[str, Any]:
    """Raw counts of one shard (JSON-ready): transitions, violating steps and episodes, room visits.

    Room visits count the position reached by every valid step (the room an observation shows);
    positions on no room (-1) are not counted.
    """
    valid = arrays["valid"]
    violations = arrays["violations"] & valid[..., None]
    cost_steps = (arrays["cost"] > 0) & valid
    counts: dict[str, Any] = {
        "episodes": int(valid.shape[0]),
        "transitions": int(valid.sum()),
        "cost_steps": int(cost_steps.sum()),
        "episodes_with_violation": int(cost_steps.any(axis=1).sum()),
        "violation_steps": {name: int(violations[..., k].sum()) for k, name in enumerate(violation_names)},
    }
    if num_rooms is not None and "room" in arrays:
        reached = arrays["room"][:, 1:][valid]
        reached = reached[reached >= 0]
        counts["room_visits"] = np.bincount(reached, minlength=num_rooms)[:num_rooms].astype(int).tolist()
    return counts


def aggregate(shards: Iterable[dict[str, Any]], violation_names: Sequence[str], num_rooms: int | None) -> dict[str, Any]:
    """Dataset-level rates from per-shard counts (entries of ``manifest["shards"]``)."""
    shards = list(shards)
    episodes = sum(s["episodes"] for s in shards)
    transitions = sum(s["transitions"] for s in shards)
    cost_steps = sum(s["cost_steps"] for s in shards)
    bad_episodes = sum(s["episodes_with_violation"] for s in shards)
    per_name = {name: sum(s["violation_steps"].get(name, 0) for s in shards) for name in violation_names}
    out: dict[str, Any] = {
        "episodes": episodes,
        "transitions": transitions,
        "violation_rate": bad_episodes / episodes if episodes else 0.0,
        "violations_per_1000_steps": 1000.0 * cost_steps / transitions if transitions else 0.0,
        "violation_step_rates": {name: (n / transitions if transitions else 0.0) for name, n in per_name.items()},
    }
    if num_rooms is not None:
        visits = np.zeros(num_rooms, dtype=np.int64)
        for s in shards:
            if "room_visits" in s:
                visits += np.asarray(s["room_visits"], dtype=np.int64)
        total = int(visits.sum())
        out["room_visits"] = visits.tolist()
        out["room_coverage"] = {str(r): (int(v) / total if total else 0.0) for r, v in enumerate(visits)}
        out["rooms_visited"] = int((visits > 0).sum())
        out["num_rooms"] = num_rooms
    return out
