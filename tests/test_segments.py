"""Segments of long videos in manifests (``path,label,start,end``): parsed, decoded by seeking
(the same frames as decoding from the start), sampled within, cached per segment, and run
end to end through the sampling and codec families on one long generated video."""
import numpy as np
import pytest

from eval_encoder.codec import Selector, make_options
from eval_encoder.codec.synthetic import moving_square, write_video
from eval_encoder.video.decode import (ClipDecodeError, decode_clip, decode_frames,
                                       segment_length)
from eval_encoder.video.manifest import ManifestError, Segment, read_manifest

RATE = 25


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """A 300-frame (12 s) clip with a keyframe every 30 frames, so seeks land mid-stream."""
    scene = moving_square(frames=300, height=48, width=64, size=16, velocity=(0.1, 0.2), seed=3)
    frames = scene.frames.copy()
    frames[:, :4, :4] = (np.arange(300) % 256)[:, None, None, None]  # each frame is unique
    path = str(tmp_path_factory.mktemp("long") / "long.mp4")
    return write_video(path, frames, rate=RATE, options={"g": "30"}), frames


def test_manifest_lines_with_segments(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("a.mp4,1\nlong,with,commas.MP4,2,1200f,1300f\nx.mp4,0,1.5,4.25\n")
    a, b, c = read_manifest(str(path), 3)
    assert a.segment is None
    assert (b.path, b.label, b.segment) == ("long,with,commas.MP4", 2, Segment(1200, 1300, "f"))
    assert c.segment == Segment(1.5, 4.25, "s")
    path.write_text("x.mp4,0,4.0,2.0\n")
    with pytest.raises(ManifestError, match=r"m.csv:1: segment 4.0-2.0 is empty"):
        read_manifest(str(path), 3)


def test_seeking_decodes_the_same_frames_as_decoding_from_the_start(long_video):
    path, _ = long_video
    wanted = [0, 1, 29, 30, 31, 95]
    for segment, first in [(Segment(100, 220, "f"), 100), (Segment(4.0, 8.8, "s"), 100),
                           (Segment(2.01, 3.0, "s"), 51)]:
        seeked = decode_frames(path, wanted, segment=segment)
        assert np.array_equal(seeked, decode_frames(path, [first + i for i in wanted]))
    assert segment_length(path, Segment(4.0, 8.8, "s")) == 120  # frames 100..219


def test_sampling_stays_within_the_segment(long_video):
    path, frames = long_video
    segment = Segment(60, 140, "f")
    got, idx, total = decode_clip(path, 8, False, None, segment=segment)
    assert total == 80 and idx.min() >= 0 and idx.max() < 80  # counted from the segment start
    want = decode_frames(path, [60 + int(i) for i in idx])
    assert np.array_equal(got, want)
    got, idx, _ = decode_clip(path, 8, True, np.random.default_rng(0), segment=segment)
    assert idx.max() < 80
    with pytest.raises(ClipDecodeError, match="past the decodable end"):
        decode_clip(path, 8, False, None, segment=Segment(250, 400, "f"))


def test_codec_selects_within_the_segment_and_caches_it_on_its_own(long_video, tmp_path):
    path, _ = long_video
    sel = Selector(64, 28, make_options("paper", K_keep=64, patch_size=14,
                                        cache_dir=str(tmp_path / "cache")))
    frames, ids, total, first = sel.load(path, segment=Segment(100, 228, "f"))
    assert total == 128 and ids.max() <= 127
    assert np.array_equal(frames, decode_frames(path, [100 + int(i) for i in ids]))
    *_, other = sel.load(path, segment=Segment(0, 128, "f"))
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2  # one entry per segment
    *_, again = sel.load(path, segment=Segment(100, 228, "f"))
    assert np.array_equal(again.indices, first.indices)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sampling", "codec"])
def test_a_segment_manifest_runs_end_to_end(family, long_video, tmp_path, monkeypatch):
    """An EPIC-style dataset: every clip is a segment of one long video (frames and seconds)."""
    from eval_encoder.demo import save_tiny_encoder
    from eval_encoder.probe.run import main as probe_main
    from eval_encoder.record import read_record

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    path, _ = long_video
    cards, folder = tmp_path / "cards", tmp_path / "data" / "segs"
    cards.mkdir()
    folder.mkdir(parents=True)
    (cards / "segs.yaml").write_text("name: segs\nnum_classes: 2\ntrain_manifest: train.csv\n"
                                     "val_manifest: val.csv\ndefault_epochs: 1\n"
                                     "default_batch_size: 2\n")
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(cards))
    (folder / "long.mp4").symlink_to(path)
    (folder / "train.csv").write_text("".join(f"long.mp4,{i % 2},{i * 30}f,{i * 30 + 40}f\n"
                                              for i in range(6)))
    (folder / "val.csv").write_text("long.mp4,0,1.0,3.0\nlong.mp4,1,6.5,9.0\nlong.mp4,0,200f,280f\n")
    weights = save_tiny_encoder(tmp_path)
    report = tmp_path / "report"
    extra = (["--model_family", "codec", "--num_frames", "64", "--K_keep", "32",
              "--input_size", "28"] if family == "codec" else
             ["--model_family", "sampling", "--num_frames", "4"])
    argv = ["--dataset", "segs", "--data_root", str(tmp_path / "data"), "--model_weight",
            str(weights), "--model_name", "ov_encoder_tiny", "--save_report", str(report),
            "--dali_py_num_workers", "0", "--default_lr_list", "0.001", *extra]
    assert probe_main(argv) == 0
    (record,) = [read_record(str(p)) for p in (report / "runs").rglob("*.json")]
    assert record["status"] == "complete"
    assert record["samples"]["val"]["scored"] == record["samples"]["val"]["expected"] == 3
    assert record["samples"]["train"]["skipped"] == []


def test_a_segment_in_seconds_opens_its_file_once_per_sample(long_video, monkeypatch):
    import av

    from eval_encoder.video import decode

    path, _ = long_video
    decode.clear_cache()
    opened, real = [], av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    segment = Segment(2.0, 4.0, "s")
    first = decode_clip(path, 4, False, None, segment=segment)
    assert len(opened) == 2  # the frame rate, then the seek and decode
    again = decode_clip(path, 4, False, None, segment=segment)
    assert len(opened) == 3  # the frame rate is remembered by file identity
    assert np.array_equal(first[0], again[0]) and first[2] == again[2] == 50
