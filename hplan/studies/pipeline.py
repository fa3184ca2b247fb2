"""The seam between a study's objective and the pipeline it evaluates.

A pipeline is a function ``SeedContext -> SeedResult``: given the scenario of one trial at one
seed, it produces the evaluation-episode table, the final training metrics and (optionally) the
stress-suite table. The objective does everything around it — sampling, seeds, metrics,
constraints, user attributes, run directories — so the study machinery is identical whether the
pipeline is the real one (:mod:`hplan.studies.full`: collect → train → run → stress) or the
synthetic one (:mod:`hplan.studies.synthetic`, analytic metrics in milliseconds, used to test
storage, workers, constraints and pruning).

Pruning goes through :class:`TrialMonitor`: a Lightning trainer takes its callbacks (Optuna's
maintained ``PyTorchLightningPruningCallback`` on ``val/loss``); a pipeline without Lightning
calls :meth:`TrialMonitor.report` per epoch. Only the first seed's curve is reported (a trial's
intermediate values form one curve per step index).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from hplan.configio import to_mapping
from hplan.io import file_lock

if TYPE_CHECKING:
    import optuna

    from hplan.config import ScenarioConfig
    from hplan.studies.config import StudyConfig

PRUNE_MONITOR = "val/loss"


PRUNE_SCORE = "hplan/prune_score"


class TrialMonitor:
    """Routes a pipeline's per-epoch validation loss to the trial, and raises ``TrialPruned``.

    Pruners compare intermediate values in the study's direction, while a validation loss always
    falls as training improves; the monitor therefore reports ``sign * val/loss`` with ``sign = -1``
    for a maximised objective (so "better" points the same way as the objective).
    """

    def __init__(self, trial: optuna.trial.Trial | None, *, enabled: bool, sign: float = 1.0,
                 monitor: str = PRUNE_MONITOR) -> None:
        self.trial = trial
        self.enabled = enabled and trial is not None
        self.sign = sign
        self.monitor = monitor
        self._callbacks: list[Any] = []

    def lightning_callbacks(self) -> list[Any]:
        """Callbacks for ``lightning.pytorch.Trainer``: Optuna's pruning callback when enabled.

        A small callback first publishes ``sign * val/loss`` as ``hplan/prune_score``; Optuna's
        maintained ``PyTorchLightningPruningCallback`` then reports and prunes on that score.
        """
        if not self.enabled:
            return []
        from optuna_integration import PyTorchLightningPruningCallback

        pruning = PyTorchLightningPruningCallback(self.trial, monitor=PRUNE_SCORE)
        self._callbacks = [_signed_score_callback(self.monitor, self.sign), pruning]
        return list(self._callbacks)

    def after_fit(self) -> None:
        """Raise ``TrialPruned`` if a (distributed) trainer stopped because the trial was pruned."""
        for callback in self._callbacks:
            if hasattr(callback, "check_pruned"):
                callback.check_pruned()

    def report(self, step: int, value: float) -> None:
        """Report one epoch's validation loss; raises ``optuna.TrialPruned`` when the pruner says so."""
        if not self.enabled:
            return
        import optuna

        assert self.trial is not None
        self.trial.report(self.sign * float(value), step=step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {step} ({self.monitor}={value:.4g})")


def _signed_score_callback(monitor: str, sign: float) -> Any:
    import lightning.pytorch as pl

    class SignedScore(pl.Callback):
        """Publish ``sign * monitor`` in ``trainer.callback_metrics`` before the pruning callback reads it."""

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            value = trainer.callback_metrics.get(monitor)
            if value is not None:
                trainer.callback_metrics[PRUNE_SCORE] = value.detach() * sign

    return SignedScore()


@dataclass
class SeedContext:
    """Everything a pipeline needs to evaluate one trial at one seed."""

    study: StudyConfig
    scenario: ScenarioConfig
    """The trial's scenario with ``seed`` set to this training/evaluation seed."""
    data_scenario: ScenarioConfig
    """The same scenario at the study's base seed: data collection uses it, so trials share data."""
    seed: int
    seed_index: int
    run_dir: Path
    cache_dir: Path
    monitor: TrialMonitor
    trial_number: int = -1


@dataclass
class SeedResult:
    """What one seed produced: tables the metric table turns into numbers."""

    episodes: pd.DataFrame
    train: dict[str, float] = field(default_factory=dict)
    stress: pd.DataFrame | None = None
    model_dir: Path | None = None
    data_dir: Path | None = None
    data_reused: bool = False


Pipeline = Callable[[SeedContext], SeedResult]


def code_fingerprint(*packages: str) -> str:
    """Hash of the source files of ``hplan.<package>`` packages: cached artefacts made by other code
    (a changed architecture, a changed environment) get a new key instead of failing to load."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def dataset_key(scenario: ScenarioConfig) -> str:
    """Cache key of a collected dataset: everything that changes the data, nothing else."""
    relevant = {"env": to_mapping(scenario.env), "task": to_mapping(scenario.task),
                "collect": to_mapping(scenario.collect), "seed": scenario.seed,
                "code": code_fingerprint("envs", "data")}
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_dataset(scenario: ScenarioConfig, cache_dir: Path,
                   collect: Callable[[ScenarioConfig, Path], Any]) -> tuple[Path, bool]:
    """Collect ``scenario``'s dataset once per key; concurrent workers wait on a file lock.

    Returns ``(data_dir, reused)``. A dataset counts as present once its ``manifest.json`` is
    complete (collection writes it last), so an interrupted collection is redone, not trusted.
    """
    from hplan.data.shards import MANIFEST

    key = dataset_key(scenario)
    data_dir = cache_dir / key
    with file_lock(cache_dir / f"{key}.lock"):
        if (data_dir / MANIFEST).exists() and _complete(data_dir):
            return data_dir, True
        collect(scenario, data_dir)
        return data_dir, False


def _complete(data_dir: Path) -> bool:
    from hplan.data.shards import read_manifest

    try:
        manifest = read_manifest(data_dir)
    except Exception:  # noqa: BLE001 - a corrupt manifest means "collect again"
        return False
    return bool(manifest.get("complete", bool(manifest.get("shards"))))

