"""Heads on the latent: guardrails P(violation at the next step) and the temporal-distance task head.

Both are trained on *detached* latents: they read the representation, never shape it, so a label
budget of a few hundred guardrail labels cannot distort the world model and the collapse
diagnostics measure the JEPA objective alone.

Temporal distance: a quasimetric in the MRN form
``d(x, y) = scale · (‖φ(x) − φ(y)‖ + max_i relu(ψ_i(x) − ψ_i(y)))`` — a symmetric metric part
plus an asymmetric part (for irreversible worlds such as DoorKey). Any such ``d`` obeys the
triangle inequality by construction, which is what makes it a usable planning cost around walls.

Training (``train.distance_objective``, see ``losses.py``):

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
import torch.nn.functional as F
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


def positive_weight(rate: torch.Tensor) -> torch.Tensor:
    """Class-balancing weight of the positives, ``(1 - rate) / rate`` kept within [1, 100]."""
    rate = torch.as_tensor(rate, dtype=torch.float32).clamp(1e-3, 1.0)
    return ((1 - rate) / rate).clamp(1.0, 100.0)


def balanced_bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor,
                 reduction: str = "mean") -> torch.Tensor:
    """BCE with positives weighted by ``pos_weight``, applied to ``logit + log w``.

    Balanced, yet calibrated: positives weighted by ``w`` move the optimal logit up by ``log w``
    (the odds are multiplied by ``w``), so shifting the logit by ``log w`` inside the loss lets the
    head itself learn the prior-corrected logit. The ranking of balanced training is kept, and the
    probabilities the planner thresholds and penalises are not inflated (four rooms, wall contact
    at a 20 % base rate: balanced probabilities of 0.5 meant 0.2).
    """
    return F.binary_cross_entropy_with_logits(logits + torch.log(pos_weight), target, pos_weight=pos_weight,
                                              reduction=reduction)


class GuardrailHeads(nn.Module):
    """One logit per violation name: from the predicted next latent ``P_lo(z, a)`` and
    (action-marginal) from ``z`` alone.

    Why the predicted next latent and not ``[z, a]``: a violation "at the next step" is mostly a
    property of where the step ends (in a zone, pressed against a wall), and the predictor, trained
    on *all* unlabelled transitions, already maps ``(z, a)`` there; the head then only has to learn a
    function of one latent from the few labels. Measured on the four-rooms keypoint latent with
    1,000 random labels (held-out wall-contact AUROC, 3 label draws): ``[z, a, Δ]`` 0.833,
    ``z + Δ`` 0.873, and 0.885 with the refit's stronger weight decay. (With 40,000 labels the
    ``[z, a, Δ]`` head reaches 0.979: the latent carries the information; the labels are scarce.)
    The labels, not the latent, set that limit: the same MLP on the *true* state and action,
    standardised, reaches 0.98 with all 100,000 labels but 0.80 with 1,000 (0.93 with 5,000;
    ``benchmarks/guardrail_label_ceiling.py``) — contact is a sharp function of where the walls are,
    and 1,000 random transitions (200 contacts) sample the wall map thinly. Handed the physics'
    unobstructed next position and the position alone, 0.93 with 1,000.

    What breaks that ceiling is labelling the other transitions without asking anyone: a contact
    leaves the point short of where free motion would have carried it, and a position-blind model of
    free motion exposes that (:mod:`hplan.data.motion_labels`). With ``[train] guardrail_weak_labels
    = ["wall_contact"]`` the last refit adds 50,000 training transitions with their weak labels
    (threshold matched to the 1,000 real labels): held-out wall AUROC 0.96 (four rooms, 200k image
    transitions), from a proxy that alone ranks held-out contacts at 0.97.

    Ensembles (``members`` > 1): independently initialised heads, each refitted on its own bootstrap
    resample of the labels; the planner heeds their mean or their largest probability
    (``[guardrails] members``). Why: a planner *optimises against* its heads, so it finds the places
    where a head is wrong, and a zone corner a head rounds off is exactly where the shortest path
    goes. Zones, one head (5,000 labels), 50 guarded episodes: 22 zone entries, the entering step
    predicted at median p 0.028 (four more heads trained offline on bootstrap resamples put 68 % of
    those entries above 0.3). Five heads, their mean at penalty 5: zone entered in 24 % of the
    episodes (one head: 42 %) at 86 % success; their largest at penalty 10: 2 %, but 32 % success.
    """

    def __init__(self, latent_dim: int, hidden: int, num_guardrails: int, members: int = 1) -> None:
        super().__init__()
        self.num = num_guardrails
        self.members = members
        width = max(num_guardrails, 1)
        self.state_action = head_mlp(latent_dim, hidden, width, 2)
        self.state = head_mlp(latent_dim, hidden, width, 2)
        # Members 1..K-1 of an ensemble (``[model] guardrail_members``); member 0 keeps the names above,
        # so single-head checkpoints load unchanged.
        self.extra_state_action = nn.ModuleList(head_mlp(latent_dim, hidden, width, 2) for _ in range(members - 1))
        self.extra_state = nn.ModuleList(head_mlp(latent_dim, hidden, width, 2) for _ in range(members - 1))
        # Input standardisation, set from the labelled latents at each refit (``set_input_stats``):
        # a latent's scale depends on the regulariser and the epoch (a VICReg latent had std 0.14
        # after one epoch), and with weight decay an unscaled head then stayed constant (AUROC 0.5).
        self.register_buffer("in_mean", torch.zeros(latent_dim))
        self.register_buffer("in_std", torch.ones(latent_dim))

    def set_input_stats(self, z: torch.Tensor) -> None:
        self.in_mean.copy_(z.mean(0))
        self.in_std.copy_(z.std(0).clamp_min(1e-6))

    def member_logits(self, z: torch.Tensor, z_next: torch.Tensor | None = None) -> torch.Tensor:
        """``z (..., D)`` → ``(..., K, G)``, one row per ensemble member; with ``z_next`` (the
        predicted next latent, same shape) the state-action logits, else the action-marginal ones."""
        nets, x = self._inputs(z, z_next)
        return torch.stack([net(x)[..., : self.num] for net in nets], dim=-2)

    def logits(self, z: torch.Tensor, z_next: torch.Tensor | None = None) -> torch.Tensor:
        """``(..., G)``: the logit of the members' mean probability (a single head's own logit)."""
        if self.members == 1:  # the planner's hot path: no stacking
            nets, x = self._inputs(z, z_next)
            return nets[0](x)[..., : self.num]
        return torch.logit(torch.sigmoid(self.member_logits(z, z_next)).mean(-2), eps=1e-7)

    def _inputs(self, z: torch.Tensor, z_next: torch.Tensor | None) -> tuple[list[nn.Module], torch.Tensor]:
        nets = [self.state, *self.extra_state] if z_next is None else [self.state_action, *self.extra_state_action]
        return nets, ((z if z_next is None else z_next) - self.in_mean) / self.in_std


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
