"""``train_world_model``: Lightning training that writes a complete, resumable run directory.

Run directory (docs/architecture.md)::

    config.json          resolved scenario (overrides applied)
    seed                 the master seed, one line
    versions.json        package versions (hplan.provenance)
    model.pt             final weights + spec (hplan.models.checkpoint)
    checkpoints/last.ckpt  Lightning checkpoint of the last finished epoch (resume)
    metrics.csv          one row per epoch: train/* and val/* losses and diagnostics, time/* stage wall times
    logs/                Lightning's CSVLogger (and TensorBoard when installed)

Re-running with the same ``out_dir`` resumes from ``checkpoints/last.ckpt``; a different model,
training or environment configuration in an existing run directory is refused (only
``max_epochs`` may grow, to train a finished run longer). The validation metric for pruning and
early stopping is ``val/loss`` (see :mod:`hplan.models.module`).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import lightning.pytorch as pl
import pandas as pd
import torch

from hplan.config import ScenarioConfig, load_scenario
from hplan.configio import defaults_of, from_mapping, to_mapping, with_new_defaults
from hplan.device import resolve_device
from hplan.errors import CheckpointError, HplanError
from hplan.io import read_json_object, write_dataframe, write_json, write_text
from hplan.models.calibration import GuardrailCalibration, calibrate_on_validation, load_calibration, save_calibration
from hplan.models.checkpoint import MODEL_FILE, load_world_model, save_world_model
from hplan.models.config import ModelConfig, TrainConfig
from hplan.models.data import EpisodeDataModule
from hplan.models.module import WorldModelModule
from hplan.provenance import package_versions
from hplan.seeding import derive_seed, seed_everything

VALIDATION_METRIC = "val/loss"
"""Logged once per epoch; monitor it for pruning (optuna_integration) and early stopping."""

METRICS_FILE = "metrics.csv"
LAST_CKPT = Path("checkpoints") / "last.ckpt"
_FIELD_DEFAULTS = defaults_of(model=ModelConfig(landmark_fill=0.0), train=TrainConfig())
"""A run directory written before a field existed matches a config that has the field at the value
that reproduces what came before it: its default, except ``landmark_fill`` (runs before it drew every
waypoint uniformly, which is not today's default)."""
_RESUMABLE_KEYS = {("train", "max_epochs"), ("train", "device"), ("train", "cpu_threads"), ("source",)}


class EpochTable(pl.Callback):
    """Writes ``metrics.csv`` (one row per finished epoch) atomically; its rows travel in checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train/", "val/", "time/")):
                row[key] = float(value)
        self.rows = [r for r in self.rows if r["epoch"] < trainer.current_epoch] + [row]
        write_dataframe(self.path, pd.DataFrame(self.rows))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


def apply_overrides(scenario: ScenarioConfig, overrides: Mapping[str, Any]) -> ScenarioConfig:
    """Route flat overrides (``regularizer=…``, ``max_epochs=…``, ``seed=…``) to [model] / [train]."""
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_upd, train_upd, seed = {}, {}, scenario.seed
    for key, value in overrides.items():
        if value is None:
            continue
        if key in model_fields:
            model_upd[key] = value
        elif key in train_fields:
            train_upd[key] = value
        elif key == "seed":
            seed = value
        else:
            raise HplanError(f"train_world_model: unknown override {key!r} (expected a [model] or [train] field or seed)")
    model = from_mapping(ModelConfig, {**to_mapping(scenario.model), **model_upd}, source="overrides", section="model")
    train = from_mapping(TrainConfig, {**to_mapping(scenario.train), **train_upd}, source="overrides", section="train")
    return dataclasses.replace(scenario, model=model, train=train, seed=int(seed))


def finished_run_matches(scenario: ScenarioConfig, out_dir: str | Path, **overrides: Any) -> bool:
    """True when ``out_dir`` holds a saved model trained with these settings (what
    :func:`train_world_model` would resume), so a caller may reuse it instead of training."""
    out_dir = Path(out_dir)
    if not (out_dir / MODEL_FILE).exists() or not (out_dir / "config.json").exists():
        return False
    config = to_mapping(apply_overrides(scenario, overrides))
    try:
        _check_existing_run(out_dir, config)
        trained = read_json_object(out_dir / "config.json").get("train", {}).get("max_epochs")
    except HplanError:
        return False
    return trained == config["train"]["max_epochs"]  # resumable, yet a run with fewer epochs is not finished


def _refuse_heldout(data_dir: Path) -> None:
    """A held-out dataset (``hplan collect --split heldout``) is for diagnostics only: training on
    it would leak the episodes the diagnostics are meant to be measured on."""
    from hplan.data.shards import MANIFEST, read_manifest

    if (data_dir / MANIFEST).exists() and read_manifest(data_dir).get("split", "train") != "train":
        raise HplanError(f"{data_dir / MANIFEST}: split: this is a held-out dataset (for `hplan inspect --data`); "
                         "training never uses one — collect a training set without --split")


def _refuse_other_observations(data_dir: Path, scenario: ScenarioConfig) -> None:
    """A dataset of another environment, or of other observations (state vectors for an image
    scenario), trained a model that its own scenario then refused to run; refuse it before loading it."""
    from hplan.data.shards import MANIFEST, read_manifest

    if not (data_dir / MANIFEST).exists():
        return
    manifest = read_manifest(data_dir)
    env_id = manifest.get("env_id")
    if env_id and env_id != scenario.env.id:
        raise HplanError(f"{data_dir / MANIFEST}: env_id: dataset was collected on {env_id!r} but scenario "
                         f"{scenario.name!r} uses {scenario.env.id!r}")
    collected = manifest.get("obs_mode")
    if collected is not None and collected != scenario.env.obs_mode:
        raise HplanError(f"{data_dir / MANIFEST}: obs_mode: the dataset holds {collected!r} observations but "
                         f"scenario {scenario.name!r} uses {scenario.env.obs_mode!r}")


def refusal_of_existing_run(scenario: ScenarioConfig, out_dir: str | Path, **overrides: Any) -> str | None:
    """Why :func:`train_world_model` with these settings would refuse ``out_dir`` (a run of other
    settings, a damaged checkpoint), or None when it would train or resume there."""
    out_dir = Path(out_dir)
    try:
        _check_existing_run(out_dir, to_mapping(apply_overrides(scenario, overrides)))
        _check_resume_checkpoint(out_dir / LAST_CKPT)
    except HplanError as err:
        return str(err)
    return None


def _check_existing_run(out_dir: Path, config: dict[str, Any]) -> None:
    path = out_dir / "config.json"
    if not path.exists():
        return
    old = with_new_defaults(read_json_object(path), config, _FIELD_DEFAULTS)
    for section in ("env", "model", "train"):
        for key in sorted(set(old.get(section, {})) | set(config.get(section, {}))):
            if (section, key) in _RESUMABLE_KEYS:
                continue
            now = config.get(section, {}).get(key)
            if old.get(section, {}).get(key) != now:
                was = repr(old.get(section, {}).get(key))
                if key not in old.get(section, {}) and key in _FIELD_DEFAULTS.get(section, {}):
                    was = f"{_FIELD_DEFAULTS[section][key]!r} (the run predates the setting)"
                raise CheckpointError(
                    f"{path}: {section}.{key} is {was} in this run directory but "
                    f"{now!r} now; use a new --out or the same settings to resume")


def _check_resume_checkpoint(path: Path) -> None:
    """The ``last.ckpt`` a resume would start from must load, or training stops before it starts.

    Lightning read it only inside ``fit``: an empty file (a kill while it was written by something
    other than hplan's atomic rename, a full disk) raised EOFError, which click turns into a silent
    exit 130, and a damaged one a RuntimeError traceback.
    """
    if not path.exists():
        return
    recover = "delete it to train this run from scratch, or use a new --out"
    if path.is_dir() or path.stat().st_size == 0:
        raise CheckpointError(f"{path}: {'a directory' if path.is_dir() else 'empty file'}, not a training "
                              f"checkpoint; {recover}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged zip/pickle
        detail = (str(err).splitlines() or [""])[0][:120]
        raise CheckpointError(f"{path}: corrupt training checkpoint ({type(err).__name__}: {detail}); "
                              f"{recover}") from None
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(f"{path}: not a Lightning training checkpoint (no state_dict); {recover}")


def _csv_logger(out_dir: Path) -> pl.loggers.CSVLogger:
    """Lightning's CSV logger at ``logs/version_0``, keeping the rows logged before a resume:
    Lightning deletes that ``metrics.csv`` when its writer starts, so a resumed run lost its history."""
    import csv

    logger = pl.loggers.CSVLogger(out_dir, name="logs", version=0)
    path = Path(logger.log_dir) / "metrics.csv"
    kept = path.read_text(encoding="utf-8") if path.is_file() else ""
    with warnings.catch_warnings():  # its "previous log files will be deleted" is no longer true
        warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
        writer = logger.experiment  # the writer starts here (and deletes the file)
    if kept.strip():
        path.write_text(kept, encoding="utf-8")
        writer.metrics_keys = next(csv.reader(kept.splitlines()))  # new columns are merged into this header
    return logger


def _accelerator(device: torch.device) -> tuple[str, Any]:
    kind = {"cpu": "cpu", "cuda": "gpu", "mps": "mps"}.get(device.type)
    if kind is None:
        raise HplanError(f"train.device: unsupported device type {device.type!r}")
    if device.type == "cuda" and device.index is not None:
        return kind, [device.index]
    return kind, 1


def train_world_model(scenario: ScenarioConfig | str | Path, data_dir: str | Path, out_dir: str | Path, *,
                      callbacks: Iterable[pl.Callback] = (), progress: bool = False,
                      **overrides: Any) -> Path:
    """Train (or resume) a world model on ``data_dir``; returns ``out_dir`` holding the run directory.

    ``overrides`` are [model] / [train] field names (``regularizer="sigreg"``, ``max_epochs=3``,
    ``latent_dim=16``, ``device="cpu"``) or ``seed``. ``callbacks`` are extra Lightning callbacks
    (e.g. optuna_integration's ``PyTorchLightningPruningCallback(trial, monitor="val/loss")``).
    """
    if not isinstance(scenario, ScenarioConfig):
        scenario = load_scenario(scenario)
    scenario = apply_overrides(scenario, overrides)
    out_dir = Path(out_dir)
    config = to_mapping(scenario)
    _check_existing_run(out_dir, config)
    _check_resume_checkpoint(out_dir / LAST_CKPT)
    device = resolve_device(scenario.train.device)
    accelerator, devices = _accelerator(device)

    if scenario.train.cpu_threads:
        torch.set_num_threads(scenario.train.cpu_threads)
    _refuse_heldout(Path(data_dir))
    _refuse_other_observations(Path(data_dir), scenario)
    seed_everything(scenario.seed)
    data = EpisodeDataModule(data_dir, scenario.model, scenario.train, scenario.seed)
    data.setup("fit")

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", config)
    write_text(out_dir / "seed", f"{scenario.seed}\n")
    write_json(out_dir / "versions.json", package_versions())

    pl.seed_everything(scenario.seed, workers=True, verbose=False)
    module = WorldModelModule(scenario.model, scenario.train, data.info, scenario.seed)
    all_callbacks: list[pl.Callback] = [
        EpochTable(out_dir / METRICS_FILE),
        pl.callbacks.ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="epoch{epoch:03d}", save_top_k=1,
                                     save_last=True, every_n_epochs=1, save_on_train_epoch_end=True,
                                     auto_insert_metric_name=False),
        *callbacks,
    ]
    if progress:
        all_callbacks.append(pl.callbacks.RichProgressBar())
    loggers: list[Any] = [_csv_logger(out_dir)]
    try:
        import tensorboard  # noqa: F401

        loggers.append(pl.loggers.TensorBoardLogger(out_dir, name="logs", version=0))
    except ImportError:
        pass
    ckpt = out_dir / LAST_CKPT
    with _quiet_lightning():
        trainer = _make_trainer(accelerator, devices, scenario, loggers, all_callbacks, progress, out_dir)
        trainer.fit(module, datamodule=data, ckpt_path=str(ckpt) if ckpt.exists() else None)
    if trainer.interrupted:
        raise HplanError(f"{out_dir}: training interrupted; re-run the same command to resume from {LAST_CKPT}")
    save_world_model(module.model.cpu(), out_dir / MODEL_FILE,
                     extra={"scenario": scenario.name, "epochs": trainer.current_epoch,
                            "train_transitions": data.info.train_transitions})
    if module.model.guardrail_names:
        module.model.eval()
        save_calibration(calibrate_on_validation(module.model, data, scenario.train.calibration_labels,
                                                 derive_seed(scenario.seed, "calibration")), out_dir)
    return out_dir


def _make_trainer(accelerator: str, devices: Any, scenario: ScenarioConfig, loggers: list[Any],
                  callbacks: list[pl.Callback], progress: bool, out_dir: Path) -> pl.Trainer:
    return pl.Trainer(
        accelerator=accelerator, devices=devices, max_epochs=scenario.train.max_epochs, logger=loggers,
        callbacks=callbacks, enable_progress_bar=progress, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=10, use_distributed_sampler=False,
        default_root_dir=out_dir, deterministic=False, inference_mode=False)


class _quiet_lightning:
    """Silence Lightning's chatty info lines and known-harmless warnings for the duration of a fit."""

    def __enter__(self) -> None:
        self._levels = {}
        for name in ("lightning.pytorch", "lightning.fabric", "lightning", "lightning.pytorch.utilities.rank_zero"):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.WARNING)
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        for pattern in (".*does not have many workers.*", ".*Checkpoint directory.*exists and is not empty.*",
                        ".*Experiment logs directory.*exists.*", ".*GPU available but not used.*",
                        ".*The number of training batches.*is smaller than the logging interval.*",
                        ".*LeafSpec.*is deprecated.*"):
            warnings.filterwarnings("ignore", message=pattern)

    def __exit__(self, *exc: Any) -> None:
        self._warn.__exit__(*exc)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)


def ensure_calibration(run_dir: str | Path, data_dir: str | Path, model_cfg: Any, train_cfg: Any,
                       seed: int) -> GuardrailCalibration | None:
    """The run's calibration, written first from its validation episodes when it has none (a model
    trained before calibration existed), exactly as ``hplan train`` writes it; None for a model
    without guardrail heads."""
    existing = load_calibration(run_dir)
    if existing is not None:
        return existing
    model = load_world_model(run_dir, device="cpu")
    if not model.guardrail_names:
        return None
    data = EpisodeDataModule(data_dir, model_cfg, train_cfg, seed)
    data.setup()
    calibration = calibrate_on_validation(model, data, train_cfg.calibration_labels, derive_seed(seed, "calibration"))
    save_calibration(calibration, run_dir)
    return calibration
