"""Stress metrics against hand-computed values and brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hplan import metrics as m


def brute_auroc(s, y):
    pos = [a for a, b in zip(s, y) if b]
    neg = [a for a, b in zip(s, y) if not b]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def test_auroc_hand_computed():
    # positives 0.9, 0.4; negatives 0.5, 0.1, 0.4 -> pairs: (0.9 beats all 3) + (0.4: beats 0.1, ties 0.4) = 4.5 / 6
    assert m.auroc([0.9, 0.5, 0.1, 0.4, 0.4], [1, 0, 0, 1, 0]) == pytest.approx(4.5 / 6)
    assert m.auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert m.auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert math.isnan(m.auroc([0.1, 0.2], [0, 0]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=40))
def test_auroc_matches_pairwise_definition(pairs):
    s = [p[0] / 6 for p in pairs]
    y = [p[1] for p in pairs]
    if all(y) or not any(y):
        assert math.isnan(m.auroc(s, y))
        return
    assert m.auroc(s, y) == pytest.approx(brute_auroc(s, y))
    assert m.auroc([-v for v in s], y) == pytest.approx(1.0 - brute_auroc(s, y))


def test_roc_curve_endpoints_and_area():
    s = np.array([0.9, 0.5, 0.1, 0.4, 0.3, 0.8])
    y = np.array([1, 0, 0, 1, 0, 1])
    fpr, tpr = m.roc_curve(s, y)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(m.auroc(s, y))


def test_false_negative_rate_at_threshold():
    probs = [0.9, 0.5, 0.2, 0.7, 0.1]
    labels = [1, 1, 1, 0, 0]
    # violations predicted 0.9 (caught), 0.5 (== threshold: missed), 0.2 (missed)
    assert m.false_negative_rate(probs, labels, 0.5) == pytest.approx(2 / 3)
    assert m.false_negative_rate(probs, labels, 0.1) == 0.0
    assert math.isnan(m.false_negative_rate([0.3], [0], 0.5))


def test_ece_hand_computed():
    # bins of width 0.5: [0, .5) holds 0.1, 0.2 (labels 0, 1) -> mean p .15, freq .5, gap .35
    # [.5, 1] holds 0.8, 1.0 (labels 1, 1) -> mean p .9, freq 1, gap .1
    probs = [0.1, 0.2, 0.8, 1.0]
    labels = [0, 1, 1, 1]
    assert m.expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.1)
    rel = m.reliability(probs, labels, bins=2)
    assert rel.count.tolist() == [2, 2]
    assert rel.frequency.tolist() == [0.5, 1.0]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=50), st.integers(1, 12))
def test_ece_bounded_and_zero_when_perfect(pairs, bins):
    p = [a for a, _ in pairs]
    y = [b for _, b in pairs]
    ece = m.expected_calibration_error(p, y, bins)
    assert 0.0 <= ece <= 1.0
    # predictions equal to the labels are perfectly calibrated
    assert m.expected_calibration_error([float(b) for b in y], y, bins) == pytest.approx(0.0)


def test_guardrail_quality_bundle():
    q = m.guardrail_quality([0.9, 0.5, 0.1, 0.4, 0.4], [1, 0, 0, 1, 0], threshold=0.5)
    assert q["auroc"] == pytest.approx(0.75)
    assert q["fnr"] == pytest.approx(0.5)
    assert q["n"] == 5 and q["positives"] == 2


def test_violation_rate_and_per_1000():
    violations = [0, 3, 0, 1]
    steps = [100, 200, 50, 150]
    assert m.violation_rate(violations) == 0.5
    assert m.violations_per_1000_steps(violations, steps) == pytest.approx(1000 * 4 / 500)
    assert math.isnan(m.violation_rate([]))


def test_h50_hand_computed():
    edges = [0, 10, 20, 30, 40]
    sep = [5, 8, 15, 18, 25, 28, 35, 38]
    ok = [1, 1, 1, 0, 0, 0, 1, 0]
    # bins: (0,10] 100 %, (10,20] 50 %, (20,30] 0 %, (30,40] 50 % -> largest with >= 50 % is 40
    assert m.h50(sep, ok, edges) == 40.0
    assert m.h50(sep, [1, 1, 1, 0, 0, 0, 0, 0], edges) == 20.0
    assert m.h50(sep, [0] * 8, edges) == 0.0
    table = m.success_by_separation(sep, ok, edges)
    assert table["success"].tolist() == [1.0, 0.5, 0.0, 0.5]
    # a bin needs min_episodes of evidence
    assert m.h50([5, 35], [1, 1], edges) == 40.0
    assert math.isnan(m.h50([5, 35], [1, 1], edges, min_episodes=2))


def test_recovery_time_hand_computed():
    dist = [10, 9, 8, 12, 11, 10, 9, 8, 7]
    # perturbed at step 3: before = dist[2] = 8; back at <= 8 after step 7 -> 5 steps
    assert m.recovery_time(dist, 3) == 5.0
    assert math.isnan(m.recovery_time([10, 9, 8, 12, 11, 10, 9], 3))  # never back
    assert m.recovery_time([12, 11, 10], 0, reset_distance=10) == 3.0
    assert math.isnan(m.recovery_time(dist, -1))


def test_recovery_summary():
    eps = pd.DataFrame({"perturbation_onset": [-1, 5, 7, 9], "success": [True, True, False, True],
                        "recovery_time": [np.nan, 4.0, np.nan, 6.0]})
    s = m.recovery_summary(eps)
    assert s["perturbed"] == 3
    assert s["recovery_rate"] == pytest.approx(2 / 3)
    assert s["recovery_time_median"] == 5.0
    assert s["recovered_fraction"] == pytest.approx(2 / 3)


def test_surprise_labels_shift_by_one_step():
    assert m.surprise_labels([0, 0, 1, 0]).tolist() == [False, False, False, True]
    steps = pd.DataFrame({"episode": [0] * 5 + [1] * 3, "t": [0, 1, 2, 3, 4, 0, 1, 2],
                          "impossible": [0, 1, 0, 0, 0, 0, 0, 0],
                          "surprise": [0.0, 0.1, 5.0, 0.2, 0.3, 9.0, 0.1, 0.2]})
    # the surprise after the teleport (t=2 of episode 0) is the highest label-1 score, but episode 1's
    # step-0 spike (no previous transition, label 0) is higher -> 6 of 7 negatives below it
    assert m.surprise_auroc(steps) == pytest.approx(6 / 7)
