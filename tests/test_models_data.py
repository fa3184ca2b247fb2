"""Training windows over episodes that end early: every real transition trains, none past the end."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hplan.data.shards import load_episodes
from hplan.errors import HplanError
from hplan.models.config import ModelConfig, TrainConfig
from hplan.models.data import EpisodeDataModule

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_episodes import make_dataset  # noqa: E402


@pytest.mark.parametrize("terminate_at", [6, 9, 16])
def test_windows_reach_the_last_real_transition_and_never_pass_it(tmp_path: Path, terminate_at: int) -> None:
    """The last transition of an episode that terminates (the step onto the goal, into the lava) is
    the one a planner most needs the model to know; it must be inside some training window."""
    root = make_dataset(tmp_path / "data", episodes=8, steps=16, terminate_at=terminate_at)
    data = EpisodeDataModule(root, ModelConfig(subgoal_interval=3),
                             TrainConfig(rollout_horizon=3, window_stride=1, batch_size=4, val_fraction=0.25,
                                         label_budget=10), seed=0)
    data.setup()
    batches = [batch["action"].numpy() for batch in data._loader(data.train_episodes, True)]
    seen = np.concatenate([b.reshape(-1, b.shape[-1]) for b in batches])
    assert np.isfinite(seen).all(), "a training window ran past the episode's end"
    windows = {tuple(row) for row in np.round(seen, 6)}
    actions = load_episodes(root)["action"]
    for ep in data.train_episodes:
        assert tuple(np.round(actions[ep, terminate_at - 1], 6)) in windows, f"episode {ep}: last transition unused"


@pytest.mark.parametrize("regularizer", ["recon", "vicreg"])
def test_only_the_reconstruction_baseline_keeps_prediction_out_of_the_encoder(tmp_path: Path, regularizer: str) -> None:
    """The baseline JEPA is compared against: its encoder learns from reconstruction alone, so the
    prediction loss must leave the encoder's gradient at zero (a JEPA's encoder is shaped by it)."""
    import torch

    from hplan.models.module import WorldModelModule

    root = make_dataset(tmp_path / "data", episodes=6, steps=16, obs="image", image_size=16)
    model_cfg = ModelConfig(subgoal_interval=3, regularizer=regularizer, latent_dim=8, hidden_dim=32,
                            encoder_channels=4, image_downsample=1)
    train_cfg = TrainConfig(rollout_horizon=3, window_stride=1, batch_size=4, val_fraction=0.25, label_budget=10)
    data = EpisodeDataModule(root, model_cfg, train_cfg, seed=0)
    data.setup()
    module = WorldModelModule(model_cfg, train_cfg, data.info, seed=0)
    batch = next(iter(data._loader(data.train_episodes, True)))
    out, _ = module._losses(batch, "train")
    out["pred_loss"].backward()
    grads = [p.grad for p in module.model.encoder.parameters() if p.grad is not None]
    moved = sum(float(g.abs().sum()) for g in grads)
    if regularizer == "recon":
        assert moved == 0.0
    else:
        assert moved > 0.0
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.model.predictor.parameters())


@pytest.mark.parametrize("background", [True, False])
def test_a_deferred_value_is_the_work_s_result_and_its_error_reaches_the_reader(background: bool) -> None:
    """``Deferred`` (the weak labels' residuals, computed beside the first epoch): the reader gets
    what the work returned, at the caller's torch thread count, and the work's error when it failed."""
    import threading

    from hplan.models.data import Deferred

    seen: dict[str, object] = {}

    def work() -> int:
        seen["threads"], seen["thread"] = torch.get_num_threads(), threading.current_thread().name
        return 41 + 1

    value = Deferred(work, background=background)
    assert value.result() == 42 and value.result() == 42
    assert seen["threads"] == torch.get_num_threads()
    assert (seen["thread"] != threading.main_thread().name) == background

    def failing() -> int:
        raise HplanError("bad residuals")

    if background:
        with pytest.raises(HplanError, match="bad residuals"):
            Deferred(failing, background=True).result()
    else:
        with pytest.raises(HplanError, match="bad residuals"):
            Deferred(failing, background=False)


@pytest.mark.parametrize(("encoder", "regularizer", "pooled"), [("keypoints", "vicreg", True), ("keypoints", "recon", False),
                                                                ("cnn", "vicreg", False)])
def test_batches_carry_pooled_frames_only_for_a_pooling_keypoint_encoder(tmp_path: Path, encoder: str, regularizer: str,
                                                                         pooled: bool) -> None:
    """A keypoint encoder's batches hold the pooled sums of the very frames the window covers; every
    other encoder (and the reconstruction baseline, whose decoder targets the frames) gets the frames."""
    from hplan.models.encoders import pooled_frame_sums

    root = make_dataset(tmp_path / "data", episodes=6, steps=12, obs="image", image_size=16)
    cfg = ModelConfig(subgoal_interval=3, image_encoder=encoder, image_downsample=2, frame_history=2,
                      regularizer=regularizer)
    data = EpisodeDataModule(root, cfg, TrainConfig(rollout_horizon=3, window_stride=1, batch_size=4, val_fraction=0.25,
                                                    label_budget=10), seed=0)
    data.setup()
    loader = data._loader(data.train_episodes, True)
    plan = next(iter(loader.batch_sampler))
    batch = data.dataset.__getitems__(plan)
    frames = data.dataset.sequence(plan.episode, plan.start, data.window)
    seq = batch["obs_seq"].numpy()
    if pooled:
        expected = pooled_frame_sums(frames.reshape(-1, *frames.shape[2:]), 2).reshape(*frames.shape[:2], 8, 8, 3)
        assert seq.dtype == np.uint16 and np.array_equal(seq, expected)
    else:
        assert seq.dtype == np.uint8 and np.array_equal(seq, frames)
