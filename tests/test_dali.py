"""DALI (on CPU) gives the torch transforms' tensors, and its loader keeps the batch contract.

Tolerance: both paths compute in float32 from the same uint8 frames with the same weights; they
differ only in summation order (~1e-3 of the 0..255 range at worst), i.e. ~2e-5 after
normalisation (std ~0.27). We allow 1e-4; measured maxima are printed (pytest -s).

With ``round_pixels`` (8-bit levels between ops, as published) the brightness/contrast op is
exact: DALI's CPU kernel and ours do the same float32 multiply-add and both round half up. The
resize and the colour matrices differ from DALI's by summation order and a few ulps, so a value
within ~1e-4 of k + 0.5 can round the other way: 1 level after resize+crop (on ~1e-4 of the
values; measured and printed). Each later op scales such a difference by its gain and may add a
level in its own rounding (``_level_bound``); measured: at most 3 levels, on < 1e-4 of values.
"""
import math
import os
import sys

import av
import numpy as np
import pytest
import torch

from eval_encoder.video.dataset import ClipDataset, FramesSource
from eval_encoder.video.decode import decode_frames
from eval_encoder.video.manifest import ManifestEntry
from eval_encoder.video.loader import TorchLoader
from eval_encoder.video.steps import chunk, make_plan, train_batches
from eval_encoder.video.transforms import (JitterParams, TransformSpec, brightness_coefficients,
                                           colour_matrix, transform_clip)

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
TOL = 1e-4
KEYS = {"pixel_values", "labels", "frame_indices", "total_frames", "index", "clip_index", "skipped"}


@pytest.fixture(scope="module")
def dali():
    """DALI, or a skip that says so; a required DALI (``make test``) must be there."""
    if os.environ.get("EVAL_ENCODER_REQUIRE_DALI") == "1":
        import nvidia.dali  # an install that promised DALI fails here instead of skipping

        return nvidia.dali
    return pytest.importorskip("nvidia.dali", reason="DALI is not installed (the [test] extra "
                               "leaves it out): DALI/torch parity untested; pip install -e "
                               "'.[test-dali]' to test it")


def _write_video(path, width, height, frames, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        for t in range(frames):
            img = np.stack([(xx * 3 + t * 5) % 256, (yy * 4 + xx) % 256,
                            128 + 100 * np.sin((xx + yy + t) / 7.0)], -1)
            img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("dali_videos")
    # 120 -> 64 shrinks (antialiased); 48 -> 64 enlarges; odd sizes exercise the rounding
    for name, (w, h) in {"a.mp4": (160, 120), "b.mp4": (64, 48), "c.mp4": (98, 130)}.items():
        _write_video(root / name, w, h, 12, seed=len(name) + w)
    return root


def _run_dali_transform(clips, crops, jitters, tspec):
    """DALI-on-CPU dali_transform over one batch of (frames, crop_pos, jitter or None)."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    from eval_encoder.video.dali import dali_transform

    with_jitter = jitters[0] is not None

    @pipeline_def(batch_size=len(clips), num_threads=1, device_id=None, enable_conditionals=True)
    def pipe():
        frames = fn.external_source(name="frames", layout="FHWC")
        crop = fn.external_source(name="crop")
        jitter = fn.external_source(name="jitter") if with_jitter else None
        return dali_transform(frames, crop, jitter, tspec, with_jitter)

    p = pipe()
    p.build()
    p.feed_input("frames", clips)
    p.feed_input("crop", [np.asarray(c, np.float32) for c in crops])
    if with_jitter:
        p.feed_input("jitter", [j.as_array() for j in jitters])
    out = p.run()[0]
    return [torch.from_numpy(np.array(out[i])) for i in range(len(clips))]


def _clips(videos):
    return [decode_frames(str(videos / n), [0, 5, 11]) for n in ("a.mp4", "b.mp4", "c.mp4")]


def test_eval_transforms_match_torch(dali, videos):
    tspec = TransformSpec(input_size=56, short_side=64, mean=MEAN, std=STD)
    clips = _clips(videos)
    crops = [(0.5, 0.5), (0.0, 1.0), (1.0, 0.25)]
    worst = 0.0
    for crop in crops:
        got = _run_dali_transform(clips, [crop] * 3, [None] * 3, tspec)
        for frames, out in zip(clips, got):
            ref = transform_clip(frames, tspec, crop)
            assert out.shape == ref.shape == (3, 3, 56, 56)
            worst = max(worst, (out - ref).abs().max().item())
    print(f"DALI vs torch, eval transforms: max abs diff {worst:.2e}")
    assert worst < TOL


JITTERS = [
    JitterParams(brightness_contrast=True, contrast=1.35, brightness=-0.1),
    JitterParams(saturation_on=True, saturation=1.4),
    JitterParams(hue_on=True, hue=25.0),
    JitterParams(bgr=True),
    JitterParams(True, 0.7, 0.12, True, 0.6, True, -0.2, True),
    JitterParams(True, 1.4, 0.125, True, 1.4, True, 40.0, False),  # clamps bite
]


@pytest.mark.parametrize("brightness_mode", ["shift", "multiply"])
def test_fixed_jitter_matches_torch(dali, videos, brightness_mode):
    tspec = TransformSpec(input_size=48, short_side=56, mean=MEAN, std=STD,
                          brightness_mode=brightness_mode)
    clips = _clips(videos)
    worst = 0.0
    for jitter in JITTERS:
        got = _run_dali_transform(clips, [(0.3, 0.6)] * 3, [jitter] * 3, tspec)
        for frames, out in zip(clips, got):
            worst = max(worst, (out - transform_clip(frames, tspec, (0.3, 0.6), jitter)).abs().max().item())
    print(f"DALI vs torch, fixed jitter (each op on, {brightness_mode} brightness): max abs diff "
          f"{worst:.2e}")
    assert worst < TOL


LEVELS = dict(mean=(0, 0, 0), std=(1 / 255,) * 3)  # normalisation off: output in 0..255 levels


def test_dali_cpu_rounds_half_up_and_saturates(dali):
    """Evidence for transforms.to_levels: DALI's uint8 brightness_contrast on every level."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(name="x", layout="FHWC")
        return tuple(fn.brightness_contrast(x, brightness=b) for b in (0.5, 1.4, -0.1))

    p = pipe()
    p.build()
    p.feed_input("x", [np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1).repeat(3, -1)])
    half, bright, dark = (np.array(o[0])[0, 0, :, 0].astype(int) for o in p.run())
    # 0.5 * v: ties go up (1 -> 1, 3 -> 2, 201 -> 101), neither to even (0, 2, 100) nor down
    assert half[[1, 3, 5, 201, 203]].tolist() == [1, 2, 3, 101, 102]
    assert half.tolist() == [(v + 1) // 2 for v in range(256)]
    assert bright[200] == 255 and bright[182] == 255 and bright[181] == 253  # 1.4 * 182 = 254.8
    assert dark.max() == 0  # negative multiplier: saturated at 0


def _all_levels(t=2):
    """16 x 16 frames holding every level 0..255 once in each channel."""
    v = np.arange(256, dtype=np.uint8).reshape(16, 16)
    return np.broadcast_to(np.stack([v, v.T, 255 - v], -1), (t, 16, 16, 3)).copy()


ROUNDING_JITTERS = [
    JitterParams(True, 1.0, 0.5), JitterParams(True, 1.0, -0.1), JitterParams(True, 1.2, 0.5),
    JitterParams(True, 1.3, 0.11), JitterParams(True, 0.7, 0.1234567), JitterParams(True, 1.4, -0.003),
    JitterParams(True, 0.6, 0.125),
]


@pytest.mark.parametrize("mode", ["multiply", "shift"])
def test_rounded_brightness_matches_torch_exactly(dali, mode):
    # a 16 x 16 frame at short side 16: the resize is the identity, only the jitter rounds
    tspec = TransformSpec(16, 16, round_pixels=True, brightness_mode=mode, **LEVELS)
    frames = _all_levels()
    got = _run_dali_transform([frames] * len(ROUNDING_JITTERS), [(0.5, 0.5)] * len(ROUNDING_JITTERS),
                              ROUNDING_JITTERS, tspec)
    for jitter, out in zip(ROUNDING_JITTERS, got):
        assert torch.equal(out, transform_clip(frames, tspec, jitter=jitter)), jitter


def _level_diffs(tspec, clips, crops, jitters):
    got = _run_dali_transform(clips, crops, jitters, tspec)
    return [(frames, crop, jitter, out - transform_clip(frames, tspec, crop, jitter))
            for frames, crop, jitter, out in zip(clips, crops, jitters, got)]


def test_rounded_eval_pipeline_matches_torch_to_a_level(dali, videos):
    clips, changed, total = _clips(videos), 0, 0
    for short, size in ((64, 56), (56, 48), (130, 98)):
        tspec = TransformSpec(size, short, round_pixels=True, brightness_mode="multiply", **LEVELS)
        floaty = TransformSpec(size, short, round_pixels=False, brightness_mode="multiply", **LEVELS)
        for crop in [(0.5, 0.5), (0.0, 1.0), (1.0, 0.25)]:
            for frames, _, _, diff in _level_diffs(tspec, clips, [crop] * 3, [None] * 3):
                assert diff.abs().max().item() <= 1.0 and torch.equal(diff, diff.round())
                off = diff != 0
                raw = transform_clip(frames, floaty, crop)[off]
                # only values on a rounding boundary, to float32 summation noise
                assert torch.all((raw - raw.floor() - 0.5).abs() < 1e-3)
                changed, total = changed + int(off.sum()), total + diff.numel()
    print(f"DALI vs torch, rounded eval pixels: {changed} of {total} values 1 level apart")
    assert changed <= 1e-3 * total


def _level_bound(jitter: JitterParams, tspec: TransformSpec) -> int:
    """Levels apart two 1-level-apart crops can end after ``jitter``: each op scales a difference
    by its gain (|multiplier|, or the largest row sum of |matrix|) and its rounding adds one."""
    gains = []
    if jitter.brightness_contrast:
        gains.append(abs(brightness_coefficients(jitter, tspec)[0]))
    if jitter.saturation_on:
        gains.append(np.abs(colour_matrix(saturation=jitter.saturation)).sum(1).max())
    if jitter.hue_on:
        gains.append(np.abs(colour_matrix(hue=jitter.hue)).sum(1).max())
    bound = 1
    for gain in gains:
        bound = math.floor(bound * gain) + 1
    return bound


@pytest.mark.parametrize("mode", ["multiply", "shift"])
def test_rounded_jitter_pipeline_matches_torch_to_the_propagated_level(dali, videos, mode):
    tspec = TransformSpec(48, 56, round_pixels=True, brightness_mode=mode, **LEVELS)
    clips, changed, total, worst = _clips(videos), 0, 0, 0.0
    for jitter in JITTERS + ROUNDING_JITTERS:
        for _, _, _, diff in _level_diffs(tspec, clips, [(0.3, 0.6)] * 3, [jitter] * 3):
            assert torch.equal(diff, diff.round())
            assert diff.abs().max().item() <= _level_bound(jitter, tspec), jitter
            worst = max(worst, diff.abs().max().item())
            changed, total = changed + int((diff != 0).sum()), total + diff.numel()
    print(f"DALI vs torch, rounded jitter ({mode}): {changed} of {total} values differ, "
          f"at most {worst:.0f} levels")
    assert changed <= 1e-3 * total


@pytest.mark.parametrize("jitter", [JitterParams(saturation_on=True, saturation=1.4),
                                    JitterParams(saturation_on=True, saturation=0.63),
                                    JitterParams(hue_on=True, hue=25.0),
                                    JitterParams(hue_on=True, hue=-0.2)])
def test_rounded_colour_matrix_ops_match_torch_to_a_level(dali, jitter):
    # identity resize: both sides start from the same levels; DALI's float32 matrix differs from
    # ours by a few ulps, which can only move a value sitting on k + 0.5
    tspec = TransformSpec(16, 16, round_pixels=True, brightness_mode="multiply", **LEVELS)
    floaty = TransformSpec(16, 16, round_pixels=False, brightness_mode="multiply", **LEVELS)
    frames = _all_levels()
    (frames_, _, _, diff), = _level_diffs(tspec, [frames], [(0.5, 0.5)], [jitter])
    assert diff.abs().max().item() <= 1.0
    raw = transform_clip(frames, floaty, jitter=jitter)[diff != 0]
    assert torch.all((raw - raw.floor() - 0.5).abs() < 1e-3)


def _dataset(videos, train, source=None, spatial_views=1):
    names = ["a.mp4", "missing.mp4", "b.mp4", "c.mp4"]
    entries = [ManifestEntry(n, label, line) for line, (label, n) in enumerate(enumerate(names), 1)]
    return ClipDataset(entries, str(videos), source or FramesSource(4), train=train, seed=5,
                       spatial_views=spatial_views)


def _check_against_torch(ds, batch, epoch, tspec):
    for row, index in enumerate(batch["index"].tolist()):
        s = ds.sample(index, epoch)
        ref = transform_clip(s.frames, tspec, s.crop_pos, s.jitter)
        assert (batch["pixel_values"][row] - ref).abs().max().item() < TOL
        assert batch["labels"][row].item() == s.label
        assert batch["frame_indices"][row].tolist() == s.frame_indices.tolist()
        assert batch["total_frames"][row].item() == s.total_frames
        assert batch["clip_index"][row].item() == s.clip_index


def test_eval_loader_yields_each_index_once_and_reports_failures(dali, videos):
    from eval_encoder.video.dali import build_dali_loader

    tspec = TransformSpec(input_size=48, short_side=56, mean=MEAN, std=STD)
    ds = _dataset(videos, train=False, spatial_views=3)  # 12 samples, 3 of them unreadable
    order = [11, 3, 4, 5, 0, 1, 2, 9, 10, 6, 7, 8]
    loader = build_dali_loader(ds, lambda e: chunk(order, 5), 5, tspec, None, 1, 0, seed=0,
                               extras_keys=ds.source.extras_keys)
    assert len(loader) == 3
    seen, skipped = [], []
    for batch in loader:
        skipped += batch["skipped"]
        if "index" not in batch:
            assert set(batch) == {"skipped"}
            continue
        assert set(batch) == KEYS | set(ds.source.extras_keys)  # contract: plus declared extras
        assert batch["pixel_values"].shape[1:] == (3, 4, 48, 48)
        assert all(v.dtype == torch.long for k, v in batch.items() if k not in ("pixel_values", "skipped"))
        _check_against_torch(ds, batch, 0, tspec)
        seen += batch["index"].tolist()
    assert sorted(seen) == [0, 1, 2, 6, 7, 8, 9, 10, 11]
    assert sorted(s["index"] for s in skipped) == [3, 4, 5]
    assert all(s["path"].endswith("missing.mp4") and "not found" in s["reason"] for s in skipped)
    loader.close()


def test_train_loader_follows_epochs_in_worker_processes(dali, videos):
    from eval_encoder.video.dali import build_dali_loader

    tspec = TransformSpec(input_size=48, short_side=56, mean=MEAN, std=STD)
    ds = _dataset(videos, train=True)
    order_fn = lambda e: chunk(np.random.default_rng(e).permutation(len(ds)).tolist(), 3)  # noqa: E731
    loader = build_dali_loader(ds, order_fn, 3, tspec, None, 1, 1, seed=0,
                               extras_keys=ds.source.extras_keys)
    for epoch in (0, 1, 3):
        loader.set_epoch(epoch)
        seen, skipped = [], []
        for batch in loader:
            skipped += [s["index"] for s in batch["skipped"]]
            if "index" in batch:
                _check_against_torch(ds, batch, epoch, tspec)  # this epoch's jitter and frames
                seen += batch["index"].tolist()
        assert sorted(seen) == [0, 2, 3] and skipped == [1]
    # a pass left early does not disturb the next one
    next(iter(loader))
    assert sum(len(b.get("index", [])) for b in loader) == 3
    loader.close()


class _SourceWithExtras(FramesSource):
    def load(self, req):
        frames, idx, total, _ = super().load(req)
        return frames, idx, total, {"visible_indices": np.arange(6, dtype=np.int32) + total,
                                    "flags": np.int64(2)}


def test_loader_carries_integer_extras(dali, videos):
    from eval_encoder.video.dali import build_dali_loader

    tspec = TransformSpec(input_size=32, short_side=32, mean=MEAN, std=STD)
    ds = _dataset(videos, train=False, source=_SourceWithExtras(2))
    loader = build_dali_loader(ds, lambda e: [[0, 1, 2, 3]], 4, tspec, None, 1, 0, seed=0,
                               extras_keys=("visible_indices", "flags"))
    (batch,) = list(loader)
    assert set(batch) == KEYS | {"visible_indices", "flags"}
    assert batch["visible_indices"].shape == (3, 6) and batch["visible_indices"].dtype == torch.long
    assert torch.equal(batch["visible_indices"][:, 0], batch["total_frames"])
    assert batch["flags"].tolist() == [2, 2, 2]
    loader.close()


class _MemorySource:
    """Synthetic frames, no decoding: every sample readable, so batch sizes are the order's."""

    extras_keys = ()

    def load(self, req):
        return req.rng.integers(0, 256, (2, 20, 24, 3), dtype=np.uint8), np.array([0, 1]), 2, {}


def test_drop_last_gives_the_same_full_batches_in_both_loaders(dali):
    from eval_encoder.video.dali import build_dali_loader

    n, world, batch = 23, 2, 4  # floor(floor(23 / 2) / 4) = 2 steps of 4 per rank
    entries = [ManifestEntry(f"{i}.mp4", i % 5, i + 1) for i in range(n)]
    ds = ClipDataset(entries, "/nowhere", _MemorySource(), train=True, seed=5)
    tspec = TransformSpec(16, 16, round_pixels=True, brightness_mode="multiply", mean=MEAN, std=STD)
    plan = make_plan(None, batch, world, drop_last=True)
    for rank in range(world):
        def order_fn(epoch, rank=rank):
            return train_batches(n, epoch, rank, plan, seed=5)

        loaders = (TorchLoader(ds, order_fn, tspec, workers=0),
                   build_dali_loader(ds, order_fn, batch, tspec, None, 1, 0, seed=0))
        for epoch in (0, 3):
            runs = []
            for loader in loaders:
                loader.set_epoch(epoch)
                runs.append([b["index"].tolist() for b in loader])
                assert len(loader) == 2
            assert runs[0] == runs[1] and [len(b) for b in runs[0]] == [batch] * 2
        loaders[1].close()


def test_missing_dali_names_the_extra(monkeypatch):
    from eval_encoder.video import dali as dali_module

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(ImportError, match=r"pip install -e \.\[dali\]"):
        dali_module.build_dali_loader(None, lambda e: [], 1, None, None, 1, 0, 0)


@pytest.mark.benchmark
def test_benchmark_resize_against_dali(dali, tmp_path):
    """Why transforms.py has its own resampling: torch's bicubic vs DALI's, on real frames."""
    import time

    import torch.nn.functional as F

    from eval_encoder.video.transforms import crop_start, resize_plan

    for (w, h), short in [((320, 240), 224), ((640, 480), 256), ((160, 120), 224)]:
        _write_video(tmp_path / f"{w}.mp4", w, h, 16, seed=w)
        frames = decode_frames(str(tmp_path / f"{w}.mp4"), list(range(16)))
        out_h, _, _ = resize_plan(h, h, short)
        out_w, _, _ = resize_plan(w, h, short)
        tspec = TransformSpec(input_size=min(out_h, out_w), short_side=short, mean=(0, 0, 0),
                              std=(1 / 255,) * 3)  # normalisation off: compare in 0..255
        crop = tspec.input_size
        ref = _run_dali_transform([frames], [(0.5, 0.5)], [None], tspec)[0]
        start = time.perf_counter()
        ours = transform_clip(frames, tspec)
        ours_s = time.perf_counter() - start
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
        big = F.interpolate(x, size=(out_h, out_w), mode="bicubic", antialias=True, align_corners=False)
        top, left = crop_start(out_h, crop, 0.5), crop_start(out_w, crop, 0.5)
        theirs = big[:, :, top:top + crop, left:left + crop].permute(1, 0, 2, 3)
        d_ours, d_torch = (ours - ref).abs(), (theirs - ref).abs()
        print(f"{w}x{h} -> short {short}: ours max {d_ours.max():.2e}; torch bicubic+antialias max "
              f"{d_torch.max():.2f} mean {d_torch.mean():.3f}, within 1e-3: "
              f"{(d_torch < 1e-3).float().mean():.1%}, within 0.255: {(d_torch < 0.255).float().mean():.1%}; "
              f"transform_clip {ours_s * 1e3:.0f} ms for 16 frames")
