"""Lockstep evaluation against one episode at a time: the same K episodes, one process, one model.

Plays the scenario's first K test episodes three ways, back to back (``--repeat`` alternates the
order of the rounds so machine drift hits every way):

* ``direct``: one at a time, the agent calling the model directly (the runner before lockstep);
* ``alone``: one at a time through the lockstep view (``hplan run --lockstep 1``: what every
  lockstep episode is identical to);
* ``lockstep``: ``--lockstep E`` episodes stepped together (default: all K).

It prints episodes per second of each way and the ratios, and whether each episode's actions,
steps and outcome are identical between ``alone`` and ``lockstep`` (and how many differ from
``direct``, which the view's padding may change by float noise). It asserts nothing about time.

    python benchmarks/bench_lockstep.py                       # 50 four-rooms episodes, hierarchical, images
    python benchmarks/bench_lockstep.py --episodes 8 --max-steps 40 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hplan.config import load_scenario
from hplan.models.checkpoint import load_world_model
from hplan.planning.agent import make_agent
from hplan.runner import run_episodes

DEFAULT_CHECKPOINT = "runs/results/models/point_four_rooms-2000ep/seed0"
OUTCOME = ["seed", "success", "steps", "violations", "return", "model_evals", "final_geodesic"]


def play(way: str, scenario: Any, model: Any, checkpoint: str, episodes: int, lockstep: int, log_dir: Path) -> tuple[float, Any]:
    """Play the episodes one way; (wall seconds, episode table)."""
    kwargs: dict[str, Any] = {"episodes": episodes, "log_dir": log_dir, "checkpoint": checkpoint,
                              "device": "cpu"}
    start = time.perf_counter()
    if way == "direct":  # no view: an injected factory holding the model, played one at a time
        frame = run_episodes(scenario, None, make_agent=lambda _m, *a: make_agent(model, *a), **kwargs)
    else:
        frame = run_episodes(scenario, model, lockstep=1 if way == "alone" else lockstep, **kwargs)
    return time.perf_counter() - start, frame


def actions(log_dir: Path, episodes: int) -> list[list[Any]]:
    """Each episode's logged actions, in order."""
    out = []
    for index in range(episodes):
        lines = (log_dir / "episodes" / f"ep-{index:04d}.jsonl").read_text().splitlines()
        out.append([json.loads(line)["action"] for line in lines if json.loads(line)["type"] == "step"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="scenarios/point_four_rooms.toml")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="run dir with model.pt (read only)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--lockstep", type=int, default=0, help="episodes stepped together (0: all)")
    parser.add_argument("--planner", default="hier")
    parser.add_argument("--max-steps", type=int, default=0, help="shorter episodes for a quick look (0: the scenario's)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--ways", default="direct,alone,lockstep", help="comma-separated subset of the three ways")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, alternating the order of the ways")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {"planner": {"kind": args.planner, "device": "cpu"}}
    if args.max_steps:
        overrides["env"] = {"max_steps": args.max_steps}
    scenario = load_scenario(args.scenario, overrides=overrides)
    model = load_world_model(args.checkpoint, device="cpu", expect_env_id=scenario.env.id)
    lockstep = args.lockstep or args.episodes
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    print(f"{scenario.name}: {args.episodes} episodes, planner {args.planner}, max_steps {scenario.env.max_steps}, "
          f"torch threads {args.threads}, lockstep {lockstep}, checkpoint {args.checkpoint}")
    times: dict[str, list[float]] = {w: [] for w in ways}
    frames: dict[str, Any] = {}
    logged: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            for way in (ways if round_ % 2 == 0 else ways[::-1]):
                seconds, frame = play(way, scenario, model, args.checkpoint, args.episodes, lockstep, Path(tmp) / way)
                times[way].append(seconds)
                frames[way] = frame
                logged[way] = actions(Path(tmp) / way, args.episodes)
                steps = int(frame["steps"].sum())
                print(f"  round {round_ + 1} {way:8s} {seconds:8.1f} s  {args.episodes / seconds:7.3f} episodes/s  "
                      f"{steps / seconds:7.1f} steps/s  success {frame['success'].mean():.0%}", flush=True)
    rate = {way: args.episodes / (sum(t) / len(t)) for way, t in times.items()}
    print("episodes/second (mean over rounds):  " + "  ".join(f"{w} {r:.3f}" for w, r in rate.items()))
    if "lockstep" in rate:
        for base in ("alone", "direct"):
            if base in rate:
                print(f"lockstep / {base}: {rate['lockstep'] / rate[base]:.2f}x")
    if "alone" in frames and "lockstep" in frames:
        same_rows = frames["alone"][OUTCOME].equals(frames["lockstep"][OUTCOME])
        same_actions = logged["alone"] == logged["lockstep"]
        print(f"alone vs lockstep: per-episode outcome identical {same_rows}, actions identical {same_actions}")
    if "direct" in logged:
        for way in ("alone", "lockstep"):
            if way in logged:
                differ = sum(a != b for a, b in zip(logged["direct"], logged[way]))
                print(f"direct vs {way}: {differ} of {args.episodes} episodes took other actions (float noise of the padding)")


if __name__ == "__main__":
    main()
