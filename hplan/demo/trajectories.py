"""Episodes drawn where they happened: trajectories on the map, and success against distance.

A table of success rates says *how often*; a reviewer also wants to see *how*: whether the flat
planner stalls at a wall, whether the guarded one detours around a zone, where violations happen.
The maps come from the env itself (its PointRooms layout, drawn by the same renderer as its image
observations); start and goal from re-setting the env with each logged episode seed, positions and
violations from the episode logs — nothing here plans or steps an episode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from hplan.config import ScenarioConfig

MAX_EPISODES_DRAWN = 12
"""Trajectories per panel: more turns the map into a scribble."""


def episode_paths(log_dir: Path) -> list[dict[str, Any]]:
    """Per logged episode: positions ``(T+1, 2)``, violating steps, success, seed, start distance."""
    from hplan.runner import read_episode_log

    episodes = []
    for path in sorted(Path(log_dir).glob("episodes/ep-*.jsonl")):
        log = read_episode_log(path)
        record = log.record
        start = np.asarray(record.reset_true_state[:2], dtype=np.float64)
        pos = [start] + [np.asarray(s.pos if s.pos is not None else s.true_state[:2], dtype=np.float64)
                         for s in record.steps]
        episodes.append({"pos": np.stack(pos), "violating": [i + 1 for i, s in enumerate(record.steps) if s.cost > 0],
                         "success": record.success, "seed": record.seed,
                         "separation": record.start_geodesic_steps})
    return episodes


def trajectory_figure(config: ScenarioConfig, runs: Sequence[tuple[str, Path]]) -> Any | None:
    """One panel per run: the map, each episode's path (green: reached the goal, red: did not),
    violating steps as crosses, start (circle) and goal (star). None for an env without a map."""
    import matplotlib.pyplot as plt

    from hplan.envs.factory import make_env
    from hplan.envs.render import PointRenderer

    env = make_env(config).unwrapped
    world = getattr(env, "world", None)
    if world is None or not hasattr(world, "layout"):
        return None
    wall = world.layout.wall
    background = PointRenderer(wall, world.restricted, 256, world.palette).background
    height, width = wall.shape
    side = max(height, width)  # the renderer centres the map in a square image
    extent = (-(side - width) / 2, width + (side - width) / 2, height + (side - height) / 2, -(side - height) / 2)
    fig, axes = plt.subplots(1, len(runs), figsize=(3.6 * len(runs), 3.8), squeeze=False)
    for ax, (label, log_dir) in zip(axes[0], runs):
        ax.imshow(background, extent=extent)
        episodes = episode_paths(log_dir)
        for episode in episodes[:MAX_EPISODES_DRAWN]:
            pos, colour = episode["pos"], "#2a9d4a" if episode["success"] else "#d0342c"
            _, info = env.reset(seed=episode["seed"])
            ax.plot(pos[:, 0], pos[:, 1], color=colour, linewidth=1.1, alpha=0.8)
            ax.plot(*pos[0], "o", color=colour, markersize=4)
            ax.plot(*np.asarray(info["goal"]), "*", color="#1d6fb8", markersize=9)
            if episode["violating"]:
                bad = pos[episode["violating"]]
                ax.plot(bad[:, 0], bad[:, 1], "x", color="#111", markersize=3, alpha=0.7)
        won = sum(e["success"] for e in episodes)
        ax.set_title(f"{label}\n{won}/{len(episodes)} reached", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    env.close()
    fig.tight_layout()
    return fig


def separation_figure(runs: Sequence[tuple[str, Path]], bins: int = 4) -> Any | None:
    """Success against start–goal separation (shortest-path steps), episodes binned by quantile."""
    import matplotlib.pyplot as plt

    rows = [{"run": label, "separation": e["separation"], "success": e["success"]}
            for label, log_dir in runs for e in episode_paths(log_dir) if e["separation"] is not None]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    edges = np.unique(np.quantile(frame["separation"], np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # every episode equally far: one bin around it
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    frame["bin"] = pd.cut(frame["separation"], edges, include_lowest=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for label, group in frame.groupby("run", sort=False):
        rate = group.groupby("bin", observed=False)["success"].mean()
        centres = [interval.mid for interval in rate.index]
        ax.plot(centres, rate.to_numpy(), marker="o", label=label)
    ax.set_xlabel("start–goal separation (shortest-path steps)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
