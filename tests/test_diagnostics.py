"""Collapse metrics, the collapse rule, probes, rank scores and surprise on inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan.diagnostics.collapse import CollapseRule, collapse_metrics, collapse_verdict
from hplan.diagnostics.probes import fit_linear_probe, heldout_probe_r2, r2_score
from hplan.metrics.scores import auroc, spearman


def test_isotropic_gaussian_is_full_rank_and_uncorrelated() -> None:
    z = torch.randn(4000, 8, generator=torch.Generator().manual_seed(0))
    m = collapse_metrics(z)
    assert m["effective_rank"] > 7.5
    assert m["offdiag_corr"] < 0.05
    assert 0.9 < m["std_min"] <= m["std_mean"] < 1.1


def test_rank_one_latent_has_rank_one_and_full_correlation() -> None:
    t = torch.randn(500, 1, generator=torch.Generator().manual_seed(1))
    z = t * torch.arange(1.0, 7.0)  # every dimension is a multiple of one signal
    m = collapse_metrics(z)
    assert m["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert m["offdiag_corr"] == pytest.approx(1.0, abs=1e-6)


def test_nn_diversity_falls_when_samples_pile_onto_few_points() -> None:
    gen = torch.Generator().manual_seed(2)
    spread = torch.randn(512, 4, generator=gen)
    piled = torch.randn(4, 4, generator=gen)[torch.randint(0, 4, (512,), generator=gen)] + 1e-3 * torch.randn(512, 4, generator=gen)
    assert collapse_metrics(piled)["nn_diversity"] < 0.01 < collapse_metrics(spread)["nn_diversity"]


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 12), st.floats(1e-3, 1e3))
def test_effective_rank_is_scale_invariant_and_bounded(dim: int, scale: float) -> None:
    z = torch.randn(64, dim, generator=torch.Generator().manual_seed(dim))
    a, b = collapse_metrics(z), collapse_metrics(z * scale)
    assert 1.0 <= a["effective_rank"] <= dim + 1e-6
    assert a["effective_rank"] == pytest.approx(b["effective_rank"], rel=1e-6)
    assert b["std_mean"] == pytest.approx(a["std_mean"] * scale, rel=1e-6)


def test_probe_recovers_a_linear_map_and_not_noise() -> None:
    gen = torch.Generator().manual_seed(3)
    pos = torch.rand(2000, 2, generator=gen)
    mix = torch.randn(2, 16, generator=gen)
    z = pos @ mix + 0.01 * torch.randn(2000, 16, generator=gen)
    assert heldout_probe_r2(z[:1000], pos[:1000], z[1000:], pos[1000:]) > 0.99
    noise = torch.randn(2000, 16, generator=gen)
    assert heldout_probe_r2(noise[:1000], pos[:1000], noise[1000:], pos[1000:]) < 0.05


def test_probe_is_blind_to_latent_scale() -> None:
    gen = torch.Generator().manual_seed(4)
    pos = torch.rand(500, 2, generator=gen)
    z = pos @ torch.randn(2, 8, generator=gen)
    big = fit_linear_probe(z, pos)(z)
    tiny = fit_linear_probe(z * 1e-4, pos)(z * 1e-4)
    assert r2_score(tiny, pos) == pytest.approx(r2_score(big, pos), abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5, allow_nan=False), st.booleans()), min_size=2, max_size=40))
def test_auroc_equals_the_pairwise_definition(pairs: list[tuple[float, bool]]) -> None:
    scores = np.array([p[0] for p in pairs])
    labels = np.array([p[1] for p in pairs])
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        assert math.isnan(auroc(scores, labels))
        return
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(scores, labels) == pytest.approx(brute, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-100, 100), min_size=3, max_size=30, unique=True))
def test_spearman_of_a_monotone_map_is_one(values: list[int]) -> None:
    a = np.array(values, dtype=float)
    assert spearman(a, np.exp(a / 50)) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)


def _history(losses, ranks, stds, r2s):
    return [{"epoch": i, "train/jepa_loss": l, "val/effective_rank": r, "val/std_mean": s, "val/probe_r2": p}
            for i, (l, r, s, p) in enumerate(zip(losses, ranks, stds, r2s))]


@pytest.mark.parametrize("case, collapsed", [
    (_history([1.0, 0.1], [20, 1.2], [1.0, 0.9], [0.9, 0.9]), True),     # rank collapsed while loss fell
    (_history([1.0, 0.1], [20, 18], [1.0, 0.001], [0.9, 0.9]), True),    # shrank to a point
    (_history([1.0, 0.1], [20, 18], [1.0, 1.0], [0.9, 0.2]), True),      # lost the position
    (_history([1.0, 0.1], [20, 18], [1.0, 1.0], [0.9, 0.95]), False),    # healthy
    (_history([0.1, 1.0], [20, 1.0], [1.0, 1.0], [0.9, 0.9]), False),    # low rank but loss rose: not collapse
    (_history([1.0], [1.0], [0.001], [0.1]), False),                     # one epoch: cannot tell a trend
])
def test_collapse_rule_table(case, collapsed: bool) -> None:
    verdict = collapse_verdict(case, latent_dim=32, rule=CollapseRule())
    assert verdict.collapsed is collapsed
    assert verdict.label == ("COLLAPSED" if collapsed else "healthy")
