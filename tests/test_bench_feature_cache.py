"""Smoke test of benchmarks/bench_feature_cache.py: the pooled pair (no cache, warm cache) runs
as real probe runs and its ratio and the encoder's share are printed (tiny sizes; the figures
are the benchmark's)."""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_the_benchmark_reports_the_cache_ratio(load_benchmark, capsys, monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    bench = load_benchmark("bench_feature_cache")
    bench.main(["--only", "cache", "--rounds", "1", "--epochs", "1", "--frames", "1",
                "--train_per_class", "1", "--val", "2", "--knn_k", "2"])
    out = [line for line in capsys.readouterr().out.splitlines()
           if line.startswith(("pooled", "warm / off", "encoder share"))]
    assert [line.split()[0] for line in out[:2]] == ["pooled,", "pooled,"]
    assert out[2].startswith("warm / off:") and out[3].startswith("encoder share of the off run:")
