"""Codec-style patch selection on real encoded clips made here (PyAV, libx264 / libx265).

Selection quality is tested under the clean protocol (our corrected map); the published
stages of the paper protocol are pinned in test_codec_paper.py.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
import torch

from eval_encoder.codec import Selector, make_options, select_patches
from eval_encoder.codec import cache as cache_mod
from eval_encoder.codec.cli import main as cli_main
from eval_encoder.codec.motion import CELL, compensated_residual, decode_with_vectors, \
    encode_canonical, paint_vectors
from eval_encoder.codec.options import CodecOptionError
from eval_encoder.codec.saliency import _design, camera_motion, int_percentile
from eval_encoder.codec.select import (FLAG_CACHE_RECOMPUTED, FLAG_K_CLIPPED, FLAG_SHORT_CLIP,
                                       FLAG_STATIC_FALLBACK, patch_scores, uniform_frame_patches)
from eval_encoder.codec.synthetic import moving_square, texture, write_video
from eval_encoder.probe.args import parse_config
from eval_encoder.video.decode import ClipDecodeError
from eval_encoder.video.transforms import TransformSpec, resize_crop

S, P = 112, 14  # crop and patch: an 8 x 8 grid per frame, 4096 patches over 64 frames
G = S // P


def object_cover(scene, height=120, width=160):
    """Fraction of every patch of the transformed 64-frame grid that the square covers."""
    masks = np.zeros(scene.frames.shape[:3], dtype=np.float32)
    for t, (y, x, s) in enumerate(scene.boxes):
        masks[t, max(y, 0):max(y + s, 0), max(x, 0):max(x + s, 0)] = 1.0
    return patch_scores(masks, S, S, P)


def recall_and_background(indices, cover):
    """(share of the square's patches in P-frames that are kept,
        share of kept P-frame patches that do not touch the square)."""
    p_frames = np.arange(cover.size) >= G * G
    chosen = np.zeros(cover.size, dtype=bool)
    chosen[indices] = True
    obj = (cover >= 0.5) & p_frames
    return chosen[obj].mean(), (chosen & p_frames & (cover == 0)).sum() / (chosen & p_frames).sum()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec_clips")
    scenes = {
        "static_bg": moving_square(),
        "pan": moving_square(pan=(0, 2), velocity=(0.5, -1.0), start=(30, 100)),
    }
    paths = {name: write_video(str(root / f"{name}.mp4"), sc.frames) for name, sc in scenes.items()}
    return root, scenes, paths


# --- options -------------------------------------------------------------------------------

def test_upstream_codec_flags_parse_with_upstream_defaults():
    cfg = parse_config(["--model_family", "llava_vit_codec", "--K_keep", "2048",
                        "--mv_compensate", "median", "--cache_dir", "/tmp/x",
                        "--mv_use_inconsistency", "--res_use_grad", "--fuse_mode", "max"])
    c = cfg.codec
    assert (c.K_keep, c.mv_compensate, c.cache_dir, c.mv_use_inconsistency, c.res_use_grad) == \
        (2048, "median", "/tmp/x", True, True)
    assert (c.patch_size, c.mv_incon_ksize, c.center_prior, c.center_sigma, c.static_fallback,
            c.static_abs_thresh, c.static_rel_thresh, c.static_uniform_frames) == \
        (14, 3, 0.3, 0.35, 1, 126.0, 0.38, 4)
    assert parse_config([]).codec.mv_compensate == "similarity"


def test_bad_options_are_refused_with_their_name():
    with pytest.raises(CodecOptionError, match="mv_compensat"):
        make_options(mv_compenstae="median")
    with pytest.raises(CodecOptionError, match="mv_incon_ksize=4"):
        make_options(mv_incon_ksize=4)
    with pytest.raises(CodecOptionError, match="input_size 100"):
        Selector(64, 100, make_options())


# --- motion field and residual ---------------------------------------------------------------

def test_residual_is_frame_minus_vector_displaced_reference():
    scene = moving_square(frames=6, height=61, width=83, size=20, pan=(1, 2))
    luma, vectors, intra = decode_with_vectors(encode_canonical(scene.frames), 6)
    assert intra.tolist() == [True] + [False] * 5
    field = paint_vectors(vectors, 6, 61, 83)
    field[0] = np.nan
    res = compensated_residual(luma, field, intra)
    # per-pixel reference: clamp coordinates (H.264 edge extension), vectors per 8x8 cell
    for t in range(1, 6):
        d = np.nan_to_num(field[t]).round().astype(int).repeat(CELL, 0).repeat(CELL, 1)[:61, :83]
        yy = np.clip(np.arange(61)[:, None] + d[..., 1], 0, 60)
        xx = np.clip(np.arange(83)[None, :] + d[..., 0], 0, 82)
        assert np.array_equal(res[t], luma[t].astype(np.int16) - luma[t - 1][yy, xx])
    # the background pans by (dy, dx) = (1, 2): its blocks point 2 right and 1 down
    assert np.nanmedian(field[1:, ..., 0]) == 2 and np.nanmedian(field[1:, ..., 1]) == 1
    assert np.median(np.abs(res[1:])) == 0  # most pixels are predicted exactly


def test_camera_fit_recovers_similarity_and_affine_despite_outliers():
    hc, wc, rng = 15, 20, np.random.default_rng(0)
    for mode, params in [("similarity", [1.5, -0.5, 0.1, 0.05]),
                         ("affine", [1.0, 0.2, -0.1, 0.5, 0.05, 0.15])]:
        ax, ay, _ = _design(hc, wc, mode)
        mv = np.stack([ax @ params, ay @ params], -1).reshape(1, hc, wc, 2).astype(np.float32)
        truth = mv.copy()
        mv[0, 3:8, 4:10] += 6.0  # a moving object
        mv[0, 0, :5] = np.nan  # intra blocks
        mv += rng.normal(0, 0.05, mv.shape).astype(np.float32)
        assert np.abs(camera_motion(mv, mode) - truth).max() < 0.15
    static = np.zeros((1, hc, wc, 2), np.float32)
    static[0, 3:8, 4:10] = 5.0  # most of the frame is still: the camera is still too
    for mode in ("median", "similarity", "affine"):
        assert np.abs(camera_motion(static, mode)).max() < 1e-3


def test_histogram_percentile_equals_numpy():
    values = np.random.default_rng(1).integers(0, 300, size=(5, 37, 41))
    want = np.percentile(values.reshape(5, -1), 95, axis=1)
    assert np.allclose(int_percentile(values, 95), want)


def test_patch_scores_follow_the_pixel_transform_exactly():
    maps = np.random.default_rng(2).uniform(0, 255, size=(3, 90, 130)).astype(np.float32)
    for short in (S, 128):
        spec = TransformSpec(input_size=S, short_side=short, mean=(0, 0, 0), std=(1, 1, 1))
        pixels = resize_crop(torch.from_numpy(maps)[..., None].expand(-1, -1, -1, 3), spec)[0]
        want = pixels.reshape(3, G, P, G, P).mean((2, 4)).reshape(-1).numpy()
        assert np.allclose(patch_scores(maps, short, S, P), want, atol=1e-3)


# --- selection on encoded clips ----------------------------------------------------------------

def test_moving_object_over_static_background_is_selected(clips):
    _, scenes, paths = clips
    cover = object_cover(scenes["static_bg"])
    k = int((cover > 0).sum())  # K = every patch the square touches
    opts = make_options("clean", K_keep=k, patch_size=P)
    sel = Selector(64, S, opts).load(paths["static_bg"])[3]
    assert sel.flags == 0 and sel.indices.size == k
    assert np.all(np.diff(sel.indices) > 0)
    recall, _ = recall_and_background(sel.indices, cover)
    assert recall >= 0.9


def test_camera_compensation_removes_the_panning_background(clips):
    _, scenes, paths = clips
    cover = object_cover(scenes["pan"])
    k = int((cover > 0).sum())
    shares = {}
    for mode in ("similarity", "median", "none"):
        idx = select_patches(paths["pan"], K=k, patch_size=P, input_size=S, protocol="clean",
                             mv_compensate=mode)
        shares[mode] = recall_and_background(idx, cover)
    for mode in ("similarity", "median"):
        recall, background = shares[mode]
        assert recall >= 0.9 and background < 0.25, (mode, shares)
    # without it the pan's motion outweighs the square's own: background wins the budget
    recall, background = shares["none"]
    assert recall < 0.6 and background > 0.3 and background > 5 * shares["median"][1], shares


def test_static_clip_takes_the_uniform_frames_fallback(tmp_path):
    rng = np.random.default_rng(3)
    still = np.repeat(texture(120, 160, seed=5)[None], 64, axis=0).astype(np.int16)
    noisy = np.clip(still + rng.normal(0, 2, still.shape), 0, 255).astype(np.uint8)
    path = write_video(str(tmp_path / "still.mp4"), noisy)
    k = 700
    sel = Selector(64, S, make_options("clean", K_keep=k, patch_size=P)).load(path)[3]
    assert sel.flags & FLAG_STATIC_FALLBACK and sel.indices.size == k
    whole = uniform_frame_patches(64, G * G, 4, k)  # frames 0, 21, 42, 63 in full
    assert whole.size == 4 * G * G and np.isin(whole, sel.indices).all()
    off_opts = make_options("clean", K_keep=k, patch_size=P, static_fallback=0)
    off = Selector(64, S, off_opts).load(path)[3]
    assert not off.flags & FLAG_STATIC_FALLBACK


def test_hevc_input_selects_like_its_h264_twin(clips, tmp_path):
    import av

    if "libx265" not in av.codecs_available:
        pytest.skip("this FFmpeg build has no libx265 encoder")
    _, scenes, paths = clips
    hevc = write_video(str(tmp_path / "twin_hevc.mp4"), scenes["static_bg"].frames, codec="libx265")
    with av.open(hevc) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
    cover = object_cover(scenes["static_bg"])
    k = int((cover > 0).sum())
    a = select_patches(paths["static_bg"], K=k, patch_size=P, input_size=S, protocol="clean")
    b = select_patches(hevc, K=k, patch_size=P, input_size=S, protocol="clean")
    assert recall_and_background(b, cover)[0] >= 0.9
    assert np.intersect1d(a, b).size / np.union1d(a, b).size > 0.7


def test_short_clip_and_oversized_K_are_handled_and_flagged(tmp_path):
    path = write_video(str(tmp_path / "short.mp4"), moving_square(frames=20).frames)
    sel = Selector(64, 28, make_options("clean", K_keep=300, patch_size=14)).load(path)
    frames, idx, total, chosen = sel
    assert frames.shape[0] == 64 and total == 20 and idx.max() == 19
    assert chosen.flags & FLAG_SHORT_CLIP and chosen.flags & FLAG_K_CLIPPED
    assert np.array_equal(chosen.indices, np.arange(64 * 4))


def test_unreadable_video_raises_clip_decode_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    with pytest.raises(ClipDecodeError, match="bad.mp4"):
        select_patches(str(bad), K=64, patch_size=14, input_size=28)


# --- cache ------------------------------------------------------------------------------------

def _cached(path, cache_dir, **kw):
    opts = make_options("clean", K_keep=kw.pop("K", 300), patch_size=P, cache_dir=str(cache_dir),
                        **kw)
    sel = Selector(64, S, opts)
    return sel, cache_mod.cache_path(str(cache_dir), cache_mod.cache_key(path, sel.params))


def test_cache_hit_equals_recompute_and_skips_the_work(clips, tmp_path, monkeypatch):
    _, _, paths = clips
    sel, file = _cached(paths["static_bg"], tmp_path)
    first = sel.load(paths["static_bg"])[3]
    assert os.path.isfile(file)
    fresh = Selector(64, S, replace(sel.opts, cache_dir=None)).load(paths["static_bg"])[3]
    monkeypatch.setattr(Selector, "compute", lambda *a: pytest.fail("cache hit recomputed"))
    hit = sel.load(paths["static_bg"])[3]
    assert np.array_equal(hit.indices, first.indices) and np.array_equal(hit.indices, fresh.indices)
    assert hit.flags == first.flags == fresh.flags


@pytest.mark.parametrize("damage", ["truncate", "flip_index", "garbage"])
def test_damaged_cache_entry_is_recomputed_and_reported(clips, tmp_path, damage, caplog):
    _, _, paths = clips
    sel, file = _cached(paths["static_bg"], tmp_path)
    good = sel.load(paths["static_bg"])[3]
    raw = open(file, "rb").read()
    if damage == "truncate":
        broken = raw[: len(raw) - 100]
    elif damage == "flip_index":
        broken = raw[:-8] + bytes([raw[-8] ^ 1]) + raw[-7:]
    else:
        broken = b"\x00" * 64
    open(file, "wb").write(broken)
    again = sel.load(paths["static_bg"])[3]
    assert again.flags & FLAG_CACHE_RECOMPUTED and "damaged codec cache entry" in caplog.text
    assert np.array_equal(again.indices, good.indices)
    assert sel.load(paths["static_bg"])[3].flags == good.flags  # the entry was rewritten


def test_cache_key_tracks_options_and_content_not_location(clips, tmp_path):
    _, scenes, paths = clips
    path = paths["static_bg"]
    base = _cached(path, tmp_path)[1]
    assert _cached(path, tmp_path, center_prior=0.0)[1] != base
    assert _cached(path, tmp_path, K=301)[1] != base
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(open(path, "rb").read())
    assert _cached(str(copy), tmp_path)[1] == base
    write_video(str(copy), scenes["pan"].frames)
    assert _cached(str(copy), tmp_path)[1] != base


def test_concurrent_writers_leave_one_valid_entry(tmp_path):
    file = str(tmp_path / "ab" / "abcd.npy")
    entry = cache_mod.Selection(np.arange(0, 4000, 7, dtype=np.int64), flags=1)
    barrier = threading.Barrier(8)

    def write(_):
        barrier.wait()
        for _ in range(10):
            cache_mod.write_entry(file, entry)
            got = cache_mod.read_entry(file, entry.indices.size, 4096)
            assert np.array_equal(got.indices, entry.indices)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert os.listdir(tmp_path / "ab") == ["abcd.npy"]


# --- precompute command -------------------------------------------------------------------------

def test_precompute_fills_the_cache_for_a_split(tmp_path, monkeypatch, capsys):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tinycodec.yaml").write_text(
        "name: tinycodec\nnum_classes: 2\ntrain_manifest: train.csv\nval_manifest: val.csv\n"
        "default_epochs: 1\ndefault_batch_size: 2\n")
    monkeypatch.setenv("EVAL_ENCODER_DATASETS", str(cards))
    folder = tmp_path / "data" / "tinycodec"
    folder.mkdir(parents=True)
    for i in range(3):
        write_video(str(folder / f"c{i}.mp4"), moving_square(frames=16, height=48, width=64,
                                                             size=16, seed=i).frames)
    (folder / "broken.mp4").write_bytes(b"junk" * 100)
    (folder / "train.csv").write_text("c0.mp4,0\nc1.mp4,1\nbroken.mp4,0\n")
    (folder / "val.csv").write_text("c2.mp4,1\nc0.mp4,0\n")
    cache = tmp_path / "cache"
    argv = ["precompute", "--data_root", str(tmp_path / "data"), "--dataset", "tinycodec",
            "--cache_dir", str(cache), "--input_size", "28", "--K_keep", "64",
            "--mv_compensate", "median"]
    assert cli_main(argv + ["--workers", "0"]) == 1  # the broken clip is listed, not hidden
    out = capsys.readouterr()
    assert "4 clips" in out.out and "computed 3" in out.out and "failed 1" in out.out
    assert "broken.mp4" in out.err
    assert len(list(cache.rglob("*.npy"))) == 3
    assert cli_main(argv + ["--workers", "2", "--split", "val"]) == 0
    assert "hit 2" in capsys.readouterr().out
    # the probe's source with the same flags (and protocol, paper by default) reads these entries
    sel = Selector(64, 28, make_options("paper", K_keep=64, patch_size=14, mv_compensate="median",
                                        cache_dir=str(cache)))
    assert sel.lookup(str(folder / "c2.mp4"))[0] is not None


# --- the other saliency options do what they say -------------------------------------------------

def test_fusion_modes_inconsistency_and_gradient():
    from eval_encoder.codec.saliency import fuse, local_variance, residual_energy, residual_gain

    rng = np.random.default_rng(4)
    mv = rng.uniform(0, 1, size=(2, 2, 3)).astype(np.float32)
    res = rng.uniform(0, 1, size=(2, 2 * CELL, 3 * CELL)).astype(np.float32)
    up = mv.repeat(CELL, 1).repeat(CELL, 2)
    want = {"max": np.maximum(up, res), "sum": np.minimum(up + res, 1),
            "geomean": np.sqrt(up * res), "weighted": (1 * up + 3 * res) / 4}
    for mode, expected in want.items():
        opts = make_options("clean", fuse_mode=mode, w_mv=1.0, w_res=3.0)
        got = fuse(mv, res * np.float32(residual_gain(opts)), opts)
        assert np.allclose(got, expected, atol=1e-6), mode
    x = rng.uniform(0, 5, size=(1, 6, 7))
    padded = np.pad(x[0], 1, mode="edge")
    brute = np.array([[padded[i:i + 3, j:j + 3].var() for j in range(7)] for i in range(6)])
    assert np.allclose(local_variance(x, 3)[0], brute, atol=1e-4)
    r = rng.integers(-40, 40, size=(1, 9, 11)).astype(np.int16)
    rp = np.pad(r[0].astype(float), 1, mode="edge")
    grad = 0.5 * (np.abs(rp[1:-1, 2:] - rp[1:-1, :-2]) + np.abs(rp[2:, 1:-1] - rp[:-2, 1:-1]))
    assert np.allclose(residual_energy(r, True)[0],
                       np.minimum(grad / max(np.percentile(grad, 95), 1.0), 1), atol=1e-6)
    assert np.allclose(residual_energy(r, False)[0],
                       np.minimum(np.abs(r[0]) / max(np.percentile(np.abs(r[0]), 95), 1.0), 1))


def test_every_option_runs_on_a_clip(clips):
    _, scenes, paths = clips
    cover = object_cover(scenes["static_bg"])
    k = int((cover > 0).sum())
    for extra in [dict(mv_use_inconsistency=True, mv_incon_ksize=5), dict(res_use_grad=True),
                  dict(mv_compensate="affine"), dict(mv_compensate="mean"),
                  dict(fuse_mode="max"), dict(center_prior=0.0)]:
        idx = select_patches(paths["static_bg"], K=k, patch_size=P, input_size=S, protocol="clean",
                             **extra)
        assert idx.size == k and recall_and_background(idx, cover)[0] >= 0.8, extra
    # the geometric mean needs both cues: a square whose inside is predicted perfectly has
    # no residual there, so it is a weaker selector here, but it must still run
    idx = select_patches(paths["static_bg"], K=k, patch_size=P, input_size=S, protocol="clean",
                         fuse_mode="geomean")
    assert idx.size == k
