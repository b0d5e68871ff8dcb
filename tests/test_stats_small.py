"""Intervals of small or perfect shares (issue 23, item 3): the rule, Clopper-Pearson where
the bootstrap collapses, its coverage against the bootstrap's, Newcombe's paired interval, and
how the leaderboard and ``compare`` show them."""
from __future__ import annotations

from math import comb

import numpy as np
import pytest

from eval_encoder import stats
from eval_encoder.__main__ import main
from test_leaderboard import make_record, write_all
from test_stats import attach, hits_record, predictions


def test_seven_clips_at_100_get_clopper_pearson(tmp_path):
    record = hits_record(tmp_path, np.ones(7, bool), "perfect", "demo")
    record["metrics"] = {"top1": 100.0}
    cell = stats.cell_summary([record], "top1", "demo", ci="bootstrap")
    assert cell.small and cell.interval.method == "exact"
    assert (cell.interval.lo, cell.interval.hi) == pytest.approx((59.04, 100.0), abs=0.01)
    assert cell.replicates.std() > 1.0  # AVG's draws are not degenerate either


def test_the_rule_counts_the_minority_side():
    assert stats.needs_exact(0, 7) and stats.needs_exact(7, 7) and stats.needs_exact(5, 10)
    assert stats.needs_exact(9, 400) and stats.needs_exact(391, 400)
    assert not stats.needs_exact(10, 400) and not stats.needs_exact(390, 400)


def _coverage(interval, n: int, p: float) -> float:
    """Exact coverage: the binomial probability of every k whose interval holds p."""
    return sum(comb(n, k) * p ** k * (1 - p) ** (n - k)
               for k in range(n + 1) if interval(k).lo - 1e-9 <= 100 * p <= interval(k).hi + 1e-9)


def test_coverage_at_small_n_exact_holds_the_level_bootstrap_does_not():
    rng = np.random.default_rng(0)
    for n, p, boot_below in [(7, 0.9, 0.6), (10, 0.9, 0.7), (20, 0.95, 0.7)]:
        boots = {k: stats.percentile_interval(rng.binomial(n, k / n, 1000) * 100.0 / n)
                 for k in range(n + 1)}
        assert _coverage(boots.__getitem__, n, p) < boot_below
        assert _coverage(lambda k: stats.clopper_pearson(k, n), n, p) >= 0.95
    # the rule at its threshold: 100 clips, p = 0.9 (bootstrap alone covers 0.93 there)
    rule = {k: stats.clopper_pearson(k, 100) if stats.needs_exact(k, 100) else
            stats.percentile_interval(rng.binomial(100, k / 100, 2000) * 1.0) for k in range(101)}
    assert _coverage(rule.__getitem__, 100, 0.9) >= 0.94


def test_newcombe_when_both_runs_are_perfect(tmp_path):
    ids = [f"c{i}" for i in range(7)]
    a, b = (hits_record(tmp_path, np.ones(7, bool), r, ids=ids) for r in "ab")
    out = stats.paired([stats.measure(a, "top1", ids=True)], [stats.measure(b, "top1", ids=True)],
                       ["a", "b"], "ssv2")
    assert out.diff == 0 and out.interval.method == "newcombe" and out.p == 1.0
    wilson = stats.wilson(7, 7)
    assert (out.interval.lo, out.interval.hi) == pytest.approx((wilson.lo - 100, 100 - wilson.lo))
    assert out.replicates.std() > 1.0


def test_newcombe_holds_the_difference_and_large_tables_keep_the_bootstrap(tmp_path):
    iv = stats.newcombe(np.array([[200, 10], [20, 170]]))
    assert iv.lo < -2.5 < iv.hi and iv.hi - iv.lo < 10
    ids = [f"c{i:03d}" for i in range(100)]
    a = hits_record(tmp_path, np.arange(100) < 60, "a", ids=ids)
    b = hits_record(tmp_path, np.arange(100) < 55, "b", ids=ids)
    out = stats.paired([stats.measure(a, "top1", ids=True)], [stats.measure(b, "top1", ids=True)],
                       ["a", "b"], "ssv2")
    assert out.interval.method == "bootstrap"


def _runs(tmp_path):
    small = attach({**make_record("demo", 100.0), "run_id": "small"}, tmp_path,
                   predictions(np.zeros(7), np.zeros(7)))
    labels = np.arange(400) % 10
    big = attach({**make_record("ssv2", 57.0), "run_id": "big"}, tmp_path,
                 predictions(labels, np.where(np.arange(400) < 228, labels, (labels + 1) % 10)))
    return write_all(tmp_path, [small, big])


def test_leaderboard_marks_and_explains_the_exact_cell(tmp_path, capsys):
    runs = _runs(tmp_path)
    assert main(["leaderboard", "--runs", str(runs), "--datasets", "ssv2,demo", "--ci"]) == 0
    text = capsys.readouterr().out
    assert "100.0 +0.0/-41.0ᵉ" in text and "57.0 ±4.8 |" in text
    assert "ᵉ: exact Clopper-Pearson interval, not the bootstrap" in text
    assert "fewer than 10 clips right or fewer than 10 wrong" in text and ": demo" in text
    assert main(["leaderboard", "--runs", str(runs), "--datasets", "ssv2,demo", "--ci",
                 "--format", "csv"]) == 0
    csv = capsys.readouterr().out.splitlines()
    row = dict(zip(csv[0].split(","), csv[1].split(",")))
    assert (row["demo_ci"], row["ssv2_ci"], row["avg_ci"]) == ("exact", "bootstrap", "bootstrap")
    # AVG is wider than half the big cell's interval: the small cell's draws count
    assert float(row["avg_hi"]) - float(row["avg_lo"]) > 10
