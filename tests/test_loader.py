"""The torch loader: whole batches built in the worker, prefetching workers, the worker cap."""

import numpy as np
import pytest
import torch

from eval_encoder.codec.synthetic import moving_square, write_video
from eval_encoder.video import loader as loader_mod
from eval_encoder.video.dataset import ClipDataset, FramesSource
from eval_encoder.video.loader import TorchLoader, _Batched, _Indexed, collate
from eval_encoder.video.manifest import ManifestEntry
from eval_encoder.video.steps import chunk
from eval_encoder.video.transforms import TransformSpec, transform_clip

TSPEC = TransformSpec(input_size=32, short_side=36, mean=(0.45,) * 3, std=(0.25,) * 3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader_clips")
    for i, (h, w) in enumerate([(48, 64), (40, 40), (36, 60)]):
        write_video(str(root / f"c{i}.mp4"), moving_square(frames=12, height=h, width=w,
                                                             size=12, seed=i).frames)
    names = ["c0.mp4", "missing.mp4", "c1.mp4", "c2.mp4"]
    entries = [ManifestEntry(n, k, k + 1) for k, n in enumerate(names)]
    return ClipDataset(entries, str(root), FramesSource(4), train=True, seed=3)


def test_a_batch_built_in_place_equals_the_stacked_samples(dataset):
    keys = [(i, 2) for i in (3, 1, 0, 2)]
    built = _Batched(dataset, TSPEC)[keys]
    stacked = collate([_Indexed(dataset, TSPEC)[k] for k in keys])
    assert set(built) == set(stacked)
    for key, value in stacked.items():
        if torch.is_tensor(value):
            assert torch.equal(built[key], value), key
        else:
            assert built[key] == value, key
    assert built["index"].tolist() == [3, 0, 2] and built["skipped"][0]["index"] == 1


def test_all_failed_batch_has_only_skipped(dataset):
    assert set(_Batched(dataset, TSPEC)[[(1, 0)]]) == {"skipped"}


def test_workers_give_the_batches_of_the_main_process(dataset):
    order = lambda epoch: chunk(np.random.default_rng(epoch).permutation(len(dataset)).tolist(), 2)  # noqa: E731
    runs = []
    for workers in (0, 1):
        loader = TorchLoader(dataset, order, TSPEC, workers)
        passes = []
        for epoch in (0, 1):
            loader.set_epoch(epoch, start=1 if epoch else 0)
            passes.append([b for b in loader])
        runs.append(passes)
    for plain, worked in zip(*runs):
        assert len(plain) == len(worked)
        for a, b in zip(plain, worked):
            assert a.keys() == b.keys() and a["skipped"] == b["skipped"]
            for key in a.keys() - {"skipped"}:
                assert torch.equal(a[key], b[key]), key


def test_transform_into_a_slot_equals_a_fresh_transform():
    rng = np.random.default_rng(0)
    small, large = (rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8) for h, w in ((40, 50), (90, 70)))
    want = [transform_clip(f, TSPEC, (0.2, 0.7)) for f in (small, large, small)]
    slots = torch.empty((3, 3, 3, 32, 32))
    for slot, f in zip(slots, (small, large, small)):  # scratch memory reused across sizes
        transform_clip(f, TSPEC, (0.2, 0.7), out=slot)
    for slot, w in zip(slots, want):
        assert torch.equal(slot, w)


@pytest.mark.parametrize("cpus,ranks,asked,got", [(2, 1, 4, 2), (8, 2, 4, 4), (8, 4, 4, 2),
                                                  (2, 4, 3, 1), (16, 1, 0, 0), (2, 1, 1, 1)])
def test_workers_are_capped_to_the_cpus_of_each_local_process(monkeypatch, cpus, ranks, asked, got):
    monkeypatch.setattr(loader_mod, "_usable_cpus", lambda: cpus)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))
    assert loader_mod.loader_workers(asked) == got


def test_loader_benchmark_runs_at_a_tiny_size(capsys, load_benchmark):
    """Smoke test of benchmarks/bench_loader.py (seconds): it measures and prints its ratios."""
    bench = load_benchmark("bench_loader")
    out = bench.main(["--sizes", "36x48", "--frames", "12", "--clips", "2", "--samples", "4",
                      "--num_frames", "4", "--input", "32", "--batch", "2", "--workers", "0", "1",
                      "--rounds", "1"])
    summary = out["48x36"]
    assert summary["bare_clips_s"] > 0
    for w in (0, 1):
        s = summary["workers"][w]
        assert s["clips_s"] > 0 and s["per_worker"][0] > 0 and s["cpu"][0] > 0
    printed = capsys.readouterr().out
    assert "per worker / bare" in printed and "CPU / bare" in printed and "1 workers" in printed
