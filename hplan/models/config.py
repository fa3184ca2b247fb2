"""Model and training settings ([model] and [train] in a scenario file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hplan.configio import meta


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the two-level latent world model."""

    latent_dim: int = field(default=32, metadata=meta("size of the latent z", ge=2, le=1024))
    regularizer: Literal["vicreg", "sigreg", "ema", "none", "recon"] = field(
        default="vicreg", metadata=meta("collapse prevention; `recon` is the pixel/state-decoder baseline"))
    subgoal_interval: int = field(default=8, metadata=meta("k: low-level steps per high-level step", ge=1, le=64))
    code_dim: int = field(default=8, metadata=meta("size of the latent subgoal/macro-action code m", ge=1, le=256))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for `hplan train`."""

    max_epochs: int = field(default=10, metadata=meta("training epochs", ge=1))
    batch_size: int = field(default=256, metadata=meta("sequences per batch", ge=2))
    lr: float = field(default=1e-3, metadata=meta("Adam learning rate", gt=0.0, le=1.0))
    rollout_horizon: int = field(default=8, metadata=meta("open-loop steps in the JEPA loss", ge=1, le=64))
    label_budget: int = field(default=1000, metadata=meta("labelled transitions for the guardrail heads", ge=0))
