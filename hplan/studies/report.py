"""Read a study back: a trials table, the best trial or Pareto front, parquet export and PNG plots.

Everything here reads through Optuna's own API (``study.trials``, ``trials_dataframe``,
``best_trials``, ``optuna.visualization.matplotlib``), so what ``hplan study show`` prints is what
optuna-dashboard shows for the same storage.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from hplan.errors import HplanError
from hplan.io import atomic_path, write_dataframe

if TYPE_CHECKING:
    import optuna

    from hplan.studies.config import StudyConfig

# User attributes that are bookkeeping, not metrics (left out of the rich table, kept in exports).
_BOOKKEEPING = {"run_dir", "worker", "data_dir", "data_reused", "trial_number", "retry_of", "error", "seconds"}


# Metrics shown next to the objectives in `hplan study show` (all of them are in exports).
_TABLE_METRICS = ("success_rate", "violation_rate", "success_rate_seed_std", "val_loss", "effective_rank",
                  "probe_r2", "plan_ms")


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, values, params, user attributes, constraints, retry origin.

    Built on ``study.trials_dataframe`` (so column names are Optuna's: ``params_*``,
    ``user_attrs_*``, ``value``/``values_*``), plus ``constraint_*`` and ``feasible``.
    """
    frame = study.trials_dataframe(attrs=("number", "value" if len(study.directions) == 1 else "values",
                                          "state", "params", "user_attrs", "datetime_start",
                                          "datetime_complete", "duration"))
    if frame.empty:
        return frame
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    names = sorted({k for t in trials.values() for k in t.constraints})
    for name in names:
        frame[f"constraint_{name}"] = [trials[n].constraints.get(name, math.nan) for n in frame["number"]]
    frame["feasible"] = [all(v <= 0 for v in trials[n].constraints.values()) for n in frame["number"]]
    frame["retry_of"] = [trials[n].system_attrs.get("failed_trial", -1) for n in frame["number"]]
    if "duration" in frame:
        frame["duration"] = frame["duration"].dt.total_seconds()
    return frame


def best_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The best feasible trial (single objective) or the feasible Pareto front (multi-objective)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    if len(study.directions) == 1:
        feasible = [t for t in complete if all(v <= 0 for v in t.constraints.values())]
        if not feasible:
            return []
        sign = 1 if study.direction.name == "MAXIMIZE" else -1
        return [max(feasible, key=lambda t: sign * t.value)]
    return list(study.best_trials)


def render_table(study: optuna.Study, objectives: list[str], *, limit: int | None = None) -> Any:
    """A rich table of trials (newest last), best ones marked with ★."""
    from rich.table import Table

    best = {t.number for t in best_trials(study)}
    trials = study.get_trials(deepcopy=False)
    if limit is not None:
        trials = trials[-limit:]
    params = sorted({k for t in trials for k in t.params})
    present = {k for t in trials for k, v in t.user_attrs.items()
               if k not in _BOOKKEEPING and isinstance(v, (int, float)) and k not in objectives}
    metrics = [m for m in _TABLE_METRICS if m in present]
    title = f"study {study.study_name}: {len(study.trials)} trials"
    table = Table(title=title, show_lines=False)
    for col in ("#", "state", *objectives, *params, "feasible", *metrics):
        table.add_column(col, justify="right" if col not in ("state",) else "left", overflow="fold")
    for t in trials:
        values = list(t.values) if t.values is not None and t.state.name == "COMPLETE" else [None] * len(objectives)
        feasible = "" if not t.constraints else ("yes" if all(v <= 0 for v in t.constraints.values()) else "no")
        row = [f"{'★' if t.number in best else ''}{t.number}", t.state.name.lower(),
               *(_fmt(v) for v in values), *(_fmt(t.params.get(p)) for p in params), feasible,
               *(_fmt(t.user_attrs.get(m)) for m in metrics)]
        table.add_row(*row)
    return table


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def export(study: optuna.Study, out: str | Path) -> Path:
    """Write the trials table as .parquet or .csv (by suffix), atomically."""
    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise HplanError(f"{out}: export needs a .parquet or .csv file name")
    frame = trials_frame(study)
    if frame.empty:
        raise HplanError(f"study {study.study_name} has no trials to export")
    for column in frame.columns:  # parquet needs one type per column (user attrs may be mixed)
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    write_dataframe(out, frame)
    return out


def plots(study: optuna.Study, config: StudyConfig, out_dir: str | Path) -> list[Path]:
    """Optimisation history, Pareto front (multi-objective) and parameter importances as PNGs."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise HplanError(f"study {study.study_name} has no complete trials to plot")
    names = [o.metric for o in config.objectives]
    jobs: list[tuple[str, Any]] = []
    for i, name in enumerate(names):
        target = (lambda t, i=i: t.values[i]) if len(names) > 1 else None
        jobs.append((f"history_{name}.png", lambda target=target, name=name: ovm.plot_optimization_history(
            study, target=target, target_name=name)))
    if len(names) > 1:
        jobs.append(("pareto_front.png", lambda: ovm.plot_pareto_front(study, target_names=names)))
    if study.get_trials(deepcopy=False) and len(complete) >= 2 and complete[0].params:
        for i, name in enumerate(names):
            target = (lambda t, i=i: t.values[i]) if len(names) > 1 else None
            jobs.append((f"importances_{name}.png", lambda target=target, name=name: ovm.plot_param_importances(
                study, target=target, target_name=name)))
    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for filename, draw in jobs:
            try:
                axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                # e.g. importances with a single distinct parameter value: skip, say why
                warnings.warn(f"{filename}: not drawn ({err})", stacklevel=2)
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            path = out_dir / filename
            with atomic_path(path) as tmp:
                figure.savefig(tmp, format="png", dpi=110)
            plt.close(figure)
            written.append(path)
    return written
