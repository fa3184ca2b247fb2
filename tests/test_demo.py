"""``hplan demo`` end to end with a tiny profile: every stage runs, caches, and reports."""

from __future__ import annotations

from pathlib import Path

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


@pytest.mark.parametrize("value, text", [(3850.0, "3,850"), (3850, "3,850"), (12.345, "12.3"), (0.123456, "0.123"),
                                         (123.4, "123"), (1234.5, "1,234"), (1e-5, "1.00e-05"), (0.0, "0"),
                                         (float("nan"), "–"), (7, "7"), (True, "True"), ("flat", "flat")])
def test_report_numbers_read_as_a_person_writes_them(value, text) -> None:
    from hplan.htmlreport import readable

    assert readable(value) == text
