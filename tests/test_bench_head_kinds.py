"""Smoke test of benchmarks/bench_head_kinds.py: every kind and head count runs and is reported
as a ratio to one head (tiny sizes; the figures themselves are the benchmark's to measure)."""
from __future__ import annotations


def test_the_benchmark_reports_each_kind_and_count(load_benchmark, capsys):
    bench = load_benchmark("bench_head_kinds")
    bench.main(["--heads", "1", "3", "--width", "64", "--tokens", "12", "--classes", "5",
                "--rounds", "2"])
    out = capsys.readouterr().out.splitlines()
    assert "heads only" in out[0] and "2 rounds, one thread" in out[0]
    lines = {(line.split()[0], int(line.split()[1])): line for line in out[1:]}
    assert set(lines) == {("ov", 1), ("ov", 3), ("vjepa2", 1), ("vjepa2", 3)}
    assert "1.00x 1 head(s) (range 1.00-1.00)" in lines["vjepa2", 1]
