"""Lightning training end to end on tiny synthetic data: run dir, resume, collapse flag, pruning, CLI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from hplan.config import EnvConfig, ScenarioConfig
from hplan.device import torch_threads
from hplan.diagnostics.collapse import CollapseRule
from hplan.diagnostics.heldout import evaluate_heldout
from hplan.diagnostics.high_level import high_level_verdict
from hplan.diagnostics.report import read_run_metrics
from hplan.errors import CheckpointError, ConfigError, HplanError
from hplan.models.checkpoint import load_world_model
from hplan.models.training import finished_run_matches, train_world_model

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_episodes import ENV_ID, make_dataset  # noqa: E402

torch.set_num_threads(1)  # tiny models: extra threads only add contention on a shared 2-core box

TINY = dict(latent_dim=8, hidden_dim=32, encoder_channels=4, image_downsample=1, code_dim=2, subgoal_interval=3,
            distance_dim=8, batch_size=16, window_stride=1, lr=3e-3, rollout_horizon=3, distance_max_gap=8, label_budget=120,
            guardrail_fit_steps=20, guardrail_batch=16, distance_fit_steps=50, distance_fit_batch=32,
            subgoal_fit_steps=30, predictor_fit_steps=30, val_fraction=0.3,
            device="cpu")
SCENARIO = ScenarioConfig(name="synthetic", env=EnvConfig(id=ENV_ID, obs_mode="state"))


@pytest.fixture(scope="module")
def state_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("state"), episodes=20, steps=24, obs="state")


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough validation episodes (15) for the linear probe to be steady: with 6 its R² swung from
    0.3 to 0.98 across training seeds of the same healthy model."""
    return make_dataset(tmp_path_factory.mktemp("probe"), episodes=48, steps=24, obs="state")


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("image"), episodes=12, steps=16, obs="image", image_size=16)


def test_run_directory_layout_and_loadable_image_model(image_data: Path, tmp_path: Path) -> None:
    scenario = ScenarioConfig(name="synthetic", env=EnvConfig(id=ENV_ID, obs_mode="image"))
    run = train_world_model(scenario, image_data, tmp_path / "run", max_epochs=2, **TINY)
    for name in ("config.json", "seed", "versions.json", "model.pt", "checkpoints/last.ckpt", "metrics.csv"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["model"]["latent_dim"] == 8
    assert (run / "seed").read_text().strip() == "0"
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == [0, 1]
    for column in ("val/loss", "train/jepa_loss", "val/effective_rank", "val/std_min", "val/offdiag_corr",
                   "val/nn_diversity", "val/probe_r2", "val/probe_r2_pred", "val/auroc_wall_contact"):
        assert metrics[column].notna().all(), column
    stages = ("joint_steps", "refit_latents", "refit_predictor", "refit_distance", "refit_subgoal",
              "refit_guardrails", "high_level_diagnostics", "validation")
    for stage in stages:  # where each epoch's wall time went, so training speed can be worked on from the log
        assert (metrics[f"time/{stage}_s"] >= 0).all(), stage
    # the waypoints feed planning only: drawn in the last epoch, not in every one
    assert metrics["time/refit_waypoints_s"].isna().tolist() == [True, False]
    model = load_world_model(run, device="cpu", expect_env_id=ENV_ID)
    frames = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    assert model.encode(frames).shape == (3, 8)
    assert model.surprise_stats[1] > 0  # calibrated on validation data
    with pytest.raises(CheckpointError, match="hplan/PointRooms-v0"):
        load_world_model(run, expect_env_id="hplan/PointRooms-v0")


def test_collapse_flag_fires_for_none_and_stays_quiet_for_vicreg(probe_data: Path, tmp_path: Path) -> None:
    verdicts = {}
    for reg in ("none", "vicreg"):
        run = train_world_model(SCENARIO, probe_data, tmp_path / reg, regularizer=reg, max_epochs=3, **TINY)
        verdicts[reg] = read_run_metrics(run)
    collapsed, healthy = verdicts["none"], verdicts["vicreg"]
    assert collapsed.verdict.collapsed, collapsed.verdict.describe()
    assert collapsed.frame["train/jepa_loss"].iloc[-1] < collapsed.frame["train/jepa_loss"].iloc[0]
    assert not healthy.verdict.collapsed, healthy.verdict.describe()
    assert healthy.frame["val/probe_r2"].iloc[-1] > CollapseRule().probe_floor
    assert healthy.frame["val/std_mean"].iloc[-1] > 10 * collapsed.frame["val/std_mean"].iloc[-1]


def _degrade(model: torch.nn.Module, how: str) -> None:
    """Break a trained P_hi the three ways the degenerate-high-level flag is for."""
    p_hi = model.subgoal.p_hi
    with torch.no_grad():
        if how == "untrained":  # the zero-initialised last layer: every jump stays put
            p_hi[-1].weight.zero_()
            p_hi[-1].bias.zero_()
        elif how == "constant":  # the same jump from everywhere, whatever the code
            p_hi[-1].weight.zero_()
            p_hi[-1].bias.copy_(torch.linspace(-1.0, 1.0, p_hi[-1].bias.numel()))
        else:  # prior-collapsed: the code no longer reaches P_hi
            p_hi[0].weight[:, -model.code_dim:].zero_()


@pytest.mark.parametrize("how", ["untrained", "constant", "prior-collapsed"])
def test_high_level_flag_fires_on_a_degenerate_p_hi_and_stays_quiet_on_a_trained_one(
        state_data: Path, tmp_path_factory: pytest.TempPathFactory, how: str) -> None:
    run = tmp_path_factory.getbasetemp() / "high-level-run"
    if not (run / "model.pt").is_file():
        train_world_model(SCENARIO, state_data, run, max_epochs=3, **TINY)
    logged = read_run_metrics(run).high_level
    assert logged is not None and not logged.degenerate, logged
    model = load_world_model(run, device="cpu", expect_env_id=ENV_ID)
    trained = evaluate_heldout(model, state_data, horizon=3)
    verdict = high_level_verdict(trained, prefix="")
    assert verdict is not None and not verdict.degenerate, verdict.describe()
    _degrade(model, how)
    broken = high_level_verdict(evaluate_heldout(model, state_data, horizon=3), prefix="")
    assert broken is not None and broken.degenerate
    assert any("prior spread" in reason for reason in broken.reasons), broken.describe()
    if how != "prior-collapsed":  # a P_hi that ignores its input does no better than standing still
        assert any("jump skill" in reason for reason in broken.reasons), broken.describe()


class _Interrupt(pl.Callback):
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def test_an_env_without_violations_trains_to_finite_weights(tmp_path: Path) -> None:
    """No guardrail heads (MiniGrid FourRooms, OGBench mazes): their loss used to be the mean of an
    empty tensor, NaN: the logged training loss was NaN and the (outputless) heads' weights too."""
    data = make_dataset(tmp_path / "data", episodes=10, steps=16, obs="state", violations=False)
    run = train_world_model(SCENARIO, data, tmp_path / "run", max_epochs=1, **TINY)
    frame = read_run_metrics(run).frame
    for column in ("train/loss", "val/loss"):
        assert np.isfinite(frame[column].dropna()).all() and len(frame[column].dropna())
    model = load_world_model(run)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.guardrail_names == ()


def test_interrupted_training_resumes_to_the_same_model(state_data: Path, tmp_path: Path) -> None:
    straight = train_world_model(SCENARIO, state_data, tmp_path / "straight", max_epochs=2, **TINY)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_world_model(SCENARIO, state_data, tmp_path / "resumed", max_epochs=2, callbacks=[_Interrupt()], **TINY)
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "resumed" / "model.pt").exists()
    with pytest.raises(CheckpointError, match="resume"):
        load_world_model(tmp_path / "resumed")
    resumed = train_world_model(SCENARIO, state_data, tmp_path / "resumed", max_epochs=2, **TINY)
    a = torch.load(straight / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(resumed / "model.pt", weights_only=False)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    rows = pd.read_csv(resumed / "metrics.csv")
    assert list(rows["epoch"]) == [0, 1]
    assert rows["step"].iloc[1] == pd.read_csv(straight / "metrics.csv")["step"].iloc[1]


def test_run_dir_with_other_settings_is_refused(state_data: Path, tmp_path: Path) -> None:
    train_world_model(SCENARIO, state_data, tmp_path / "run", max_epochs=1, **TINY)
    with pytest.raises(CheckpointError, match="model.latent_dim is 8 .* but 16 now"):
        train_world_model(SCENARIO, state_data, tmp_path / "run", max_epochs=1, **{**TINY, "latent_dim": 16})


def test_heldout_evaluation_tracks_geodesic_distance(state_data: Path, tmp_path: Path) -> None:
    from hplan.diagnostics.heldout import evaluate_heldout

    run = train_world_model(SCENARIO, state_data, tmp_path / "run", max_epochs=3, **TINY)
    heldout = make_dataset(tmp_path / "heldout", episodes=8, steps=24, obs="state", seed=7)
    model = load_world_model(run, device="cpu")
    calls = []

    def euclid(p, q):
        calls.append(1)
        return float(np.linalg.norm(np.asarray(p) - np.asarray(q)))

    out = evaluate_heldout(model, heldout, horizon=3, geodesic=euclid, distance_pairs=300)
    assert len(calls) == 300
    from hplan.data.shards import load_episodes
    from hplan.diagnostics.probes import heldout_probe_r2

    data = load_episodes(heldout)
    with torch.no_grad():
        z = model.encode(torch.from_numpy(data["obs"]))
    pos = torch.from_numpy(data["true_state"][..., :2])
    even = torch.arange(8) % 2 == 0
    manual = heldout_probe_r2(z[even].flatten(0, 1), pos[even].flatten(0, 1), z[~even].flatten(0, 1), pos[~even].flatten(0, 1))
    assert out["probe_r2"] == pytest.approx(manual, abs=1e-6)
    assert -1.0 <= out["probe_r2_pred3"] <= 1.0
    assert 0.0 <= out["auroc_wall_contact"] <= 1.0
    from hplan.metrics import expected_calibration_error

    with torch.no_grad():  # the head's calibration: its predicted probabilities against what happened
        probs = model.heads(z[:, :-1], torch.from_numpy(data["action"]))[..., 0]
    valid = torch.from_numpy(data["valid"].astype(bool))
    labels = data["violations"][..., 0].astype(bool)[valid.numpy()]
    assert out["ece_wall_contact"] == pytest.approx(expected_calibration_error(probs[valid].numpy(), labels), abs=1e-6)
    assert out["straight_line_spearman_geodesic"] == pytest.approx(1.0)
    assert out["distance_spearman_geodesic"] > 0.3  # learned from within-episode step gaps only


def test_bad_overrides_name_the_field(state_data: Path, tmp_path: Path) -> None:
    with pytest.raises(HplanError, match="unknown override 'latent_size'"):
        train_world_model(SCENARIO, state_data, tmp_path / "a", latent_size=4)
    with pytest.raises(ConfigError, match="train.rollout_horizon: must be >= 1"):
        train_world_model(SCENARIO, state_data, tmp_path / "b", rollout_horizon=0)
    with pytest.raises(HplanError, match="env_id.*hplan/PointRooms-v0"):
        other = ScenarioConfig(name="x", env=EnvConfig(id="hplan/PointRooms-v0"))
        train_world_model(other, state_data, tmp_path / "c", **TINY)
    assert not (tmp_path / "c").exists()
    # same environment, other observations: a model its own scenario would then refuse to run
    images = ScenarioConfig(name="x", env=EnvConfig(id=ENV_ID, obs_mode="image"))
    with pytest.raises(HplanError, match=r"manifest.json: obs_mode: the dataset holds 'state' observations"):
        train_world_model(images, state_data, tmp_path / "d", **TINY)
    assert not (tmp_path / "d").exists()


def test_optuna_pruning_callback_reads_the_validation_metric(state_data: Path, tmp_path: Path) -> None:
    from optuna_integration import PyTorchLightningPruningCallback

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    callback = PyTorchLightningPruningCallback(trial, monitor="val/loss")
    train_world_model(SCENARIO, state_data, tmp_path / "run", max_epochs=2, callbacks=[callback], **TINY)
    values = study.trials[0].intermediate_values
    assert sorted(values) == [0, 1]
    logged = pd.read_csv(tmp_path / "run" / "metrics.csv")["val/loss"].tolist()
    assert [values[0], values[1]] == pytest.approx(logged, rel=1e-6)


def test_cli_train_then_inspect(state_data: Path, tmp_path: Path) -> None:
    from hplan.cli import app

    model = {k: v for k, v in TINY.items() if k in ("latent_dim", "hidden_dim", "code_dim", "subgoal_interval", "distance_dim")}
    train = {k: v for k, v in TINY.items() if k not in model and k not in ("encoder_channels", "image_downsample")}
    toml = [f'name = "synthetic"', "[env]", f'id = "{ENV_ID}"', 'obs_mode = "state"', "[model]"]
    toml += [f"{k} = {json.dumps(v)}" for k, v in model.items()] + ["[train]"]
    toml += [f"{k} = {json.dumps(v)}" for k, v in train.items()]
    scenario = tmp_path / "synthetic.toml"
    scenario.write_text("\n".join(toml) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(scenario), "--data", str(state_data), "--out", str(tmp_path / "run"),
                                 "--regularizer", "none", "--max-epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "COLLAPSED" in result.output
    result = runner.invoke(app, ["inspect", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "COLLAPSED" in result.output and "effective_rank" in result.output
    assert "high_jump_skill" in result.output and "high_probe_r2_j1" in result.output
    assert "high level DEGENERATE" in result.output or "high level healthy" in result.output
    png = tmp_path / "run" / "collapse.png"
    held = runner.invoke(app, ["inspect", str(tmp_path / "run"), "--data", str(state_data), "--device", "cpu"])
    assert held.exit_code == 0, held.output
    assert "probe_r2_pred3" in held.output and "auroc_wall_contact" in held.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = runner.invoke(app, ["inspect", str(tmp_path / "nothing")])
    assert missing.exit_code != 0


def test_frame_history_model_trains_evaluates_and_acts(image_data: Path, tmp_path: Path) -> None:
    """``frame_history = 2`` end to end: training windows, held-out evaluation and the agent all
    feed the encoder stacked frames (a shape mix-up anywhere raises in ``encode``)."""
    from hplan.diagnostics.heldout import evaluate_heldout
    from hplan.planning.agent import make_agent
    from hplan.planning.config import GuardrailConfig, PlannerConfig, SearchConfig
    from hplan.vocabulary.frames import repeat_frame

    scenario = ScenarioConfig(name="synthetic", env=EnvConfig(id=ENV_ID, obs_mode="image"))
    run = train_world_model(scenario, image_data, tmp_path / "run", max_epochs=1, frame_history=2, **TINY)
    model = load_world_model(run, device="cpu")
    assert model.frame_history == 2 and model.input_shape == (2, 16, 16, 3)
    out = evaluate_heldout(model, image_data, horizon=3)
    assert np.isfinite(out["probe_r2"]) and 0.0 <= out["auroc_wall_contact"] <= 1.0

    from hplan.data.shards import load_episodes

    frames = load_episodes(image_data)["obs"][0]
    cfg = PlannerConfig(kind="flat", horizon=3, search=SearchConfig(population=16, iterations=1, elites=4))
    agent = make_agent(model, cfg, GuardrailConfig(), seed=0, device="cpu")
    for _episode in range(2):  # the history starts afresh each episode: the first frame repeated
        agent.reset(frames[-1], seed=0)
        action, _ = agent.act(frames[0])
        assert np.all(np.abs(action) <= 1.0)
        with torch.no_grad():
            still = model.encode(torch.from_numpy(repeat_frame(frames[0], 2))[None])[0]
        torch.testing.assert_close(agent._last[0], still)
        agent.act(frames[1])
        with torch.no_grad():
            moving = model.encode(torch.from_numpy(np.stack([frames[0], frames[1]]))[None])[0]
        torch.testing.assert_close(agent._last[0], moving)


def test_keypoint_model_keeps_training_latents_as_waypoints_and_a_landmark_agent_acts(
        image_data: Path, tmp_path: Path) -> None:
    """Keypoints + ``keypoint_norm`` + two frames train end to end; the checkpoint carries
    ``landmarks`` waypoints that are latents of training observations with the graph of the steps
    the episodes took between them, and the landmark high level plans with them (no code optimiser, the whole budget to the low level)."""
    from hplan.data.shards import load_episodes
    from hplan.planning.agent import make_agent
    from hplan.planning.config import BudgetConfig, GuardrailConfig, PlannerConfig, SearchConfig

    scenario = ScenarioConfig(name="synthetic", env=EnvConfig(id=ENV_ID, obs_mode="image"))
    run = train_world_model(scenario, image_data, tmp_path / "run", max_epochs=1, frame_history=2,
                            image_encoder="keypoints", keypoints=4, keypoint_norm=True, landmarks=20, **TINY)
    model = load_world_model(run, device="cpu")
    waypoints = model.waypoints()
    assert waypoints.shape == (20, 8)
    obs = load_episodes(image_data)["obs"]
    with torch.no_grad():
        every = model.encode_episodes(obs, np.arange(len(obs)), obs.shape[1]).flatten(0, 1)
    nearest = (waypoints[:, None] - every[None]).norm(dim=-1).min(dim=1).values  # exact (cdist rounds ~1e-4)
    assert float(nearest.max()) < 1e-4  # each waypoint is the latent of a real observation
    edges = model.waypoint_edges()  # the steps training episodes took between waypoints
    assert edges is not None and edges.shape == (20, 20)
    assert torch.equal(torch.diagonal(edges), torch.zeros(20))
    joined = torch.isfinite(edges) & (edges > 0)
    assert bool(joined.any()) and float(edges[joined].max()) <= model.cfg.landmark_gap
    before = waypoints.clone()
    model.set_waypoints(model.waypoints(), edges.clone())  # a view of the buffer itself: nothing lost
    torch.testing.assert_close(model.waypoints(), before)
    cfg = PlannerConfig(kind="hier", high="landmarks", horizon=3,
                        search=SearchConfig(population=16, iterations=1, elites=4), budget=BudgetConfig(evals=200))
    agent = make_agent(model, cfg, GuardrailConfig(), seed=0, device="cpu")
    assert agent.budget.high is None
    agent.reset(obs[0, -1], seed=0)
    action, info = agent.act(obs[0, 0])
    assert np.all(np.abs(action) <= 1.0) and info.model_evals <= 200


def test_guardrail_ensemble_trains_through_the_refit_and_reloads(state_data: Path, tmp_path: Path) -> None:
    """``guardrail_members = 2``: the refit gives the bootstrap member its own fit (the two disagree),
    and the checkpoint reloads both members with the same outputs."""
    run = train_world_model(SCENARIO, state_data, tmp_path / "run", max_epochs=1, guardrail_members=2, **TINY)
    model = load_world_model(run, device="cpu", expect_env_id=ENV_ID)
    assert model.guardrail.members == 2
    z, action = torch.randn(32, 8, generator=torch.Generator().manual_seed(0)), torch.zeros(32, 2)
    with torch.no_grad():
        members = torch.sigmoid(model.guardrail_member_logits(z, action))
        assert (members[:, 0] - members[:, 1]).abs().max() > 1e-3
        again = load_world_model(run, device="cpu").guardrail_member_logits(z, action)
        torch.testing.assert_close(torch.sigmoid(again), members)
        assert bool((model.heads(z, action, combine="max") >= model.heads(z, action) - 1e-7).all())


def test_weak_motion_labels_join_the_guardrail_refit(state_data: Path, tmp_path: Path) -> None:
    """``guardrail_weak_labels``: every frozen training transition gets a weak wall label from its
    free-motion residual; the residual agrees with the labelled subset, and the heads come out
    different from a refit on the labels alone. A name the data does not record is refused."""
    weak = train_world_model(SCENARIO, state_data, tmp_path / "weak", max_epochs=1,
                             guardrail_weak_labels=("wall_contact",), guardrail_weak_steps=60, **TINY)
    plain = train_world_model(SCENARIO, state_data, tmp_path / "plain", max_epochs=1, **TINY)
    metrics = pd.read_csv(weak / "metrics.csv")
    assert metrics["train/weak_auroc_wall_contact"].dropna().iloc[-1] > 0.9
    assert "train/weak_auroc_wall_contact" not in pd.read_csv(plain / "metrics.csv")
    z, action = torch.randn(64, 8, generator=torch.Generator().manual_seed(0)), torch.rand(64, 2) * 2 - 1
    with torch.no_grad():
        p_weak, p_plain = (torch.sigmoid(load_world_model(run, device="cpu").guardrail_logits(z, action))
                           for run in (weak, plain))
    assert (p_weak[:, 0] - p_plain[:, 0]).abs().max() > 1e-2  # the wall head was refitted differently
    with pytest.raises(HplanError, match=r"train\.guardrail_weak_labels: 'lava'"):
        train_world_model(SCENARIO, state_data, tmp_path / "bad", max_epochs=1, guardrail_weak_labels=("lava",), **TINY)


def test_a_finished_run_is_reused_only_with_the_same_settings(state_data: Path, tmp_path: Path) -> None:
    """What `hplan demo` asks before reusing its model: a changed setting (here the weak labels a new
    scenario turns on) or more epochs mean the saved model is not the one asked for."""
    run = train_world_model(SCENARIO, state_data, tmp_path / "run", max_epochs=1, **TINY)
    assert finished_run_matches(SCENARIO, run, max_epochs=1, **TINY)
    assert not finished_run_matches(SCENARIO, run, max_epochs=2, **TINY)
    assert not finished_run_matches(SCENARIO, run, max_epochs=1, guardrail_weak_labels=("wall_contact",), **TINY)
    assert not finished_run_matches(SCENARIO, tmp_path / "absent", max_epochs=1, **TINY)
    # a run made before a setting existed (its config.json lacks the key) still matches at the
    # setting's default, which keeps the old behaviour, and not at any other value
    config = json.loads((run / "config.json").read_text())
    del config["model"]["glimpse_features"]
    (run / "config.json").write_text(json.dumps(config))
    assert finished_run_matches(SCENARIO, run, max_epochs=1, **TINY)
    assert not finished_run_matches(SCENARIO, run, max_epochs=1, glimpse_features=7, **TINY)


def test_only_the_weak_label_epoch_refits_guardrails_on_every_core(state_data: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With weak labels configured, only the last epoch (the one with weak rows) refits the guardrail
    heads, on every core: the earlier epochs' refits would be drawn afresh there. Without weak labels
    every epoch refits them, on the training's threads (on a busy 2-core machine every core made that
    small full-batch refit take 120 s, 46 % of a demo epoch)."""
    import hplan.models.refits as refits

    threads: list[int] = []
    real = refits.Refits._refit_guardrails

    def recording(self: refits.Refits, *args: object) -> dict[str, float]:
        threads.append(torch.get_num_threads())
        return real(self, *args)

    monkeypatch.setattr(refits.Refits, "_refit_guardrails", recording)
    with torch_threads(1):
        train_world_model(SCENARIO, state_data, tmp_path / "weak", max_epochs=2,
                          guardrail_weak_labels=("wall_contact",), guardrail_weak_steps=20, **TINY)
        assert threads == [os.cpu_count()]
        threads.clear()
        train_world_model(SCENARIO, state_data, tmp_path / "labels", max_epochs=2, **TINY)
        assert threads == [1, 1]


def test_skipped_intermediate_refits_leave_the_saved_model_unchanged(state_data: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The guardrail refits before a weak-label epoch and the waypoint picks before the last epoch are
    skipped because nothing that is saved depends on them: running them anyway (as before) must give
    the same model, bit for bit."""
    import hplan.models.refits as refits

    models = {}
    for skip in (True, False):
        if not skip:
            monkeypatch.setattr(refits.Refits, "guardrails_kept", property(lambda self: True))
            monkeypatch.setattr(refits.Refits, "waypoints_due", property(lambda self: True))
        run = train_world_model(SCENARIO, state_data, tmp_path / f"skip-{skip}", max_epochs=3,
                                guardrail_weak_labels=("wall_contact",), guardrail_weak_steps=20, landmarks=12, **TINY)
        models[skip] = torch.load(run / "model.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert models[True].keys() == models[False].keys()
    assert any("landmark" in key for key in models[True])
    for key, value in models[True].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, models[False][key]), key


def test_refit_branches_on_two_threads_make_the_same_model_as_one_after_the_other(
        state_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two refit branches (P_lo then guardrails; distance, waypoints, subgoal) run at once when
    a core is idle; each stage has its own generator and parameters, so the trained model must be
    bit for bit the sequential one, weak-label epoch included."""
    import threading

    import hplan.models.refits as refits

    threads: set[str] = set()
    fit_distance = refits.Refits.fit_distance

    def recording(self: refits.Refits, latents: refits.FrozenLatents) -> None:
        threads.add(threading.current_thread().name)
        fit_distance(self, latents)

    monkeypatch.setattr(refits.Refits, "fit_distance", recording)
    models = {}
    for parallel in (True, False):
        monkeypatch.setattr(refits.Refits, "parallel_branches", lambda self, on=parallel: on)
        run = train_world_model(SCENARIO, state_data, tmp_path / f"parallel-{parallel}", max_epochs=2,
                                guardrail_weak_labels=("wall_contact",), guardrail_weak_steps=20, **TINY)
        models[parallel] = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
    assert any(name.startswith("refit") for name in threads) and threading.main_thread().name in threads
    state = {parallel: saved["state_dict"] for parallel, saved in models.items()}
    assert state[True].keys() == state[False].keys()
    for key, value in state[True].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, state[False][key]), key


@pytest.mark.parametrize(("every", "epochs", "refitted"), [(1, 3, [0, 1, 2]), (2, 3, [1, 2]), (2, 4, [1, 3]),
                                                           (5, 3, [2])])
def test_refit_stages_run_every_refit_every_epochs_and_always_in_the_last(
        state_data: Path, tmp_path: Path, every: int, epochs: int, refitted: list[int]) -> None:
    """``train.refit_every``: the refit stages (their times are logged) run only in the epochs due
    and in the last, so the final model always leaves the refits; the joint steps run every epoch."""
    run = train_world_model(SCENARIO, state_data, tmp_path / "run", max_epochs=epochs, refit_every=every, **TINY)
    rows = pd.read_csv(run / "metrics.csv")
    assert list(rows["epoch"]) == list(range(epochs))
    assert rows["time/joint_steps_s"].notna().all()
    assert list(rows.index[rows["time/refit_predictor_s"].notna()]) == refitted


def test_heldout_collapse_metrics_tell_a_collapsed_encoder_from_a_trained_one(
        state_data: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The regularisers are compared on these: a trained encoder spreads the held-out latents over
    several directions; one whose output ignores its input has rank 1 and no spread."""
    run = tmp_path_factory.getbasetemp() / "high-level-run"
    if not (run / "model.pt").is_file():
        train_world_model(SCENARIO, state_data, run, max_epochs=3, **TINY)
    model = load_world_model(run, device="cpu", expect_env_id=ENV_ID)
    trained = evaluate_heldout(model, state_data, horizon=3)
    assert trained["latent_effective_rank"] > 2.0 and trained["latent_std_mean"] > 0.05
    last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()  # the latent is the bias, whatever the observation
    collapsed = evaluate_heldout(model, state_data, horizon=3)
    assert collapsed["latent_std_mean"] < 1e-6 and collapsed["latent_effective_rank"] == pytest.approx(1.0)


def test_a_run_from_before_the_waypoint_fill_is_not_today_s_recipe(tmp_path: Path) -> None:
    """A run directory written before ``model.landmark_fill`` existed drew every waypoint uniformly:
    it matches ``landmark_fill = 0`` and not today's default, so the results cache trains again
    instead of reusing a model of the old recipe (other new fields still match at their defaults)."""
    from hplan.configio import to_mapping
    from hplan.models.checkpoint import MODEL_FILE

    config = json.loads(json.dumps(to_mapping(SCENARIO), default=str))
    del config["model"]["landmark_fill"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / MODEL_FILE).write_bytes(b"weights")
    assert not finished_run_matches(SCENARIO, tmp_path)
    assert finished_run_matches(SCENARIO, tmp_path, landmark_fill=0.0)
