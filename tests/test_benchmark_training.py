"""benchmarks/bench_training.py --end-to-end: trains as `hplan train` does and prints where the time went."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from synthetic_episodes import make_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_training.py"
TINY = ["model.latent_dim=8", "model.hidden_dim=32", "model.subgoal_interval=3", "model.landmarks=8",
        "train.max_epochs=2", "train.rollout_horizon=3", "train.batch_size=16", "train.window_stride=2",
        "train.predictor_fit_steps=5", "train.subgoal_fit_steps=5", "train.distance_fit_steps=5",
        "train.guardrail_fit_steps=5", "train.label_budget=40", "train.distance_max_gap=8"]


def test_end_to_end_prints_the_wall_time_and_every_stage_of_the_run(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", episodes=12, steps=24, seed=0, env_id="hplan/PointRooms-v0")
    done = subprocess.run([sys.executable, str(SCRIPT), "--end-to-end", "--scenario", "point_two_rooms",
                           "--data", str(data), *[arg for s in TINY for arg in ("--set", s)]],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 epochs" in done.stdout
    wall = float(re.search(r"wall time ([\d,.]+) s", done.stdout).group(1).replace(",", ""))
    stages = dict(re.findall(r"^  (\w+)\s+([\d.]+) s$", done.stdout, flags=re.M))
    assert {"joint_steps", "refit_predictor", "refit_waypoints", "validation"} <= stages.keys()
    assert 0 < float(stages["joint_steps"]) < wall


def test_a_dataset_of_another_environment_is_refused_in_one_line(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", episodes=4, steps=8, seed=0)  # the synthetic env, not PointRooms
    done = subprocess.run([sys.executable, str(SCRIPT), "--end-to-end", "--scenario", "point_two_rooms",
                           "--data", str(data)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "manifest.json" in done.stderr and "env_id" in done.stderr
