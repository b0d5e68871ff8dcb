"""Frame sampling, RoPE-grid interpolation, decoding and sharding."""
import numpy as np
import pytest
import torch

from eval_encoder.demo import render_clip, write_video
from eval_encoder.video.decode import (ClipDecodeError, count_frames, decode_clip, decode_frames,
                                       segment_indices, to_rope_grid)
from eval_encoder.video.loader import val_order
from eval_encoder.video.steps import make_plan, train_batches


def test_eval_takes_segment_centres():
    # 100 frames, 4 segments of 99/4 = 24.75: centres at 12.375, 37.125, 61.875, 86.625
    assert segment_indices(100, 4, train=False).tolist() == [12, 37, 61, 86]


def test_train_takes_one_point_per_segment():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = segment_indices(100, 4, train=True, rng=rng)
        seg = 99 / 4
        for i, v in enumerate(idx):
            assert int(seg * i) <= v <= int(seg * (i + 1))


def test_short_clip_repeats_last_frame():
    assert segment_indices(3, 6, train=False).tolist() == [0, 1, 2, 2, 2, 2]


def test_temporal_views_shift_inside_segments():
    views = [segment_indices(100, 4, False, view=v, num_views=2).tolist() for v in range(2)]
    assert views[0] != views[1]
    assert all(a < b for a, b in zip(*views))


def test_rope_grid_interpolation():
    idx = torch.tensor([[0, 50, 99]])
    assert to_rope_grid(idx, torch.tensor([100]), 64).tolist() == [[0, round(50 / 99 * 63), 63]]
    # a one-frame clip stays at 0
    assert to_rope_grid(torch.tensor([[0, 0]]), torch.tensor([1]), 64).tolist() == [[0, 0]]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "c.mp4"
    frames = render_clip((1, 0), 20, 64, 48, np.random.default_rng(0))
    write_video(path, frames)
    return path, frames


def test_decode_counts_and_picks_frames(clip):
    path, frames = clip
    assert count_frames(str(path)) == 20
    got = decode_frames(str(path), [5, 0, 5])
    assert got.shape == (3, 48, 64, 3)
    assert np.abs(got[0].astype(int) - frames[5].astype(int)).mean() < 12  # lossy codec
    np.testing.assert_array_equal(got[0], got[2])
    out, idx, total = decode_clip(str(path), 4, train=False, rng=None)
    assert total == 20 and idx.tolist() == segment_indices(20, 4, False).tolist()


def test_missing_and_broken_files_raise_named_errors(tmp_path):
    with pytest.raises(ClipDecodeError, match="missing.mp4: file not found"):
        decode_clip(str(tmp_path / "missing.mp4"), 4, False, None)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 20)
    with pytest.raises(ClipDecodeError, match="junk.mp4"):
        decode_clip(str(junk), 4, False, None)


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_val_shards_cover_every_clip_once(world):
    clips, views = 11, 3
    seen = [i for r in range(world) for i in val_order(clips, views, r, world)]
    assert sorted(seen) == list(range(clips * views))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_train_shards_step_in_lockstep_and_cover(world):
    plan = make_plan(None, 2, world, drop_last=False)
    orders = [train_batches(11, epoch=2, rank=r, plan=plan, seed=5) for r in range(world)]
    assert len({len(o) for o in orders}) == 1  # the same number of batches on every rank
    assert sorted(i for o in orders for b in o for i in b) == list(range(11))  # each clip once
    assert train_batches(11, 2, 0, plan, 5) == orders[0]  # same on re-draw
    assert train_batches(11, 3, 0, plan, 5) != orders[0]


def _write_ts(path, size, frames=6):
    import av

    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        for i in range(frames):
            img = np.full((size[1], size[0], 3), 20 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_a_stream_that_changes_resolution_decodes_at_its_first_size(tmp_path):
    _write_ts(tmp_path / "a.ts", (64, 48))
    _write_ts(tmp_path / "b.ts", (96, 64))
    joined = tmp_path / "joined.ts"
    joined.write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    frames, idx, total = decode_clip(str(joined), 8, train=False, rng=None)
    assert frames.shape[1:] == (48, 64, 3) and total >= 10


def test_a_damaged_tail_is_sampled_over_decodable_frames_and_flagged(clip, tmp_path):
    from eval_encoder.video.decode import decode_clip_checked

    path, _ = clip
    data = bytearray(path.read_bytes())
    moov = data.index(b"moov") - 4  # the index stays; the last third of the frame data goes
    mdat = data.index(b"mdat") + 4
    cut = mdat + (moov - mdat) * 2 // 3
    data[cut:moov] = bytes(moov - cut)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    frames, idx, total, truncated = decode_clip_checked(str(damaged), 4, False, None)
    assert truncated and total < 20 and idx.max() < total
    _, _, _, intact = decode_clip_checked(str(path), 4, False, None)
    assert not intact


def test_spatial_views_slide_along_the_longer_side(clip):
    from eval_encoder.video.dataset import ClipDataset, FramesSource
    from eval_encoder.video.manifest import ManifestEntry

    path, _ = clip  # 64 x 48: landscape
    ds = ClipDataset([ManifestEntry(path.name, 0, 1)], str(path.parent), FramesSource(4),
                     train=False, seed=0, spatial_views=3)
    assert [ds.sample(i).crop_pos for i in range(3)] == [(0.0, 0.5), (0.5, 0.5), (1.0, 0.5)]


@pytest.fixture
def bframes_clip(tmp_path):
    """30 frames of H.264 with B-frames: the last ones come out only when the decoder is flushed."""
    from eval_encoder.codec.synthetic import moving_square, write_video as write_h264
    from eval_encoder.video import decode

    decode.clear_cache()
    scene = moving_square(frames=30, height=48, width=64, size=16, seed=3)
    return write_h264(str(tmp_path / "b.mp4"), scene.frames)


def _all_frames(path):
    import av

    with av.open(path) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def _count_opens(monkeypatch):
    import av

    opened, real = [], av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    return opened


def test_a_sample_opens_and_demuxes_its_file_once(bframes_clip, monkeypatch):
    from eval_encoder.video import decode

    reference = _all_frames(bframes_clip)
    opened = _count_opens(monkeypatch)
    demuxed = []
    real_count = decode.OpenClip._demux_count
    monkeypatch.setattr(decode.OpenClip, "_demux_count",
                        lambda self: demuxed.append(self.path) or real_count(self))
    for sample in range(3):
        frames, idx, count = decode.decode_clip_counted(bframes_clip, 4, False, None, uniform=True)
        assert len(opened) == sample + 1  # one open per sample
        assert idx.tolist() == [0, 10, 19, 29] and count == decode.FrameCount(30, 30, False)
        for got, i in zip(frames, idx):  # the last frame needs the decoder's flush
            np.testing.assert_array_equal(got, reference[i])
    assert len(demuxed) == 1  # the frame count is remembered by file identity


def test_a_rewritten_file_is_counted_again(bframes_clip):
    from eval_encoder.codec.synthetic import moving_square, write_video as write_h264

    assert count_frames(bframes_clip) == 30
    write_h264(bframes_clip, moving_square(frames=20, height=48, width=64, size=16).frames)
    assert count_frames(bframes_clip) == 20


def test_a_large_file_is_decoded_from_a_second_open(bframes_clip, monkeypatch):
    from eval_encoder.video import decode

    monkeypatch.setattr(decode, "KEEP_PACKETS_BYTES", 0)  # too large to keep its packets
    reference = _all_frames(bframes_clip)
    opened = _count_opens(monkeypatch)
    frames, idx, _ = decode.decode_clip(bframes_clip, 4, False, None, uniform=True)
    assert len(opened) == 2  # count, then decode from the start
    frames_again, _, _ = decode.decode_clip(bframes_clip, 4, False, None, uniform=True)
    assert len(opened) == 3  # the count is remembered
    for got, again, i in zip(frames, frames_again, idx):
        np.testing.assert_array_equal(got, reference[i])
        np.testing.assert_array_equal(again, reference[i])
