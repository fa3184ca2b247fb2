"""The suite runner: cells in parallel worker processes, resumable, every output written atomically.

Layout of an output directory::

    DIR/suite.json                  the suite (resolved) and its fingerprint: a resume must match it
    DIR/cells/<cell-id>.parquet     one finished cell's episodes — its presence marks the cell done
    DIR/cells/<cell-id>.steps.parquet  the cell's per-step rows (written first)
    DIR/episodes/<cell-id>/ep-NNNN.jsonl  one log per episode (``hplan replay DIR/episodes --verify``)
    DIR/results.parquet             one row per episode, all cells
    DIR/steps.parquet               one row per step, all cells
    DIR/summary.csv                 metrics per scenario × shift × severity
    DIR/thresholds.csv              pass/fail per threshold
    DIR/report.html                 the self-contained report

Why this shape: an interrupted suite (killed, a crashing cell, a lost machine) resumes by
skipping every cell whose episode file exists; the steps file is written before it, and both by
``os.replace`` of a complete temporary, so a cell is either fully there or not at all.

Workers are ``spawn``-ed processes (``fork`` and torch threads do not mix) with
``torch.set_num_threads(1)`` each: cells are the parallelism, not intra-op threads. The parent
writes every result file, so workers never race on the directory; a worker writes only its own
cell's episode logs (each atomically; a cell that is run again rewrites them).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from hplan.configio import to_mapping
from hplan.errors import HplanError
from hplan.io import read_json_object, write_dataframe, write_json
from hplan.stress.cells import CellJob, CellResult, cell_paths, plan_cells, relabel, run_cell
from hplan.stress.suite import ResolvedScenario, SuiteConfig
from hplan.stress.report import write_report
from hplan.stress.summary import SuiteOutcome, evaluate_thresholds, summary_table, verdict_table

CellFn = Callable[[CellJob], CellResult]
EPISODE_LOGS = "episodes"


def _init_worker() -> None:
    import torch

    from hplan.device import flush_denormals

    flush_denormals()
    torch.set_num_threads(1)


def prepare_out_dir(out_dir: Path, suite: SuiteConfig, scenarios: Sequence[ResolvedScenario]) -> None:
    """Create ``out_dir`` or check that it holds a run of the *same* suite (resume)."""
    marker = out_dir / "suite.json"
    fingerprint = run_fingerprint(suite, scenarios)
    if marker.exists():
        try:
            previous = read_json_object(marker).get("fingerprint")
        except OSError as err:
            raise HplanError(f"{marker}: cannot read it ({err.strerror}); use a fresh --out directory") from None
        except HplanError as err:  # damaged: say so, not "a different suite"
            raise HplanError(f"{err}; the run in {out_dir} cannot be resumed: use a fresh --out directory") from None
        if previous != fingerprint:
            raise HplanError(f"{out_dir}: holds results of a different suite (fingerprint {previous} != {fingerprint}); "
                             "use a fresh --out directory")
    write_json(marker, {"fingerprint": fingerprint, "suite": to_mapping(suite),
                        "checkpoints": {s.label: str(s.checkpoint) for s in scenarios}})


def run_fingerprint(suite: SuiteConfig, scenarios: Sequence[ResolvedScenario]) -> str:
    """The suite's fingerprint plus what it runs against: each resolved scenario and its model weights.

    Finished cells are only reused when all three are unchanged, so editing a scenario file or
    retraining the checkpoint never mixes stale episodes into a resumed suite.
    """
    import hashlib
    import json

    from hplan.configio import to_mapping
    from hplan.runner.settings import checkpoint_sha256

    def weights(path: Path) -> str | None:
        return checkpoint_sha256(path) if (Path(path) / "model.pt").is_file() or Path(path).suffix == ".pt" else None

    parts = [suite.fingerprint()] + [
        json.dumps({"label": s.label, "scenario": {k: v for k, v in to_mapping(s.config).items() if k != "source"},
                    "weights": weights(s.checkpoint)}, sort_keys=True, default=str) for s in scenarios]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def run_cells(jobs: Sequence[CellJob], out_dir: Path, *, workers: int = 1, cell_fn: CellFn = run_cell,
              progress: bool = True) -> tuple[list[str], list[str]]:
    """Run the unfinished cells; return (ran, skipped) cell ids. A failing cell stops the suite
    after the cells already finished have been saved (they are skipped on the next run).

    Severity-0 alias cells (``CellJob.alias_of``) are written by relabelling their nominal cell,
    which runs once (even when the suite does not list shift ``none`` itself)."""
    todo, skipped = [], []
    for job in jobs:
        done_path, _ = cell_paths(out_dir, job.cell)
        (skipped if done_path.exists() else todo).append(job)
    sources: dict[str, CellJob] = {}
    logs = str(Path(out_dir) / EPISODE_LOGS)
    for job in todo:
        source = dataclasses.replace(job.source(), log_dir=logs)
        if not cell_paths(out_dir, source.cell)[0].exists():
            sources.setdefault(source.cell.id, source)
    ran: list[str] = []
    with _Progress(progress, len(jobs), len(skipped)) as bar:
        def save(job: CellJob, result: CellResult) -> None:
            done_path, steps_path = cell_paths(out_dir, job.cell)
            write_dataframe(steps_path, result.steps)
            write_dataframe(done_path, result.episodes)
            ran.append(job.cell.id)
            if job.cell.id in {j.cell.id for j in todo}:
                bar.advance(job.cell.id)

        run_list = list(sources.values())
        if workers <= 1 or len(run_list) <= 1:
            for job in run_list:
                save(job, cell_fn(job))
        else:
            context = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
                futures = {pool.submit(cell_fn, job): job for job in run_list}
                try:
                    for future in cf.as_completed(futures):
                        save(futures[future], future.result())
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
        for job in todo:
            if job.alias_of is not None:
                done_path, steps_path = cell_paths(out_dir, job.alias_of)
                steps = pd.read_parquet(steps_path) if steps_path.exists() else pd.DataFrame()
                save(job, relabel(CellResult(pd.read_parquet(done_path), steps), job.cell))
    return ran, [job.cell.id for job in skipped]


def collect(out_dir: Path, jobs: Sequence[CellJob]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Concatenate the cells' tables in cell order."""
    episodes, steps = [], []
    for job in jobs:
        done_path, steps_path = cell_paths(out_dir, job.cell)
        episodes.append(pd.read_parquet(done_path))
        if steps_path.exists():
            frame = pd.read_parquet(steps_path)
            if len(frame):
                steps.append(frame)
    return (pd.concat(episodes, ignore_index=True),
            pd.concat(steps, ignore_index=True) if steps else pd.DataFrame())


def run_suite(suite: SuiteConfig, scenarios: Sequence[ResolvedScenario], out_dir: str | Path, *,
              workers: int = 1, cell_fn: CellFn = run_cell, progress: bool = True, report: bool = True) -> SuiteOutcome:
    """Run (or resume) a whole suite and write results, summary, thresholds and the report."""
    out = Path(out_dir)
    prepare_out_dir(out, suite, scenarios)
    jobs = plan_cells(suite, tuple(scenarios))
    ran, skipped = run_cells(jobs, out, workers=workers, cell_fn=cell_fn, progress=progress)
    episodes, steps = collect(out, jobs)
    summary = summary_table(episodes, steps, suite)
    verdicts = evaluate_thresholds(summary, suite.thresholds)
    write_dataframe(out / "results.parquet", episodes)
    if len(steps):
        write_dataframe(out / "steps.parquet", steps)
    write_dataframe(out / "summary.csv", summary)
    write_dataframe(out / "thresholds.csv", verdict_table(verdicts))
    outcome = SuiteOutcome(out, episodes, steps, summary, verdicts, ran, skipped)
    if report:
        write_report(outcome, suite, out / "report.html")
    return outcome


class _Progress:
    """A rich progress bar over cells (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.enabled, self.total, self.done = enabled, total, done

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("stress cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TimeRemainingColumn(), TextColumn("{task.description}"), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("", total=self.total, completed=self.done)
        return self

    def advance(self, label: str) -> None:
        if self.enabled:
            self.bar.update(self.task, advance=1, description=label)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
