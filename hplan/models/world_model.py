"""``LatentWorldModel``: the encoder, P_lo, the subgoal level and the heads behind the planners' protocol.

It implements :class:`hplan.vocabulary.protocol.WorldModel` exactly (``encode / predict /
predict_high / heads / temporal_distance`` and the attributes ``latent_dim``, ``action_spec``,
``code_dim``, ``subgoal_interval``, ``guardrail_names``). Everything a checkpoint needs to rebuild
the model is in :meth:`spec`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from hplan.configio import from_mapping, to_mapping
from hplan.models.calibration import GuardrailCalibration
from hplan.models.config import ModelConfig
from hplan.models.decoders import DECODERS
from hplan.models.encoders import build_encoder, encode_sequences
from hplan.models.heads import GuardrailHeads, TemporalDistance
from hplan.models.predictor import ResidualPredictor
from hplan.models.regularizers import REGULARIZERS
from hplan.models.subgoal import SUBGOAL_MODELS
from hplan.vocabulary.frames import sequence_frames
from hplan.vocabulary.protocol import ActionSpec


class NormalizedEncoder(nn.Module):
    """An encoder followed by a parameter-free BatchNorm: every latent dim has unit spread over the data.

    Why BatchNorm rather than LayerNorm: on PointRooms frames differ only by a small agent disc, so
    at initialisation all latents are nearly equal; a per-sample norm keeps that (the EMA pair then
    collapses to one direction within an epoch, measured), while a per-dimension batch norm
    rescales the small differences to unit variance, leaving only dimensional collapse possible
    (which the effective-rank rule watches). Eval mode uses the running statistics.
    """

    def __init__(self, encoder: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.inner = encoder
        self.norm = nn.BatchNorm1d(latent_dim, affine=False, eps=1e-8)

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.inner.set_stats(mean, std)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.norm(self.inner(obs))

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        return self.inner.frame_features(frames)

    def pooled_frame_features(self, sums: torch.Tensor) -> torch.Tensor:
        return self.inner.pooled_frame_features(sums)

    def from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.inner.from_features(features))


class LatentWorldModel(nn.Module):
    """Two-level latent world model (see DESIGN.md, "The idea in one paragraph")."""

    def __init__(self, cfg: ModelConfig, *, obs_kind: str, obs_shape: tuple[int, ...], action_spec: ActionSpec,
                 guardrail_names: tuple[str, ...], env_id: str = "", distance_max_gap: int = 64) -> None:
        super().__init__()
        self.cfg = cfg
        self.obs_kind = obs_kind
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.action_spec = action_spec
        self.guardrail_names = tuple(guardrail_names)
        self.env_id = env_id
        self.latent_dim = cfg.latent_dim
        self.code_dim = cfg.code_dim
        self.subgoal_interval = cfg.subgoal_interval
        self.distance_max_gap = int(distance_max_gap)
        self.frame_history = cfg.frame_history
        self.calibration: GuardrailCalibration | None = None  # conformal thresholds (calibration.json), set on load
        self.input_shape = (self.frame_history, *self.obs_shape) if self.frame_history > 1 else self.obs_shape
        self.encoder = build_encoder(obs_kind, self.input_shape, cfg)
        if REGULARIZERS[cfg.regularizer].normalize_latent:
            self.encoder = NormalizedEncoder(self.encoder, cfg.latent_dim)
        self.predictor = ResidualPredictor(cfg.latent_dim, action_spec.dim, cfg.hidden_dim, cfg.predictor_layers)
        self.subgoal = SUBGOAL_MODELS[cfg.subgoal_model](cfg, action_spec.dim)
        self.guardrail = GuardrailHeads(cfg.latent_dim, cfg.hidden_dim, len(self.guardrail_names),
                                        cfg.guardrail_members)
        self.distance = TemporalDistance(cfg.latent_dim, cfg.hidden_dim, cfg.distance_dim, distance_max_gap)
        self.decoder = DECODERS[obs_kind](self.obs_shape, cfg) if REGULARIZERS[cfg.regularizer].decoder else None
        # Surprise calibration: mean and std of the one-step latent prediction error on held-out data.
        self.register_buffer("surprise_stats", torch.tensor([0.0, 1.0]))
        # Waypoints for the landmark high level: the first `landmark_count` rows are set by training.
        self.register_buffer("landmark_latents", torch.zeros(cfg.landmarks, cfg.latent_dim))
        self.register_buffer("landmark_count", torch.zeros((), dtype=torch.long))
        # Steps the training episodes took between waypoints (inf: not joined); see models/waypoints.py.
        self.register_buffer("landmark_edges", torch.full((cfg.landmarks, cfg.landmarks), float("inf")))

    # ----------------------------------------------------------------- protocol
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Raw observations ``(B, *input_shape)`` → ``(B, D)``; accepts numpy arrays too.

        ``input_shape`` is ``obs_shape``, or ``(frame_history, *obs_shape)`` when the model reads
        a frame history (oldest first; see ``hplan/vocabulary/frames.py``).
        """
        obs = torch.as_tensor(obs, device=self.device)
        if tuple(obs.shape[obs.ndim - len(self.input_shape):]) != self.input_shape:
            raise ValueError(f"encode: expected observations (..., {', '.join(map(str, self.input_shape))}), "
                             f"got {tuple(obs.shape)}" + (" (frame_history > 1: pass the last frames stacked)"
                                                          if self.frame_history > 1 else ""))
        lead = obs.shape[: obs.ndim - len(self.input_shape)]
        z = self.encoder(obs.reshape(-1, *self.input_shape))
        return z.reshape(*lead, self.latent_dim)

    def encode_sequence(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Consecutive frames ``(B, L + frame_history - 1, *obs_shape)`` → latents ``(B, L, D)``.

        Same latents as ``encode`` on each step's stacked history, but every frame is encoded
        once (see ``encode_sequences``); ``hplan.vocabulary.frames.sequence_frames`` gathers the
        input with the episode-start padding.
        """
        frames = torch.as_tensor(frames, device=self.device)
        if tuple(frames.shape[2:]) != self.obs_shape or frames.shape[1] < self.frame_history:
            raise ValueError(f"encode_sequence: expected frames (B, L + {self.frame_history - 1}, "
                             f"{', '.join(map(str, self.obs_shape))}), got {tuple(frames.shape)}")
        return encode_sequences(self.encoder, [frames], self.frame_history)[0]

    def encode_episodes(self, obs: np.ndarray, episodes: np.ndarray, length: int, chunk: int = 8) -> torch.Tensor:
        """Latents ``(E, length, D)`` of the first ``length`` steps of ``episodes`` in ``obs (E_all, T, …)``,
        ``chunk`` episodes at a time (all frames at once would be GBs of images). No grad is
        switched off here: callers that do not train wrap it in ``torch.no_grad()``."""
        parts = np.array_split(np.asarray(episodes), max(1, len(episodes) // chunk))
        return torch.cat([self.encode_sequence(sequence_frames(obs, part, 0, length, self.frame_history))
                          for part in parts])

    def predict(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.predictor.rollout(z, actions.to(z.dtype))

    def predict_high(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Roll P_hi over ``codes (B, L, M)`` (whitened: sample them from N(0, I)) → ``(B, L, D)``."""
        outputs = []
        for i in range(codes.shape[-2]):
            z = self.subgoal.step(z, codes[..., i, :].to(z.dtype))
            outputs.append(z)
        return torch.stack(outputs, dim=-2)

    def heads(self, z: torch.Tensor, actions: torch.Tensor | None = None, combine: str = "mean") -> torch.Tensor:
        """Guardrail probabilities ``(..., G)``; with an ensemble, the members' ``mean`` or ``max``."""
        if self.guardrail.members == 1:
            return torch.sigmoid(self.guardrail_logits(z, actions))
        probs = torch.sigmoid(self.guardrail_member_logits(z, actions))
        return probs.amax(-2) if combine == "max" else probs.mean(-2)

    def guardrail_logits(self, z: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """Guardrail logits ``(..., G)`` (of the members' mean probability); see :meth:`guardrail_member_logits`."""
        return self._read_guardrails(self.guardrail.logits, z, actions)

    def guardrail_member_logits(self, z: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """Per-member logits ``(..., K, G)``; with actions the heads read the predicted next latent ``P_lo(z, a)``.

        Leading dims of ``z`` and ``actions`` broadcast. The predictor is not trained through this
        path (its output is detached), so guardrail labels never shape the dynamics.
        """
        return self._read_guardrails(self.guardrail.member_logits, z, actions)

    def _read_guardrails(self, read: Callable[..., torch.Tensor], z: torch.Tensor,
                         actions: torch.Tensor | None) -> torch.Tensor:
        if actions is None:
            return read(z)
        lead = torch.broadcast_shapes(z.shape[:-1], actions.shape[:-1])
        z = z.expand(*lead, z.shape[-1])
        actions = actions.to(z.dtype).expand(*lead, actions.shape[-1])
        return read(z, self.predictor.step(z, actions).detach())

    def temporal_distance(self, z: torch.Tensor, z_goal: torch.Tensor) -> torch.Tensor:
        return self.distance(z, z_goal)

    def waypoints(self) -> torch.Tensor:
        """``(N, D)`` latents of training observations drawn uniformly (``Refits.pick_waypoints`` in refits.py)."""
        return self.landmark_latents[: int(self.landmark_count)]

    def waypoint_edges(self) -> torch.Tensor | None:
        """``(N, N)`` steps the training data took from waypoint i to j (``inf``: not joined), or None
        when training kept no graph (the planner then joins waypoints by temporal distance)."""
        count = int(self.landmark_count)
        edges = self.landmark_edges[:count, :count]
        off_diagonal = edges[~torch.eye(count, dtype=torch.bool, device=edges.device)]
        return edges if count and bool(torch.isfinite(off_diagonal).any()) else None

    def set_waypoints(self, z: torch.Tensor, edges: torch.Tensor | None = None) -> None:
        """Keep (up to ``cfg.landmarks`` of) the rows of ``z (N, D)`` as the waypoints, with their
        experience graph ``edges (N, N)`` when given."""
        count = min(len(z), self.landmark_latents.shape[0])
        z = z[:count].clone()  # z may be a view of the buffer itself (``self.waypoints()``)
        self.landmark_latents.zero_()
        self.landmark_latents[:count] = z[:count].to(self.landmark_latents)
        self.landmark_count.fill_(count)
        self.landmark_edges.fill_(float("inf"))
        if edges is not None:
            self.landmark_edges[:count, :count] = edges[:count, :count].to(self.landmark_edges)

    # ----------------------------------------------------------------- rebuild
    def spec(self) -> dict[str, Any]:
        """Everything needed to rebuild this model (stored in ``model.pt`` next to the weights)."""
        return {
            "model_config": to_mapping(self.cfg),
            "obs_kind": self.obs_kind,
            "obs_shape": list(self.obs_shape),
            "action_spec": dataclasses.asdict(self.action_spec),
            "guardrail_names": list(self.guardrail_names),
            "env_id": self.env_id,
            "distance_max_gap": self.distance_max_gap,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], source: str = "model.pt") -> "LatentWorldModel":
        cfg = from_mapping(ModelConfig, spec["model_config"], source=source, section="model_config")
        return cls(cfg, obs_kind=spec["obs_kind"], obs_shape=tuple(spec["obs_shape"]),
                   action_spec=ActionSpec(**spec["action_spec"]), guardrail_names=tuple(spec["guardrail_names"]),
                   env_id=spec.get("env_id", ""), distance_max_gap=int(spec.get("distance_max_gap", 64)))
