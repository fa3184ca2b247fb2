"""The head losses shared by the joint training step (:mod:`hplan.models.module`) and the refit
stages (:mod:`hplan.models.refits`): temporal distance and guardrail BCE, both on detached latents."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hplan.models.config import TrainConfig
from hplan.models.heads import TemporalDistance, balanced_bce
from hplan.models.world_model import LatentWorldModel


def expectile_loss(pred: torch.Tensor, target: torch.Tensor, tau: float) -> torch.Tensor:
    """Asymmetric squared loss: under-estimates weigh ``tau``, over-estimates ``1 - tau``."""
    diff = target - pred
    weight = torch.where(diff > 0, tau, 1.0 - tau)
    return (weight * diff.pow(2)).mean()


def distance_loss(cfg: TrainConfig, head: TemporalDistance, zd: torch.Tensor, z_far: torch.Tensor,
                  far_gap: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Temporal-distance loss of ``head`` (the model's distance head) on detached latents
    ``zd (B, W, D)`` and far frames ``z_far (B, D)``.

    Within-episode pairs: every in-window pair ``(i < j)`` (gap ``j − i``) plus ``(z_0, far frame)``.
    ``expectile``: regress the gaps with a low expectile. ``qrl``: push random pairs (all latents
    of the batch against a random permutation of them) apart through the concave, saturating
    ``softplus((offset − d) / max_gap)``, while ``constraint_weight · relu(d − gap)²`` holds every
    within-episode distance at or below its gap (distances in units of ``max_gap``). Returns
    ``(loss, logged parts, d_far)``.
    """
    b, w = zd.shape[:2]
    scale = float(cfg.distance_max_gap)
    e_seq, e_far = head.embed(zd), head.embed(z_far)
    ii, jj = torch.triu_indices(w, w, offset=1, device=zd.device)
    d_win = head.between(e_seq[:, ii], e_seq[:, jj])
    gaps_win = (jj - ii).to(zd.dtype).expand(b, -1)
    d_far = head.between(e_seq[:, 0], e_far)
    d_pos = torch.cat([d_win.flatten(), d_far]) / scale
    gap_pos = torch.cat([gaps_win.flatten(), far_gap]) / scale
    if cfg.distance_objective == "expectile":
        return expectile_loss(d_pos, gap_pos, cfg.distance_expectile), {}, d_far
    e_all = torch.cat([e_seq.flatten(0, 1), e_far])
    perm = torch.randperm(len(e_all), generator=gen, device=gen.device).to(e_all.device)
    d_rand = head.between(e_all, e_all[perm]) / scale
    push = F.softplus(cfg.distance_push_offset / scale - d_rand).mean()
    violation = torch.relu(d_pos - gap_pos).pow(2).mean()
    loss = push + cfg.distance_constraint_weight * violation
    return loss, {"distance_push": push, "distance_violation": violation}, d_far


def guardrail_loss(model: LatentWorldModel, pos_weight: torch.Tensor, z: torch.Tensor, action: torch.Tensor,
                   labels: torch.Tensor, weights: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                   z_next: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of both guardrail heads of ``model``, state-action and state-only (action-marginal), for
    every ensemble member; class-balanced by ``pos_weight`` (and calibrated:
    :func:`~hplan.models.heads.balanced_bce`; all ones when ``train.guardrail_balance`` is off).
    ``weights (N, K)``: each member's bootstrap count of each label (all ones when not given);
    ``mask (N, G)``: which labels a row has (a weakly labelled row has only its weak heads');
    ``z_next``: ``P_lo(z, action)`` when already computed (the refits reuse it across their steps;
    it is detached either way).
    """
    target = labels[:, None, :]
    scale = (weights[..., None] if weights is not None else 1.0) * (mask[:, None, :] if mask is not None else 1.0)
    state_action = (model.guardrail_member_logits(z, action) if z_next is None
                    else model.guardrail.member_logits(z, z_next))
    total = z.new_zeros(())
    for logits in (state_action, model.guardrail_member_logits(z)):
        loss = balanced_bce(logits, target.expand_as(logits), pos_weight, reduction="none")  # (N, K, G)
        total = total + (loss * scale).mean()
    return total
