"""The high level: a learned subgoal abstraction on a k-step clock, and P_hi(z_t, m) → z_{t+k}.

Design (default ``transition_vae``) and why
-------------------------------------------
A subgoal code ``m`` summarises a k-step latent transition ``(z_t, z_{t+k})``: a conditional VAE
with posterior ``q(m | z_t, z_{t+k})``, a *state-conditioned* prior ``p(m | z_t)`` and a residual
predictor ``P_hi(z_t, m) → z_{t+k}``. Three reasons:

* **Reachability is in the prior.** Which k-step moves are possible depends on where you are
  (a wall blocks half of them), so the prior is conditioned on ``z_t``; a fixed N(0, I) prior
  would spend code mass on moves through walls.
* **Planner codes are whitened.** ``predict_high`` takes ``ε`` and uses
  ``m = μ_p(z) + σ_p(z) · ε``, so a high-level planner (MPPI/CEM over codes) samples plain
  N(0, I) codes and every sample is a plausible subgoal from the current state — the search space
  is the same box everywhere, which is what sampling planners need.
* **Cheap and stable.** Trained on detached latents (the high level never shapes the encoder,
  so it cannot open a collapse route), one Gaussian KL, no codebook bookkeeping; a VQ code was
  the alternative but discrete codes need a categorical planner and suffer dead codes on small
  datasets.

The alternative ``macro_action`` follows the published two-level JEPA design (HWM): ``m`` encodes
the chunk of k primitive actions ``a_{t:t+k}`` (posterior ``q(m | a_{t:t+k})``, prior N(0, I)) and
P_hi integrates it. It is closer to the low level's action space but its prior does not know the
walls. Both live in :data:`SUBGOAL_MODELS` behind the same interface (``step``, ``loss``), so a
study can compare them by setting ``[model] subgoal_model``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from hplan.models.config import ModelConfig
from hplan.models.predictor import mlp


def _gaussian_kl(mu_q: torch.Tensor, logstd_q: torch.Tensor, mu_p: torch.Tensor, logstd_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, σ_q) || N(mu_p, σ_p)) per code dimension (last dim kept)."""
    var_q, var_p = torch.exp(2 * logstd_q), torch.exp(2 * logstd_p)
    return logstd_p - logstd_q + (var_q + (mu_q - mu_p).pow(2)) / (2 * var_p) - 0.5


def free_bits_kl(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Batch-mean KL per code dim, each floored at ``free_bits`` nats, summed (Kingma et al. 2016).

    Why: without the floor the code collapses onto the prior early in training (measured on
    PointRooms images: KL 1.8 → 4e-5 nats within two epochs), P_hi then predicts the *mean*
    k-step jump whatever the code, every subgoal the high level proposes sits next to the current
    state, and the hierarchical planner stands still. Below the floor a dim's KL costs nothing, so
    the optimiser has no reason to switch the code off.
    """
    return kl_per_dim.flatten(0, -2).mean(0).clamp_min(free_bits).sum()


class SubgoalModel(nn.Module):
    """Interface: ``step(z, code) → z_{t+k}`` and ``loss(z_t, z_tk, actions) → dict`` with ``loss``."""

    def __init__(self, cfg: ModelConfig, action_dim: int) -> None:
        super().__init__()
        d, h = cfg.latent_dim, cfg.hidden_dim
        self.code_dim = cfg.code_dim
        self.p_hi = mlp(d + cfg.code_dim, h, d, 2)
        nn.init.zeros_(self.p_hi[-1].weight)
        nn.init.zeros_(self.p_hi[-1].bias)

    def jump(self, z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """P_hi on an (unwhitened) code ``m``: residual k-step jump."""
        return z + self.p_hi(torch.cat([z, m], dim=-1))

    def step(self, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """P_hi on a *whitened* code (the planner's N(0, I) sample) from ``z``."""
        mu, logstd = self.prior_code(z)
        return self.jump(z, mu + torch.exp(logstd) * code)

    def prior_code(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std of the code prior at ``z`` (N(0, I) unless a subclass conditions it)."""
        zeros = z.new_zeros(*z.shape[:-1], self.code_dim)
        return zeros, zeros

    def posterior_code(self, z_t: torch.Tensor, z_tk: torch.Tensor,
                       actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std of the code that describes the k-step transition ``z_t → z_tk`` by ``actions``."""
        raise NotImplementedError

    def loss(self, z_t: torch.Tensor, z_tk: torch.Tensor, actions: torch.Tensor, beta: float,
             generator: torch.Generator | None = None, free_bits: float = 0.0) -> dict[str, torch.Tensor]:
        """Free-bits ELBO of the jump ``z_t → z_tk``: ``loss`` (to minimise), ``pred`` and ``kl``."""
        mu_q, logstd_q = self.posterior_code(z_t, z_tk, actions)
        mu_p, logstd_p = self.prior_code(z_t)
        return self._elbo(z_t, z_tk, mu_q, logstd_q, mu_p, logstd_p, beta, generator, free_bits)

    def _elbo(self, z_t: torch.Tensor, z_tk: torch.Tensor, mu_q: torch.Tensor, logstd_q: torch.Tensor,
              mu_p: torch.Tensor, logstd_p: torch.Tensor, beta: float,
              generator: torch.Generator | None, free_bits: float) -> dict[str, torch.Tensor]:
        eps = torch.randn(mu_q.shape, device=mu_q.device, dtype=mu_q.dtype, generator=generator)
        m = mu_q + torch.exp(logstd_q) * eps
        pred = (self.jump(z_t, m) - z_tk).pow(2).sum(-1).mean()
        kl_dims = _gaussian_kl(mu_q, logstd_q, mu_p, logstd_p)
        return {"loss": pred + beta * free_bits_kl(kl_dims, free_bits), "pred": pred, "kl": kl_dims.sum(-1).mean()}


class TransitionVAE(SubgoalModel):
    """Code of ``(z_t, z_{t+k})`` with a state-conditioned prior (see the module docstring)."""

    def __init__(self, cfg: ModelConfig, action_dim: int) -> None:
        super().__init__(cfg, action_dim)
        d, h, m = cfg.latent_dim, cfg.hidden_dim, cfg.code_dim
        self.posterior = mlp(2 * d, h, 2 * m, 2)
        self.prior = mlp(d, h, 2 * m, 2)

    def prior_code(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logstd = self.prior(z).chunk(2, dim=-1)
        return mu, logstd.clamp(-5.0, 2.0)

    def posterior_code(self, z_t, z_tk, actions):
        mu, logstd = self.posterior(torch.cat([z_t, z_tk], dim=-1)).chunk(2, dim=-1)
        return mu, logstd.clamp(-5.0, 2.0)


class MacroActionVAE(SubgoalModel):
    """Code of the k primitive actions ``a_{t:t+k}`` with an N(0, I) prior (HWM-style)."""

    def __init__(self, cfg: ModelConfig, action_dim: int) -> None:
        super().__init__(cfg, action_dim)
        self.posterior = mlp(cfg.subgoal_interval * action_dim, cfg.hidden_dim, 2 * cfg.code_dim, 2)

    def posterior_code(self, z_t, z_tk, actions):
        mu, logstd = self.posterior(actions.flatten(-2)).chunk(2, dim=-1)
        return mu, logstd.clamp(-5.0, 2.0)


SUBGOAL_MODELS: dict[str, Callable[[ModelConfig, int], SubgoalModel]] = {
    "transition_vae": TransitionVAE,
    "macro_action": MacroActionVAE,
}
"""``[model] subgoal_model`` → class. Add a variant here to make it selectable in studies."""
