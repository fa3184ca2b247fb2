"""Conformal guardrail thresholds: the guarantee, the planner's use of them, the files and the command."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.errors import CheckpointError, HplanError
from hplan.models.calibration import GuardrailCalibration, conformal_threshold, load_calibration
from hplan.planning.analytic import PointMassModel, UnsafeDisc
from hplan.planning.config import GuardrailConfig, PlannerConfig
from hplan.planning.energy import Energy

sys.path.insert(0, str(Path(__file__).parent))
from cli_support import run_cli  # noqa: E402


def _calibration(scores: list[float], name: str = "restricted_zone") -> GuardrailCalibration:
    both = {mode: {name: sorted(scores)} for mode in ("mean", "max")}
    return GuardrailCalibration(both, {mode: {name: [0.0, 0.1]} for mode in ("mean", "max")}, "cal.json", len(scores))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(19, 400), risk=st.sampled_from([0.05, 0.1, 0.2]), seed=st.integers(0, 10_000))
def test_the_miss_rate_of_new_violations_is_at_most_delta(n: int, risk: float, seed: int) -> None:
    """Exchangeable violating scores: averaged over many calibration draws, the share of new ones
    under the threshold is k / (n + 1) ≤ δ (here estimated with 300 draws of 200 new scores)."""
    rng = np.random.default_rng(seed)
    misses = []
    for _ in range(300):
        tau = conformal_threshold(rng.beta(2, 5, n), risk)
        misses.append(float((rng.beta(2, 5, 200) < tau).mean()))
    expected = math.floor(risk * (n + 1)) / (n + 1)
    assert expected <= risk
    assert np.mean(misses) <= expected + 4 * np.std(misses) / np.sqrt(len(misses)) + 1e-9


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.floats(0, 1), min_size=0, max_size=60), low=st.floats(0.01, 0.5), extra=st.floats(0, 0.49))
def test_a_larger_risk_never_lowers_the_threshold(scores: list[float], low: float, extra: float) -> None:
    assert conformal_threshold(np.array(scores), low) <= conformal_threshold(np.array(scores), low + extra)
    if math.floor(low * (len(scores) + 1)) == 0:
        assert conformal_threshold(np.array(scores), low) == 0.0  # nothing certified: flag everything


def test_hard_mode_uses_each_heads_calibrated_threshold() -> None:
    model = PointMassModel(unsafe=UnsafeDisc(centre=(0.2, 0.0), radius=0.15))
    scores = list(np.linspace(0.3, 0.9, 39))  # k = ⌊0.1 · 40⌋ = 4: τ = the 4th smallest
    model.calibration = _calibration(scores)
    energy = Energy(model, PlannerConfig(), GuardrailConfig(mode="hard", risk=0.1))
    assert energy.thresholds.tolist() == pytest.approx([sorted(scores)[3]])
    plain = Energy(model, PlannerConfig(), GuardrailConfig(mode="hard", threshold=0.4))
    assert plain.thresholds.tolist() == pytest.approx([0.4])
    acts = torch.rand((64, 4, 2), generator=torch.Generator().manual_seed(0)) * 2 - 1
    z0, goal = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 0.1])
    ev = energy.low_objective(z0, goal)(acts)
    z = model.predict(z0.expand(64, 2), acts)
    probs = model.heads(torch.cat([z0.expand(64, 1, 2), z[:, :-1]], 1), acts)[..., 0]
    assert torch.equal(ev.feasible, probs.amax(1) <= sorted(scores)[3])


def test_risk_without_a_calibration_or_with_too_few_violations_is_one_line() -> None:
    model = PointMassModel(unsafe=UnsafeDisc(centre=(0.2, 0.0), radius=0.15))
    with pytest.raises(HplanError, match="no guardrail calibration.*hplan calibrate"):
        Energy(model, PlannerConfig(), GuardrailConfig(mode="hard", risk=0.05))
    model.calibration = _calibration([0.5] * 10)  # δ = 0.05 needs 19
    with pytest.raises(HplanError, match="10 violating transitions of 'restricted_zone'.*at least 19"):
        Energy(model, PlannerConfig(), GuardrailConfig(mode="hard", risk=0.05))
    Energy(model, PlannerConfig(), GuardrailConfig(mode="hard", risk=0.1))  # ⌊0.1 · 11⌋ = 1: certified


def test_a_malformed_calibration_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    good = _calibration([0.2, 0.4]).to_json()
    path.write_text(json.dumps(good))
    assert load_calibration(tmp_path).violating["mean"]["restricted_zone"] == [0.2, 0.4]
    for bad in ({**good, "format": "x"}, {**good, "violating": []},
                {**good, "violating": {"mean": {"z": [2.0]}, "max": {"z": [0.1]}}}):
        path.write_text(json.dumps(bad))
        with pytest.raises(HplanError, match="calibration.json"):
            load_calibration(tmp_path)


def test_training_calibrates_on_validation_and_the_command_recalibrates(tmp_path: Path, monkeypatch, capsys) -> None:
    from synthetic_episodes import make_dataset
    from test_training import SCENARIO, TINY

    from hplan.models.checkpoint import load_world_model
    from hplan.models.training import train_world_model

    torch.set_num_threads(1)
    data = make_dataset(tmp_path / "data", episodes=16, steps=24, obs="state")
    run = train_world_model(SCENARIO, data, tmp_path / "run", max_epochs=1, **TINY)
    model = load_world_model(run)
    assert model.calibration is not None and model.calibration.source.endswith("(validation episodes)")
    assert set(model.calibration.violating["mean"]) == set(model.guardrail_names)
    from hplan.models.training import apply_overrides, ensure_calibration

    written = json.loads((run / "calibration.json").read_text())
    (run / "calibration.json").unlink()  # a model cached from before calibration existed
    trained = apply_overrides(SCENARIO, TINY | {"max_epochs": 1})
    ensure_calibration(run, data, trained.model, trained.train, trained.seed)
    assert json.loads((run / "calibration.json").read_text()) == written  # what training itself wrote
    heldout = make_dataset(tmp_path / "heldout", episodes=12, steps=24, obs="state", seed=7)
    code, stdout, stderr = run_cli(monkeypatch, capsys, "calibrate", str(run), "--data", str(heldout), "--risk", "0.1")
    assert code == 0, stderr
    assert "wall_contact" in stdout and "calibration.json" in stdout
    recalibrated = load_world_model(run)
    assert recalibrated.calibration.source == str(heldout)
    from hplan.diagnostics.heldout import evaluate_heldout

    report = evaluate_heldout(load_world_model(run), make_dataset(tmp_path / "other", episodes=8, steps=24, seed=9),
                              horizon=3, risk=0.1)
    assert 0.0 <= report["miss_rate_at_risk_wall_contact"] <= 1.0
    (tmp_path / "file").write_text("x")  # a file in the way
    (tmp_path / "stranger").mkdir()  # a folder that is no training run
    (tmp_path / "stranger" / "notes.txt").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "stranger"):
        code, _, stderr = run_cli(monkeypatch, capsys, "calibrate", str(bad), "--data", str(heldout))
        assert code != 0 and "RUN_DIR" in stderr and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    (run / "calibration.json").write_text("[]")
    with pytest.raises(CheckpointError, match="calibration.json"):
        load_world_model(run)


@pytest.mark.parametrize("mode", ["penalty", "lagrangian"])
def test_penalty_modes_with_a_risk_level_price_only_the_margin_over_the_calibrated_threshold(mode: str) -> None:
    """With ``risk`` a step the calibrated head does not flag costs nothing, and a flagged one its
    margin scaled so that p = 1 costs one weight (λ): the same candidates, priced both ways."""
    model = PointMassModel(unsafe=UnsafeDisc(centre=(0.2, 0.0), radius=0.15))
    scores = list(np.linspace(0.3, 0.9, 39))
    model.calibration = _calibration(scores)
    tau = sorted(scores)[3]
    guard = GuardrailConfig(mode=mode, risk=0.1, weight=2.0, multiplier_init=2.0)
    calibrated = Energy(model, PlannerConfig(), guard)
    plain = Energy(model, PlannerConfig(), GuardrailConfig(mode=mode, weight=2.0, multiplier_init=2.0))
    acts = torch.rand((64, 4, 2), generator=torch.Generator().manual_seed(1)) * 2 - 1
    z0, goal = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 0.1])
    z = model.predict(z0.expand(64, 2), acts)
    probs = model.heads(torch.cat([z0.expand(64, 1, 2), z[:, :-1]], 1), acts)[..., 0]
    task = plain.low_objective(z0, goal)(acts).cost - 2.0 * probs.sum(1)
    margin = ((probs - tau).clamp(min=0) / (1 - tau)).sum(1)
    cost = calibrated.low_objective(z0, goal)(acts).cost
    torch.testing.assert_close(cost, task + 2.0 * margin)
    assert bool((probs.amax(1) <= tau).any()) and bool((probs.amax(1) > tau).any())  # both kinds are in the batch
    waypoints = torch.tensor([[0.2, 0.0], [0.9, 0.9]])
    point_probs = model.heads(waypoints)[..., 0]
    expected = 2.0 * (point_probs - tau).clamp(min=0) / (1 - tau)
    torch.testing.assert_close(calibrated.waypoint_cost(waypoints), expected)
