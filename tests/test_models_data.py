"""Training windows over episodes that end early: every real transition trains, none past the end."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from hplan.data.shards import load_episodes
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
