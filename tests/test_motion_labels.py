"""Weak contact labels from motion: the agent tracker, the free-motion residual and its threshold."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.data.motion_labels import FreeMotionFit, agent_centroids, balanced_threshold, free_motion_residuals
from hplan.metrics.scores import auroc
from hplan.envs.layouts import load_layout
from hplan.envs.point_physics import PointPhysics, padded_walls, step_points
from hplan.envs.render import PointRenderer

LAYOUT = load_layout("four_rooms")
RENDERER = PointRenderer(LAYOUT.wall, LAYOUT.restricted, image_size=64)
PHYSICS = PointPhysics(friction=0.25, mass=1.0, action_gain=0.12, max_speed=0.4)


def free_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """The centres of ``n`` random free cells, as world (x, y)."""
    cells = np.argwhere(~LAYOUT.wall)[rng.integers(0, int((~LAYOUT.wall).sum()), n)]
    return cells[:, ::-1] + 0.5


def roll_out(seed: int, episodes: int = 48, steps: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Momentum walks through the real four-rooms physics: positions ``(E, T + 1, 2)``, actions, contacts."""
    rng = np.random.default_rng(seed)
    walls = padded_walls(LAYOUT.wall)
    pos, vel = free_points(rng, episodes), np.zeros((episodes, 2))
    heading = rng.normal(size=(episodes, 2))
    track, actions, contacts = [pos], [], []
    stuck = np.zeros(episodes, dtype=bool)
    for _ in range(steps):
        turn = (rng.random(episodes) < 0.05) | stuck  # as the collector's momentum policy: turn away when stuck
        heading[turn] = rng.normal(size=(int(turn.sum()), 2))
        action = np.clip(heading / np.linalg.norm(heading, axis=1, keepdims=True) + 0.5 * rng.normal(size=(episodes, 2)),
                         -1, 1)
        last = pos
        pos, vel, contact = step_points(walls, pos, vel, action, PHYSICS)
        stuck = contact & (np.linalg.norm(pos - last, axis=1) < 0.1)
        track.append(pos)
        actions.append(action)
        contacts.append(contact)
    return np.stack(track, 1), np.stack(actions, 1).astype(np.float32), np.stack(contacts, 1)


def test_centroid_locates_the_rendered_disc_to_a_hundredth_of_a_cell() -> None:
    rng = np.random.default_rng(0)
    pos = free_points(rng, 400) + rng.uniform(-0.45, 0.45, (400, 2))  # also overlapping walls
    centroid = agent_centroids(RENDERER.render(pos)[None])[0]
    design = np.c_[centroid, np.ones(len(centroid))]
    fit = np.linalg.lstsq(design, pos, rcond=None)[0]
    rmse = np.sqrt(((design @ fit - pos) ** 2).mean())
    assert rmse < 0.01, rmse
    np.testing.assert_allclose(np.abs(fit[:2]), np.eye(2) / RENDERER.scale, atol=0.02 / RENDERER.scale)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.tuples(st.floats(-0.3, 0.3), st.floats(-0.3, 0.3)))
def test_centroid_moves_with_the_agent(seed: int, shift: tuple[float, float]) -> None:
    """Shifting the agent by ``d`` shifts its centroid by ``d × pixels per cell``, sub-pixel moves included."""
    rng = np.random.default_rng(seed)
    pos = free_points(rng, 64)
    frames = RENDERER.render(np.concatenate([pos, pos + np.array(shift)]))
    centroid = agent_centroids(frames[None])[0]
    moved = centroid[64:] - centroid[:64]
    # Tolerance: the rim's coverage is rounded to uint8 (measured up to 0.034 px); a contact cuts a
    # step short by ~0.3 px here, ten times more.
    np.testing.assert_allclose(moved, np.broadcast_to(np.array(shift) * RENDERER.scale, moved.shape), atol=0.05)


def test_free_motion_residual_ranks_wall_contacts() -> None:
    track, action, contact = roll_out(0)
    valid = np.ones(contact.shape, dtype=bool)
    residual = free_motion_residuals(track, action, valid, seed=0, fit=FreeMotionFit(steps=800))
    assert 0.05 < contact.mean() < 0.35  # obstructed steps a minority, as in collected data (four rooms: 20 %)
    assert auroc(residual.ravel(), contact.ravel()) > 0.95
    # A position-blind model could not have learnt the walls: the same walk, shifted, scores the same.
    shifted = free_motion_residuals(track + 3.0, action, valid, seed=0, fit=FreeMotionFit(steps=800))
    np.testing.assert_allclose(shifted, residual, rtol=1e-4, atol=1e-6)


def test_invalid_transitions_get_no_residual_and_do_not_enter_the_fit() -> None:
    track, action, contact = roll_out(1, episodes=16, steps=30)
    valid = np.ones(contact.shape, dtype=bool)
    valid[:, 20:] = False
    garbage = track.copy()
    garbage[:, 21:] += np.random.default_rng(0).normal(0, 50, garbage[:, 21:].shape)  # after the episodes end
    fit = FreeMotionFit(steps=200)
    residual = free_motion_residuals(garbage, action, valid, seed=0, fit=fit)
    assert np.isnan(residual[:, 20:]).all() and np.isfinite(residual[:, :20]).all()
    clean = free_motion_residuals(track, action, valid, seed=0, fit=fit)
    np.testing.assert_allclose(residual[:, :20], clean[:, :20], rtol=1e-5)
    assert np.isnan(free_motion_residuals(track, action, np.zeros_like(valid), seed=0, fit=fit)).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(20, 200), rate=st.floats(0.05, 0.95))
def test_threshold_is_the_best_balanced_split(seed: int, n: int, rate: float) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < rate
    residual = rng.normal(size=n) + 2.0 * labels
    threshold = balanced_threshold(residual, labels)

    def balanced(t: float) -> float:
        above = residual > t
        if labels.all() or not labels.any():
            return 0.0
        return (above & labels).sum() / labels.sum() + (~above & ~labels).sum() / (~labels).sum()

    best = max(balanced(t) for t in np.quantile(residual, np.linspace(0.02, 0.98, 97)))
    assert balanced(threshold) >= best - 1e-12


def test_threshold_separates_separable_labels_and_falls_back_to_the_median() -> None:
    residual = np.r_[np.linspace(0, 1, 80), np.linspace(5, 6, 20)]
    labels = np.r_[np.zeros(80, bool), np.ones(20, bool)]
    threshold = balanced_threshold(residual, labels)
    assert ((residual > threshold) == labels).all()
    assert balanced_threshold(residual, np.zeros(100, bool)) == np.median(residual)
