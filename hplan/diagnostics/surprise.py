"""Surprise: the z-scored one-step latent prediction error (DESIGN.md "surprise").

``error = ‖P_lo(z_{t-1}, a_{t-1}) − z_t‖² / D``; the model stores the mean and std of this error on
held-out training data (``surprise_stats``), so a value of 3 means "three standard deviations
more surprising than a typical nominal transition" regardless of latent scale. Agents report it
in ``PlanInfo.surprise``; the stress suite thresholds it to flag impossible transitions.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def prediction_error(model, z_prev: torch.Tensor, action: torch.Tensor, z_now: torch.Tensor) -> torch.Tensor:
    """Mean squared one-step latent error, per leading index."""
    pred = model.predictor.step(z_prev, action.to(z_prev.dtype))
    return (pred - z_now).pow(2).mean(-1)


@torch.no_grad()
def surprise(model, z_prev: torch.Tensor, action: torch.Tensor, z_now: torch.Tensor) -> torch.Tensor:
    """z-scored prediction error using the model's calibration (``model.surprise_stats``)."""
    mean, std = model.surprise_stats[0], model.surprise_stats[1].clamp_min(1e-12)
    return (prediction_error(model, z_prev, action, z_now) - mean) / std
