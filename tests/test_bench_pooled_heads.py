"""Smoke test of benchmarks/bench_pooled_heads.py: both runs (ov, ov linear knn) complete and
their ratio is reported (tiny sizes, random tokens; the figures are the benchmark's)."""
from __future__ import annotations


def test_the_benchmark_reports_both_runs_and_their_ratio(load_benchmark, capsys):
    bench = load_benchmark("bench_pooled_heads")
    bench.main(["--encoder", "none", "--width", "32", "--tokens", "6", "--classes", "5",
                "--train", "4", "--val", "2", "--epochs", "2", "--rounds", "2"])
    out = capsys.readouterr().out.splitlines()
    assert "2 rounds, one thread" in out[0]
    assert out[1].split()[0] == "ov" and out[2].split()[:3] == ["ov", "linear", "knn"]
    assert out[3].strip().startswith("ratio ") and "(range " in out[3]
