"""Training data for the world model: windows of episodes, far frames, and the labelled subset.

One training example is a *window* of ``W = max(rollout_horizon, subgoal_interval) + 1``
consecutive observations of one episode (for the multi-step JEPA loss and the k-step subgoal
pair), a *far frame* ``gap ∈ [1, distance_max_gap]`` steps after the window start (a temporal-
distance pair), and — once per batch — ``guardrail_batch`` transitions drawn from the fixed
labelled subset of ``label_budget`` transitions (the only violation labels the heads ever see).

Batches are gathered with one numpy fancy-index per array (no per-item Python), and the batch
plan of each epoch is a pure function of ``(seed, epoch)``, so a resumed run sees exactly the
batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from hplan.data.motion_labels import free_motion_net, free_motion_residuals, tracked_signal, tracked_signal_dim
from hplan.data.shards import load_episodes
from hplan.errors import HplanError
from hplan.models.config import ModelConfig, TrainConfig
from hplan.models.encoders import obs_kind_of, pooled_frame_sums, takes_pooled_frames
from hplan.seeding import derive_seed
from hplan.vocabulary.frames import sequence_frames
from hplan.vocabulary.protocol import ActionSpec


T = TypeVar("T")


class Deferred(Generic[T]):
    """A value computed on a daemon thread while the caller goes on; :meth:`result` waits for it
    (and re-raises its error). With ``background`` false it is computed at once, in the caller.

    Why: the weak labels' free-motion residuals cost ~45 s on one core (four rooms, 200k frames) and
    are read only in the last epoch; computed beside the first epoch's joint steps they take no
    wall time of their own where those leave a core idle, and little where they do not (the joint
    steps' small kernels do not keep two cores busy). The thread runs at the caller's torch thread
    count, so the floats are those the caller would have computed."""

    def __init__(self, work: Callable[[], T], background: bool) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if not background:
            self._value = work()
            return
        threads = torch.get_num_threads()

        def run() -> None:
            torch.set_num_threads(threads)
            try:
                self._value = work()
            except BaseException as err:  # handed to the reader
                self._error = err

        self._thread = threading.Thread(target=run, name="hplan-deferred", daemon=True)
        self._thread.start()

    def result(self) -> T:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@dataclass(frozen=True)
class DatasetInfo:
    """What the model must know about the data to be built (shapes, names, normalisation)."""

    env_id: str
    obs_kind: str
    obs_shape: tuple[int, ...]
    action_spec: ActionSpec
    guardrail_names: tuple[str, ...]
    state_mean: np.ndarray | None
    state_std: np.ndarray | None
    label_positive_rate: np.ndarray  # (K,), in the labelled subset
    train_transitions: int
    val_transitions: int


@dataclass(frozen=True)
class BatchPlan:
    """Indices of one batch: window starts, far-frame gaps, labelled-transition rows."""

    episode: np.ndarray
    start: np.ndarray
    gap: np.ndarray
    labels: np.ndarray


class WindowData(Dataset):
    """In-memory episode arrays; ``__getitems__(BatchPlan)`` gathers one batch of tensors.

    Observations travel as frame *sequences* (``obs_seq``, ``far_seq``, ``lab_seq``: each with the
    ``history - 1`` frames before its first step, see ``sequence_frames``), not as one stacked
    history per step, so no frame is copied or encoded twice.
    """

    def __init__(self, obs: np.ndarray, action: np.ndarray, violations: np.ndarray, pos: np.ndarray,
                 window: int, labelled: tuple[np.ndarray, np.ndarray] | None, history: int = 1,
                 encoder_frames: np.ndarray | None = None) -> None:
        self.obs, self.action, self.violations, self.pos = obs, action, violations, pos
        # What the batches' frame sequences hold: the observations, or the encoder's pooled sums of
        # them (``encoders.takes_pooled_frames``); ``sequence`` always gives the observations.
        self.encoder_frames = obs if encoder_frames is None else encoder_frames
        self.window = window
        self.labelled = labelled  # (episode, t) rows of the labelled subset
        self.history = history
        self.motion_residual_deferred: Deferred[np.ndarray] | None = None  # (E, T) free-motion residuals, for weak labels

    @property
    def motion_residual(self) -> np.ndarray | None:
        """The free-motion residuals (waits for them when they are still being computed)."""
        return None if self.motion_residual_deferred is None else self.motion_residual_deferred.result()

    def sequence(self, episode: np.ndarray, first: np.ndarray, length: int) -> np.ndarray:
        """Frames of ``length`` steps from ``first`` plus the ``history - 1`` before (see ``sequence_frames``)."""
        return sequence_frames(self.obs, episode, first, length, self.history)

    def encoder_sequence(self, episode: np.ndarray, first: np.ndarray, length: int) -> np.ndarray:
        """:meth:`sequence` of the encoder's input frames (the batches' ``*_seq``)."""
        return sequence_frames(self.encoder_frames, episode, first, length, self.history)

    def __len__(self) -> int:
        return int(self.action.shape[0])

    def __getitems__(self, plan: BatchPlan) -> dict[str, torch.Tensor]:
        steps = plan.start[:, None] + np.arange(self.window)[None, :]
        ep = plan.episode[:, None]
        batch = {
            "obs_seq": torch.from_numpy(self.encoder_sequence(plan.episode, plan.start, self.window)),
            "action": torch.from_numpy(self.action[ep, steps[:, :-1]]),
            "violations": torch.from_numpy(self.violations[ep, steps[:, :-1]].astype(np.float32)),
            "pos": torch.from_numpy(self.pos[ep, steps]),
            "far_seq": torch.from_numpy(self.encoder_sequence(plan.episode, plan.start + plan.gap, 1)),
            "far_pos": torch.from_numpy(self.pos[plan.episode, plan.start + plan.gap]),
            "gap": torch.from_numpy(plan.gap.astype(np.float32)),
            "episode": torch.from_numpy(plan.episode.astype(np.int64)),
        }
        if self.labelled is not None and len(plan.labels):
            le, lt = self.labelled[0][plan.labels], self.labelled[1][plan.labels]
            batch["lab_seq"] = torch.from_numpy(self.encoder_sequence(le, lt, 1))
            batch["lab_action"] = torch.from_numpy(self.action[le, lt])
            batch["lab_violations"] = torch.from_numpy(self.violations[le, lt].astype(np.float32))
        return batch

    def __getitem__(self, index: int) -> Any:  # pragma: no cover - batches only
        raise TypeError("WindowData is indexed by BatchPlan through __getitems__")


class WindowPlanner(Sampler[BatchPlan]):
    """Yields the :class:`BatchPlan` s of one epoch; a pure function of ``(seed, epoch)``."""

    def __init__(self, episodes: np.ndarray, num_obs: np.ndarray, window: int, stride: int, max_gap: int,
                 batch_size: int, seed: int, label_count: int = 0, label_batch: int = 0,
                 shuffle: bool = True, drop_last: bool = True) -> None:
        self.episodes, self.num_obs = episodes, num_obs
        self.window, self.stride, self.max_gap = window, stride, max_gap
        self.batch_size, self.seed = batch_size, seed
        self.label_count, self.label_batch = label_count, label_batch
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _starts(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        eps, starts = [], []
        for ep in self.episodes:
            last = int(self.num_obs[ep]) - (self.window - 1)  # starts 0 .. last-1 fit a full window
            if last <= 0:
                continue
            phase = int(rng.integers(self.stride)) if self.shuffle else 0
            s = np.arange(phase % last, last, self.stride)
            eps.append(np.full(len(s), ep))
            starts.append(s)
        if not eps:
            raise HplanError(f"no episode has {self.window} valid observations in a row: "
                             f"lower train.rollout_horizon / model.subgoal_interval or collect longer episodes")
        ep_all, st_all = np.concatenate(eps), np.concatenate(starts)
        room = np.minimum(self.num_obs[ep_all] - 1 - st_all, self.max_gap)  # far frame index ≤ num_obs - 1
        gap = 1 + np.floor(rng.random(len(st_all)) * room).astype(np.int64)
        return ep_all, st_all, gap

    def _plans(self) -> list[BatchPlan]:
        rng = np.random.default_rng(derive_seed(self.seed, "epoch", self.epoch if self.shuffle else 0))
        ep, st, gap = self._starts(rng)
        order = rng.permutation(len(ep)) if self.shuffle else np.arange(len(ep))
        plans = []
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size and i > 0:
                break
            labels = (rng.integers(0, self.label_count, self.label_batch) if self.label_count and self.label_batch
                      else np.zeros(0, dtype=np.int64))
            plans.append(BatchPlan(ep[idx], st[idx], gap[idx], labels))
        return plans

    def __iter__(self) -> Iterator[BatchPlan]:
        return iter(self._plans())

    def __len__(self) -> int:
        return len(self._plans())


def _identity(batch: Any) -> Any:
    return batch


class EpisodeDataModule(pl.LightningDataModule):
    """Loads a dataset directory once; splits episodes into train / validation by a seeded permutation."""

    def __init__(self, data_dir: str | Path, model_cfg: ModelConfig, train_cfg: TrainConfig, seed: int) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.model_cfg, self.train_cfg, self.seed = model_cfg, train_cfg, seed
        self.window = max(train_cfg.rollout_horizon, model_cfg.subgoal_interval) + 1
        self.info: DatasetInfo | None = None
        self._loaded = False

    def setup(self, stage: str | None = None) -> None:
        if self._loaded:
            return
        data = load_episodes(self.data_dir)
        manifest, source = data.manifest, str(self.data_dir / "manifest.json")
        obs = data["obs"]
        spec, action = data.model_actions()
        valid = data["valid"].astype(bool)
        num_obs = data.num_obs  # observations, not transitions: the last transition's outcome counts
        pos = data["true_state"][..., :2].astype(np.float32)
        violations = data["violations"].astype(bool)
        names = tuple(manifest.get("violation_names", [f"violation_{i}" for i in range(violations.shape[-1])]))

        n_ep = data.num_episodes
        if n_ep < 2:
            raise HplanError(f"{source}: need at least 2 episodes (one held out for validation), got {n_ep}")
        order = np.random.default_rng(derive_seed(self.seed, "split")).permutation(n_ep)
        n_val = min(max(1, int(round(self.train_cfg.val_fraction * n_ep))), n_ep - 1)
        self.val_episodes, self.train_episodes = np.sort(order[:n_val]), np.sort(order[n_val:])

        # The labelled subset: label_budget valid transitions of training episodes, fixed by the seed.
        cand_e, cand_t = np.nonzero(valid[self.train_episodes])
        cand_e = self.train_episodes[cand_e]
        budget = min(self.train_cfg.label_budget, len(cand_e))
        pick = np.random.default_rng(derive_seed(self.seed, "labels")).choice(len(cand_e), budget, replace=False)
        labelled = (cand_e[pick], cand_t[pick])
        rate = violations[labelled].mean(0) if budget else np.zeros(len(names))

        kind = obs_kind_of(tuple(obs.shape[2:]), str(obs.dtype))
        mean = std = None
        if kind == "state":
            flat = obs[self.train_episodes].reshape(-1, obs.shape[-1]).astype(np.float64)
            mean, std = flat.mean(0).astype(np.float32), flat.std(0).astype(np.float32)
        self.num_obs = num_obs
        encoder_frames = None
        if takes_pooled_frames(self.model_cfg, kind):  # pooled once here, not in every training step
            d = self.model_cfg.image_downsample
            sums = pooled_frame_sums(obs.reshape(-1, *obs.shape[2:]), d)
            encoder_frames = sums.reshape(*obs.shape[:2], *sums.shape[1:])
        self.dataset = WindowData(obs, action, violations, pos, self.window, labelled, self.model_cfg.frame_history,
                                  encoder_frames)
        if self.train_cfg.guardrail_weak_labels:
            self.dataset.motion_residual_deferred = self._motion_residuals(obs, action, valid, names, source)
        self.info = DatasetInfo(
            env_id=str(manifest.get("env_id", "")), obs_kind=kind, obs_shape=tuple(obs.shape[2:]),
            action_spec=spec, guardrail_names=names, state_mean=mean, state_std=std,
            label_positive_rate=np.asarray(rate, dtype=np.float64),
            train_transitions=int(valid[self.train_episodes].sum()), val_transitions=int(valid[self.val_episodes].sum()))
        self._loaded = True

    def _motion_residuals(self, obs: np.ndarray, action: np.ndarray, valid: np.ndarray, names: tuple[str, ...],
                          source: str) -> Deferred[np.ndarray]:
        """Free-motion residuals of the training episodes' valid transitions (NaN elsewhere: validation
        episodes are neither fitted nor weakly labelled). Checked here; computed on a second thread
        on a CPU of two cores or more (:class:`Deferred`), else here."""
        unknown = [name for name in self.train_cfg.guardrail_weak_labels if name not in names]
        if unknown:
            raise HplanError(f"train.guardrail_weak_labels: {unknown[0]!r} is not a violation of {source} "
                             f"(it records {', '.join(names) or 'none'})")
        try:
            signal_dim = tracked_signal_dim(obs.shape)
        except ValueError as err:
            raise HplanError(f"train.guardrail_weak_labels: {source}: {err}") from None
        in_train = np.zeros(len(valid), dtype=bool)
        in_train[self.train_episodes] = True
        seed = derive_seed(self.seed, "free-motion")
        net = free_motion_net(signal_dim, action.shape[-1], seed)  # drawn here: the global RNG is every thread's

        def work() -> np.ndarray:
            return free_motion_residuals(tracked_signal(obs), action, valid & in_train[:, None], seed, net=net)

        return Deferred(work, background=(os.cpu_count() or 1) >= 2)

    def _loader(self, episodes: np.ndarray, train: bool) -> DataLoader:
        cfg = self.train_cfg
        planner = WindowPlanner(
            episodes, self.num_obs, self.window, cfg.window_stride if train else self.window,
            cfg.distance_max_gap, cfg.batch_size, derive_seed(self.seed, "train" if train else "val"),
            label_count=len(self.dataset.labelled[0]) if train else 0,
            label_batch=cfg.guardrail_batch if train else 0, shuffle=train, drop_last=train)
        return DataLoader(self.dataset, batch_sampler=planner, collate_fn=_identity, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_episodes, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_episodes, False)
