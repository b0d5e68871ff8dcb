"""Intervals of shares of clips where the percentile bootstrap misleads: few clips, or few
clips on one side (right or wrong), and 0% or 100% above all, where every resample repeats the
estimate and the interval has zero width.

The rule (:func:`needs_exact`): a share of k right of n clips gets the exact Clopper-Pearson
interval when fewer than :data:`MINORITY` clips are right or fewer than :data:`MINORITY` are
wrong; otherwise the bootstrap. The bootstrap of a share is, in effect, the Wald interval, and
like it fails when the expected minority count n min(p, 1-p) is small. Measured
(``benchmarks/bench_interval_coverage.py``: exact coverage, the binomial probability of every
k, n = 7..1000, p = 0.5..0.995): the bootstrap covers 0.875 at n = 7, p = 0.5, 0.50 at n = 7,
p = 0.9, 0.63 at n = 100, p = 0.99 and 0.86 at n = 400, p = 0.995; with the rule at 10 the
worst over the grid is 0.943 (at 5 it is 0.932: n = 100, p = 0.9 falls on bootstrap cells with
5-9 wrong clips), and the exact interval never covers below 0.95.

A paired difference of two shares on the same clips (``compare``) gets Newcombe's hybrid score
interval (Newcombe 1998, method 10: Wilson intervals of both shares, joined through the
correlation of the 2x2 table) when either share falls under the rule, or no clip is
discordant (the paired bootstrap then has nothing to resample). When both runs are perfect it
is [-(1 - w), +(1 - w)] with w the Wilson lower bound of n/n: nothing tells the two apart, and
with few clips not much could.

Averages (AVG) average each dataset's resampled values; a cell under the rule has no honest
resamples, so it contributes draws of its Jeffreys posterior Beta(k + 1/2, n - k + 1/2) (a
paired difference: draws of the Dirichlet(table + 1/2) of its 2x2 table), which are not
degenerate at 0% or 100%.
"""
from __future__ import annotations

import math

import numpy as np

from eval_encoder.stats.intervals import LEVEL, Interval

MINORITY = 10  # fewer clips right (or wrong) than this: an exact interval, not the bootstrap


def needs_exact(k: int, n: int) -> bool:
    """Whether a share of ``k`` of ``n`` clips is too close to 0% or 100% (or too small) for
    the percentile bootstrap."""
    return min(k, n - k) < MINORITY


def _z(level: float) -> float:
    """The standard normal quantile at (1 + level) / 2, by bisection on erf."""
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if math.erf(mid / math.sqrt(2.0)) < level else (lo, mid)
    return (lo + hi) / 2.0


def wilson(k: int, n: int, level: float = LEVEL) -> Interval:
    """The Wilson score interval of a share k/n, in percent."""
    z, p = _z(level), k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half), "wilson")


def newcombe(table: np.ndarray, level: float = LEVEL) -> Interval:
    """Newcombe's hybrid score interval of A - B (points) from the 2x2 table of clips
    [[both right, A only], [B only, both wrong]]."""
    (both, only_a), (only_b, neither) = np.asarray(table, dtype=float)
    n = both + only_a + only_b + neither
    pa, pb = (both + only_a) / n, (both + only_b) / n
    wa, wb = wilson(int(both + only_a), int(n), level), wilson(int(both + only_b), int(n), level)
    la, ua, lb, ub = wa.lo / 100, wa.hi / 100, wb.lo / 100, wb.hi / 100
    phi = _phi(both, only_a, only_b, neither)
    down = math.sqrt(max(0.0, (pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2))
    up = math.sqrt(max(0.0, (ua - pa) ** 2 - 2 * phi * (ua - pa) * (pb - lb) + (pb - lb) ** 2))
    return Interval(float(100.0 * (pa - pb - down)), float(100.0 * (pa - pb + up)), "newcombe")


def _phi(both: float, only_a: float, only_b: float, neither: float) -> float:
    """The correlation of A's and B's hits over the clips (0 when a margin is empty)."""
    denominator = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    return (both * neither - only_a * only_b) / math.sqrt(denominator) if denominator else 0.0


def jeffreys_draws(k: int, n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Draws (percent) of a share's Jeffreys posterior Beta(k + 1/2, n - k + 1/2)."""
    return 100.0 * rng.beta(k + 0.5, n - k + 0.5, size=resamples)


def paired_draws(table: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Draws (points) of A - B from the Dirichlet(table + 1/2) of the 2x2 table."""
    shares = rng.dirichlet(np.asarray(table, dtype=float).ravel() + 0.5, size=resamples)
    return 100.0 * (shares[:, 1] - shares[:, 2])


def table_of(hits_a: np.ndarray, hits_b: np.ndarray) -> np.ndarray:
    """The 2x2 table [[both right, A only], [B only, both wrong]] of two runs' hits."""
    return np.array([[np.sum(hits_a & hits_b), np.sum(hits_a & ~hits_b)],
                     [np.sum(~hits_a & hits_b), np.sum(~hits_a & ~hits_b)]])
