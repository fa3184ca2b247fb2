"""Heads on the latent: guardrails P(violation at the next step) and the temporal-distance task head.

Both are trained on *detached* latents: they read the representation, never shape it, so a label
budget of a few hundred guardrail labels cannot distort the world model and the collapse
diagnostics measure the JEPA objective alone.

Temporal distance: a quasimetric in the MRN form
``d(x, y) = scale · (‖φ(x) − φ(y)‖ + max_i relu(ψ_i(x) − ψ_i(y)))`` — a symmetric metric part
plus an asymmetric part (for irreversible worlds such as DoorKey). Any such ``d`` obeys the
triangle inequality by construction, which is what makes it a usable planning cost around walls.

Training (``train.distance_objective``, see ``module.py``):

* ``"qrl"`` (default, Quasimetric RL, Wang et al. 2023): *maximise* the distance of random pairs
  (latents shuffled across the batch) through a concave saturating transform, subject to the
  local constraint ``d(z_i, z_j) ≤ j − i`` on every observed within-episode pair (a large-weight
  squared hinge on overestimation). Every data path of length ``L`` from ``x`` to ``y`` bounds
  ``d(x, y) ≤ L`` through the triangle inequality, so the largest ``d`` that the constraints
  allow is the shortest data-path (geodesic) step distance — the one that goes around walls.
* ``"expectile"`` (the earlier head): regress the observed gap ``j − i`` with a low expectile.
  It only ever sees gaps ≤ ``distance_max_gap``, saturates for far pairs and, on PointRooms,
  tracked the geodesic worse than the straight-line distance.
"""

from __future__ import annotations

import torch
from torch import nn



def head_mlp(dim_in: int, hidden: int, dim_out: int, layers: int) -> nn.Sequential:
    """``layers`` hidden SiLU layers: the heads' MLP.

    Why not ReLU: the heads read latents whose scale depends on the regulariser (a SIGReg keypoint
    latent had std 4.6 and entries up to 15), and on such inputs the temporal-distance head's ReLUs
    died within an epoch (0.4 % of its second layer still active; its rank correlation froze from
    then on). A smooth activation keeps a gradient for every unit. (A LayerNorm on the input would
    also fix the scale but destroys low-dimensional latents: it maps a 2-D latent onto two points.)
    """
    mods: list[nn.Module] = []
    width = dim_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    return nn.Sequential(*mods, nn.Linear(width, dim_out))


class GuardrailHeads(nn.Module):
    """One logit per violation name, from ``[z, a, Δ]`` and (action-marginal) from ``z`` alone.

    ``Δ = P_lo(z, a) − z`` is the predicted latent change. It carries what the predictor learned
    from *all* unlabelled transitions — e.g. that pushing into a wall moves nothing — so the head
    needs far fewer labels than one that must infer the wall geometry from ``(z, a)`` alone
    (with 1,000 labels an MLP on the true ``(x, y, vx, vy, a)`` reaches only ~0.9 AUROC for
    wall contact on PointRooms).
    """

    def __init__(self, latent_dim: int, action_dim: int, hidden: int, num_guardrails: int) -> None:
        super().__init__()
        self.num = num_guardrails
        self.state_action = head_mlp(2 * latent_dim + action_dim, hidden, max(num_guardrails, 1), 2)
        self.state = head_mlp(latent_dim, hidden, max(num_guardrails, 1), 2)

    def logits(self, z: torch.Tensor, actions: torch.Tensor | None = None,
               delta: torch.Tensor | None = None) -> torch.Tensor:
        """``z (..., D)``; with ``actions (..., A)`` also ``delta (..., D)`` (same leading dims) → ``(..., G)``."""
        if actions is None:
            out = self.state(z)
        else:
            out = self.state_action(torch.cat([z, actions.to(z.dtype), delta], dim=-1))
        return out[..., : self.num]


class TemporalDistance(nn.Module):
    """MRN quasimetric in low-level steps; broadcasts over leading dims."""

    def __init__(self, latent_dim: int, hidden: int, dim: int, max_gap: int) -> None:
        super().__init__()
        self.sym_dim = max(dim - dim // 4, 1)
        self.embed = head_mlp(latent_dim, hidden, self.sym_dim + max(dim // 4, 1), 2)
        self.scale = float(max_gap)

    def forward(self, z: torch.Tensor, z_goal: torch.Tensor) -> torch.Tensor:
        return self.between(self.embed(z), self.embed(z_goal))

    def between(self, ex: torch.Tensor, eg: torch.Tensor) -> torch.Tensor:
        """Distance between embeddings ``self.embed(z)`` and ``self.embed(z_goal)`` (embed once, pair many)."""
        diff = ex - eg
        sym = torch.sqrt(diff[..., : self.sym_dim].pow(2).sum(-1) + 1e-8)
        asym = torch.relu(diff[..., self.sym_dim:]).amax(-1)
        return self.scale * (sym + asym)
