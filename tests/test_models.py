"""World-model building blocks against the planners' protocol, and the checkpoint loader's errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.errors import CheckpointError
from hplan.models.checkpoint import load_world_model, save_world_model
from hplan.models.config import ModelConfig, TrainConfig
from hplan.models.regularizers import REGULARIZERS, epps_pulley, sigreg_terms, vicreg_terms
from hplan.models.subgoal import SUBGOAL_MODELS
from hplan.models.world_model import LatentWorldModel
from hplan.vocabulary.protocol import ActionSpec, WorldModel

torch.set_num_threads(1)  # tiny models: extra threads only add contention on a shared 2-core box

SMALL = ModelConfig(latent_dim=8, hidden_dim=32, encoder_channels=4, code_dim=3, subgoal_interval=4, distance_dim=8)


def _model(obs: str = "state", **changes) -> LatentWorldModel:
    cfg = ModelConfig(**{**SMALL.__dict__, **changes})
    shape = (4,) if obs == "state" else (16, 16, 3)
    return LatentWorldModel(cfg, obs_kind=obs, obs_shape=shape, action_spec=ActionSpec(2),
                            guardrail_names=("wall_contact", "restricted_zone"), env_id="hplan/Test-v0")


@pytest.mark.parametrize("obs", ["state", "image"])
def test_model_implements_the_planner_protocol_with_documented_shapes(obs: str) -> None:
    model = _model(obs)
    assert isinstance(model, WorldModel)
    raw = torch.randn(5, 4) if obs == "state" else torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    z = model.encode(raw)
    assert z.shape == (5, 8)
    assert model.predict(z, torch.zeros(5, 7, 2)).shape == (5, 7, 8)
    assert model.predict_high(z, torch.zeros(5, 3, SMALL.code_dim)).shape == (5, 3, 8)
    probs = model.heads(z[:, None].expand(5, 6, 8), torch.rand(5, 6, 2))
    assert probs.shape == (5, 6, 2) and ((probs >= 0) & (probs <= 1)).all()
    assert model.heads(z).shape == (5, 2)
    assert model.temporal_distance(z, z[:1]).shape == (5,)
    assert (model.latent_dim, model.code_dim, model.subgoal_interval) == (8, 3, 4)


def test_predict_batches_candidates_exactly_like_one_at_a_time() -> None:
    model = _model()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.predictor.parameters():  # the zero-init last layer would make this trivial
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        z = torch.randn(64, 8, generator=gen)
        actions = torch.randn(64, 5, 2, generator=gen)
        batched = model.predict(z, actions)
        single = torch.stack([model.predict(z[i:i + 1], actions[i:i + 1])[0] for i in range(64)])
    # Equal up to float32 rounding of the rollout's own magnitude: a batched matmul may take another
    # kernel than a one-row one (on an AVX-512 Xeon, outputs of magnitude ~300 differed by 6e-5 where
    # the five steps cancel to a small value), which an absolute 1e-5 mistook for a batching bug.
    scale = float(single.abs().max())
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6 * scale)
    assert not torch.allclose(batched[:, -1], z)


_DISTANCE_MODEL = _model()


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_temporal_distance_is_a_quasimetric(seed: int) -> None:
    model = _DISTANCE_MODEL
    gen = torch.Generator().manual_seed(seed)
    x, y, w = (torch.randn(32, 8, generator=gen) for _ in range(3))
    with torch.no_grad():
        dxy, dyw, dxw = model.temporal_distance(x, y), model.temporal_distance(y, w), model.temporal_distance(x, w)
        dxx = model.temporal_distance(x, x)
    assert (dxy >= 0).all()
    assert dxx.abs().max() < 1e-2 * model.distance_max_gap
    assert (dxw <= dxy + dyw + 1e-3).all()


def test_epps_pulley_separates_gaussian_from_collapsed_samples() -> None:
    gen = torch.Generator().manual_seed(0)
    gaussian = torch.randn(1024, 16, generator=gen)
    collapsed = torch.zeros(1024, 16) + 0.01 * torch.randn(1024, 16, generator=gen)
    uniform = (torch.rand(1024, 16, generator=gen) - 0.5) * 2 * 3 ** 0.5  # unit variance, not Gaussian
    g, c, u = (epps_pulley(x).mean().item() for x in (gaussian, collapsed, uniform))
    assert g < u < c
    cfg = TrainConfig()
    assert sigreg_terms(gaussian, cfg, gen)["sigreg"] < sigreg_terms(collapsed, cfg, gen)["sigreg"]


def test_epps_pulley_is_on_the_published_scale() -> None:
    """LeJEPA / stable-worldmodel integrate over the whole real line (twice the half-line
    trapezoid): an all-zero batch of 256 scores 102.92 and N(0, 1) samples 1.0525 in expectation
    (1 − φ(t)² weighted by φ(t), over both half-lines), so published SIGReg weights transfer."""
    zeros = epps_pulley(torch.zeros(256, 3))
    assert torch.allclose(zeros, torch.full((3,), 102.92), atol=0.01)
    gen = torch.Generator().manual_seed(0)
    gaussian = epps_pulley(torch.randn(256, 4000, generator=gen)).mean().item()
    assert abs(gaussian - 1.0525) < 0.03  # the mean over 4,000 columns: standard error ≈ 0.01


def test_vicreg_penalises_low_variance_and_correlation_only() -> None:
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(4096, 8, generator=gen) * 2.0
    terms = vicreg_terms(white, TrainConfig())
    assert terms["var"] == 0.0 and terms["cov"] < 0.05
    shrunk = vicreg_terms(white * 0.1, TrainConfig())
    assert shrunk["var"] > 0.75  # std 0.2 → hinge 0.8
    redundant = white[:, :1].repeat(1, 8)
    assert vicreg_terms(redundant, TrainConfig())["cov"] > 10 * terms["cov"] + 1.0


@pytest.mark.parametrize("name", sorted(SUBGOAL_MODELS))
def test_subgoal_models_learn_a_k_step_jump(name: str) -> None:
    torch.manual_seed(0)
    model = SUBGOAL_MODELS[name](SMALL, 2)
    z_t = torch.randn(256, 8)
    actions = torch.rand(256, SMALL.subgoal_interval, 2) * 2 - 1
    z_tk = z_t + torch.cat([actions.sum(1), torch.zeros(256, 6)], -1)  # the jump depends on the actions
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        out = model.loss(z_t, z_tk, actions, beta=0.05)
        first = first if first is not None else out["pred"].item()
        optim.zero_grad()
        out["loss"].backward()
        optim.step()
    assert out["pred"].item() < 0.25 * first
    assert model.step(z_t, torch.randn(256, SMALL.code_dim)).shape == (256, 8)


def test_ema_regulariser_fixes_the_latent_spread() -> None:
    model = _model(regularizer="ema").train()
    inputs = torch.randn(64, 4) * 1e-2  # nearly identical inputs still spread to unit std
    z = model.encode(inputs)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(8), atol=0.05)
    assert _model(regularizer="vicreg").encode(inputs).std(0).max() < 0.2
    assert REGULARIZERS["ema"].targets == "ema" and REGULARIZERS["none"].penalty(z, TrainConfig(), None) == {}


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _model("image")
    save_world_model(model, tmp_path / "model.pt")
    loaded = load_world_model(tmp_path, device="cpu", expect_env_id="hplan/Test-v0")
    obs = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    torch.testing.assert_close(loaded.encode(obs), model.encode(obs))
    assert loaded.guardrail_names == model.guardrail_names and not loaded.training


def test_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no world model checkpoint") as err:
        load_world_model(tmp_path)
    assert "\n" not in str(err.value)


def test_corrupt_checkpoint_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(CheckpointError, match="corrupt checkpoint") as err:
        load_world_model(tmp_path)
    assert "\n" not in str(err.value)


def test_wrong_env_is_refused(tmp_path: Path) -> None:
    save_world_model(_model(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="hplan/Other-v0"):
        load_world_model(tmp_path, expect_env_id="hplan/Other-v0")


def test_weights_of_another_latent_size_are_refused(tmp_path: Path) -> None:
    save_world_model(_model(), tmp_path / "model.pt")
    payload = torch.load(tmp_path / "model.pt", weights_only=False)
    payload["state_dict"] = _model(latent_dim=16).state_dict()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    (tmp_path / "model.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="weights do not fit.*latent_dim=8") as err:
        load_world_model(tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="latent size 8"):
        save_world_model(_model(), tmp_path / "model.pt")
        load_world_model(tmp_path, expect_latent_dim=16)


def test_run_config_disagreeing_with_the_checkpoint_is_refused(tmp_path: Path) -> None:
    save_world_model(_model(), tmp_path / "model.pt")
    (tmp_path / "config.json").write_text('{"model": {"latent_dim": 64}, "env": {"id": "hplan/Test-v0"}}')
    with pytest.raises(CheckpointError, match="latent size 8 does not match config.json"):
        load_world_model(tmp_path)


def _u_path(n_leg: int = 8) -> torch.Tensor:
    """Latents on a U: down one leg, along the bottom, up the other; the legs' tops are close in
    Euclidean distance but ``2·n_leg + 4`` steps apart along the path (a wall between the legs)."""
    down = [(0.0, float(n_leg - i)) for i in range(n_leg)]
    bottom = [(float(i), 0.0) for i in range(5)]
    up = [(4.0, float(i + 1)) for i in range(n_leg)]
    return torch.tensor(down + bottom + up) / 2.0


@pytest.mark.parametrize("objective", ["qrl", "expectile"])
def test_distance_loss_runs_for_each_objective(objective: str) -> None:
    from hplan.models.losses import distance_loss

    head = _model(distance_dim=8).distance
    cfg = TrainConfig(distance_objective=objective, distance_max_gap=8)
    zd, z_far = torch.randn(4, 5, 8), torch.randn(4, 8)
    loss, parts, d_far = distance_loss(cfg, head, zd, z_far, torch.full((4,), 3.0), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and d_far.shape == (4,)
    assert set(parts) == ({"distance_push", "distance_violation"} if objective == "qrl" else set())


def test_qrl_distance_learns_the_path_length_around_a_wall() -> None:
    """QRL objective on windows of a U-shaped path: the learned distance from one top follows the
    path index (geodesic), not the Euclidean distance, which is small to the other top."""
    from hplan.metrics.scores import spearman
    from hplan.models.losses import distance_loss

    torch.manual_seed(0)
    path = _u_path()
    n, w, max_gap = len(path), 4, 8
    head = _model(latent_dim=2, distance_dim=16, hidden_dim=64).distance
    head.scale = float(max_gap)
    cfg = TrainConfig(distance_max_gap=max_gap, distance_push_offset=64.0)
    optim = torch.optim.Adam(head.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(400):
        start = torch.randint(0, n - w + 1, (32,), generator=gen)
        gap = torch.minimum(1 + torch.randint(0, max_gap, (32,), generator=gen), n - 1 - start)
        gap = torch.clamp(gap, min=1)
        zd = path[start[:, None] + torch.arange(w)]
        z_far = path[torch.clamp(start + gap, max=n - 1)]
        loss, _, _ = distance_loss(cfg, head, zd, z_far, gap.float(), gen)
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        d = head(path[:1].expand(n, -1), path)
        step = head(path[:-1], path[1:])
    assert spearman(d.numpy(), torch.arange(n).numpy()) > 0.9
    assert d[-1] > 3 * d[n // 4]  # the other top is far although its Euclidean distance is small
    assert step.max() < 2.0  # the local constraint holds: one step ≈ ≤ 1


@settings(max_examples=25, deadline=None)
@given(history=st.integers(1, 4), steps=st.integers(1, 9), data=st.data())
def test_frame_history_matches_the_agents_running_history(history: int, steps: int, data: st.DataObject) -> None:
    """Training windows (``gather_frames``) and the acting agent (``FrameHistory``) stack frames the
    same way: oldest first, the first frame repeated before the episode starts."""
    from hplan.vocabulary.frames import FrameHistory, gather_frames, repeat_frame

    obs = np.arange(2 * steps * 3).reshape(2, steps, 3)
    running = FrameHistory(history)
    for t in range(steps):
        stacked = running.push(obs[1, t])
        gathered = gather_frames(obs, np.array(1), np.array(t), history)
        np.testing.assert_array_equal(stacked, gathered)
        if history > 1:
            assert gathered.shape == (history, 3)
            expected = [obs[1, max(t - back, 0)] for back in range(history - 1, -1, -1)]
            np.testing.assert_array_equal(gathered, np.stack(expected))
    t = data.draw(st.integers(0, steps - 1))
    batch = gather_frames(obs, np.array([[0], [1]]), np.array([[t, 0]]), history)
    assert batch.shape == ((2, 2, history, 3) if history > 1 else (2, 2, 3))
    still = repeat_frame(obs[0, t], history)
    assert np.all(still == obs[0, t])


@settings(max_examples=12, deadline=None)
@given(encoder=st.sampled_from(["state", "cnn", "keypoints"]), history=st.integers(1, 3),
       length=st.integers(1, 5), regularizer=st.sampled_from(["vicreg", "sigreg"]), seed=st.integers(0, 2**16))
def test_encode_sequence_equals_encoding_every_stacked_history(encoder: str, history: int, length: int,
                                                               regularizer: str, seed: int) -> None:
    """Training encodes each frame of a window once (``encode_sequence``); the latents must be the
    ones the agent gets from ``encode`` on each step's stacked history, episode-start padding included."""
    from hplan.vocabulary.frames import gather_frames, sequence_frames

    obs_kind = "state" if encoder == "state" else "image"
    extra = {} if encoder == "state" else {"image_encoder": encoder}
    model = _model(obs_kind, frame_history=history, regularizer=regularizer, **extra).eval()
    rng = np.random.default_rng(seed)
    steps = length + 2
    if obs_kind == "state":
        obs = rng.normal(size=(3, steps, 4)).astype(np.float32)
    else:
        obs = rng.integers(0, 256, size=(3, steps, 16, 16, 3), dtype=np.uint8)
    episode, first = np.array([0, 2, 1]), np.array([0, 2, 1])
    with torch.no_grad():
        z_seq = model.encode_sequence(sequence_frames(obs, episode, first, length, history))
        steps_of = first[:, None] + np.arange(length)[None]
        z_each = model.encode(gather_frames(obs, episode[:, None], steps_of, history))
    assert z_seq.shape == (3, length, model.latent_dim)
    torch.testing.assert_close(z_seq, z_each, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("obs", ["state", "image"])
def test_frame_history_model_reads_the_older_frame(obs: str) -> None:
    """With ``frame_history = 2`` the encoder takes ``(B, 2, *obs_shape)`` and its latent depends on
    the previous frame too (so it can carry velocity)."""
    model = _model(obs, frame_history=2).eval()
    shape = (4,) if obs == "state" else (16, 16, 3)
    gen = torch.Generator().manual_seed(3)
    if obs == "state":
        frames = torch.randn(5, 2, *shape, generator=gen)
    else:
        frames = torch.randint(0, 256, (5, 2, *shape), generator=gen, dtype=torch.uint8)
    z = model.encode(frames)
    assert z.shape == (5, 8)
    moved = frames.clone()
    moved[:, 0] = frames[:, 0].flip(0)  # older frames swapped between samples, current ones kept
    assert not torch.allclose(model.encode(moved), z)
    with pytest.raises(ValueError, match="frame_history"):
        model.encode(frames[:4, 1])  # single frames are not a history, even when the sizes would divide


def test_free_bits_make_kl_below_the_floor_free() -> None:
    from hplan.models.subgoal import free_bits_kl

    kl = torch.tensor([[0.1, 2.0, 0.4], [0.3, 1.0, 0.2]], requires_grad=True)  # batch-mean: 0.2, 1.5, 0.3
    value = free_bits_kl(kl, 0.5)
    assert value.item() == pytest.approx(0.5 + 1.5 + 0.5)
    value.backward()
    assert torch.equal(kl.grad[:, [0, 2]], torch.zeros(2, 2))  # under the floor: no pressure to switch off
    assert torch.all(kl.grad[:, 1] > 0)
    assert free_bits_kl(kl, 0.0).item() == pytest.approx(2.0)


def test_keypoint_encoder_reads_sub_pixel_positions_of_the_rendered_point() -> None:
    """The spatial softmax turns an anti-aliased disc into a coordinate that moves with it even when
    the move is a fraction of a pixel (what a planner's one-step predictions need)."""
    from hplan.envs.layouts import BUILTIN_LAYOUTS, parse_layout
    from hplan.envs.render import PointRenderer
    from hplan.models.encoders import KeypointEncoder

    layout = parse_layout(BUILTIN_LAYOUTS["four_rooms"])
    renderer = PointRenderer(layout.wall, np.zeros_like(layout.wall), image_size=64)
    xs = np.array([4.0, 4.05, 4.1, 4.3, 5.0, 6.0])
    frames = torch.from_numpy(renderer.render(np.stack([xs, np.full_like(xs, 5.5)], axis=1)))
    cfg = ModelConfig(latent_dim=8, hidden_dim=16, image_encoder="keypoints", keypoints=1, encoder_channels=1,
                      image_downsample=1)
    encoder = KeypointEncoder((64, 64, 3), cfg)
    with torch.no_grad():  # one hand-set feature map: "how agent-blue is this pixel"
        conv, score = encoder.features[1], encoder.features[3]  # [0] is the pooling (identity here)
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, :, 1, 1] = torch.tensor([-1.0, -1.0, 1.0])
        score.weight.fill_(40.0)
        score.bias.zero_()
        kx = encoder.keypoints(frames)[:, 0]
    assert torch.all(kx[1:] > kx[:-1]), kx  # strictly increasing, also across 0.05-cell (0.17 px) steps
    with torch.no_grad():
        ky = encoder.keypoints(frames)[:, 1]
    assert float(ky.max() - ky.min()) < 0.02
    moving = torch.stack([frames[:-1], frames[1:]], dim=1)  # a frame history: the encoder takes it too
    assert KeypointEncoder((2, 64, 64, 3), cfg)(moving).shape == (5, 8)


@settings(max_examples=15, deadline=None)
@given(downsample=st.sampled_from([2, 3, 4]), height=st.integers(8, 20), width=st.integers(8, 20),
       history=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_pooled_frame_sums_feed_the_keypoint_encoder_the_same_bits_as_its_frames(
        downsample: int, height: int, width: int, history: int, seed: int) -> None:
    """Training pools its dataset once (``pooled_frame_sums``) instead of in every step; the latents
    must be bit for bit those of the frames themselves, for any pooling and frame size."""
    from hplan.models.encoders import encode_sequences, pooled_frame_sums

    torch.manual_seed(seed)
    cfg = ModelConfig(latent_dim=8, hidden_dim=16, image_encoder="keypoints", keypoints=3, encoder_channels=4,
                      image_downsample=downsample, frame_history=history)
    model = LatentWorldModel(cfg, obs_kind="image", obs_shape=(height, width, 3), action_spec=ActionSpec(2),
                             guardrail_names=(), env_id="hplan/Test-v0").eval()
    frames = np.random.default_rng(seed).integers(0, 256, (4, 3 + history, height, width, 3), dtype=np.uint8)
    sums = pooled_frame_sums(frames.reshape(-1, height, width, 3), downsample)
    assert sums.dtype == np.uint16
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(frames.reshape(-1, height, width, 3)).permute(0, 3, 1, 2)
                                              .float(), downsample)
    assert torch.equal(torch.from_numpy(sums).permute(0, 3, 1, 2).float() / downsample ** 2, expected)
    with torch.no_grad():
        direct = encode_sequences(model.encoder, [torch.from_numpy(frames)], history)[0]
        pooled = encode_sequences(model.encoder, [torch.from_numpy(sums.reshape(4, 3 + history, *sums.shape[1:]))],
                                  history, pooled=True)[0]
    assert torch.equal(direct, pooled)


@settings(max_examples=10, deadline=None)
@given(log_temperature=st.floats(-1.5, 1.5), downsample=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_keypoints_are_the_expected_pixel_coordinates_under_a_tempered_softmax(
        log_temperature: float, downsample: int, seed: int) -> None:
    """The encoder folds the temperature into its last convolution; what it computes must stay the
    definition: per map, the softmax over pixels of score / T, and the expected (x, y) under it,
    with the temperature's gradient intact."""
    from hplan.models.encoders import KeypointEncoder

    torch.manual_seed(seed)
    cfg = ModelConfig(latent_dim=8, hidden_dim=16, image_encoder="keypoints", keypoints=3, encoder_channels=4,
                      image_downsample=downsample)
    encoder = KeypointEncoder((16, 16, 3), cfg)
    with torch.no_grad():
        encoder.log_temperature.fill_(log_temperature)
    frames = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    x = encoder.features[0](frames.permute(0, 3, 1, 2).float()).div(255.0).sub(0.5)
    scores = encoder.features[1:](x)
    n, k, h, w = scores.shape
    p = torch.softmax(scores.reshape(n, k, h * w) / encoder.log_temperature.exp(), dim=-1).view(n, k, h, w)
    expected = torch.cat([(p.sum(2) * torch.linspace(-1, 1, w)).sum(-1), (p.sum(3) * torch.linspace(-1, 1, h)).sum(-1)],
                         dim=-1)
    got = encoder.keypoints(frames)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    grad_got, = torch.autograd.grad(got.square().sum(), encoder.log_temperature)
    grad_expected, = torch.autograd.grad(expected.square().sum(), encoder.log_temperature)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-4, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(scale=st.floats(1e-3, 1e3), shift=st.floats(-10.0, 10.0), seed=st.integers(0, 2**16))
def test_guardrail_heads_do_not_depend_on_the_latent_scale(scale: float, shift: float, seed: int) -> None:
    """After ``set_input_stats`` the heads give the same logits for an affinely rescaled latent: a
    VICReg latent with std 0.14 early in training gets the same head as one with std 1."""
    from hplan.models.heads import GuardrailHeads

    gen = torch.Generator().manual_seed(seed)
    heads = GuardrailHeads(latent_dim=6, hidden=16, num_guardrails=2)
    z = torch.randn(64, 6, generator=gen, dtype=torch.float64)
    heads = heads.double()
    heads.set_input_stats(z)
    reference = heads.logits(z), heads.logits(z, z.flip(0))
    moved = z * scale + shift
    heads.set_input_stats(moved)
    torch.testing.assert_close(heads.logits(moved), reference[0])
    torch.testing.assert_close(heads.logits(moved, moved.flip(0)), reference[1])


@pytest.mark.parametrize("balance", [False, True])
def test_guardrail_probabilities_are_calibrated_with_and_without_class_balance(balance: bool) -> None:
    """On an input that carries only the base rate, both losses learn that rate as the probability:
    the class-balanced loss (whose optimum alone would be 0.5) is shifted back by log(pos_weight), so a
    hard threshold or a penalty on the heads means what it says."""
    from hplan.models.data import DatasetInfo
    from hplan.models.losses import guardrail_loss
    from hplan.models.module import WorldModelModule

    rate = 0.1
    info = DatasetInfo(env_id="hplan/Test-v0", obs_kind="state", obs_shape=(4,), action_spec=ActionSpec(2),
                       guardrail_names=("wall_contact",), state_mean=np.zeros(4, np.float32),
                       state_std=np.ones(4, np.float32), label_positive_rate=np.array([rate]),
                       train_transitions=100, val_transitions=10)
    module = WorldModelModule(ModelConfig(**{**SMALL.__dict__, "landmarks": 0}),
                              TrainConfig(guardrail_balance=balance), info, seed=0)
    assert float(module.pos_weight[0]) == pytest.approx(9.0 if balance else 1.0)
    gen = torch.Generator().manual_seed(0)
    z, action = torch.zeros(2000, 8), torch.zeros(2000, 2)  # one input: only the base rate is learnable
    labels = (torch.rand(2000, 1, generator=gen) < rate).float()
    rate = float(labels.mean())
    optim = torch.optim.Adam(module.model.guardrail.parameters(), lr=3e-3)
    for _ in range(300):
        loss = guardrail_loss(module.model, module.pos_weight, z, action, labels)
        optim.zero_grad()
        loss.backward()
        optim.step()
    for marginal in (False, True):
        probs = torch.sigmoid(module.model.guardrail_logits(z, None if marginal else action))
        assert abs(float(probs.mean()) - rate) < 0.03


def test_keypoint_norm_standardises_each_keypoint_over_the_batch() -> None:
    """With ``keypoint_norm`` each keypoint coordinate is standardised over a training batch
    (BatchNorm: ``(k − mean) / sqrt(var + 1e-5)``), so a coordinate that barely moves is scaled up
    by orders of magnitude; without it the keypoints pass through in raw [-1, 1] units."""
    from hplan.models.encoders import KeypointEncoder

    frames = torch.randint(0, 256, (64, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for norm in (False, True):
        cfg = ModelConfig(**{**SMALL.__dict__, "image_encoder": "keypoints", "keypoints": 3, "keypoint_norm": norm})
        encoder = KeypointEncoder((16, 16, 3), cfg).train()
        features = encoder.frame_features(frames).detach()
        raw = encoder.keypoints(frames).detach()
        if norm:
            expected = (raw - raw.mean(0)) / torch.sqrt(raw.var(0, unbiased=False) + 1e-5)
            torch.testing.assert_close(features, expected, atol=1e-4, rtol=1e-4)
            assert float((features.std(0) / raw.std(0)).min()) > 10.0  # small motions amplified
        else:
            torch.testing.assert_close(features, raw)


def test_guardrail_ensemble_combines_members_and_single_heads_keep_their_checkpoint_keys() -> None:
    """Members stack on a new axis; the ensemble's logit is that of the members' mean probability,
    ``combine="max"`` takes the largest; one member has exactly the single head's parameters."""
    from hplan.models.heads import GuardrailHeads

    single = GuardrailHeads(latent_dim=6, hidden=16, num_guardrails=2)
    assert all(not key.startswith("extra") for key in single.state_dict())
    model = _model(guardrail_members=3)
    z, action = torch.randn(5, model.latent_dim), torch.rand(5, 2) * 2 - 1
    members = model.guardrail_member_logits(z, action)
    assert members.shape == (5, 3, len(model.guardrail_names))
    assert not torch.allclose(members[:, 0], members[:, 1])  # independently initialised
    probs = torch.sigmoid(members)
    torch.testing.assert_close(model.heads(z, action), probs.mean(1))
    torch.testing.assert_close(model.heads(z, action, combine="max"), probs.amax(1))
    torch.testing.assert_close(torch.sigmoid(model.guardrail_logits(z, action)), probs.mean(1))


def test_guardrail_bootstrap_weights_train_each_member_on_its_own_labels() -> None:
    """A member whose bootstrap weights drop every positive learns a lower probability than member 0,
    which sees each label once: the weights reach the loss member by member."""
    from hplan.models.data import DatasetInfo
    from hplan.models.losses import guardrail_loss
    from hplan.models.module import WorldModelModule

    info = DatasetInfo(env_id="hplan/Test-v0", obs_kind="state", obs_shape=(4,), action_spec=ActionSpec(2),
                       guardrail_names=("wall_contact",), state_mean=np.zeros(4, np.float32),
                       state_std=np.ones(4, np.float32), label_positive_rate=np.array([0.3]),
                       train_transitions=100, val_transitions=10)
    module = WorldModelModule(ModelConfig(**{**SMALL.__dict__, "landmarks": 0, "guardrail_members": 2}),
                              TrainConfig(guardrail_balance=False), info, seed=0)
    z, action = torch.zeros(600, 8), torch.zeros(600, 2)
    labels = (torch.arange(600) % 10 < 3).float()[:, None]
    weights = torch.ones(600, 2)
    weights[labels[:, 0] > 0, 1] = 0.0
    optim = torch.optim.Adam(module.model.guardrail.parameters(), lr=3e-3)
    for _ in range(300):
        loss = guardrail_loss(module.model, module.pos_weight, z, action, labels, weights)
        optim.zero_grad()
        loss.backward()
        optim.step()
    probs = torch.sigmoid(module.model.guardrail_member_logits(z[:1], action[:1]))[0, :, 0]
    assert abs(float(probs[0]) - 0.3) < 0.05 and float(probs[1]) < 0.05


@settings(max_examples=25, deadline=None)
@given(col=st.integers(8, 55), row=st.integers(8, 55))
def test_glimpse_window_is_centred_where_it_is_told(col: int, row: int) -> None:
    """A bright 3×3 blob (a disc as the agent is drawn) at (col, row) lands in the middle of a window
    centred on it, and the encoder reads histories of frames into one latent."""
    from hplan.models.encoders import GlimpseEncoder

    cfg = ModelConfig(image_encoder="glimpse", keypoints=4, encoder_channels=4, latent_dim=8, glimpse_pixels=16)
    encoder = GlimpseEncoder((2, 64, 64, 3), cfg)
    frame = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    frame[0, row - 1:row + 2, col - 1:col + 2] = 255
    centre = torch.tensor([[2 * col / 63 - 1, 2 * row / 63 - 1]])
    window = encoder.glimpse(frame, centre)[0].mean(0)  # (S, S)
    middle = (window.shape[0] - 1) / 2
    peak = torch.nonzero(window == window.max())[0].float()
    assert torch.all((peak - middle).abs() <= 1.0)
    assert encoder(torch.zeros(3, 2, 64, 64, 3, dtype=torch.uint8)).shape == (3, 8)
