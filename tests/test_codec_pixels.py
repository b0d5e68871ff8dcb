"""``--codec_pixels reencoded``: the published step 2's HEVC copy of each clip, cached, decoded
for the encoder's pixels and the selection's frames."""
import logging
import os
import shutil

import av
import numpy as np
import pytest

import eval_encoder.encoders  # noqa: F401  (registers the codec family and its clip source)
from eval_encoder import record as rec
from eval_encoder.codec import Selector, make_options
from eval_encoder.codec import reencode
from eval_encoder.codec.cache import selection_params
from eval_encoder.codec.options import CodecOptionError
from eval_encoder.codec.schedule import frame_ids
from eval_encoder.codec.synthetic import moving_square, write_video
from eval_encoder.config import ProbeConfig, apply_values
from eval_encoder.probe.args import parse_config
from eval_encoder.video.decode import ClipDecodeError, clip_frames, decode_frames
from eval_encoder.video.manifest import Segment

S = 56  # crop: a 4 x 4 grid of 14 px patches per frame


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 40-frame H.264 clip whose source keyframes (every 7 frames) are off the GOP-16 grid."""
    root = tmp_path_factory.mktemp("pixels")
    scene = moving_square(frames=40, height=60, width=80, size=20)
    return str(root), write_video(str(root / "g7.mp4"), scene.frames, options={"g": "7"})


def _frames(path):
    """Every decoded frame of ``path`` (RGB) and its picture type."""
    with av.open(path) as container:
        decoded = list(container.decode(video=0))
    kinds = [av.video.frame.PictureType(f.pict_type).name for f in decoded]
    return np.stack([f.to_ndarray(format="rgb24") for f in decoded]), kinds


# --- the option ------------------------------------------------------------------------------

def test_the_option_parses_defaults_to_source_and_is_checked():
    for protocol in ("paper", "clean"):
        assert parse_config(["--protocol", protocol]).codec.codec_pixels == "source"
    assert parse_config(["--codec_pixels", "reencoded"]).codec.codec_pixels == "reencoded"
    with pytest.raises(SystemExit):
        parse_config(["--codec_pixels", "hevc"])
    cfg = ProbeConfig()
    apply_values(cfg, {"codec_pixels": "reencoded"}, "recipe.yaml")  # a recipe's key
    assert cfg.codec.codec_pixels == "reencoded"
    with pytest.raises(CodecOptionError, match="codec_pixels='hevc'"):
        make_options(codec_pixels="hevc")


def test_source_leaves_config_hashes_and_selection_keys_as_before():
    """At `source` the option is left out of the config hash and of the selection cache key,
    so earlier records keep their hash and earlier cache entries stay valid."""
    base = ProbeConfig().to_dict()
    before = {**base, "codec": {k: v for k, v in base["codec"].items() if k != "codec_pixels"}}
    assert rec.config_hash(base) == rec.config_hash(before)
    assert rec.config_hash(parse_config(["--codec_pixels", "reencoded"]).to_dict()) != \
        rec.config_hash(base)
    source = selection_params(64, 8, 14, S, S, make_options())
    assert "codec_pixels" not in source["options"] and "pixels" not in source
    moved = selection_params(64, 8, 14, S, S, make_options(codec_pixels="reencoded"),
                             reencode.reencode_params())
    assert moved["options"]["codec_pixels"] == "reencoded"
    assert moved["pixels"]["crf"] == 23 and moved["pixels"]["gop"] == 16


def test_a_missing_libx265_is_named_before_any_clip_is_read(monkeypatch, clip):
    monkeypatch.setattr(reencode, "available_codecs", lambda: frozenset({"hevc", "h264"}))
    with pytest.raises(CodecOptionError, match=r"--codec_pixels reencoded .* lacks the libx265 "
                                               r"encoder.*--codec_pixels source"):
        Selector(64, S, make_options(K_keep=8, codec_pixels="reencoded"))
    Selector(64, S, make_options(K_keep=8))  # `source` needs no encoder
    monkeypatch.setattr(reencode, "available_codecs", lambda: frozenset())
    with pytest.raises(CodecOptionError, match="libx265 encoder and the HEVC decoder"):
        reencode.require_reencoder()


# --- the copy --------------------------------------------------------------------------------

def test_the_copy_has_the_published_stream_parameters(tmp_path, clip):
    _, path = clip
    copy = str(tmp_path / "copy.mp4")
    assert reencode.write_copy(path, copy, threads=2) == (40, 40)
    with av.open(copy) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_tag, stream.codec_context.pix_fmt) == \
            ("hevc", "hvc1", "yuv420p")
        assert (stream.width, stream.height, stream.average_rate) == (80, 60, 25)
    frames, kinds = _frames(copy)
    # an intra frame every 16 frames, whatever the source's keyframes; P frames between
    assert len(kinds) == 40 and [i for i, k in enumerate(kinds) if k == "I"] == [0, 16, 32]
    assert set(kinds) == {"I", "P"}
    # x265 writes the settings it ran with into the stream
    data = open(copy, "rb").read()
    settings = data[data.index(b"options:"):].split(b"\0")[0].decode("ascii", "replace").split()
    for want in ("crf=23.0", "rc=crf", "keyint=16", "min-keyint=16", "scenecut=0", "bframes=0",
                 "ref=1", "repeat-headers", "wpp", "frame-threads=1"):
        assert want in settings, want


def test_odd_sizes_are_scaled_to_even_and_colour_tags_kept(tmp_path):
    scene = moving_square(frames=20, height=61, width=81, size=20)
    odd = write_video(str(tmp_path / "odd.mkv"), scene.frames, codec="ffv1")
    tagged = str(tmp_path / "tagged.mp4")
    with av.open(tagged, "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 80, 60, "yuv420p"
        ctx = stream.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace = 1, 1, 1  # BT.709
        for frame in scene.frames[:8, :60, :80]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    for src, tags in ((odd, None), (tagged, (1, 1, 1))):
        copy = str(tmp_path / "copy.mp4")
        reencode.write_copy(src, copy)
        with av.open(copy) as container:
            ctx = container.streams.video[0].codec_context
            assert (ctx.width, ctx.height) == (80, 60)
            if tags:
                assert (ctx.color_primaries, ctx.color_trc, ctx.colorspace) == tags


def test_copy_pixels_differ_from_the_source_by_a_small_bounded_amount(tmp_path, clip):
    _, path = clip
    copy = str(tmp_path / "copy.mp4")
    reencode.write_copy(path, copy)
    ids = frame_ids(40, 64, "trunc")
    src, new = decode_frames(path, ids).astype(float), decode_frames(copy, ids).astype(float)
    mad = np.abs(src - new).mean()
    psnr = 10 * np.log10(255 ** 2 / ((src - new) ** 2).mean())
    assert 0.5 < mad < 6.0 and 30 < psnr < 50, (mad, psnr)


def test_thread_counts_do_not_change_the_decoded_copy(tmp_path, clip):
    _, path = clip
    one, two = str(tmp_path / "one.mp4"), str(tmp_path / "two.mp4")
    reencode.write_copy(path, one, threads=1)
    reencode.write_copy(path, two, threads=2)
    assert np.array_equal(_frames(one)[0], _frames(two)[0])


def test_a_segment_is_copied_alone_from_its_first_frame(tmp_path, clip):
    _, path = clip
    seg = Segment(10, 38, "f")
    numbered = [n for n, _ in clip_frames(path, 1, seg)]
    assert numbered == list(range(28))
    copy = str(tmp_path / "seg.mp4")
    assert reencode.write_copy(path, copy, segment=seg) == (28, 28)
    frames, kinds = _frames(copy)
    assert [i for i, k in enumerate(kinds) if k == "I"] == [0, 16]
    source = decode_frames(path, range(40)).astype(float)
    errors = [np.abs(source[i] - frames[0]).mean() for i in (9, 10, 11)]
    assert errors[1] < min(errors[0], errors[2]) and errors[1] < 6
    with pytest.raises(ClipDecodeError, match="past the decodable end"):
        list(clip_frames(path, 1, Segment(30, 50, "f")))


def test_a_clip_x265_cannot_code_is_a_decode_error_naming_it(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 4, 6, 3), dtype=np.uint8)
    tiny = write_video(str(tmp_path / "tiny.mkv"), frames, codec="ffv1")
    with pytest.raises(ClipDecodeError, match=r"tiny.mkv: HEVC re-encode .* failed"):
        reencode.write_copy(tiny, str(tmp_path / "copy.mp4"))


# --- the cache -------------------------------------------------------------------------------

def test_the_cached_copy_is_reused_and_keyed_by_content_segment_and_settings(tmp_path, clip,
                                                                              monkeypatch):
    _, path = clip
    cache = str(tmp_path / "cache")
    copy, status = reencode.cached_copy(cache, path)
    assert status == "computed" and copy.frames == copy.source_frames == 40
    assert copy.path.startswith(os.path.join(cache, "hevc")) and copy.path.endswith(".mp4")
    assert reencode.read_stamp(copy.path)["key"] == os.path.basename(copy.path)[:-4]
    mtime = os.stat(copy.path).st_mtime_ns
    with monkeypatch.context() as m:
        m.setattr(reencode, "write_copy", lambda *a, **k: pytest.fail("re-encoded on a hit"))
        assert reencode.cached_copy(cache, path) == (copy, "hit")
    assert os.stat(copy.path).st_mtime_ns == mtime
    key = reencode.copy_key(path)
    assert reencode.copy_key(path, Segment(0, 20, "f")) != key
    twin = str(tmp_path / "twin.mp4")  # same name elsewhere, other bytes: another key
    shutil.copy(path, twin)
    assert reencode.copy_key(twin) == key  # same bytes, same key
    with open(twin, "ab") as fh:
        fh.write(b"\0")
    assert reencode.copy_key(twin) != key
    with monkeypatch.context() as m:
        m.setattr(reencode, "CRF", 28)
        assert reencode.copy_key(path) != key


def test_a_damaged_or_foreign_copy_is_reported_and_made_again(tmp_path, clip, caplog):
    _, path = clip
    cache = str(tmp_path / "cache")
    copy, _ = reencode.cached_copy(cache, path)
    other, _ = reencode.cached_copy(cache, path, segment=Segment(0, 20, "f"))
    shutil.copy(other.path, copy.path)  # another key's copy renamed over this one
    with caplog.at_level(logging.WARNING, "eval_encoder.codec"):
        again, status = reencode.cached_copy(cache, path)
    assert status == "recomputed" and again.frames == 40
    assert "damaged re-encoded copy" in caplog.text
    with open(copy.path, "r+b") as fh:  # cut short
        fh.truncate(os.path.getsize(copy.path) // 2)
    assert reencode.cached_copy(cache, path)[1] == "recomputed"
    assert reencode.cached_copy(cache, path)[1] == "hit"
    assert [f for f in os.listdir(os.path.dirname(copy.path)) if f.startswith(".tmp")] == []


def test_a_damaged_source_tail_marks_the_clip_truncated(tmp_path, clip):
    _, path = clip
    data = bytearray(open(path, "rb").read())
    moov, mdat = data.index(b"moov") - 4, data.index(b"mdat") + 4
    cut = mdat + (moov - mdat) * 2 // 3
    data[cut:moov] = bytes(moov - cut)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    copy, _ = reencode.cached_copy(str(tmp_path / "cache"), str(damaged))
    assert copy.truncated and copy.source_frames == 40 and 0 < copy.frames < 40
    sel = Selector(64, S, make_options(K_keep=8, codec_pixels="reencoded",
                                       cache_dir=str(tmp_path / "cache")))
    assert sel.decode(str(damaged)).truncated


# --- through the selection -------------------------------------------------------------------

def test_reencoded_selection_decodes_pixels_and_frames_from_the_copy(tmp_path, clip):
    _, path = clip
    cache = str(tmp_path / "cache")
    opts = {"K_keep": 8, "cache_dir": cache}
    src = Selector(64, S, make_options(**opts))
    new = Selector(64, S, make_options(codec_pixels="reencoded", **opts))
    assert src.params != new.params
    frames, ids, total, sel = new.load(path)
    copy, status = reencode.cached_copy(cache, path)
    assert status == "hit" and total == 40
    assert np.array_equal(frames, decode_frames(copy.path, ids))
    clip_new = new.decode(path, with_previous=True)
    assert np.array_equal(clip_new.frames, frames)
    assert not np.array_equal(src.decode(path).frames, frames)
    # the selection, cached under its own key, is the same on the next load
    assert np.array_equal(new.load(path)[3].indices, sel.indices)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1


def test_precompute_makes_the_copy_even_when_the_selection_is_cached(tmp_path, clip):
    _, path = clip
    cache = tmp_path / "cache"
    sel = Selector(64, S, make_options(K_keep=8, codec_pixels="reencoded", cache_dir=str(cache)))
    assert sel.precompute(path)[0] == "computed"
    shutil.rmtree(cache / "hevc")
    assert sel.precompute(path)[0] == "hit"
    assert len(list((cache / "hevc").rglob("*.mp4"))) == 1


def test_without_a_cache_folder_the_copy_is_temporary(tmp_path, clip):
    _, path = clip
    sel = Selector(64, S, make_options(K_keep=8, codec_pixels="reencoded"))
    frames = sel.decode(path).frames
    copy = str(tmp_path / "copy.mp4")
    reencode.write_copy(path, copy)
    assert np.array_equal(frames, decode_frames(copy, frame_ids(40, 64, "trunc")))


# --- a whole run -----------------------------------------------------------------------------

def _probe_argv(tmp_path, monkeypatch, *extra):
    from eval_encoder.demo import generate, save_tiny_encoder

    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    cards = tmp_path / "cards"
    cards.mkdir(exist_ok=True)
    (cards / "demo.yaml").write_text("name: demo\nnum_classes: 4\ntrain_manifest: train_new.csv\n"
                                     "val_manifest: val_new.csv\ndefault_epochs: 1\n"
                                     "default_batch_size: 4\n")
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(cards))
    data, weights = generate(tmp_path), save_tiny_encoder(tmp_path)
    return ["--model_family", "codec", "--dataset", "demo", "--data_root", str(data),
            "--model_weight", str(weights), "--model_name", "ov_encoder_tiny",
            "--default_lr_list", "0.0001", "--default_weight_decay", "0", "--batch_size", "4",
            "--default_epoch", "1", "--dali_py_num_workers", "0", "--K_keep", "64",
            "--input_size", "28", "--cache_dir", str(tmp_path / "cache"),
            "--save_report", str(tmp_path / "report"), *extra]


@pytest.mark.slow
def test_a_codec_run_on_reencoded_pixels_completes_and_says_so(tmp_path, monkeypatch):
    from eval_encoder.probe.run import main as probe_main

    argv = _probe_argv(tmp_path, monkeypatch, "--codec_pixels", "reencoded")
    assert probe_main(argv) == 0
    (path,) = (tmp_path / "report" / "runs").rglob("*.json")
    record = rec.read_record(path)
    assert record["status"] == "complete"
    assert record["config"]["codec"]["codec_pixels"] == "reencoded"
    assert record["samples"]["val"]["scored"] == 7
    # one HEVC copy and one selection per clip (16 train + 7 val)
    assert len(list((tmp_path / "cache" / "hevc").rglob("*.mp4"))) == 23
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 23


@pytest.mark.slow
def test_a_run_without_libx265_stops_before_the_encoder_naming_the_option(tmp_path, monkeypatch,
                                                                           caplog):
    from eval_encoder.probe.run import main as probe_main

    monkeypatch.setattr(reencode, "available_codecs", lambda: frozenset({"hevc", "h264"}))
    argv = _probe_argv(tmp_path, monkeypatch, "--codec_pixels", "reencoded")
    assert probe_main(argv) == 2  # a usage mistake: said, and no record written
    assert "--codec_pixels reencoded" in caplog.text and "libx265" in caplog.text
    assert not (tmp_path / "report" / "runs").exists() and not (tmp_path / "cache").exists()


def test_the_pixels_benchmark_runs_at_a_tiny_size(capsys, load_benchmark):
    """Smoke test of benchmarks/bench_codec_pixels.py (seconds)."""
    bench = load_benchmark("bench_codec_pixels")
    out = bench.main(["--sizes", "60x80", "--frames", "20", "--clips", "1", "--repeats", "1",
                      "--input", "56", "--K", "16"])
    (figures,) = out.values()
    assert 0 < figures["mad"] < 10 and figures["psnr"] > 25
    assert set(figures["jaccard"]) == {"paper", "clean"}
    assert all(0 <= j <= 1 for j in figures["jaccard"].values())
    assert figures["copy_s"] > 0 and figures["size_ratio"] > 0
    assert "Jaccard paper" in capsys.readouterr().out
