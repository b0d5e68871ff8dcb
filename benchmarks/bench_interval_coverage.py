"""Coverage of 95% intervals of a share of clips: the percentile bootstrap, Clopper-Pearson,
and the leaderboard's rule (Clopper-Pearson when fewer than MINORITY clips are right or wrong,
else the bootstrap), exact over k ~ Binomial(n, p). ``python benchmarks/bench_interval_coverage.py``
(about a minute on one core)."""
from __future__ import annotations

from math import comb

import numpy as np

from eval_encoder import stats

NS = (7, 10, 15, 20, 30, 50, 100, 200, 400, 1000)
PS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995)


def coverage(intervals, n: int, p: float) -> float:
    return sum(comb(n, k) * p ** k * (1 - p) ** (n - k) for k, iv in enumerate(intervals)
               if iv.lo - 1e-9 <= 100 * p <= iv.hi + 1e-9)


def main() -> None:
    rng = np.random.default_rng(0)
    for n in NS:
        boot = [stats.percentile_interval(rng.binomial(n, k / n, stats.RESAMPLES) * 100.0 / n)
                for k in range(n + 1)]
        exact = [stats.clopper_pearson(k, n) for k in range(n + 1)]
        rule = [e if stats.needs_exact(k, n) else b for k, (b, e) in enumerate(zip(boot, exact))]
        for p in PS:
            print(f"n={n:5d} p={p:.3f} bootstrap={coverage(boot, n, p):.3f} "
                  f"exact={coverage(exact, n, p):.3f} rule={coverage(rule, n, p):.3f}")


if __name__ == "__main__":
    main()
