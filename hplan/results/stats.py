"""Intervals for success rates: across training seeds, pooled over episodes, and paired.

No SciPy here: Student's t quantiles for small samples are tabulated, the rest is closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

Z95 = 1.959963984540054
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom: tabulated up to 30, then
    the Cornish–Fisher expansion around the normal quantile (error below 1e-4 from 30 on)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = Z95, float(df)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def wilson(successes: int, trials: int) -> Interval:
    """Wilson score interval (95 %) of a binomial proportion: sensible at 0 % and 100 %, unlike
    the normal approximation."""
    if trials < 1:
        raise ValueError("wilson needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, {trials}], got {successes}")
    p, n, z2 = successes / trials, trials, Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if successes == 0 else min(p, max(0.0, centre - half))  # exact at the ends (rounding
    high = 1.0 if successes == trials else max(p, min(1.0, centre + half))  # would leave 1e-17 off)
    return Interval(p, low, high)


def mean_interval(values: Sequence[float]) -> Interval:
    """Mean and 95 % t-interval of per-seed values (one value: no interval, NaN bounds)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, math.nan, math.nan)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)


@dataclass(frozen=True)
class Paired:
    """Two arms on the same episodes: on ``a_only`` episodes A did better, on ``b_only`` B did."""

    difference: Interval  # mean over episodes of success(A) - success(B), with a 95 % t-interval
    a_only: int
    b_only: int
    pairs: int  # episodes (the independent units)
    p_value: float  # exact two-sided sign test on the episodes where the arms differ


def paired(a: Sequence[float], b: Sequence[float]) -> Paired:
    """Paired comparison of two arms' success on the same episodes.

    Each entry is one episode's success, or its success rate over the training seeds that played
    it: seeds replay the same episodes, so an episode, not an (episode, seed) pair, is the
    independent unit — pooling seeds as if independent would make the interval too narrow.
    """
    if len(a) != len(b) or not a:
        raise ValueError("paired needs two equally long, non-empty sequences")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else math.nan
    half = t975(n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    a_only = sum(1 for d in diffs if d > 0)
    b_only = sum(1 for d in diffs if d < 0)
    return Paired(Interval(mean, mean - half, mean + half), a_only, b_only, n, sign_test(a_only, b_only))


def sign_test(k: int, m: int) -> float:
    """Exact two-sided binomial test of k against m discordant pairs (H0: each side equally likely)."""
    n = k + m
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, m) + 1)) / 2 ** n
    return min(1.0, 2 * tail)
