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


def test_bad_label_budgets_and_missing_data_are_refused_in_one_line(tmp_path: Path) -> None:
    train = make_dataset(tmp_path / "train", episodes=4, steps=8, seed=0)
    for args, field in ([["--data", str(train), "--heldout", str(train), "--labels", "1k"], "--labels"],
                        [["--data", str(train), "--heldout", str(train), "--labels", "0"], "--labels"],
                        [["--data", str(tmp_path / "none"), "--heldout", str(train)], "no dataset here"]):
        out = tmp_path / "ceiling.csv"
        done = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        assert field in done.stderr.strip().splitlines()[-1]
        assert "Traceback" not in done.stderr and not out.exists()
