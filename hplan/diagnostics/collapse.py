"""Collapse metrics of a batch of latents, and the rule that flags a collapsed run.

Metrics (DESIGN.md "collapse"), computed on ``z (N, D)``:

* ``std_min`` / ``std_mean``: per-dimension standard deviation, smallest and mean;
* ``offdiag_corr``: mean |off-diagonal correlation| between dimensions (1 = all dims redundant);
* ``effective_rank``: ``exp(H(p))`` with ``p`` the normalised singular values of the centred
  ``z`` (1 … D; Roy & Vetterli 2007);
* ``nn_diversity``: mean distance to the nearest *other* sample divided by the mean pairwise
  distance — a scale-free spread: near 0 when samples pile onto a few points;
* ``probe_r2`` (from :mod:`hplan.diagnostics.probes`): held-out linear-probe R² of the true position.

The collapse rule (:class:`CollapseRule`, used by ``hplan inspect`` and the training callback):
a run is **COLLAPSED** when its representation loss (``train/jepa_loss``) fell from the first to
the last epoch *and*, at the last epoch, any of

1. ``effective_rank < rank_fraction · latent_dim`` (dimensional collapse),
2. ``std_mean < std_floor`` (the latent shrank towards a point),
3. ``probe_r2 < probe_floor`` (the latent no longer carries the position).

The loss condition is what separates collapse from a model that simply never learned: collapse
is the optimiser *succeeding* at the wrong objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from hplan.configio import meta

COLLAPSE_METRICS = ("std_min", "std_mean", "offdiag_corr", "effective_rank", "nn_diversity")


@torch.no_grad()
def collapse_metrics(z: torch.Tensor) -> dict[str, float]:
    """The five latent-only collapse metrics of ``z (N, D)`` (N ≥ 2)."""
    z = z.detach().double()
    n, d = z.shape
    centred = z - z.mean(0)
    std = centred.pow(2).sum(0).div(max(n - 1, 1)).sqrt()
    normed = centred / std.clamp_min(1e-12)
    corr = normed.T @ normed / max(n - 1, 1)
    off = corr - torch.diag(torch.diagonal(corr))
    offdiag = off.abs().sum().item() / max(d * (d - 1), 1)
    sv = torch.linalg.svdvals(centred)
    total = sv.sum()
    if total <= 1e-12:
        rank = 1.0
    else:
        p = sv / total
        p = p[p > 0]
        rank = math.exp(float(-(p * p.log()).sum()))
    dist = torch.cdist(z, z)
    mean_pair = dist.sum() / max(n * (n - 1), 1)
    dist.fill_diagonal_(float("inf"))
    nn = dist.min(1).values.mean()
    diversity = float(nn / mean_pair) if mean_pair > 1e-12 else 0.0
    return {"std_min": float(std.min()), "std_mean": float(std.mean()), "offdiag_corr": float(offdiag),
            "effective_rank": rank, "nn_diversity": diversity}


@dataclass(frozen=True)
class CollapseRule:
    """Thresholds of the collapse flag (see the module docstring)."""

    rank_fraction: float = field(default=0.1, metadata=meta("collapsed if effective rank < this · latent_dim", gt=0, le=1))
    std_floor: float = field(default=5e-2, metadata=meta("collapsed if mean per-dim std < this", ge=0))
    probe_floor: float = field(default=0.5, metadata=meta("collapsed if held-out probe R² < this", le=1))
    loss_key: str = field(default="train/jepa_loss", metadata=meta("the representation loss that must have fallen"))

    def describe(self) -> str:
        return (f"collapsed when {self.loss_key} fell and, at the last epoch, effective_rank < "
                f"{self.rank_fraction:g}·latent_dim, std_mean < {self.std_floor:g} or probe_r2 < {self.probe_floor:g}")


@dataclass(frozen=True)
class Verdict:
    """A flag over a run with the signs that raised it; subclasses name the flag (``FLAG``) and what
    is judged (``SUBJECT``, printed before the label when set)."""

    flagged: bool
    reasons: tuple[str, ...]

    FLAG = "FLAGGED"
    SUBJECT = ""

    @property
    def label(self) -> str:
        return self.FLAG if self.flagged else "healthy"

    def describe(self) -> str:
        head = f"{self.SUBJECT} {self.label}" if self.SUBJECT else self.label
        return f"{head}: {'; '.join(self.reasons)}" if self.reasons else head


@dataclass(frozen=True)
class CollapseVerdict(Verdict):
    FLAG = "COLLAPSED"

    @property
    def collapsed(self) -> bool:
        return self.flagged


def collapse_verdict(history: Sequence[Mapping[str, Any]], latent_dim: int,
                     rule: CollapseRule = CollapseRule()) -> CollapseVerdict:
    """Apply :class:`CollapseRule` to per-epoch rows (``metrics.csv``; keys ``val/<metric>``)."""
    rows = [r for r in history if finite_number(r.get(rule.loss_key)) is not None]
    if not rows:
        return CollapseVerdict(False, ("no epochs with a training loss yet",))
    first, last = finite_number(rows[0][rule.loss_key]), finite_number(rows[-1][rule.loss_key])
    final = rows[-1]
    signs = []
    rank = finite_number(final.get("val/effective_rank"))
    if rank is not None and rank < rule.rank_fraction * latent_dim:
        signs.append(f"effective rank {rank:.2f} < {rule.rank_fraction:g}·{latent_dim}")
    std = finite_number(final.get("val/std_mean"))
    if std is not None and std < rule.std_floor:
        signs.append(f"mean std {std:.2e} < {rule.std_floor:g}")
    r2 = finite_number(final.get("val/probe_r2"))
    if r2 is not None and r2 < rule.probe_floor:
        signs.append(f"probe R² {r2:.3f} < {rule.probe_floor:g}")
    loss_fell = len(rows) >= 2 and last < first
    if signs and loss_fell:
        return CollapseVerdict(True, (f"loss fell {first:.4g} → {last:.4g}", *signs))
    if signs:
        return CollapseVerdict(False, (f"loss did not fall ({first:.4g} → {last:.4g}); weak but not collapsed",
                                       *signs))
    return CollapseVerdict(False, ())


def finite_number(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing, not a number or NaN (a metric not logged)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out
