"""The feature cache in runs of pooled heads (linear, knn): a second run of the same encoder
and data runs no encoder and gives the same record (per-clip predictions included) as the
first and as a run without the cache; a run with an attentive head still encodes its own
passes and takes only the kNN train vectors from the cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eval_encoder.demo import generate_dataset, save_tiny_encoder
from eval_encoder.probe.run import main as probe_main
from eval_encoder.record import read_record

SAME = ("heads", "reported", "reported_by_kind", "samples")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("feature_cache_runs")
    generate_dataset(out / "data", "demo", train_per_class=3, val_clips=7, seed=0)
    return out / "data", save_tiny_encoder(out)


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def _run(tiny, report, *extra):
    data, weights = tiny
    assert probe_main([
        "--model_family", "sampling", "--model_name", "ov_encoder_tiny", "--model_weight",
        str(weights), "--dataset", "demo", "--data_root", str(data), "--num_frames", "2",
        "--batch_size", "4", "--dali_py_num_workers", "0", "--monitor_clips", "4",
        "--default_epoch", "2", "--default_lr_list", "1e-3", "1e-2", "--knn_k", "3", "5",
        "--save_report", str(report), *extra]) == 0
    path = max((report / "runs").rglob("*.json"), key=lambda p: p.stat().st_mtime)
    record = dict(read_record(str(path)), _path=str(path))
    return record, np.load(str(path).replace(".json", ".predictions.npz"))


def _kind_files(record):
    """{kind: its predictions file's arrays} of a later kind's reported head, and the record's
    reported_by_kind without the files' names (their run ids) and digests."""
    folder, files, entries = Path(record["_path"]).parent, {}, {}
    for kind, entry in (record.get("reported_by_kind") or {}).items():
        kept = entry.get("predictions")
        if kept:
            files[kind] = np.load(folder / kept["file"], allow_pickle=False)
            kept = {k: v for k, v in kept.items() if k not in ("file", "sha256")}
        entries[kind] = {**entry, "predictions": kept}
    return files, entries


def _same_arrays(pa, pb):
    assert pa.files == pb.files
    for name in pa.files:
        assert (pa[name] == pb[name]).all(), name


def _same(a, b):
    (ra, pa), (rb, pb) = a, b
    (fa, ea), (fb, eb) = _kind_files(ra), _kind_files(rb)
    for key in SAME:
        assert (ea if key == "reported_by_kind" else ra[key]) == \
            (eb if key == "reported_by_kind" else rb[key]), key
    _same_arrays(pa, pb)
    assert sorted(fa) == sorted(fb) == ["knn"]  # a later kind's predictions, cached or not
    for kind in fa:
        _same_arrays(fa[kind], fb[kind])


def test_a_second_pooled_run_runs_no_encoder_and_gives_the_same_record(tiny, tmp_path):
    heads = ["--probe_head", "linear", "knn"]
    first = _run(tiny, tmp_path / "r", *heads)
    second = _run(tiny, tmp_path / "r", *heads)
    uncached = _run(tiny, tmp_path / "off", *heads, "--feature_cache", "off")
    assert first[0]["feature_cache"]["passes"] == ["knn_train", "train", "val", "monitor"]
    assert sum(first[0]["encoder_passes"].values()) > 0
    assert set(second[0]["encoder_passes"].values()) == {0}
    cached = second[0]["feature_cache"]["cached_batches"]
    assert cached["train"] == first[0]["encoder_passes"]["train"] and cached["val"] > 0
    assert "feature_cache" not in uncached[0]
    _same(first, second)
    _same(first, uncached)
    assert first[0]["config_hash"] == uncached[0]["config_hash"]


def test_an_attentive_head_encodes_its_passes_and_knn_reads_the_cache(tiny, tmp_path):
    heads = ["--probe_head", "ov", "knn"]
    first = _run(tiny, tmp_path / "r", *heads)
    second = _run(tiny, tmp_path / "r", *heads)
    assert first[0]["feature_cache"]["passes"] == ["knn_train"]
    assert first[0]["encoder_passes"]["knn_train"] > 0
    assert second[0]["encoder_passes"].get("knn_train", 0) == 0
    assert second[0]["encoder_passes"]["train"] == first[0]["encoder_passes"]["train"] > 0
    _same(first, second)
