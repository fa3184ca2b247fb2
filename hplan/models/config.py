"""Model and training settings ([model] and [train] in a scenario file).

Defaults are chosen so that ~200k PointRooms image transitions train in about ten minutes on a
2-core CPU (see ``benchmarks/bench_training.py``): a cheap strided CNN on a 2× down-sampled
image, a residual MLP predictor, and one window per ``window_stride`` steps per epoch. What
that costs and what it reaches is measured by the benchmark and the results command, and its
history is in CHANGELOG.md, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hplan.configio import meta

MAX_EPOCHS = 10_000
"""Upper bound of ``train.max_epochs`` (shipped files train at most 8)."""
MAX_BATCH = 65_536
"""Upper bound of every batch size in [train] (shipped: at most 1024). Without bounds a typo
(``batch_size = 10**12``) passed ``scenario check`` and failed inside training."""
MAX_FIT_STEPS = 1_000_000
"""Upper bound of the optimiser steps of a refit stage (shipped: at most 2000)."""
MAX_TRANSITIONS = 10_000_000
"""Upper bound of counts of transitions (``label_budget``, ``guardrail_weak_rows``): 10x the
largest collection hplan allows (10^6 episodes), more than any dataset holds."""
MAX_STEP_GAP = 100_000
"""Upper bound of step counts within an episode (``window_stride``, ``distance_max_gap``): the
longest episode a scenario may have (``hplan.config.MAX_EPISODE_STEPS``, not importable here)."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the two-level latent world model."""

    latent_dim: int = field(default=32, metadata=meta("size of the latent z", ge=2, le=1024))
    regularizer: Literal["vicreg", "sigreg", "ema", "none", "recon"] = field(
        default="vicreg", metadata=meta("collapse prevention; `recon` is the pixel/state-decoder baseline"))
    subgoal_interval: int = field(default=8, metadata=meta("k: low-level steps per high-level step", ge=1, le=64))
    code_dim: int = field(default=8, metadata=meta("size of the latent subgoal/macro-action code m", ge=1, le=256))
    subgoal_model: Literal["transition_vae", "macro_action"] = field(
        default="transition_vae", metadata=meta(
            "high-level abstraction: `transition_vae` (code of (z_t, z_t+k) under a prior p(m|z_t)) "
            "or `macro_action` (code of the k primitive actions, HWM-style)"))
    frame_history: int = field(default=1, metadata=meta(
        "observations the encoder sees at once (the current one and the ones before it); 2 lets one "
        "latent carry the velocity that a single frame cannot show", ge=1, le=8))
    image_encoder: Literal["cnn", "keypoints", "glimpse"] = field(default="cnn", metadata=meta(
        "image encoder: `cnn` (strided convolutions + MLP), `keypoints` (spatial softmax: expected "
        "pixel coordinates of learned feature maps; precise positions of small moving objects) or `glimpse` "
        "(keypoints plus a small CNN on a window of the frame centred on them: the walls around the agent)"))
    glimpse_pixels: int = field(default=28, metadata=meta(
        "`glimpse` encoder: side of the window around the keypoints, in image pixels", ge=4, le=512))
    glimpse_features: int = field(default=32, metadata=meta("`glimpse` encoder: features of the window", ge=1, le=1024))
    keypoints: int = field(default=16, metadata=meta("`keypoints` image encoder: feature maps (keypoints) per frame",
                                                     ge=1, le=256))
    keypoint_norm: bool = field(default=False, metadata=meta(
        "`keypoints` image encoder: standardise each keypoint coordinate over the batch (parameter-free "
        "BatchNorm) before the MLP, so the few keypoints that follow the moving agent are not drowned by "
        "the static ones at initialisation (VICReg and EMA need it; SIGReg normalises its latent anyway)"))
    encoder_channels: int = field(default=16, metadata=meta(
        "channels of the first conv layer of the image encoder (later layers use twice as many)", ge=1, le=512))
    image_downsample: int = field(default=2, metadata=meta(
        "average-pool factor applied to images before the CNN (cheap on CPU; 1 = full resolution)", ge=1, le=8))
    hidden_dim: int = field(default=256, metadata=meta("width of the MLPs (predictors, heads, state encoder)", ge=8, le=8192))
    predictor_layers: int = field(default=2, metadata=meta("hidden layers of the residual low-level predictor", ge=1, le=16))
    distance_dim: int = field(default=32, metadata=meta("embedding size of the temporal-distance (quasimetric) head", ge=2, le=1024))
    landmarks: int = field(default=256, metadata=meta(
        "training latents kept in the checkpoint (drawn uniformly) as waypoints for the "
        "`landmarks` high level; 0 = none", ge=0, le=2048))
    landmark_link: float = field(default=3.0, metadata=meta(
        "a training latent visits a waypoint when their (symmetrised) temporal distance is at most this "
        "many steps; visits make the waypoint graph (see hplan/models/waypoints.py)", gt=0.0))
    landmark_fill: float = field(default=0.25, metadata=meta(
        "share of the waypoints drawn where the others leave training latents unvisited (farther than "
        "landmark_link from every waypoint), so thin places such as doorways get waypoints; the rest are "
        "drawn uniformly (see hplan/models/waypoints.py)", ge=0.0, le=1.0))
    landmark_gap: int = field(default=16, metadata=meta(
        "two waypoints are joined when one training episode visited them at most this many steps apart "
        "(the edge's cost: the fewest steps seen)", ge=1, le=256))
    guardrail_members: int = field(default=1, metadata=meta(
        "guardrail heads per violation, each refitted on its own bootstrap resample of the labels; the "
        "planner takes their mean or their largest probability (`[guardrails] members`)", ge=1, le=16))
    ema_momentum: float = field(default=0.99, metadata=meta(
        "`ema` regulariser: momentum of the target encoder (BYOL)", ge=0.0, lt=1.0))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for `hplan train`."""

    max_epochs: int = field(default=4, metadata=meta("training epochs", ge=1, le=MAX_EPOCHS))
    batch_size: int = field(default=128, metadata=meta("sequences per batch", ge=2, le=MAX_BATCH))
    lr: float = field(default=1e-3, metadata=meta("Adam learning rate", gt=0.0, le=1.0))
    weight_decay: float = field(default=0.0, metadata=meta("AdamW weight decay", ge=0.0, le=1.0))
    rollout_horizon: int = field(default=8, metadata=meta("open-loop steps in the JEPA loss", ge=1, le=64))
    label_budget: int = field(default=1000, metadata=meta("labelled transitions for the guardrail heads",
                                                          ge=0, le=MAX_TRANSITIONS))
    calibration_labels: int = field(default=5000, metadata=meta(
        "labelled transitions of validation episodes the guardrail thresholds are calibrated on after training "
        "(calibration.json; 0 = every one)", ge=0, le=MAX_TRANSITIONS))
    window_stride: int = field(default=16, metadata=meta(
        "one training window starts every this many steps of an episode per epoch (random phase per epoch)", ge=1,
        le=MAX_STEP_GAP))
    val_fraction: float = field(default=0.1, metadata=meta("fraction of episodes held out for validation", gt=0.0, lt=1.0))
    device: str = field(default="auto", metadata=meta("torch device for training: auto, cpu, cuda, ..."))
    cpu_threads: int = field(default=0, metadata=meta(
        "torch CPU threads while training (0 = torch's default; 1 is fastest on a crowded machine)", ge=0, le=256))
    pred_weight: float = field(default=1.0, metadata=meta("weight of the multi-step latent prediction loss", ge=0.0))
    vicreg_var: float = field(default=1.0, metadata=meta("vicreg: variance hinge weight (std >= 1 per dim)", ge=0.0))
    vicreg_cov: float = field(default=0.04, metadata=meta("vicreg: off-diagonal covariance weight", ge=0.0))
    vicreg_smooth: float = field(default=0.0, metadata=meta("vicreg: temporal smoothness weight ||z_t+1 - z_t||^2", ge=0.0))
    vicreg_idm: float = field(default=0.0, metadata=meta("vicreg: inverse-dynamics weight (predict a_t from z_t, z_t+1)", ge=0.0))
    sigreg_weight: float = field(default=0.05, metadata=meta(
        "sigreg: weight of the Epps-Pulley statistic, on LeJEPA's scale (published weights 0.02-0.09)", ge=0.0))
    sigreg_directions: int = field(default=256, metadata=meta("sigreg: random 1-D projections per step", ge=1, le=8192))
    recon_weight: float = field(default=1.0, metadata=meta("recon: weight of the observation reconstruction loss", ge=0.0))
    subgoal_beta: float = field(default=0.1, metadata=meta("subgoal VAE: KL weight (beta)", ge=0.0))
    subgoal_free_bits: float = field(default=0.5, metadata=meta(
        "subgoal VAE: nats per code dim below which the KL is free (keeps the code from collapsing "
        "onto the prior; 0 = plain ELBO)", ge=0.0))
    refit_every: int = field(default=1, metadata=meta(
        "run the refit stages (predictor, subgoal, distance, guardrail heads, waypoints) in every this many "
        "epochs, and always in the last one (by max_epochs: a run stopped early keeps what the last due epoch "
        "left); between them the joint steps alone train those parts and the waypoints stay as picked. "
        "Why: in a short run of a few dozen joint steps per epoch the refits are most of an epoch's time", ge=1))
    predictor_fit_steps: int = field(default=1500, metadata=meta(
        "Adam steps refitting the low-level predictor on frozen training latents in each refit epoch "
        "(open-loop rollout_horizon-step loss; joint training alone left its rollouts drifting)", ge=0, le=MAX_FIT_STEPS))
    subgoal_fit_steps: int = field(default=1000, metadata=meta(
        "Adam steps refitting the subgoal level on frozen training latents in each refit epoch "
        "(it reads detached latents; a VAE needs more updates than a short run gives it)", ge=0, le=MAX_FIT_STEPS))
    distance_max_gap: int = field(default=64, metadata=meta(
        "temporal-distance head: largest within-episode step gap used as a training pair", ge=1, le=MAX_STEP_GAP))
    distance_objective: Literal["qrl", "expectile"] = field(default="qrl", metadata=meta(
        "temporal-distance head: `qrl` (maximise random-pair distances subject to d <= observed gap on "
        "within-episode pairs: approximates the shortest-path step distance) or `expectile` (regress "
        "observed gaps with a low expectile; the earlier head)"))
    distance_expectile: float = field(default=0.2, metadata=meta(
        "temporal-distance head, `expectile` objective: expectile of observed gaps it regresses "
        "(< 0.5 leans to the shortest path)", gt=0.0, lt=1.0))
    distance_push_offset: float = field(default=256.0, metadata=meta(
        "temporal-distance head, `qrl` objective: steps around which the push on random pairs "
        "saturates (loss softplus((offset - d) / distance_max_gap)); set above the longest shortest path",
        gt=0.0))
    distance_constraint_weight: float = field(default=1000.0, metadata=meta(
        "temporal-distance head, `qrl` objective: weight of the squared hinge relu(d - gap)^2 (both in "
        "units of distance_max_gap) on within-episode pairs; large, so the local constraint holds",
        ge=0.0))
    distance_lr: float = field(default=3e-3, metadata=meta(
        "Adam learning rate of the temporal-distance head (0 = lr); it reads detached latents, so a "
        "larger rate speeds it up without touching the representation", ge=0.0, le=1.0))
    distance_fit_steps: int = field(default=600, metadata=meta(
        "Adam steps refitting the temporal-distance head on frozen training latents in each refit epoch "
        "(its per-batch updates are few on small datasets; the qrl push needs many)", ge=0, le=MAX_FIT_STEPS))
    distance_fit_batch: int = field(default=256, metadata=meta(
        "windows (each with a far frame) per refit step of the temporal-distance head", ge=2, le=MAX_BATCH))
    guardrail_fit_steps: int = field(default=1000, metadata=meta(
        "full-batch steps refitting the guardrail heads on the labelled subset in each refit epoch", ge=0,
        le=MAX_FIT_STEPS))
    guardrail_lr: float = field(default=3e-3, metadata=meta("Adam learning rate of that refit", gt=0.0, le=1.0))
    guardrail_balance: bool = field(default=True, metadata=meta(
        "class-balanced guardrail BCE (positives weighted by negatives/positives, the logit shifted back by "
        "the log of that weight so the probabilities stay calibrated): with few labels it ranks far better"))
    guardrail_weight_decay: float = field(default=1e-2, metadata=meta(
        "L2 weight decay (Adam) of that refit (a thousand labels overfit without it)", ge=0.0, le=1.0))
    guardrail_batch: int = field(default=64, metadata=meta(
        "labelled transitions per training step (guardrail heads)", ge=1, le=MAX_BATCH))
    guardrail_weak_labels: tuple[str, ...] = field(default=(), metadata=meta(
        "guardrail heads (violation names) also trained, in the last epoch's refit, on weak labels of "
        "`guardrail_weak_rows` training transitions, read from obstructed motion (`hplan.data.motion_labels`; for contact-like violations such as wall_contact)"))
    guardrail_weak_rows: int = field(default=50_000, metadata=meta(
        "unlabelled training transitions (drawn uniformly, seeded) that get weak labels in that refit", ge=1,
        le=MAX_TRANSITIONS))
    guardrail_weak_steps: int = field(default=2000, metadata=meta(
        "Adam steps of the guardrail refit when weak labels are on (minibatches of labelled and weak rows)", ge=1,
        le=MAX_FIT_STEPS))
    guardrail_weak_batch: int = field(default=1024, metadata=meta(
        "rows per step of that refit, drawn uniformly from the labelled and the weakly labelled transitions", ge=1,
        le=MAX_BATCH))
    guardrail_weak_weight_decay: float = field(default=1e-4, metadata=meta(
        "L2 weight decay of that refit: with ~50,000 weak rows the heads need little", ge=0.0, le=1.0))
