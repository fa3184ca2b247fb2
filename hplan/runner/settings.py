"""Resolving what an evaluation run uses: planner and guardrail settings, checkpoint identity.

Command-line choices (``--planner flat|hier``, ``--guardrails on|off|penalty|hard|lagrangian``)
override the scenario file's ``[planner]``/``[guardrails]`` sections here, in one place, so the
CLI, the stress suite and the benchmark scripts resolve them identically and the episode log
records exactly what the agent was built with.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Literal

from hplan.config import ScenarioConfig
from hplan.errors import CheckpointError, HplanError
from hplan.planning.config import GuardrailConfig, PlannerConfig

GuardrailChoice = Literal["on", "off", "penalty", "hard", "lagrangian"]
GUARDRAIL_CHOICES: tuple[str, ...] = ("on", "off", "penalty", "hard", "lagrangian")
PLANNER_CHOICES: tuple[str, ...] = ("flat", "hier")
MODEL_FILE = "model.pt"


def resolve_planner(base: PlannerConfig, kind: str | None = None, device: str | None = None) -> PlannerConfig:
    """The scenario's planner settings with ``kind`` (flat/hier) and ``device`` overridden."""
    changes: dict[str, str] = {}
    if kind is not None:
        if kind not in PLANNER_CHOICES:
            raise HplanError(f"unknown planner {kind!r}: use one of {', '.join(PLANNER_CHOICES)}")
        changes["kind"] = kind
    if device is not None:
        changes["device"] = device
    return dataclasses.replace(base, **changes) if changes else base


def resolve_guardrails(base: GuardrailConfig, choice: str | GuardrailConfig | None) -> GuardrailConfig:
    """``on`` keeps the scenario's mode (``penalty`` when the file says ``off``); ``off`` disables
    the guardrail cost; a mode name selects that mode with the file's weights and thresholds."""
    if choice is None:
        return base
    if isinstance(choice, GuardrailConfig):
        return choice
    if choice not in GUARDRAIL_CHOICES:
        raise HplanError(f"unknown guardrail setting {choice!r}: use one of {', '.join(GUARDRAIL_CHOICES)}")
    if choice == "on":
        return base if base.mode != "off" else dataclasses.replace(base, mode="penalty")
    return dataclasses.replace(base, mode=choice)


def model_file(checkpoint: str | Path) -> Path:
    """``model.pt`` of a run directory (or the file itself when a file is given)."""
    path = Path(checkpoint)
    return path / MODEL_FILE if path.is_dir() else path


def checkpoint_sha256(checkpoint: str | Path) -> str:
    """sha256 of the checkpoint's ``model.pt``: what a replay checks before trusting the model."""
    path = model_file(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_sha256() -> str:
    """sha256 over the ``hplan`` package's Python sources (path + bytes, sorted by path).

    Recorded in episode logs: an agent replay can only be exact with the same code, and a version
    string does not change while a working tree is edited.
    """
    import hplan

    root = Path(hplan.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_model_fits_scenario(model: Any, scenario: ScenarioConfig, checkpoint: str | Path) -> None:
    """The checkpoint's encoder must read the observations the scenario's env gives, before any episode.

    ``load_world_model(expect_env_id=...)`` compares env ids only: a model trained on images run with
    the same env in ``obs_mode = "state"`` was a shape traceback in the first ``encode``. An
    ``obs_mode = "both"`` Dict space is read by its image part (what a dataset stores as ``obs``).
    """
    import gymnasium as gym

    from hplan.envs.factory import make_env

    env = make_env(scenario)
    try:
        observation_space = env.observation_space
    finally:
        env.close()
    space = observation_space["image"] if isinstance(observation_space, gym.spaces.Dict) else observation_space
    shape = tuple(int(s) for s in getattr(space, "shape", None) or ())
    kind = "image" if len(shape) == 3 else "state"
    if kind == model.obs_kind and shape == tuple(model.obs_shape):
        return
    raise CheckpointError(
        f"{model_file(checkpoint)}: trained on {model.obs_kind} observations {tuple(model.obs_shape)}, but "
        f"{scenario.source} (env.obs_mode = {scenario.env.obs_mode!r}) gives {kind} observations {shape}; "
        "use a checkpoint trained on this scenario's observations")
