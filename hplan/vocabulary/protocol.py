"""The small vocabulary through which planners see a world model.

Planners depend on this protocol only (never on a model's internals), so they can be tested
against analytic mock dynamics and swapped freely. All tensors are batched; leading dimensions
are free-form batch dims (e.g. candidates) unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class ActionSpec:
    """What actions look like to a planner.

    Continuous actions are boxes ``[low, high]^dim``; discrete actions are ``n`` categories and are
    fed to the model as one-hot float vectors of length ``n`` (so ``dim == n``).
    """

    dim: int
    discrete: bool = False
    low: float = -1.0
    high: float = 1.0

    @property
    def n(self) -> int:
        return self.dim


@runtime_checkable
class WorldModel(Protocol):
    """encode / predict / predict_high / heads / temporal_distance.

    * ``encode(obs)``: observations ``(B, *obs_shape)`` (raw: uint8 HWC images or float state
      vectors, as the environment returns them) → latents ``(B, D)``. A model with an optional
      ``frame_history = h > 1`` attribute takes ``(B, h, *obs_shape)``, the last ``h``
      observations oldest first (``hplan/vocabulary/frames.py``; the agent keeps them).
    * ``predict(z, actions)``: open-loop rollout. ``z (B, D)``, ``actions (B, H, A)`` →
      ``(B, H, D)``, the predicted latent after each action.
    * ``predict_high(z, codes)``: high-level rollout over subgoal codes. ``z (B, D)``,
      ``codes (B, L, M)`` → ``(B, L, D)``, the predicted latent every ``subgoal_interval`` steps.
    * ``heads(z, actions=None)``: guardrail probabilities ``(..., G)`` that the state (or the
      state-action) leads to a violation within the next step; ``G == len(guardrail_names)``.
      A model with an ensemble of heads also takes ``combine="max"`` (the members' largest
      probability instead of their mean); the planner passes it only when asked to.
    * ``temporal_distance(z, z_goal)``: learned estimate (in low-level steps) of how far ``z`` is
      from ``z_goal``; broadcasts over leading dims. This is the task head.
    """

    latent_dim: int
    action_spec: ActionSpec
    code_dim: int
    subgoal_interval: int
    guardrail_names: tuple[str, ...]

    def encode(self, obs: torch.Tensor) -> torch.Tensor: ...

    def predict(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...

    def predict_high(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor: ...

    def heads(self, z: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor: ...

    def temporal_distance(self, z: torch.Tensor, z_goal: torch.Tensor) -> torch.Tensor: ...
