"""Intervals and tests: the clip-level bootstrap (fixed seed, one stream per dataset), its
percentile interval, the exact Clopper-Pearson interval of a share, and the exact McNemar test.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional, Sequence

import numpy as np

from eval_encoder.stats.clips import ClipStat
from eval_encoder.stats.errors import StatsError

RESAMPLES = 2000  # bootstrap replicates


SEED = 0  # the bootstrap's fixed seed; each dataset gets its own stream (see rng_for)


LEVEL = 0.95


CHUNK = 20_000_000  # cell counts per chunk of replicates (bounds memory for per-clip cells)


INTERVALS = ("bootstrap", "exact")


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    method: str  # "bootstrap" | "exact"


def rng_for(key: str, seed: int = SEED) -> np.random.Generator:
    """The bootstrap's random stream for ``key`` (a dataset): fixed, and independent of the
    other datasets' streams, so averaging their replicates averages independent draws."""
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def bootstrap(stat: ClipStat, resamples: int = RESAMPLES,
              rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """``resamples`` replicates of the statistic on clips drawn with replacement."""
    if resamples < 1:
        raise StatsError(f"the bootstrap needs at least one resample (got {resamples})")
    rng = rng if rng is not None else np.random.default_rng(SEED)
    counts = stat.counts()
    step = max(1, CHUNK // max(stat.size, 1))
    parts = [stat.value(_draw(counts, min(step, resamples - start), rng))
             for start in range(0, resamples, step)]
    return np.concatenate(parts)


def _draw(counts: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Counts per cell [resamples, K] of n clips drawn with replacement."""
    n, size = int(counts.sum()), counts.size
    if size * 16 <= n:  # few cells: one multinomial draw per replicate
        return rng.multinomial(n, counts / n, size=resamples)
    cell_of = np.repeat(np.arange(size, dtype=np.int64), counts)
    drawn = cell_of[rng.integers(0, n, size=(resamples, n), dtype=np.int32)]
    drawn += np.arange(resamples)[:, None] * size
    return np.bincount(drawn.ravel(), minlength=resamples * size).reshape(resamples, size)


def centre(replicates: np.ndarray, estimate: float) -> np.ndarray:
    """Replicates shifted so that their mean is the estimate. For mAP: a resample holds some
    clips two or more times, and a duplicated positive ties with its copy at every threshold,
    which lifts AP; on simulated Charades-Ego-like data (2,000 clips, 40 classes) the replicates
    sat about 1 point above the estimate, more than the interval's half-width, while their
    spread matched the true sampling spread (sd 0.65-0.76 against 0.70 over 150 fresh
    samples). Percentiles of the centred replicates keep that spread around the estimate."""
    return replicates - replicates.mean() + estimate


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> Interval:
    """The central ``level`` percentile interval of bootstrap replicates."""
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(replicates, [tail, 100.0 - tail])
    return Interval(float(lo), float(hi), "bootstrap")


@lru_cache(maxsize=8)
def _log_factorials(n: int) -> np.ndarray:
    """log(k!) for k = 0..n."""
    return np.array([math.lgamma(k + 1.0) for k in range(n + 1)])


def _log_pmf(n: int, p: float) -> np.ndarray:
    """log P(X = k), k = 0..n, for X ~ Binomial(n, p), 0 < p < 1."""
    lgamma = _log_factorials(n)
    k = np.arange(n + 1)
    return lgamma[n] - lgamma - lgamma[::-1] + k * math.log(p) + (n - k) * math.log1p(-p)


def _tail(log_pmf: np.ndarray) -> float:
    """sum(exp(log_pmf)), computed stably."""
    if log_pmf.size == 0:
        return 0.0
    top = float(log_pmf.max())
    return math.exp(top) * float(np.exp(log_pmf - top).sum())


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    return 0.0 if p >= 1.0 else min(1.0, _tail(_log_pmf(n, p)[: k + 1]))


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> Interval:
    """The exact (Clopper-Pearson) interval of a share k/n, in percent: the p whose binomial
    tails P(X >= k) and P(X <= k) are each (1 - level) / 2, found by bisection."""
    if n <= 0 or not 0 <= k <= n:
        raise StatsError(f"a share needs 0 <= k <= n and n > 0 (k={k}, n={n})")
    alpha = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else _solve(lambda p: 1.0 - binomial_cdf(k - 1, n, p) - alpha)
    hi = 1.0 if k == n else _solve(lambda p: alpha - binomial_cdf(k, n, p))
    return Interval(100.0 * lo, 100.0 * hi, "exact")


def _solve(f: Callable[[float], float], steps: int = 60) -> float:
    """The root in (0, 1) of an increasing function, by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2.0


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Exact McNemar p-value: two-sided binomial test of ``only_a`` successes in
    only_a + only_b discordant clips at p = 1/2 (twice the smaller tail, at most 1)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_cdf(min(only_a, only_b), n, 0.5))


def average_interval(replicates: Sequence[np.ndarray], level: float = LEVEL) -> Interval:
    """Interval of a mean over datasets: each dataset resampled on its own, replicates
    averaged replicate by replicate."""
    return percentile_interval(np.mean(np.stack(replicates), axis=0), level)
