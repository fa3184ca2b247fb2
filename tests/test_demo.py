"""``hplan demo`` end to end with a tiny profile: every stage runs, caches, and reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from hplan.demo import DemoProfile, run_demo
from hplan.demo.pipeline import EVAL_MATRIX

ROOT = Path(__file__).resolve().parent.parent
TINY = DemoProfile(collect_episodes=4, max_epochs=1, eval_episodes=1, stress_suite=str(ROOT / "stress" / "smoke.toml"),
                   stress_seeds=1, stress_max_steps=3)


@pytest.mark.slow
def test_demo_runs_every_stage_and_reuses_its_cache(tmp_path: Path) -> None:
    console = Console(record=True, width=160)
    scenario = ROOT / "tests" / "fixtures" / "tiny_four_rooms.toml"
    first = run_demo(scenario=scenario, out_dir=tmp_path / "demo", profile=TINY, device="cpu", console=console)

    assert set(first.evaluation["run"]) == {label for label, _, _ in EVAL_MATRIX}
    assert first.evaluation["episodes"].eq(1).all()
    assert first.evaluation["success_rate"].between(0, 1).all()
    assert first.stress_summary is not None and len(first.stress_summary) > 0
    html = first.report.read_text()
    assert "data:image/png;base64," in html and "flat, guardrails off" in html
    assert 'alt="trajectories on the map"' in html and 'alt="success against start-goal separation"' in html
    import re

    assert "e+0" not in re.sub(r"base64,[^\"]+", "", html)  # budgets read 3,850, not 3.85e+03
    assert pd.read_csv(tmp_path / "demo" / "summary.csv").shape[0] == len(EVAL_MATRIX)
    assert "hier, guardrails on" in console.export_text()

    model = tmp_path / "demo" / "model" / "model.pt"
    stamp = model.stat().st_mtime_ns
    second = run_demo(scenario=scenario, out_dir=tmp_path / "demo", profile=TINY, device="cpu", console=console)
    assert model.stat().st_mtime_ns == stamp, "a finished model must be reused, not retrained"
    same_seeds = ["run", "success_rate", "violation_rate", "mean_steps"]
    pd.testing.assert_frame_equal(first.evaluation[same_seeds], second.evaluation[same_seeds])

    # a demo of another version (other training settings) trains its own model there, and its stress
    # results (of the earlier model) are replaced, not refused
    import dataclasses

    import json

    recorded = tmp_path / "demo" / "model" / "config.json"
    config = json.loads(recorded.read_text())
    del config["train"]["refit_every"]  # as recorded before the setting existed
    recorded.write_text(json.dumps(config))
    newer = dataclasses.replace(TINY, refit_every=2)
    third = run_demo(scenario=scenario, out_dir=tmp_path / "demo", profile=newer, device="cpu", console=console)
    text = console.export_text()
    assert "train.refit_every is 1 (the run predates the setting)" in text and "training the model again" in text
    assert model.stat().st_mtime_ns != stamp and third.stress_summary is not None and len(third.stress_summary) > 0


@pytest.mark.parametrize("value, text", [(3850.0, "3,850"), (3850, "3,850"), (12.345, "12.3"), (0.123456, "0.123"),
                                         (123.4, "123"), (1234.5, "1,234"), (1e-5, "1.00e-05"), (0.0, "0"),
                                         (float("nan"), "–"), (7, "7"), (True, "True"), ("flat", "flat"),
                                         (np.int64(3850), "3,850"), (np.float32(3850.0), "3,850"),
                                         (np.float64(0.123456), "0.123"), (np.int32(7), "7"), (np.bool_(True), "True")])
def test_report_numbers_read_as_a_person_writes_them(value, text) -> None:
    from hplan.htmlreport import readable

    assert readable(value) == text


@pytest.mark.slow
def test_arms_evaluated_in_worker_processes_play_the_episodes_played_here(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo evaluates its arms in spawned workers on a multi-core CPU; every episode must be the
    one this process plays at one torch thread (same actions, same outcome)."""
    import json

    import torch

    from hplan.config import load_scenario
    from hplan.demo import pipeline

    scenario = ROOT / "tests" / "fixtures" / "tiny_four_rooms.toml"
    profile = DemoProfile(collect_episodes=4, max_epochs=1, eval_episodes=2, stress_suite="unused")
    first = run_demo(scenario=scenario, out_dir=tmp_path / "demo", profile=TINY, device="cpu",
                     console=Console(record=True, width=160))
    run_dir, config = first.out_dir / "model", load_scenario(scenario)
    frames, actions = {}, {}
    threads = torch.get_num_threads()
    for workers in (1, 2):
        monkeypatch.setattr(pipeline, "_evaluation_workers", lambda device, n=workers: n)
        torch.set_num_threads(1)
        try:
            frames[workers] = pipeline._evaluate(config, run_dir, tmp_path / f"eval-{workers}", profile, "cpu")
        finally:
            torch.set_num_threads(threads)
        actions[workers] = [[step["action"] for step in map(json.loads, path.read_text().splitlines()[1:])
                             if "action" in step]
                            for path in sorted((tmp_path / f"eval-{workers}").glob("*/episodes/ep-*.jsonl"))]
    assert len(actions[2]) == len(EVAL_MATRIX) * profile.eval_episodes and all(actions[2])
    assert actions[1] == actions[2]
    columns = ["run", "success_rate", "violation_rate", "mean_steps"]
    pd.testing.assert_frame_equal(frames[1][columns], frames[2][columns])
