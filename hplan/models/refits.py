"""The refit stages that run before the validation of each refit epoch (every ``train.refit_every``-th and the
last), on the latent the epoch ends with.

The joint training step (:mod:`hplan.models.module`) updates every part of the model at once; the
parts that read detached latents (P_lo, the temporal distance, the subgoal level, the guardrail
heads) are then refitted on the frozen latent, and the waypoints are drawn from it, in two
branches that share nothing (run at once on two cores or more, see :meth:`Refits.parallel_branches`):

* :meth:`Refits.fit_predictor`, then :meth:`Refits.fit_guardrails` (the heads read P_lo's
  predicted next latent) — on the labelled subset (and, in the last epoch, weakly labelled rows:
  :meth:`Refits.weak_rows`; that stage runs after both branches, on every core);
* :meth:`Refits.fit_distance`, then :meth:`Refits.pick_waypoints` (linked with that distance),
  then :meth:`Refits.fit_subgoal`;

all but the guardrail heads on :class:`FrozenLatents` of up to ``FROZEN_EPISODES`` training episodes.

Every stage draws from its own generator, seeded from ``(seed, stage, epoch or global step)``, so
a run is a function of its seed. :class:`Refits` takes the model, the configs, the seed, the device
and the datamodule's arrays (:class:`RefitData`) explicitly; it knows nothing of Lightning.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch

from hplan.data.motion_labels import balanced_threshold
from hplan.device import every_core, torch_threads
from hplan.metrics.scores import auroc
from hplan.models.config import ModelConfig, TrainConfig
from hplan.models.data import WindowData
from hplan.models.losses import distance_loss, guardrail_loss
from hplan.models.waypoints import draw_waypoints, experience_edges, fill_uncovered, nearest_waypoint
from hplan.models.world_model import LatentWorldModel
from hplan.seeding import derive_seed

FROZEN_EPISODES = 512
"""Training episodes whose frozen latents the head / predictor refits draw their windows from."""


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


class WeakRows(NamedTuple):
    """Weakly labelled training transitions (:meth:`Refits.weak_rows`)."""

    z: torch.Tensor       # (N, D) latents
    action: torch.Tensor  # (N, A)
    labels: torch.Tensor  # (N, G) weak labels, zero for the heads without any
    mask: torch.Tensor    # (N, G) one for the weakly labelled heads
    agreement: dict[str, float]  # train/weak_auroc_<name>: the residual's AUROC on the labelled subset


@dataclass(frozen=True)
class RefitData:
    """What the refits read of the datamodule (:class:`~hplan.models.data.EpisodeDataModule`)."""

    dataset: WindowData       # episode arrays, window length, labelled rows, free-motion residuals
    num_obs: np.ndarray       # (E,) real observations per episode
    train_episodes: np.ndarray
    val_episodes: np.ndarray

    @classmethod
    def of(cls, datamodule: Any) -> RefitData | None:
        """The arrays of a set-up datamodule; ``None`` without one (a module driven by hand)."""
        dataset = getattr(datamodule, "dataset", None)
        if dataset is None:
            return None
        return cls(dataset, datamodule.num_obs, datamodule.train_episodes, datamodule.val_episodes)


def episode_latents(model: LatentWorldModel, data: RefitData, episodes: np.ndarray, limit: int, seed: int,
                    device: torch.device) -> FrozenLatents | None:
    """Latents (no grad) of up to ``limit`` of ``episodes`` (a draw seeded by ``seed``) that hold a
    full training window, with their actions and true positions."""
    ds = data.dataset
    episodes = episodes[data.num_obs[episodes] >= ds.window]
    if not len(episodes):
        return None
    rng = np.random.default_rng(seed)
    episodes = rng.permutation(episodes)[:limit]
    length = int(data.num_obs[episodes].max())
    with torch.no_grad():
        z = model.encode_episodes(ds.obs, episodes, length)
    action = torch.from_numpy(ds.action[episodes, :length - 1]).to(device)
    pos = torch.from_numpy(ds.pos[episodes, :length])
    return FrozenLatents(z, action, torch.as_tensor(data.num_obs[episodes], device=device), ds.window, pos)


@contextlib.contextmanager
def _side_branch(stages: list[Callable[[], Any]], parallel: bool) -> Iterator[list[Callable[[], Any]]]:
    """With ``parallel``, runs ``stages`` in order on a second thread while the block runs, joining
    (and re-raising its error) on exit; else hands them to the block to run itself. Torch releases
    the GIL in its kernels, so a one-thread refit on each of two cores runs at nearly twice the pace."""
    if not parallel or not stages:
        yield stages
        return
    threads = torch.get_num_threads()

    def branch() -> None:
        torch.set_num_threads(threads)
        for work in stages:
            work()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="refit") as pool:
        future = pool.submit(branch)
        try:
            yield []
        finally:
            future.result()


@dataclass(frozen=True)
class Refits:
    """The refit stages of one validation epoch (see the module docstring); :meth:`run` runs them all.

    ``epoch`` and ``step`` (the trainer's current epoch and global step) seed the stages' draws;
    ``last_epoch`` turns the weak-label stage on; ``pos_weight`` is the guardrail class balance.
    """

    model: LatentWorldModel
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    data: RefitData
    seed: int
    device: torch.device
    pos_weight: torch.Tensor
    epoch: int
    step: int
    last_epoch: bool

    def run(self) -> dict[str, float]:
        """Every stage, in order; returns the weak labels' agreement with the labelled subset
        (``train/weak_auroc_<name>``; only when the weak stage ran) and each stage's wall time
        (``time/refit_<stage>_s``).

        Why time them: an epoch of a small run is a few dozen joint steps and thousands of refit
        steps (the demo: 32 joint steps, 4,100 refit steps), and where the epoch's time goes is
        what decides how to make training faster."""
        cfg = self.train_cfg
        refits = cfg.distance_fit_steps or cfg.subgoal_fit_steps or cfg.predictor_fit_steps
        seconds: dict[str, float] = {}

        def timed(stage: str, work: Callable[[], Any]) -> Any:
            start = time.perf_counter()
            result = work()
            seconds[f"time/refit_{stage}_s"] = time.perf_counter() - start
            return result

        latents = None
        if refits or self.model_cfg.landmarks:
            with every_core(self.device):
                latents = timed("latents", self.frozen_training_latents)
        # two branches that share nothing: P_lo then the guardrail heads (which read its next latent),
        # and the distance head, the waypoints (drawn with it) and the subgoal level
        side = [] if latents is None else [
            lambda: timed("distance", lambda: self.fit_distance(latents)),
            *([lambda: timed("waypoints", lambda: self.pick_waypoints(latents))] if self.waypoints_due else []),
            lambda: timed("subgoal", lambda: self.fit_subgoal(latents))]
        agreement: dict[str, float] = {}
        with torch_threads(self.branch_threads()), _side_branch(side, self.parallel_branches()) as pending:
            if latents is not None:
                timed("predictor", lambda: self.fit_predictor(latents))
            if self.guardrails_kept and not self.weak_epoch:
                agreement = timed("guardrails", self.fit_guardrails)
            for work in pending:  # run here, in order, when there was no second core for them
                work()
        if self.weak_epoch:  # after the join: this stage widens torch to every core
            agreement = timed("guardrails", self.fit_guardrails)
        return {**agreement, **seconds}

    @property
    def waypoints_due(self) -> bool:
        """The waypoints are picked in the last epoch only: planning is all that reads them."""
        return self.last_epoch

    @property
    def guardrails_kept(self) -> bool:
        """Whether this epoch's guardrail refit can reach the saved model: not when the last epoch's
        weak-label refit will draw the heads afresh (and nothing in training reads them: their
        inputs are detached). With :attr:`waypoints_due`, a third of an intermediate epoch's refit
        time (four rooms); the saved model is the same (tested), and the intermediate epochs'
        ``val/auroc_*`` then score the jointly trained heads."""
        return self.last_epoch or not self.train_cfg.guardrail_weak_labels

    @property
    def weak_epoch(self) -> bool:
        """This epoch's guardrail refit takes weak-labelled rows (the last epoch, weak labels on)."""
        return self.last_epoch and bool(self.train_cfg.guardrail_weak_labels)

    def parallel_branches(self) -> bool:
        """Run the two refit branches at once: on a CPU with two cores or more, each branch at
        :meth:`branch_threads`. Each stage draws from its own generator and touches its own
        parameters, at the same thread count, so the model is bit for bit the one the stages make one
        after the other (tested); the demo's refits on 2 cores: see CHANGELOG."""
        return self.device.type == "cpu" and (os.cpu_count() or 1) >= 2

    def branch_threads(self) -> int | None:
        """Torch threads of each refit branch (``None``: the training's): half the cores at most, so
        two branches never ask for more threads than there are cores. The refits are small-batch MLP
        steps, which two threads speed up far less than a second branch does."""
        if not self.parallel_branches():
            return None
        return max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // 2))

    def frozen_training_latents(self) -> FrozenLatents | None:
        """Latents (no grad) of up to FROZEN_EPISODES training episodes with a full window, for the head refits."""
        return episode_latents(self.model, self.data, self.data.train_episodes, FROZEN_EPISODES,
                               derive_seed(self.seed, "distance-fit", self.epoch), self.device)

    def _refit(self, params: Any, lr: float, steps: int, tag: str,
               loss_of: Callable[[FrozenLatents, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor],
               latents: FrozenLatents, batch: int) -> None:
        """``steps`` Adam steps of ``loss_of(latents, episode, window start, gen)`` on random windows."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(derive_seed(self.seed, tag, self.epoch))
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
        ``distance_fit_batch`` random windows + far frames, with
        :func:`~hplan.models.losses.distance_loss`.
        """
        cfg = self.train_cfg

        def loss_of(lat: FrozenLatents, ep: torch.Tensor, start: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            far_room = torch.clamp(lat.valid[ep] - 1 - start, max=cfg.distance_max_gap)
            gap = 1 + (torch.rand(len(ep), generator=gen, device=self.device) * far_room).long()
            loss, _, _ = distance_loss(cfg, self.model.distance, lat.window_of(ep, start), lat.z[ep, start + gap],
                                       gap.to(lat.z.dtype), gen)
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
        """Keep ``model.landmarks`` latents of the training episodes as waypoints — most drawn
        uniformly, ``model.landmark_fill`` of them where those leave latents unvisited
        (:func:`~hplan.models.waypoints.fill_uncovered`) — with the graph of the steps the episodes
        took between them (:mod:`hplan.models.waypoints`).

        Why uniform and not farthest-point sampling: FPS picks the extremes of the latent first —
        on four rooms the states pressed against walls and the fastest ones (a linear probe put 44 %
        of its waypoints' positions inside walls) — where routes then run along the walls. A uniform
        draw follows the data: every visited cell, doorways included, gets its share (four rooms,
        20 episodes: 50 % success with uniform waypoints, 45 % with FPS). Why not uniform alone:
        a doorway's share is small. On the spiral (the same model, its waypoints re-picked, 50
        `val` episodes) 192 uniform waypoints plus 64 drawn where they leave latents unvisited won 45
        against 31 for the same 192 plus 64 more uniform ones (15 won, 1 lost); on the corridor,
        where uniform waypoints already reach 98 %, 46 against 49 (0 won, 3 lost).
        """
        cfg = self.model_cfg
        if not cfg.landmarks:
            return
        gen = torch.Generator(device=latents.z.device)
        gen.manual_seed(derive_seed(self.seed, "waypoints", self.epoch))
        fill = round(cfg.landmark_fill * cfg.landmarks)
        distance = self.model.temporal_distance
        points = draw_waypoints(latents.z, latents.valid, cfg.landmarks - fill, gen)
        if fill:
            points = fill_uncovered(latents.z, latents.valid, points, fill, distance, cfg.landmark_link, gen)
        nodes = nearest_waypoint(latents.z, latents.valid, points, distance, cfg.landmark_link)
        self.model.set_waypoints(points, experience_edges(nodes, len(points), cfg.landmark_gap))

    def fit_guardrails(self) -> dict[str, float]:
        """Refit the guardrail heads on the whole labelled subset, on the current frozen latent;
        returns the weak labels' agreement (empty unless weak rows joined).

        The per-step joint updates see each label only a few times per epoch and chase a latent that
        is still moving; this full-batch pass (``guardrail_fit_steps`` Adam steps on ≤ label_budget
        rows, a few ms each) makes the heads match the latent the epoch ends with. With
        ``guardrail_weak_labels``, in the last epoch, ``guardrail_weak_rows`` unlabelled transitions
        join the labelled rows with weak labels (:meth:`weak_rows`), and the heads are refitted afresh
        on minibatches: once, because it costs ~50 s on one CPU thread (four rooms, 200k transitions),
        and only the last epoch's heads are kept.
        """
        ds = self.data.dataset
        labelled = ds.labelled
        steps = self.train_cfg.guardrail_fit_steps
        if labelled is None or not len(labelled[0]) or steps == 0 or not self.model.guardrail_names:
            return {}
        z, action = self._encode_transitions(*labelled)
        labels = torch.from_numpy(ds.violations[labelled].astype("float32")).to(self.device)
        self.model.guardrail.set_input_stats(z)
        # The weak stage is large-batch work (encoding 50,000 transitions, 2,000 steps of 1,024 rows):
        # there every core helps (2 cores: 1.8x on the encoding, 1.3x on the steps), where training's
        # small batches run best on the configured threads. Only the epoch that runs it: the other
        # epochs' refit (1,000 full-batch steps on the labelled rows) took 120 s at every core on a
        # busy 2-core machine, 46 % of a demo epoch whose joint steps took 39 s.
        many = self.weak_epoch and self.device.type == "cpu"
        with torch_threads(os.cpu_count() if many else None):
            return self._refit_guardrails(z, action, labels, labelled, steps)

    def _refit_guardrails(self, z: torch.Tensor, action: torch.Tensor, labels: torch.Tensor,
                          labelled: tuple[np.ndarray, np.ndarray], steps: int) -> dict[str, float]:
        """The refit of :meth:`fit_guardrails` from the labelled rows' latents, actions and labels."""
        mask = torch.ones_like(labels)
        weak = self.weak_rows(self.data.dataset.violations[labelled], labelled)
        if weak is not None:
            z, action, labels, mask = (torch.cat(pair) for pair in zip((z, action, labels, mask), weak[:4]))
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
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "guardrail-bootstrap", self.step))
            weights = torch.poisson(torch.ones(len(z), self.model.guardrail.members), generator=gen)
            weights[:, 0] = 1.0
            weights = weights.to(self.device)
        with torch.no_grad():
            z_next = torch.cat([self.model.predictor.step(zc, ac) for zc, ac in zip(z.split(8192), action.split(8192))])
        decay = self.train_cfg.guardrail_weak_weight_decay if weak is not None else self.train_cfg.guardrail_weight_decay
        optim = torch.optim.Adam(self.model.guardrail.parameters(), lr=self.train_cfg.guardrail_lr, weight_decay=decay)
        gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.seed, "guardrail-rows", self.step))
        with torch.enable_grad():
            for _ in range(steps):
                rows = (torch.randint(len(z), (batch,), generator=gen, device=self.device) if batch < len(z)
                        else slice(None))
                loss = guardrail_loss(self.model, self.pos_weight, z[rows], action[rows], labels[rows],
                                      None if weights is None else weights[rows], mask[rows], z_next[rows])
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
        return weak.agreement if weak is not None else {}

    def _encode_transitions(self, episode: np.ndarray, step: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (no grad) and actions of the transitions ``(episode, step)`` of the training data."""
        ds = self.data.dataset
        with torch.no_grad():
            frames = torch.from_numpy(ds.sequence(episode, step, 1))
            z = torch.cat([self.model.encode_sequence(chunk)[:, 0] for chunk in frames.split(512)])
        return z, torch.from_numpy(ds.action[episode, step]).to(self.device)

    def weak_rows(self, labels: np.ndarray, labelled: tuple[np.ndarray, np.ndarray]) -> WeakRows | None:
        """``guardrail_weak_rows`` training transitions drawn uniformly (seeded), weakly labelled for
        the ``guardrail_weak_labels`` heads: a transition is a violation when its free-motion residual
        exceeds the threshold that best matches the labelled subset (``labels`` of the ``labelled``
        rows). ``None`` when off, or before the last epoch.

        Uniform rows, not the frozen episodes of the other refits: 512 whole episodes cover the wall
        map more thinly than as many transitions drawn from all of them (four rooms, held-out wall
        AUROC 0.946 against 0.960). Encoding them costs ~20 s on one thread (50,000 rows); fewer
        rows cost AUROC (offline, 25,600: 0.955; 12,800: 0.945).
        """
        names, residual = self.train_cfg.guardrail_weak_labels, self.data.dataset.motion_residual
        if not names or residual is None or not self.last_epoch:
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
        z, action = self._encode_transitions(episode, step)
        weak = torch.zeros(len(z), len(self.model.guardrail_names), device=self.device)
        mask = torch.zeros_like(weak)
        agreement = {}
        for name in names:
            col = self.model.guardrail_names.index(name)
            truth = labels[scored, col] > 0.5
            threshold = balanced_threshold(labelled_res[scored], truth)
            weak[:, col] = torch.from_numpy(residual[episode, step] > threshold).float().to(self.device)
            mask[:, col] = 1.0
            agreement[f"train/weak_auroc_{name}"] = auroc(labelled_res[scored], truth)
        return WeakRows(z, action, weak, mask, agreement)
