"""The demo pipeline: collect → train → evaluate (flat vs hier, guardrails off/on) → stress → report.

Every stage caches its output in the demo folder and is reused on the next run (collection and
training resume where they stopped; a finished model is loaded, not retrained), so re-running the
demo after an interruption or to look at the report again is cheap. ``fresh=True`` starts over.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from rich.console import Console

from hplan.config import ScenarioConfig, load_scenario
from hplan.configio import meta
from hplan.errors import HplanError
from hplan.io import check_out_dir, write_dataframe, write_json

DEFAULT_SCENARIO = "point_four_rooms"
DEMO_OUTPUTS = ("data", "model", "eval", "stress", "report.html", "summary.csv", "timings.json")
"""What a demo folder holds: a non-empty ``--out`` with none of them is someone else's folder."""

# (label, planner kind, guardrail mode): the comparison the demo makes. "on" = the scenario's mode.
EVAL_MATRIX: tuple[tuple[str, str, str], ...] = (
    ("flat, guardrails off", "flat", "off"),
    ("flat, guardrails on", "flat", "on"),
    ("hier, guardrails off", "hier", "off"),
    ("hier, guardrails on", "hier", "on"),
)


@dataclass(frozen=True)
class DemoProfile:
    """How much work the demo does (the quick profile is for a first look in about three minutes)."""

    collect_episodes: int = field(metadata=meta("episodes of exploration data", ge=1))
    max_epochs: int = field(metadata=meta("world-model training epochs", ge=1))
    eval_episodes: int = field(metadata=meta("seeded episodes per planner configuration", ge=1))
    stress_suite: str = field(metadata=meta("stress suite file run against the trained model"))
    stress_seeds: int | None = field(default=None, metadata=meta("override the suite's seeds per cell", ge=1))
    stress_max_steps: int | None = field(default=None, metadata=meta("override the suite's step budget", ge=1))
    head_fit_steps: int | None = field(default=None, metadata=meta(
        "override the per-epoch refit steps of the guardrail, distance, subgoal and predictor refits "
        "(they dominate short runs)", ge=1))
    refit_every: int | None = field(default=None, metadata=meta(
        "override train.refit_every: the refit stages run in every this many epochs and the last", ge=1))


PROFILES: dict[str, DemoProfile] = {
    # ~80k transitions, ~190 joint optimiser steps, the refit stages in epochs 3 and 6 (in every epoch they were
    # three quarters of the training time: 6 epochs of 32 joint steps and ~4,100 refit steps each)
    "full": DemoProfile(collect_episodes=800, max_epochs=6, eval_episodes=8, stress_suite="stress/smoke.toml",
                        refit_every=3),
    # Enough optimiser steps (~60) that the latent is already informative, in well under a minute.
    "quick": DemoProfile(collect_episodes=150, max_epochs=4, eval_episodes=2, stress_suite="stress/smoke.toml",
                         stress_seeds=1, stress_max_steps=40, head_fit_steps=150),
}


@dataclass
class DemoResult:
    out_dir: Path
    evaluation: pd.DataFrame
    stress_summary: pd.DataFrame | None
    report: Path
    seconds: dict[str, float]


def run_demo(*, scenario: str | Path = DEFAULT_SCENARIO, out_dir: str | Path | None = None, quick: bool = False,
             fresh: bool = False, device: str = "auto", console: Console | None = None,
             profile: DemoProfile | None = None) -> DemoResult:
    """Run every stage, print a summary table, write ``report.html``; returns what it produced.

    ``profile`` overrides the built-in full/quick workloads (tests use a tiny one).
    """
    console = console or Console()
    profile = profile or PROFILES["quick" if quick else "full"]
    config = load_scenario(scenario)
    out = Path(out_dir) if out_dir is not None else Path("runs") / ("demo-quick" if quick else "demo")
    # before any work, and before --fresh deletes anything: a folder that is not an earlier demo's is refused
    check_out_dir(out, owns=DEMO_OUTPUTS, what="demo folder")
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        console.rule(f"[bold]{name}")
        start = time.perf_counter()
        value = fn()
        seconds[name] = round(time.perf_counter() - start, 1)
        console.print(f"[dim]{name}: {seconds[name]:.1f} s[/]")
        return value

    data_dir = stage("collect", lambda: _collect(config, out / "data", profile, console))
    run_dir = stage("train", lambda: _train(config, data_dir, out / "model", profile, device, console))
    evaluation = stage("evaluate", lambda: _evaluate(config, run_dir, out / "eval", profile, device))
    stress_summary = stage("stress", lambda: _stress(run_dir, out / "stress", profile, console))

    from hplan.demo.report import write_demo_report

    report = write_demo_report(out, config, run_dir, evaluation, stress_summary, seconds)
    write_dataframe(out / "summary.csv", evaluation)
    write_json(out / "timings.json", seconds)
    _print_summary(console, config, evaluation, stress_summary, report, seconds)
    return DemoResult(out_dir=out, evaluation=evaluation, stress_summary=stress_summary, report=report,
                      seconds=seconds)


def _collect(config: ScenarioConfig, data_dir: Path, profile: DemoProfile, console: Console) -> Path:
    from hplan.data.collect import collect

    result = collect(config, data_dir, episodes=profile.collect_episodes)
    console.print(f"dataset: {data_dir}  ({result.shards_written} shards written, "
                  f"{result.shards_skipped} reused)")
    return data_dir


def _train(config: ScenarioConfig, data_dir: Path, run_dir: Path, profile: DemoProfile, device: str,
           console: Console) -> Path:
    from hplan.models.training import finished_run_matches, refusal_of_existing_run, train_world_model

    heads = ({} if profile.head_fit_steps is None else
             {f"{part}_fit_steps": profile.head_fit_steps for part in ("guardrail", "distance", "subgoal", "predictor")})
    refits = {} if profile.refit_every is None else {"refit_every": profile.refit_every}
    settings = dict(max_epochs=profile.max_epochs, device=device, **heads, **refits)
    if finished_run_matches(config, run_dir, **settings):
        return run_dir  # finished earlier with the same settings: reuse (--fresh retrains)
    refusal = refusal_of_existing_run(config, run_dir, **settings)
    if refusal:  # the demo's own model, made by another version of the demo: train this one's
        console.print(f"[yellow]{refusal.split(';')[0]}: training the model again[/]")
        shutil.rmtree(run_dir)
    return train_world_model(config, data_dir, run_dir, progress=True, **settings)


def _evaluate(config: ScenarioConfig, run_dir: Path, eval_dir: Path, profile: DemoProfile,
              device: str) -> pd.DataFrame:
    """The four arms of :data:`EVAL_MATRIX`, each ``profile.eval_episodes`` seeded episodes.

    On a CPU with more than one core the arms run in worker processes, one core each (an arm's
    lockstep episodes make one batched model call at a time, at one torch thread: two arms at
    once took 39 s where one took 47 s, 2 cores). Every episode is the one it would be played in
    this process at one thread: a seed fixes it, whatever runs beside it."""
    from hplan.device import resolve_device

    torch_device = resolve_device(device)
    workers = _evaluation_workers(torch_device)
    arms = [(label, kind, guard, eval_dir / f"{kind}-{_guard_mode(config, guard)}") for label, kind, guard in EVAL_MATRIX]
    if workers == 1:
        rows = [_evaluate_arm(config, run_dir, log_dir, kind, guard, profile.eval_episodes, str(torch_device),
                              threads=None, progress=True) for _, kind, guard, log_dir in arms]
    else:
        rows = _evaluate_in_workers(config, run_dir, arms, profile.eval_episodes, str(torch_device), workers)
    return pd.DataFrame([{"run": label, **row} for (label, *_), row in zip(arms, rows)])


def _guard_mode(config: ScenarioConfig, guard: str) -> str:
    from hplan.runner.settings import resolve_guardrails

    return resolve_guardrails(config.guardrails, guard).mode


def _evaluation_workers(device: Any) -> int:
    """Worker processes for the arms: one per core on a CPU (at most one per arm); on a GPU the
    arms share the device in this process."""
    import os

    if device.type != "cpu":
        return 1
    return max(1, min(os.cpu_count() or 1, len(EVAL_MATRIX)))


def _evaluate_arm(config: ScenarioConfig, run_dir: Path, log_dir: Path, kind: str, guard: str, episodes: int,
                  device: str, *, threads: int | None, progress: bool) -> dict[str, Any]:
    """One arm's episodes, logged to ``log_dir``; its summary row (runs in a worker process too)."""
    import torch

    from hplan.models.checkpoint import load_world_model
    from hplan.runner import run_episodes, summarize
    from hplan.runner.settings import resolve_guardrails

    if threads:
        torch.set_num_threads(threads)
    model = load_world_model(run_dir, device=torch.device(device), expect_env_id=config.env.id)
    guard_cfg = resolve_guardrails(config.guardrails, guard)
    frame = run_episodes(config, model, planner_kind=kind, guardrails=guard_cfg, episodes=episodes,
                         seed=config.seed, log_dir=log_dir, checkpoint=run_dir, device=device, progress=progress)
    return {"planner": kind, "guardrails": guard_cfg.mode, "log_dir": str(log_dir), **summarize(frame)}


def _evaluate_in_workers(config: ScenarioConfig, run_dir: Path, arms: list[tuple[str, str, str, Path]],
                         episodes: int, device: str, workers: int) -> list[dict[str, Any]]:
    """The arms in ``workers`` spawned processes at one torch thread each, with one progress bar
    that counts the episode logs as the workers write them."""
    import concurrent.futures
    import multiprocessing

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hplan.device import flush_denormals

    context = multiprocessing.get_context("spawn")  # a forked child would inherit torch's thread pools
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=flush_denormals) as pool, \
            Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        futures = [pool.submit(_evaluate_arm, config, run_dir, log_dir, kind, guard, episodes, device,
                               threads=1, progress=False) for _, kind, guard, log_dir in arms]
        tasks = [bar.add_task(label, total=episodes) for label, *_ in arms]
        while True:
            done, pending = concurrent.futures.wait(futures, timeout=0.5,
                                                    return_when=concurrent.futures.FIRST_EXCEPTION)
            for task, (_, _, _, log_dir) in zip(tasks, arms):
                bar.update(task, completed=len(list((log_dir / "episodes").glob("ep-*.jsonl"))))
            if any(future.exception() is not None for future in done):
                pool.shutdown(cancel_futures=True)  # one line for the error, not the other arms' episodes
                break
            if not pending:
                break
        return [future.result() for future in futures]


def _stress(run_dir: Path, stress_dir: Path, profile: DemoProfile, console: Console) -> pd.DataFrame | None:
    from hplan.stress.api import run_suite

    suite_path = Path(profile.stress_suite)
    if not suite_path.exists():
        raise HplanError(f"{suite_path}: stress suite not found (run the demo from the repository root)")
    # seconds of work, run again every time: results of an earlier model (or suite) would be refused
    shutil.rmtree(stress_dir, ignore_errors=True)
    result = run_suite(suite_path, out_dir=stress_dir, checkpoint=run_dir, seeds=profile.stress_seeds,
                       max_steps=profile.stress_max_steps, console=console)
    return result.summary


def _print_summary(console: Console, config: ScenarioConfig, evaluation: pd.DataFrame,
                   stress_summary: pd.DataFrame | None, report: Path, seconds: dict[str, float]) -> None:
    from hplan.runner import summary_table

    console.rule("[bold]hplan demo: results")
    console.print(summary_table([(row["run"], row) for row in evaluation.to_dict("records")],
                                title=f"{config.name}: {config.description}"))
    if stress_summary is not None and not stress_summary.empty:
        console.print(f"stress suite: {len(stress_summary)} shift × severity cells summarised")
    total = sum(seconds.values())
    console.print(f"total {total:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())})")
    console.print(f"[bold green]report:[/] {report}")
