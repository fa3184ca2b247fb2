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

(``distance`` and ``guard``: :mod:`hplan.models.losses`.) Before each validation epoch the refit
stages (:mod:`hplan.models.refits`) refit P_lo and the heads on the frozen latent and pick the
waypoints; this module only trains, calls them, and computes the validation diagnostics.

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
import time
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F

from hplan.device import every_core
from hplan.diagnostics.collapse import collapse_metrics
from hplan.diagnostics.high_level import EpisodeLatents, high_level_metrics
from hplan.diagnostics.probes import fit_linear_probe, r2_score
from hplan.metrics.scores import auroc, spearman
from hplan.models.config import ModelConfig, TrainConfig
from hplan.models.data import DatasetInfo
from hplan.models.encoders import encode_sequences, takes_pooled_frames
from hplan.models.heads import positive_weight
from hplan.models.losses import distance_loss, guardrail_loss
from hplan.models.predictor import mlp
from hplan.models.refits import RefitData, Refits, episode_latents
from hplan.models.regularizers import REGULARIZERS, ema_update
from hplan.models.world_model import LatentWorldModel
from hplan.seeding import derive_seed

HIGH_LEVEL_EPISODES = 128
"""Validation episodes the high-level diagnostics encode whole, each epoch."""

DIAGNOSTIC_SAMPLES = 2048
"""Latents used for the collapse metrics (subsampled from the validation windows)."""


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
        self._refit_metrics: dict[str, float] = {}  # weak labels' AUROC and the refit stages' times, logged per epoch
        self._epoch_start: float | None = None  # wall clock at the start of the training epoch (time/joint_steps_s)
        self._val_start = 0.0  # wall clock after the refits, when the validation batches start (time/validation_s)
        self._high: dict[str, float] = {}  # high-level diagnostics of the epoch (on validation episodes)
        self._logged_before: set[str] = set()  # validation-epoch keys logged so far

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
        pooled = takes_pooled_frames(mcfg, model.obs_kind)  # the datamodule pooled the frames (same rule)
        z_seq, z_far, *z_lab = encode_sequences(model.encoder, sequences, hist, pooled)
        z_far = z_far[:, 0]
        z_lab = z_lab[0][:, 0] if z_lab else z_far[:0]
        b, w = z_seq.shape[:2]

        if self.reg.targets == "ema":
            with torch.no_grad():
                targets = encode_sequences(self.target_encoder, [obs_seq[:, 1:horizon + hist]], hist, pooled)[0]
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
        dist, dist_parts, d_far = distance_loss(cfg, model.distance, zd, z_far.detach(), batch["gap"], gen)
        total = jepa + high["loss"] + dist
        out = {"jepa_loss": jepa, "pred_loss": losses["pred"], "subgoal_loss": high["loss"], "subgoal_kl": high["kl"],
               "distance_loss": dist, **dist_parts,
               **{f"reg_{name}": v for name, v in losses.items() if name != "pred"}}
        if len(z_lab) and self.model.guardrail_names:  # no heads (MiniGrid FourRooms, OGBench): the mean of nothing is NaN
            guard = guardrail_loss(model, self.pos_weight, z_lab.detach(), batch["lab_action"], batch["lab_violations"])
            total = total + guard
            out["guardrail_loss"] = guard
        out["loss"] = total
        extras = {"z_seq": zd, "pred": pred.detach(), "z_far": z_far.detach(), "d_far": d_far.detach()}
        return out, extras

    def refits(self, data: RefitData) -> Refits:
        """The refit stages of this validation epoch (:mod:`hplan.models.refits`)."""
        return Refits(self.model, self.model_cfg, self.train_cfg, data, self.seed, self.device, self.pos_weight,
                      epoch=self.current_epoch, step=self.global_step, last_epoch=self.last_epoch)

    @property
    def last_epoch(self) -> bool:
        return self.current_epoch >= (self.trainer.max_epochs or 1) - 1

    @property
    def refits_due(self) -> bool:
        """Whether this epoch runs the refit stages (``train.refit_every``; always the last epoch)."""
        return self.last_epoch or (self.current_epoch + 1) % self.train_cfg.refit_every == 0

    def high_level_diagnostics(self, data: RefitData) -> dict[str, float]:
        """:func:`~hplan.diagnostics.high_level.high_level_metrics` on validation episodes (``val/high_*``)."""
        latents = episode_latents(self.model, data, data.val_episodes, HIGH_LEVEL_EPISODES,
                                  derive_seed(self.seed, "high-level-diagnostics", self.current_epoch), self.device)
        if latents is None:
            return {}
        episodes = EpisodeLatents(latents.z, latents.action, latents.valid, latents.pos)
        metrics = high_level_metrics(self.model, episodes, seed=derive_seed(self.seed, "high-level-metrics"))
        return {f"val/{key}": value for key, value in metrics.items()}

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

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_validation_epoch_start(self) -> None:
        self._val = {}
        data = RefitData.of(getattr(self.trainer, "datamodule", None))
        if not self.trainer.sanity_checking and data is not None:
            joint = None if self._epoch_start is None else time.perf_counter() - self._epoch_start
            self._refit_metrics = self.refits(data).run() if self.refits_due else {}
            if joint is not None:  # the epoch's joint training steps (and data loading), before the refits
                self._refit_metrics["time/joint_steps_s"] = joint
            start = time.perf_counter()
            with every_core(self.device):
                self._high = self.high_level_diagnostics(data)
            self._refit_metrics["time/high_level_diagnostics_s"] = time.perf_counter() - start
        self._val_start = time.perf_counter()

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
        metrics["time/validation_s"] = time.perf_counter() - self._val_start  # val batches and their diagnostics
        epoch = {key: value for key, value in {**metrics, **self._refit_metrics, **self._high}.items()
                 if np.isfinite(value)}
        # Lightning keeps a key's last value until it is logged again: a metric measured in an earlier
        # epoch and not in this one (refits not due, a NaN score) is logged as NaN, not repeated
        for key in self._logged_before - epoch.keys():
            self.log(key, float("nan"))
        for key, value in epoch.items():
            self.log(key, value)
        self._logged_before |= epoch.keys()
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
