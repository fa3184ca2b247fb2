"""The Lightning module: one training step = JEPA rollout loss + regulariser + high level + heads.

Loss of one batch (window ``o_0 … o_{W-1}``, actions ``a_0 … a_{W-2}``)::

    z_t      = E(o_t)                                  online encoder, all frames at once
    ẑ_{1..H} = P_lo rolled open-loop from z_0           multi-step JEPA loss vs targets z̄_{1..H}
    z̄_t      = z_t | sg(z_t) | EMA-encoder(o_t)        per regulariser (see regularizers.py)
    jepa     = pred_weight · mean ‖ẑ − z̄‖² + penalty (+ recon for the baseline)
    high     = subgoal ELBO on (sg z_0, sg z_k, a_{0:k})
    distance = QRL: push random pairs apart (concave, saturating) s.t. d ≤ gap on within-episode
               pairs (large squared hinge); or the earlier expectile regression of step gaps (sg latents)
    guard    = BCE of guardrail heads on the labelled subset (sg latents, class-balanced)

``train/jepa_loss`` is the representation loss the collapse rule watches. Per epoch the module
logs ``val/loss`` (total validation loss: the metric for early stopping and Optuna pruning) and
the diagnostics ``val/<collapse metric>``, ``val/probe_r2``, ``val/probe_r2_pred`` (the probe on
latents predicted ``rollout_horizon`` steps ahead), ``val/probe_r2_pred_delta`` (the same on the
predicted displacement: near zero for a predictor that ignores its actions), ``val/auroc_<guardrail>``,
``val/distance_spearman``, ``val/surprise_*`` and the high level's ``val/high_*``
(:mod:`hplan.diagnostics.high_level`, on whole validation episodes).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Callable

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F

from hplan.data.motion_labels import balanced_threshold
from hplan.device import torch_threads
from hplan.diagnostics.collapse import collapse_metrics
from hplan.diagnostics.high_level import EpisodeLatents, high_level_metrics
from hplan.diagnostics.probes import fit_linear_probe, r2_score
from hplan.metrics.scores import auroc, spearman
from hplan.models.config import ModelConfig, TrainConfig
from hplan.models.data import DatasetInfo
from hplan.models.encoders import encode_sequences
from hplan.models.heads import balanced_bce, positive_weight
from hplan.models.predictor import mlp
from hplan.models.regularizers import REGULARIZERS, ema_update
from hplan.models.waypoints import draw_waypoints, experience_edges, nearest_waypoint
from hplan.models.world_model import LatentWorldModel
from hplan.seeding import derive_seed

FROZEN_EPISODES = 512
"""Training episodes whose frozen latents the head / predictor refits draw their windows from."""

HIGH_LEVEL_EPISODES = 128
"""Validation episodes the high-level diagnostics encode whole, each epoch."""

DIAGNOSTIC_SAMPLES = 2048
"""Latents used for the collapse metrics (subsampled from the validation windows)."""


def expectile_loss(pred: torch.Tensor, target: torch.Tensor, tau: float) -> torch.Tensor:
    """Asymmetric squared loss: under-estimates weigh ``tau``, over-estimates ``1 - tau``."""
    diff = target - pred
    weight = torch.where(diff > 0, tau, 1.0 - tau)
    return (weight * diff.pow(2)).mean()


@dataclass(frozen=True)
class FrozenLatents:
    """Detached latents of whole training episodes, for refitting heads that read them."""

    z: torch.Tensor        # (E, L, D)
    action: torch.Tensor   # (E, L - 1, A)
    valid: torch.Tensor    # (E,) real observations per episode (valid transitions + 1)
    window: int            # training window length
    pos: torch.Tensor | None = None  # (E, L, P) true positions (diagnostics only), on the CPU

    def window_of(self, episode: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """``(B, window, D)`` latents of the windows starting at ``start``."""
        return self.z[episode[:, None], start[:, None] + torch.arange(self.window, device=self.z.device)]


class WorldModelModule(pl.LightningModule):
    """Trains a :class:`LatentWorldModel`; ``self.model`` is what gets saved to ``model.pt``."""

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, info: DatasetInfo, seed: int) -> None:
        super().__init__()
        self.model_cfg, self.train_cfg, self.seed = model_cfg, train_cfg, seed
        self.model = LatentWorldModel(model_cfg, obs_kind=info.obs_kind, obs_shape=info.obs_shape,
                                      action_spec=info.action_spec, guardrail_names=info.guardrail_names,
                                      env_id=info.env_id, distance_max_gap=train_cfg.distance_max_gap)
        if info.state_mean is not None:
            stats = torch.as_tensor(info.state_mean), torch.as_tensor(info.state_std)
            self.model.encoder.set_stats(*stats)
            if self.model.decoder is not None:
                self.model.decoder.set_stats(*stats)
        self.reg = REGULARIZERS[model_cfg.regularizer]
        self.target_encoder = None
        if self.reg.targets == "ema":
            self.target_encoder = copy.deepcopy(self.model.encoder).requires_grad_(False)
        self.idm = None
        if model_cfg.regularizer == "vicreg" and train_cfg.vicreg_idm > 0:
            self.idm = mlp(2 * model_cfg.latent_dim, model_cfg.hidden_dim, info.action_spec.dim, 1)
        rate = torch.as_tensor(info.label_positive_rate, dtype=torch.float32)
        balance = positive_weight(rate) if train_cfg.guardrail_balance else torch.ones_like(rate)
        self.register_buffer("pos_weight", balance)
        self._val: dict[str, list[Any]] = {}
        self._weak_agreement: dict[str, float] = {}  # weak labels' AUROC on the labelled subset, logged per epoch
        self._high: dict[str, float] = {}  # high-level diagnostics of the epoch (on validation episodes)

    # ------------------------------------------------------------------ losses
    def _generator(self, tag: str) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, tag, self.global_step))
        return gen

    def _losses(self, batch: dict[str, torch.Tensor], tag: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        cfg, mcfg = self.train_cfg, self.model_cfg
        model = self.model
        obs_seq, action = batch["obs_seq"], batch["action"]
        hist = model.frame_history
        horizon, k = cfg.rollout_horizon, mcfg.subgoal_interval
        sequences = [obs_seq, batch["far_seq"]] + ([batch["lab_seq"]] if "lab_seq" in batch else [])
        z_seq, z_far, *z_lab = encode_sequences(model.encoder, sequences, hist)
        z_far = z_far[:, 0]
        z_lab = z_lab[0][:, 0] if z_lab else z_far[:0]
        b, w = z_seq.shape[:2]

        if self.reg.targets == "ema":
            with torch.no_grad():
                targets = encode_sequences(self.target_encoder, [obs_seq[:, 1:horizon + hist]], hist)[0]
        elif self.reg.targets == "stopgrad":
            targets = z_seq[:, 1:horizon + 1].detach()
        else:
            targets = z_seq[:, 1:horizon + 1]
        start = z_seq[:, 0] if self.reg.prediction_shapes_encoder else z_seq[:, 0].detach()
        pred = model.predictor.rollout(start, action[:, :horizon])
        losses: dict[str, torch.Tensor] = {"pred": cfg.pred_weight * (pred - targets).pow(2).mean()}
        gen = self._generator(tag)
        losses.update(self.reg.penalty(z_seq.flatten(0, 1), cfg, gen))
        if mcfg.regularizer == "vicreg" and cfg.vicreg_smooth > 0:
            losses["smooth"] = cfg.vicreg_smooth * (z_seq[:, 1:] - z_seq[:, :-1]).pow(2).mean()
        if self.idm is not None:
            guess = self.idm(torch.cat([z_seq[:, :-1], z_seq[:, 1:]], dim=-1))
            losses["idm"] = cfg.vicreg_idm * F.mse_loss(guess, action)
        if model.decoder is not None:
            flat = obs_seq[:, hist - 1:].flatten(0, 1)  # the current frame of each step
            losses["recon"] = cfg.recon_weight * F.mse_loss(model.decoder(z_seq.flatten(0, 1)), model.decoder.target(flat))
        jepa = sum(losses.values())

        zd = z_seq.detach()
        high = model.subgoal.loss(zd[:, 0], zd[:, k], action[:, :k], cfg.subgoal_beta, gen, cfg.subgoal_free_bits)
        dist, dist_parts, d_far = self.distance_loss(zd, z_far.detach(), batch["gap"], gen)
        total = jepa + high["loss"] + dist
        out = {"jepa_loss": jepa, "pred_loss": losses["pred"], "subgoal_loss": high["loss"], "subgoal_kl": high["kl"],
               "distance_loss": dist, **dist_parts,
               **{f"reg_{name}": v for name, v in losses.items() if name != "pred"}}
        if len(z_lab) and self.model.guardrail_names:  # no heads (MiniGrid FourRooms, OGBench): the mean of nothing is NaN
            guard = self.guardrail_loss(z_lab.detach(), batch["lab_action"], batch["lab_violations"])
            total = total + guard
            out["guardrail_loss"] = guard
        out["loss"] = total
        extras = {"z_seq": zd, "pred": pred.detach(), "z_far": z_far.detach(), "d_far": d_far.detach()}
        return out, extras

    def distance_loss(self, zd: torch.Tensor, z_far: torch.Tensor, far_gap: torch.Tensor,
                      gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Temporal-distance loss on detached latents ``zd (B, W, D)`` and far frames ``z_far (B, D)``.

        Within-episode pairs: every in-window pair ``(i < j)`` (gap ``j − i``) plus ``(z_0, far frame)``.
        ``expectile``: regress the gaps with a low expectile. ``qrl``: push random pairs (all latents
        of the batch against a random permutation of them) apart through the concave, saturating
        ``softplus((offset − d) / max_gap)``, while ``constraint_weight · relu(d − gap)²`` holds every
        within-episode distance at or below its gap (distances in units of ``max_gap``). Returns
        ``(loss, logged parts, d_far)``.
        """
        cfg, head = self.train_cfg, self.model.distance
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

    def guardrail_loss(self, z: torch.Tensor, action: torch.Tensor, labels: torch.Tensor,
                       weights: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                       z_next: torch.Tensor | None = None) -> torch.Tensor:
        """BCE of both guardrail heads, state-action and state-only (action-marginal), for every
        ensemble member; class-balanced (and calibrated: :func:`~hplan.models.heads.balanced_bce`)
        unless ``train.guardrail_balance`` is off. ``weights (N, K)``: each member's bootstrap count
        of each label (all ones when not given); ``mask (N, G)``: which labels a row has (a weakly
        labelled row has only its weak heads'); ``z_next``: ``P_lo(z, action)`` when already computed
        (the refits reuse it across their steps; it is detached either way).
        """
        target = labels[:, None, :]
        scale = (weights[..., None] if weights is not None else 1.0) * (mask[:, None, :] if mask is not None else 1.0)
        state_action = (self.model.guardrail_member_logits(z, action) if z_next is None
                        else self.model.guardrail.member_logits(z, z_next))
        total = z.new_zeros(())
        for logits in (state_action, self.model.guardrail_member_logits(z)):
            loss = balanced_bce(logits, target.expand_as(logits), self.pos_weight, reduction="none")  # (N, K, G)
            total = total + (loss * scale).mean()
        return total

    def fit_guardrails(self) -> None:
        """Refit the guardrail heads on the whole labelled subset, on the current frozen latent.

        The per-step joint updates see each label only a few times per epoch and chase a latent that
        is still moving; this full-batch pass (``guardrail_fit_steps`` Adam steps on ≤ label_budget
        rows, a few ms each) makes the heads match the latent the epoch ends with. With
        ``guardrail_weak_labels``, in the last epoch, ``guardrail_weak_rows`` unlabelled transitions
        join the labelled rows with weak labels (:meth:`weak_rows`), and the heads are refitted afresh
        on minibatches: once, because it costs ~50 s on one CPU thread (four rooms, 200k transitions),
        and only the last epoch's heads are kept.
        """
        data = getattr(self.trainer, "datamodule", None)
        labelled = getattr(getattr(data, "dataset", None), "labelled", None)
        steps = self.train_cfg.guardrail_fit_steps
        if labelled is None or not len(labelled[0]) or steps == 0 or not self.model.guardrail_names:
            return
        ds = data.dataset
        z, action = self._encode_transitions(ds, *labelled)
        labels = torch.from_numpy(ds.violations[labelled].astype("float32")).to(self.device)
        self.model.guardrail.set_input_stats(z)
        # The weak stage is large-batch work (encoding 50,000 transitions, 2,000 steps of 1,024 rows):
        # there every core helps (2 cores: 1.8x on the encoding, 1.3x on the steps), where training's
        # small batches run best on the configured threads.
        many = bool(self.train_cfg.guardrail_weak_labels) and self.device.type == "cpu"
        with torch_threads(os.cpu_count() if many else None):
            self._refit_guardrails(data, z, action, labels, labelled, steps)

    def _refit_guardrails(self, data: Any, z: torch.Tensor, action: torch.Tensor, labels: torch.Tensor,
                          labelled: tuple[np.ndarray, np.ndarray], steps: int) -> None:
        """The refit of :meth:`fit_guardrails` from the labelled rows' latents, actions and labels."""
        mask = torch.ones_like(labels)
        weak = self.weak_rows(data, data.dataset.violations[labelled], labelled)
        if weak is not None:
            z, action, labels, mask = (torch.cat(pair) for pair in zip((z, action, labels, mask), weak))
            steps = self.train_cfg.guardrail_weak_steps
            # Afresh: heads fitted to the 1,000 labels alone (weight decay 1e-2) and then moved by
            # the weak rows stayed below heads trained from a new initialisation (four rooms, held-out
            # wall AUROC 0.910 against 0.946, both on the frozen episodes' rows).
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(self.seed, "guardrail-weak-init"))
                for layer in self.model.guardrail.modules():
                    if isinstance(layer, torch.nn.Linear):
                        layer.reset_parameters()
        batch = self.train_cfg.guardrail_weak_batch if weak is not None else len(z)
        weights = None
        if self.model.guardrail.members > 1:  # member 0: every label once; the others: bootstrap resamples
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "guardrail-bootstrap", self.global_step))
            weights = torch.poisson(torch.ones(len(z), self.model.guardrail.members), generator=gen)
            weights[:, 0] = 1.0
            weights = weights.to(self.device)
        with torch.no_grad():
            z_next = torch.cat([self.model.predictor.step(zc, ac) for zc, ac in zip(z.split(8192), action.split(8192))])
        decay = self.train_cfg.guardrail_weak_weight_decay if weak is not None else self.train_cfg.guardrail_weight_decay
        optim = torch.optim.Adam(self.model.guardrail.parameters(), lr=self.train_cfg.guardrail_lr, weight_decay=decay)
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, "guardrail-rows", self.global_step))
        with torch.enable_grad():
            for _ in range(steps):
                rows = (torch.randint(len(z), (batch,), generator=gen, device=self.device) if batch < len(z)
                        else slice(None))
                loss = self.guardrail_loss(z[rows], action[rows], labels[rows],
                                           None if weights is None else weights[rows], mask[rows], z_next[rows])
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()

    def _encode_transitions(self, ds: Any, episode: np.ndarray, step: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (no grad) and actions of the transitions ``(episode, step)`` of the training data."""
        with torch.no_grad():
            frames = torch.from_numpy(ds.sequence(episode, step, 1))
            z = torch.cat([self.model.encode_sequence(chunk)[:, 0] for chunk in frames.split(512)])
        return z, torch.from_numpy(ds.action[episode, step]).to(self.device)

    def weak_rows(self, data: Any, labels: np.ndarray,
                  labelled: tuple[np.ndarray, np.ndarray]) -> tuple[torch.Tensor, ...] | None:
        """``(z, action, labels, mask)`` of ``guardrail_weak_rows`` training transitions drawn uniformly
        (seeded), weakly labelled for the ``guardrail_weak_labels`` heads: a transition is a violation
        when its free-motion residual exceeds the threshold that best matches the labelled subset
        (``labels`` of the ``labelled`` rows). ``None`` when off, or before the last epoch.

        Uniform rows, not the frozen episodes of the other refits: 512 whole episodes cover the wall
        map more thinly than as many transitions drawn from all of them (four rooms, held-out wall
        AUROC 0.946 against 0.960). Encoding them costs ~20 s on one thread (50,000 rows); fewer
        rows cost AUROC (offline, 25,600: 0.955; 12,800: 0.945).
        """
        names, residual = self.train_cfg.guardrail_weak_labels, getattr(data.dataset, "motion_residual", None)
        if not names or residual is None or self.current_epoch < (self.trainer.max_epochs or 1) - 1:
            return None
        # Finite residuals are exactly the valid, tracked transitions of training episodes
        # (EpisodeDataModule fits and scores the free-motion model there only).
        candidates = np.flatnonzero(np.isfinite(residual).reshape(-1))
        labelled_res = residual[labelled]
        scored = np.isfinite(labelled_res)  # NaN: the tracker found no agent in that frame
        if not len(candidates) or not scored.any():
            return None
        rng = np.random.default_rng(derive_seed(self.seed, "guardrail-weak-rows"))
        flat = np.sort(rng.choice(candidates, min(self.train_cfg.guardrail_weak_rows, len(candidates)), replace=False))
        episode, step = np.unravel_index(flat, residual.shape)
        z, action = self._encode_transitions(data.dataset, episode, step)
        weak = torch.zeros(len(z), len(self.model.guardrail_names), device=self.device)
        mask = torch.zeros_like(weak)
        self._weak_agreement = {}
        for name in names:
            col = self.model.guardrail_names.index(name)
            truth = labels[scored, col] > 0.5
            threshold = balanced_threshold(labelled_res[scored], truth)
            weak[:, col] = torch.from_numpy(residual[episode, step] > threshold).float().to(self.device)
            mask[:, col] = 1.0
            self._weak_agreement[f"train/weak_auroc_{name}"] = auroc(labelled_res[scored], truth)
        return z, action, weak, mask

    def frozen_training_latents(self) -> FrozenLatents | None:
        """Latents (no grad) of up to FROZEN_EPISODES training episodes with a full window, for the head refits."""
        return self._episode_latents("train_episodes", FROZEN_EPISODES, "distance-fit")

    def _episode_latents(self, which: str, limit: int, tag: str) -> FrozenLatents | None:
        """Latents (no grad) of up to ``limit`` of the datamodule's ``which`` episodes (seeded draw)
        that hold a full training window, with their actions and true positions."""
        data = getattr(self.trainer, "datamodule", None)
        ds, episodes = getattr(data, "dataset", None), getattr(data, which, None)
        if ds is None or episodes is None:
            return None
        episodes = episodes[data.num_obs[episodes] >= ds.window]
        if not len(episodes):
            return None
        rng = np.random.default_rng(derive_seed(self.seed, tag, self.current_epoch))
        episodes = rng.permutation(episodes)[:limit]
        length = int(data.num_obs[episodes].max())
        with torch.no_grad():
            z = self.model.encode_episodes(ds.obs, episodes, length)
        action = torch.from_numpy(ds.action[episodes, :length - 1]).to(self.device)
        pos = torch.from_numpy(ds.pos[episodes, :length])
        return FrozenLatents(z, action, torch.as_tensor(data.num_obs[episodes], device=self.device), ds.window, pos)

    def high_level_diagnostics(self) -> dict[str, float]:
        """:func:`~hplan.diagnostics.high_level.high_level_metrics` on validation episodes (``val/high_*``)."""
        latents = self._episode_latents("val_episodes", HIGH_LEVEL_EPISODES, "high-level-diagnostics")
        if latents is None:
            return {}
        data = EpisodeLatents(latents.z, latents.action, latents.valid, latents.pos)
        metrics = high_level_metrics(self.model, data, seed=derive_seed(self.seed, "high-level-metrics"))
        return {f"val/{key}": value for key, value in metrics.items()}

    def _refit(self, params: Any, lr: float, steps: int, tag: str,
               loss_of: Callable[[FrozenLatents, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor],
               latents: FrozenLatents, batch: int) -> None:
        """``steps`` Adam steps of ``loss_of(latents, episode, window start, gen)`` on random windows."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, tag, self.current_epoch))
        optim = torch.optim.Adam(params, lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                ep = torch.randint(0, len(latents.z), (batch,), generator=gen, device=self.device)
                room = latents.valid[ep] - latents.window + 1  # window starts 0 .. room-1
                start = (torch.rand(batch, generator=gen, device=self.device) * room).long()
                loss = loss_of(latents, ep, start, gen)
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()

    def fit_distance(self, latents: FrozenLatents) -> None:
        """Refit the temporal-distance head on frozen latents of training episodes.

        The head reads detached latents, so extra steps cannot disturb the representation; they
        matter because the qrl push widens distances slowly and a small dataset gives the head
        only a few hundred joint updates. ``distance_fit_steps`` Adam steps on batches of
        ``distance_fit_batch`` random windows + far frames, with :meth:`distance_loss`.
        """
        cfg = self.train_cfg

        def loss_of(lat: FrozenLatents, ep: torch.Tensor, start: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            far_room = torch.clamp(lat.valid[ep] - 1 - start, max=cfg.distance_max_gap)
            gap = 1 + (torch.rand(len(ep), generator=gen, device=self.device) * far_room).long()
            loss, _, _ = self.distance_loss(lat.window_of(ep, start), lat.z[ep, start + gap], gap.to(lat.z.dtype), gen)
            return loss

        self._refit(self.model.distance.parameters(), cfg.distance_lr or cfg.lr, cfg.distance_fit_steps,
                    "distance-fit-steps", loss_of, latents, cfg.distance_fit_batch)

    def fit_predictor(self, latents: FrozenLatents) -> None:
        """Refit P_lo on frozen latents: ``predictor_fit_steps`` Adam steps of the open-loop
        ``rollout_horizon``-step latent loss on random windows of training episodes.

        Why: trained jointly, the predictor chases targets that move every step, and with a
        sharp encoder (keypoints + SIGReg on PointRooms) its rollouts drifted off (held-out
        probe R² of the predicted 8-step displacement −2.2) although the latent held the position
        at R² 0.998; refit on the frozen latent — the way DINO-WM trains a predictor on a frozen
        encoder — the same model reached 0.84 and answered every action the right way.
        """
        cfg, horizon = self.train_cfg, self.train_cfg.rollout_horizon

        def loss_of(lat: FrozenLatents, ep: torch.Tensor, start: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            steps = start[:, None] + torch.arange(horizon, device=self.device)
            pred = self.model.predictor.rollout(lat.z[ep, start], lat.action[ep[:, None], steps])
            return (pred - lat.z[ep[:, None], steps + 1]).pow(2).mean()

        self._refit(self.model.predictor.parameters(), cfg.lr, cfg.predictor_fit_steps, "predictor-fit-steps",
                    loss_of, latents, cfg.distance_fit_batch)

    def fit_subgoal(self, latents: FrozenLatents) -> None:
        """Refit the subgoal level (posterior, prior, P_hi) on frozen latents: ``subgoal_fit_steps``
        Adam steps of its (free-bits) ELBO on random k-step pairs of training episodes."""
        cfg, k = self.train_cfg, self.model_cfg.subgoal_interval

        def loss_of(lat: FrozenLatents, ep: torch.Tensor, start: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            steps = start[:, None] + torch.arange(k, device=self.device)
            return self.model.subgoal.loss(lat.z[ep, start], lat.z[ep, start + k], lat.action[ep[:, None], steps],
                                           cfg.subgoal_beta, gen, cfg.subgoal_free_bits)["loss"]

        self._refit(self.model.subgoal.parameters(), cfg.lr, cfg.subgoal_fit_steps, "subgoal-fit-steps",
                    loss_of, latents, cfg.distance_fit_batch)

    def pick_waypoints(self, latents: FrozenLatents) -> None:
        """Keep ``model.landmarks`` latents of the training episodes, drawn uniformly, as waypoints,
        with the graph of the steps the episodes took between them (:mod:`hplan.models.waypoints`).

        Why uniform and not farthest-point sampling: FPS picks the extremes of the latent first —
        on four rooms the states pressed against walls and the fastest ones (a linear probe put 44 %
        of its waypoints' positions inside walls) — where routes then run along the walls. A uniform
        draw follows the data: every visited cell, doorways included, gets its share (four rooms,
        20 episodes: 50 % success with uniform waypoints, 45 % with FPS).
        """
        cfg = self.model_cfg
        if not cfg.landmarks:
            return
        gen = torch.Generator(device=latents.z.device)
        gen.manual_seed(derive_seed(self.seed, "waypoints", self.current_epoch))
        points = draw_waypoints(latents.z, latents.valid, cfg.landmarks, gen)
        nodes = nearest_waypoint(latents.z, latents.valid, points, self.model.temporal_distance, cfg.landmark_link)
        self.model.set_waypoints(points, experience_edges(nodes, len(points), cfg.landmark_gap))

    # ------------------------------------------------------------------ hooks
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out, _ = self._losses(batch, "train")
        self.log("loss", out["loss"], prog_bar=True, on_step=True, on_epoch=False, batch_size=len(batch["obs_seq"]))
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, on_step=False, on_epoch=True,
                      batch_size=len(batch["obs_seq"]))
        return out["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.target_encoder is not None:
            ema_update(self.target_encoder, self.model.encoder, self.model_cfg.ema_momentum)

    def on_validation_epoch_start(self) -> None:
        self._val = {}
        if not self.trainer.sanity_checking:
            cfg = self.train_cfg
            refits = cfg.distance_fit_steps or cfg.subgoal_fit_steps or cfg.predictor_fit_steps
            latents = self.frozen_training_latents() if refits or self.model_cfg.landmarks else None
            if latents is not None:
                self.fit_predictor(latents)  # first: the guardrail heads read its predicted next latent
                self.fit_distance(latents)
                self.fit_subgoal(latents)
                self.pick_waypoints(latents)
            self.fit_guardrails()
            self._high = self.high_level_diagnostics()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out, ex = self._losses(batch, "val")
        self.log_dict({f"val/{k}": v for k, v in out.items() if k != "loss"}, on_epoch=True, batch_size=len(batch["obs_seq"]))
        self.log("val/loss", out["loss"], on_epoch=True, prog_bar=True, batch_size=len(batch["obs_seq"]))
        z_seq, horizon = ex["z_seq"], self.train_cfg.rollout_horizon
        b, w = z_seq.shape[:2]
        z_steps = z_seq[:, :-1]
        probs = self.model.heads(z_steps, batch["action"])
        one_step = self.model.predictor.step(z_steps, batch["action"])
        store = {
            "z": z_seq, "pos": batch["pos"], "episode": batch["episode"],
            "pred_h": ex["pred"][:, horizon - 1], "pos_h": batch["pos"][:, horizon],
            "guard_p": probs.flatten(0, 1), "guard_y": batch["violations"].flatten(0, 1),
            "d_far": ex["d_far"], "gap": batch["gap"],
            "err1": (one_step - z_seq[:, 1:]).pow(2).mean(-1).flatten(),
        }
        for key, value in store.items():
            self._val.setdefault(key, []).append(value.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._val:
            return
        metrics = self.validation_diagnostics({k: torch.cat(v) for k, v in self._val.items()})
        for key, value in {**metrics, **self._weak_agreement, **self._high}.items():
            if np.isfinite(value):
                self.log(key, value)
        self._val = {}

    def validation_diagnostics(self, v: dict[str, torch.Tensor]) -> dict[str, float]:
        """Collapse metrics, probes, guardrail AUROC, distance rank correlation, surprise calibration."""
        z, pos = v["z"], v["pos"]
        flat_z, flat_pos = z.flatten(0, 1), pos.flatten(0, 1)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "diagnostics"))
        pick = torch.randperm(len(flat_z), generator=gen)[:DIAGNOSTIC_SAMPLES]
        metrics = {f"val/{k}": x for k, x in collapse_metrics(flat_z[pick]).items()}
        # Probe: fit on even validation episodes, score on odd ones (held out from the probe too).
        fit = v["episode"] % 2 == 0
        if fit.all() or not fit.any():
            fit = torch.arange(len(fit)) % 2 == 0
        probe = fit_linear_probe(z[fit].flatten(0, 1), pos[fit].flatten(0, 1))
        metrics["val/probe_r2"] = r2_score(probe(z[~fit].flatten(0, 1)), pos[~fit].flatten(0, 1))
        metrics["val/probe_r2_pred"] = r2_score(probe(v["pred_h"][~fit]), v["pos_h"][~fit])
        # The same on the *displacement* over the horizon: a predictor that ignores the actions
        # still scores well above (positions barely move in 8 steps) but near zero here.
        start = z[~fit][:, 0]
        metrics["val/probe_r2_pred_delta"] = r2_score(probe(v["pred_h"][~fit]) - probe(start),
                                                      v["pos_h"][~fit] - pos[~fit][:, 0])
        for i, name in enumerate(self.model.guardrail_names):
            metrics[f"val/auroc_{name}"] = auroc(v["guard_p"][:, i].numpy(), v["guard_y"][:, i].numpy() > 0.5)
        metrics["val/distance_spearman"] = spearman(v["d_far"].numpy(), v["gap"].numpy())
        err = v["err1"]
        mean, std = float(err.mean()), float(err.std()) if len(err) > 1 else 1.0
        self.model.surprise_stats.copy_(torch.tensor([mean, max(std, 1e-12)]))
        metrics["val/surprise_mean"], metrics["val/surprise_std"] = mean, std
        return metrics

    def configure_optimizers(self) -> torch.optim.Optimizer:
        cfg = self.train_cfg
        named = [(n, p) for n, p in self.named_parameters() if not n.startswith("target_encoder.")]
        head = [p for n, p in named if n.startswith("model.distance.")]
        rest = [p for n, p in named if not n.startswith("model.distance.")]
        groups = [{"params": rest}, {"params": head, "lr": cfg.distance_lr}] if cfg.distance_lr else [{"params": rest + head}]
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
