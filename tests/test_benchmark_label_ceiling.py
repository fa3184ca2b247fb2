"""benchmarks/guardrail_label_ceiling.py: a head on the true state learns the zone, and more labels do not hurt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from synthetic_episodes import make_dataset

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "guardrail_label_ceiling.py"


def test_the_ceiling_table_reads_the_zone_from_the_true_state(tmp_path: Path) -> None:
    train = make_dataset(tmp_path / "train", episodes=40, steps=32, seed=0)
    heldout = make_dataset(tmp_path / "heldout", episodes=16, steps=32, seed=1)
    out = tmp_path / "ceiling.csv"
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(train), "--heldout", str(heldout),
                           "--labels", "40,all", "--draws", "2", "--steps", "300", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out)
    assert set(frame["violation"]) == {"wall_contact", "restricted_zone"}
    zone = frame[frame["violation"] == "restricted_zone"].groupby("labels")["auroc"].mean()
    assert list(zone.index) == [40, 40 * 32]  # 'all' is every valid transition, drawn once
    assert zone.loc[40 * 32] > 0.95  # a box in (x, y): all labels pin it down
    assert zone.loc[40 * 32] >= zone.loc[40] - 0.02
    assert not out.with_suffix(".csv.tmp").exists()
