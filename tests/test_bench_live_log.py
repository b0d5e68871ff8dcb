"""Smoke test of benchmarks/bench_live_log.py: every backend's run completes and its ratios
against ``none`` are printed (tiny sizes; the figures are the benchmark's)."""
from __future__ import annotations

import pytest


def test_the_benchmark_reports_every_backend_against_none(load_benchmark, capsys, tmp_path,
                                                          monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    bench = load_benchmark("bench_live_log")
    assert bench.main(["--rounds", "1", "--epochs", "1", "--heads", "2",
                       "--train_per_class", "2", "--val", "2"]) == 0
    out = capsys.readouterr().out.splitlines()[-4:]  # after each run's result line
    assert out[0].startswith("1 rounds, one thread, 2 heads, 2 optimiser steps")
    assert [line.split()[0] for line in out[1:]] == ["none", "tensorboard", "wandb"]
    assert all(" x none" in line and "ms/step" in line for line in out[1:])
