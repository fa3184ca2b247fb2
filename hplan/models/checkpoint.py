"""``model.pt``: the final weights plus everything needed to rebuild them, and a strict loader.

A world model is loaded far from where it was trained (planners, the stress suite, Optuna
workers), so every way a checkpoint can be wrong becomes one :class:`CheckpointError` line that
names the file: missing, unreadable, not a world model, weights that do not fit the stored
architecture (e.g. a different latent size), or trained on a different environment.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from hplan.device import resolve_device
from hplan.errors import CheckpointError, HplanError
from hplan.io import atomic_path, read_json_object
from hplan.models.calibration import load_calibration
from hplan.models.world_model import LatentWorldModel

FORMAT = "hplan-world-model/1"
MODEL_FILE = "model.pt"


def save_world_model(model: LatentWorldModel, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``{format, spec, state_dict, extra}`` atomically (CPU tensors)."""
    payload = {"format": FORMAT, "spec": model.spec(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "extra": extra or {}}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return Path(path)


def load_world_model(run_dir: str | Path, device: str | torch.device = "auto",
                     expect_env_id: str | None = None, expect_latent_dim: int | None = None) -> LatentWorldModel:
    """Load ``run_dir/model.pt`` (or a ``.pt`` file) in eval mode on ``device``.

    Raises :class:`CheckpointError` with one line for a missing, corrupt or mismatched checkpoint.
    """
    run_dir = Path(run_dir)
    path = run_dir if run_dir.suffix == ".pt" else run_dir / MODEL_FILE
    if not path.is_file():
        hint = " (training did not finish; re-run `hplan train` with the same --out to resume)" \
            if (path.parent / "checkpoints" / "last.ckpt").exists() else " (run `hplan train` first)"
        raise CheckpointError(f"{path}: no world model checkpoint{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a damaged zip/pickle
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an hplan world model checkpoint (expected format {FORMAT})")
    spec, state = payload.get("spec"), payload.get("state_dict")
    if not isinstance(spec, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint lacks its spec or weights")
    env_id = spec.get("env_id", "")
    if expect_env_id is not None and env_id != expect_env_id:
        raise CheckpointError(f"{path}: trained on env {env_id!r}, but the scenario uses {expect_env_id!r}")
    _check_run_config(path, spec)
    try:
        model = LatentWorldModel.from_spec(spec, source=str(path))
    except (HplanError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot rebuild the model: {err}") from None
    if expect_latent_dim is not None and model.latent_dim != expect_latent_dim:
        raise CheckpointError(f"{path}: latent size {model.latent_dim}, but {expect_latent_dim} was expected")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = next((ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln or "Missing" in ln
                      or "Unexpected" in ln), str(err).splitlines()[0])
        raise CheckpointError(f"{path}: weights do not fit the stored architecture "
                              f"(latent_dim={model.latent_dim}): {first[:240]}") from None
    try:
        model.calibration = load_calibration(path.parent)
    except HplanError as err:
        raise CheckpointError(str(err)) from None
    return model.to(resolve_device(device)).eval()


def _check_run_config(path: Path, spec: dict[str, Any]) -> None:
    """The run's ``config.json`` (when present) must agree with the checkpoint on env and latent size."""
    config_path = path.parent / "config.json"
    if not config_path.is_file():
        return
    config = read_json_object(config_path)
    cfg_latent = config.get("model", {}).get("latent_dim")
    ckpt_latent = spec.get("model_config", {}).get("latent_dim")
    if cfg_latent is not None and ckpt_latent is not None and cfg_latent != ckpt_latent:
        raise CheckpointError(f"{path}: latent size {ckpt_latent} does not match {config_path.name} "
                              f"model.latent_dim = {cfg_latent}")
    cfg_env = config.get("env", {}).get("id")
    if cfg_env and spec.get("env_id") and cfg_env != spec["env_id"]:
        raise CheckpointError(f"{path}: trained on env {spec['env_id']!r} but {config_path.name} says {cfg_env!r}")
