"""Collapse prevention: a registry of regularisers, selectable per run (``[model] regularizer``).

Each entry says where the prediction *targets* come from and which penalty acts on the batch of
latents:

=========  ==============  ===========================================================
name       targets         penalty
=========  ==============  ===========================================================
vicreg     online encoder  variance hinge (std ≥ 1) + off-diagonal covariance, optional
                           temporal smoothness and inverse dynamics (PLDM's terms)
sigreg     online encoder  Epps–Pulley statistic of fresh random 1-D projections vs N(0, 1);
                           the latent is batch-normalised first: the statistic's gradient
                           vanishes at a collapsed point (cos/sin are flat at 0), and PointRooms
                           frames start there (measured: std 1e-4, loss flat for 258 steps)
ema        EMA encoder     none: the stop-gradient EMA target (BYOL) is the asymmetry; the
                           encoder ends in a parameter-free BatchNorm (see NormalizedEncoder):
                           without it the EMA pair shrank the latent to a point on PointRooms
none       online encoder  none — collapses on purpose (the loss is minimised by a constant z)
recon      stop-gradient   none: a decoder reconstructs the observation from z, the only loss the
                           encoder sees (the predictor learns on detached latents): the baseline
=========  ==============  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from hplan.models.config import TrainConfig

Penalty = Callable[[torch.Tensor, TrainConfig, "torch.Generator | None"], dict[str, torch.Tensor]]


def vicreg_terms(z: torch.Tensor, cfg: TrainConfig, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Variance hinge and covariance penalty on ``z (N, D)`` (VICReg, without its invariance term)."""
    z = z - z.mean(dim=0)
    std = torch.sqrt(z.var(dim=0) + 1e-4)
    var = torch.relu(1.0 - std).mean()
    n, d = z.shape
    cov = (z.T @ z) / max(n - 1, 1)
    off = cov - torch.diag(torch.diagonal(cov))
    cov_loss = off.pow(2).sum() / d
    return {"var": cfg.vicreg_var * var, "cov": cfg.vicreg_cov * cov_loss}


# Epps–Pulley grid (LeJEPA): 17 knots on [0, 3], trapezoid weights times the N(0,1) char. function.
_EP_KNOTS = 17
_EP_TMAX = 3.0


def _ep_grid(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Knots ``t``, quadrature weights and φ(t) = exp(−t²/2).

    The statistic is an integral over the whole real line; its integrand is even in t, so it is
    twice the half-line trapezoid on [0, 3]. That factor of two is the scale of LeJEPA and
    stable-worldmodel (N(0, 1) samples score 1.05 in expectation, an all-zero batch of 256 scores
    102.9), so their published SIGReg weights mean the same here."""
    t = torch.linspace(0.0, _EP_TMAX, _EP_KNOTS, device=device, dtype=dtype)
    trap = torch.full_like(t, _EP_TMAX / (_EP_KNOTS - 1))
    trap[0] = trap[-1] = trap[0] / 2
    phi = torch.exp(-0.5 * t * t)
    return t, 2.0 * trap * phi, phi


def epps_pulley(x: torch.Tensor) -> torch.Tensor:
    """Epps–Pulley statistic of each column of ``x (N, M)`` against N(0, 1), scaled by N → ``(M,)``."""
    t, weights, phi = _ep_grid(x.device, x.dtype)
    tx = x.unsqueeze(-1) * t  # (N, M, K)
    err = (torch.cos(tx).mean(0) - phi).pow(2) + torch.sin(tx).mean(0).pow(2)  # (M, K)
    return (err * weights).sum(-1) * x.shape[0]


def sigreg_terms(z: torch.Tensor, cfg: TrainConfig, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """SIGReg: average Epps–Pulley statistic over fresh random unit directions."""
    dirs = torch.randn(z.shape[1], cfg.sigreg_directions, device=z.device, dtype=z.dtype, generator=generator)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    return {"sigreg": cfg.sigreg_weight * epps_pulley(z @ dirs).mean()}


def no_terms(z: torch.Tensor, cfg: TrainConfig, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    return {}


@dataclass(frozen=True)
class RegularizerSpec:
    """How one regulariser shapes training (see the module table)."""

    name: str
    targets: Literal["online", "stopgrad", "ema"]
    penalty: Penalty
    decoder: bool = False
    normalize_latent: bool = False
    prediction_shapes_encoder: bool = True
    """False for the reconstruction baseline: the predictor learns on detached latents, so the
    encoder is what reconstruction alone makes it (else the comparison measures a JEPA + decoder)."""


REGULARIZERS: dict[str, RegularizerSpec] = {
    "vicreg": RegularizerSpec("vicreg", "online", vicreg_terms),
    "sigreg": RegularizerSpec("sigreg", "online", sigreg_terms, normalize_latent=True),
    "ema": RegularizerSpec("ema", "ema", no_terms, normalize_latent=True),
    "none": RegularizerSpec("none", "online", no_terms),
    "recon": RegularizerSpec("recon", "stopgrad", no_terms, decoder=True, prediction_shapes_encoder=False),
}


def ema_update(target: torch.nn.Module, online: torch.nn.Module, momentum: float) -> None:
    """``target ← momentum · target + (1 − momentum) · online`` (parameters and float buffers)."""
    with torch.no_grad():
        for t_p, o_p in zip(target.parameters(), online.parameters()):
            t_p.mul_(momentum).add_(o_p.detach(), alpha=1.0 - momentum)
        for t_b, o_b in zip(target.buffers(), online.buffers()):
            t_b.copy_(o_b)


