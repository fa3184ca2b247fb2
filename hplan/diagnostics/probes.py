"""Linear probes: how much of the true state a latent carries, linearly, on held-out data.

A ridge regression on standardised latents (closed form, float64). Standardising makes the probe
blind to the latent's scale, so scale collapse is left to ``std_mean`` and the probe measures
information only; the small ridge keeps it stable when dimensions are redundant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LinearProbe:
    weight: torch.Tensor  # (D, P)
    bias: torch.Tensor  # (P,)
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return ((z.double() - self.mean) / self.std) @ self.weight + self.bias


@torch.no_grad()
def fit_linear_probe(z: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> LinearProbe:
    """Ridge regression ``y ≈ standardise(z) · W + b`` (``ridge`` relative to the sample count)."""
    z, y = z.detach().double(), y.detach().double()
    mean, std = z.mean(0), z.std(0).clamp_min(1e-12)
    x = (z - mean) / std
    y_mean = y.mean(0)
    gram = x.T @ x + ridge * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype)
    weight = torch.linalg.solve(gram, x.T @ (y - y_mean))
    return LinearProbe(weight, y_mean, mean, std)


@torch.no_grad()
def r2_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Coefficient of determination averaged over output columns (1 = perfect, ≤ 0 = no better than the mean)."""
    pred, y = pred.double(), y.double()
    sse = (pred - y).pow(2).sum(0)
    sst = (y - y.mean(0)).pow(2).sum(0).clamp_min(1e-12)
    return float((1.0 - sse / sst).mean())


def heldout_probe_r2(z_fit: torch.Tensor, y_fit: torch.Tensor, z_test: torch.Tensor, y_test: torch.Tensor) -> float:
    """Fit on one split, score R² on the other."""
    return r2_score(fit_linear_probe(z_fit, y_fit)(z_test), y_test)
