"""The planning measurement of issue 5: flat vs hierarchical, guardrails off vs on, MiniGrid.

For every case in :data:`CASES` it makes sure a world model exists for the case's scenario
(collects data and trains one under ``--root`` when missing; both stages are cached and resume),
runs seeded episodes with :func:`hplan.runner.run_episodes` (episode logs under
``--root/eval/<case>``), and prints one table with success rate, violation rate, violations per
1,000 steps, planning wall time per step and predictor evaluations per step. ``--verify`` then
re-executes every episode log with ``hplan.replay.verify_log`` (actions and agent).

Flat and hierarchical cases of a scenario use the same ``planner.eval_budget`` (predictor
evaluations per step), so the comparison is at an equal compute budget (see
``hplan/planning/budget.py``: the hierarchical agent never spends more per step than the flat one).

Usage (from the repository root)::

    python benchmarks/eval_planning.py --episodes 50                  # everything, issue's sizes
    python benchmarks/eval_planning.py --only two_rooms --episodes 10  # one scenario pair
    python benchmarks/eval_planning.py --verify                         # also replay-verify all logs

Timings depend on the machine and its load: say which machine (and how busy) with the numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console


@dataclass(frozen=True)
class Case:
    """One row of the measurement: a scenario with a planner kind and a guardrail setting."""

    name: str
    scenario: str
    planner: str
    guardrails: str
    question: str
    overrides: dict[str, Any] = field(default_factory=dict)


EQUAL_BUDGET: dict[str, Any] = {}
"""Flat and hier of a scenario share that scenario's ``planner.eval_budget`` (set in its file)."""

CASES: tuple[Case, ...] = (
    Case("two_rooms/flat", "point_two_rooms", "flat", "on", "success, two rooms", EQUAL_BUDGET),
    Case("two_rooms/hier", "point_two_rooms", "hier", "on", "success, two rooms", EQUAL_BUDGET),
    Case("four_rooms/flat", "point_four_rooms", "flat", "on", "success, four rooms diagonal", EQUAL_BUDGET),
    Case("four_rooms/hier", "point_four_rooms", "hier", "on", "success, four rooms diagonal", EQUAL_BUDGET),
    Case("four_rooms/hier-codes", "point_four_rooms", "hier", "on", "success, four rooms, P_hi subgoal codes",
         {"planner": {"high": "codes"}}),
    Case("maze3x3/flat", "point_maze3x3", "flat", "on", "success, 3x3 maze", EQUAL_BUDGET),
    Case("maze3x3/hier", "point_maze3x3", "hier", "on", "success, 3x3 maze", EQUAL_BUDGET),
    Case("zones/guard-off", "point_four_rooms_zones", "hier", "off", "violations, guardrails off"),
    Case("zones/guard-on", "point_four_rooms_zones", "hier", "on", "violations, guardrails on"),
    Case("doorkey/hier", "minigrid_doorkey", "hier", "on", "success, DoorKey"),
    Case("fourrooms/hier", "minigrid_fourrooms", "hier", "on", "success, MiniGrid FourRooms"),
    Case("lava/guard-off", "minigrid_lavacrossing", "hier", "off", "lava violations, guardrails off"),
    Case("lava/guard-on", "minigrid_lavacrossing", "hier", "on", "lava violations, guardrails on"),
)


def ensure_model(scenario_name: str, root: Path, *, collect_episodes: int | None, max_epochs: int | None,
                 console: Console) -> Path:
    """A trained run directory for ``scenario_name`` under ``root/models`` (collect + train if missing)."""
    from hplan.config import load_scenario
    from hplan.data.collect import collect
    from hplan.models.checkpoint import MODEL_FILE
    from hplan.models.training import train_world_model

    run_dir = root / "models" / scenario_name
    if (run_dir / MODEL_FILE).exists():
        return run_dir
    scenario = load_scenario(scenario_name)
    data_dir = root / "data" / scenario_name
    start = time.perf_counter()
    collect(scenario, data_dir, episodes=collect_episodes)
    console.print(f"[dim]{scenario_name}: collected in {time.perf_counter() - start:.0f} s[/]")
    start = time.perf_counter()
    overrides = {"max_epochs": max_epochs} if max_epochs else {}
    train_world_model(scenario, data_dir, run_dir, progress=False, **overrides)
    console.print(f"[dim]{scenario_name}: trained in {time.perf_counter() - start:.0f} s[/]")
    return run_dir


def run_case(case: Case, run_dir: Path, root: Path, episodes: int, seed: int | None, device: str) -> dict[str, Any]:
    from hplan.config import load_scenario
    from hplan.models.checkpoint import load_world_model
    from hplan.runner import run_episodes, summarize

    scenario = load_scenario(case.scenario, overrides=case.overrides)
    model = load_world_model(run_dir, device=device, expect_env_id=scenario.env.id)
    log_dir = root / "eval" / case.name.replace("/", "-")
    start = time.perf_counter()
    frame = run_episodes(scenario, model, planner_kind=case.planner, guardrails=case.guardrails,
                         episodes=episodes, seed=seed, log_dir=log_dir, checkpoint=run_dir, device=device,
                         progress=True)
    summary = summarize(frame)
    return {"case": case.name, "question": case.question, **summary,
            "success_ci95": _wilson(summary["success_rate"], len(frame)),
            "mean_start_geodesic_steps": float(frame["start_geodesic_steps"].where(frame["start_geodesic_steps"] >= 0).mean()),
            "wall_s": round(time.perf_counter() - start, 1), "log_dir": str(log_dir)}


def _wilson(p: float, n: int, z: float = 1.96) -> str:
    """95 % Wilson interval for a rate measured on ``n`` episodes (small-n honest error bars)."""
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    return f"{max(0.0, centre - half):.0%}–{min(1.0, centre + half):.0%}"


def summarize_logs(root: Path, cases: list[Case]) -> list[dict[str, Any]]:
    """Rows for every case that has episode logs under ``root/eval`` (also from interrupted runs:
    each log's summary line is the episode's row)."""
    import json

    from hplan.runner import summarize

    rows = []
    for case in cases:
        log_dir = root / "eval" / case.name.replace("/", "-")
        paths = sorted((log_dir / "episodes").glob("ep-*.jsonl"))
        if not paths:
            continue
        episodes = [json.loads(p.read_text().splitlines()[-1]) for p in paths]
        frame = pd.DataFrame(episodes).fillna({"act_cpu_ms": float("nan")})
        summary = summarize(frame)
        rows.append({"case": case.name, "question": case.question, **summary,
                     "success_ci95": _wilson(summary["success_rate"], len(frame)),
                     "mean_start_geodesic_steps": float(frame["start_geodesic_steps"].mean()),
                     "wall_s": float("nan"), "log_dir": str(log_dir)})
    return rows


def verify_all(root: Path, console: Console) -> tuple[int, int, list[str]]:
    from hplan.errors import HplanError
    from hplan.replay import log_paths, verify_log

    paths = log_paths(root / "eval")
    agent_ok, problems = 0, []
    for path in paths:
        try:
            report = verify_log(path)
            agent_ok += int(bool(report.agent_ok))
        except HplanError as err:
            problems.append(str(err))
    console.print(f"replay --verify: {len(paths) - len(problems)}/{len(paths)} logs reproduced "
                  f"({agent_ok} with the agent re-run)")
    return len(paths), agent_ok, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs/eval_planning"))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--only", action="append", default=[], help="case name prefix (repeatable)")
    parser.add_argument("--seed", type=int, default=None, help="master seed (default: each scenario's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy CPU)")
    parser.add_argument("--collect-episodes", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--prepare-only", action="store_true", help="collect and train, do not evaluate")
    parser.add_argument("--verify", action="store_true", help="replay-verify every episode log afterwards")
    parser.add_argument("--from-logs", action="store_true",
                        help="only summarise the episode logs already under --root/eval (no runs)")
    args = parser.parse_args(argv)

    import torch

    from hplan.io import write_dataframe, write_text
    from hplan.runner import summary_table

    torch.set_num_threads(args.threads)
    console = Console()
    cases = [c for c in CASES if not args.only or any(c.name.startswith(p) for p in args.only)]
    rows = summarize_logs(args.root, cases) if args.from_logs else []
    for case in [] if args.from_logs else cases:
        run_dir = ensure_model(case.scenario, args.root, collect_episodes=args.collect_episodes,
                               max_epochs=args.max_epochs, console=console)
        if args.prepare_only:
            continue
        rows.append(run_case(case, run_dir, args.root, args.episodes, args.seed, args.device))
        console.print(summary_table([(r["case"], r) for r in rows], title="planning evaluation (so far)"))
    if rows:
        table = pd.DataFrame(rows)
        tag = ("logs-" if args.from_logs else "") + ("-".join(p.replace("/", "_") for p in args.only) or "all")
        write_dataframe(args.root / f"results-{tag}.csv", table)
        write_text(args.root / f"results-{tag}.md", table.drop(columns=["log_dir"]).to_markdown(index=False)
                   if _has_tabulate() else table.to_string(index=False))
        console.print(summary_table([(r["case"], r) for r in rows],
                                    title=f"planning evaluation: {'from logs' if args.from_logs else args.episodes} episodes per case, "
                                          f"device {args.device}, {args.threads} torch thread(s)"))
        console.print(table[["case", "success_rate", "success_ci95", "violation_rate", "ms_per_step",
                             "cpu_ms_per_step", "model_evals_per_step", "mean_start_geodesic_steps", "wall_s"]].to_string(index=False))
    if args.verify:
        _, _, problems = verify_all(args.root, console)
        for problem in problems:
            console.print(f"[red]{problem}[/]")
        return 3 if problems else 0
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
