"""Codec selection at the map's resolution (--map_resolution) and the fast paths that must
give the same numbers as the straightforward ones."""
import numpy as np
import pytest

from eval_encoder.codec import make_options
from eval_encoder.codec import published as pub
from eval_encoder.codec.cache import selection_params
from eval_encoder.codec.motion import decode_with_vectors, encode_canonical, source_rate_field
from eval_encoder.codec.pipeline import ClipFrames, map_shape, select_clip
from eval_encoder.codec.select import patch_scores, percentile_f32, percentile_f32_levels
from eval_encoder.codec.synthetic import moving_square, texture
from eval_encoder.video.transforms import resize_plan


# --- exact fast paths of the published stages ------------------------------------------------

def _transposing_resize(img, out_h, out_w, rows, cols):
    """The published resize as first written here: both passes along axis 0 of transposed
    float32 copies (the reference the in-place gathers must match bit for bit)."""
    def pairs(x, taps, w, fused):
        shape = (-1,) + (1,) * (x.ndim - 1)
        prod = [x[taps[:, k]] * w[:, k].reshape(shape) for k in range(4)]
        if not fused:
            return (prod[0] + prod[1]) + (prod[2] + prod[3])
        wide = [x[taps[:, k]].astype(np.float64) * w[:, k].astype(np.float64).reshape(shape)
                for k in (0, 2)]
        return (wide[0] + prod[1]).astype(np.float32) + (wide[1] + prod[3]).astype(np.float32)

    tx, wx = pub._cubic_taps(img.shape[2], out_w, cols)
    across = pairs(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32), tx, wx, False)
    ty, wy = pub._cubic_taps(img.shape[1], out_h, rows)
    both = pairs(np.ascontiguousarray(across.transpose(2, 1, 0)), ty, wy, True)
    return np.clip(np.rint(both), 0, 255).astype(np.uint8).transpose(1, 0, 2)


@pytest.mark.parametrize("shape,crop", [((3, 240, 320), 224), ((2, 90, 160), 56),
                                        ((2, 161, 97), 84), ((1, 224, 300), 224)])
def test_cubic_resize_gathers_in_place_with_the_same_bits(shape, crop):
    rng = np.random.default_rng(sum(shape))
    maps = rng.integers(0, 256, shape, dtype=np.uint8)
    maps[:, : shape[1] // 2] = maps[:, : shape[1] // 2] // 85 * 85  # flat areas, hard edges
    _, h, w = shape
    scale = crop / min(h, w)
    new_h, new_w = int(round(h * scale)), int(round(w * scale))
    y0, x0 = (new_h - crop) // 2, (new_w - crop) // 2
    rows, cols = slice(y0, y0 + crop), slice(x0, x0 + crop)
    expected = _transposing_resize(maps, new_h, new_w, rows, cols)
    assert np.array_equal(pub.resize_crop_maps(maps, crop), expected)


@pytest.mark.parametrize("step", [1.0, 0.5])
def test_histogram_percentile_equals_the_partition_one(step):
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 100, 4099):
        for top in (1, 3, 129, 511):
            levels = rng.integers(0, top, n).astype(np.int16)
            for q in (0.0, 37.5, 50.0, 95.0, 100.0):
                values = levels.astype(np.float32) * np.float32(step)
                assert percentile_f32_levels(levels, q, step) == percentile_f32(values, q)


@pytest.mark.parametrize("use_grad", [False, True])
def test_residual_energy_from_levels_equals_the_float_path(use_grad):
    """The published normalisation on float32 |r| (or its wrap-around gradient), percentile
    by partition, against the integer-level path: the same float32 map."""
    rng = np.random.default_rng(5)
    res = rng.integers(-300, 300, (45, 67)).astype(np.int16)
    res[:20] = 0  # a still area: many ties at zero
    r = np.clip(res, -128, 127).astype(np.float32)
    if use_grad:
        score = 0.5 * (np.abs(np.roll(r, -1, 1) - np.roll(r, 1, 1))
                       + np.abs(np.roll(r, -1, 0) - np.roll(r, 1, 0)))
    else:
        score = np.abs(r)
    scale = max(percentile_f32(score, pub.PERCENTILE), pub.RES_FLOOR)
    expected = np.clip(score / scale, 0.0, 1.0).astype(np.float32)
    got = pub.residual_energy(res, use_grad)
    assert got.dtype == np.float32 and np.array_equal(got, expected)


# --- the map's resolution ------------------------------------------------------------------

@pytest.mark.parametrize("h,w", [(720, 1280), (360, 640), (1080, 1920), (640, 360), (270, 480)])
def test_map_shape_is_the_pixel_resize(h, w):
    got = map_shape(h, w, 224)
    short = min(h, w)
    assert got == (resize_plan(h, short, 224)[0], resize_plan(w, short, 224)[0])
    assert min(got) == 224 and got[0] * got[1] <= 0.75 * h * w


@pytest.mark.parametrize("h,w", [(240, 320), (256, 340), (200, 300), (224, 400), (100, 80)])
def test_map_shape_keeps_frames_a_downscale_would_barely_shrink_or_enlarge(h, w):
    assert map_shape(h, w, 224) == (h, w)


def test_clean_works_at_the_map_size_and_paper_at_the_source():
    assert make_options("clean").map_resolution == "map"
    assert make_options("paper").map_resolution == "source"
    a, b = (selection_params(64, 2048, 14, 224, 224, make_options("clean", map_resolution=r))
            for r in ("map", "source"))
    assert a != b  # a cache entry of one is never served for the other


def _moving_pair(t=6, h=96, w=128):
    bg, obj = texture(h, w + 3 * t, seed=4), texture(24, 24, seed=5, smooth=2)
    frames = np.stack([bg[:, 3 * i:3 * i + w, 0] for i in range(t + 1)])
    for i in range(t + 1):
        frames[i, 30:54, 20 + 4 * i:44 + 4 * i] = obj[..., 0]
    return frames[:-1], frames[1:]


def test_downscaled_reencode_is_deterministic_and_at_the_map_size():
    prev, cur = _moving_pair()
    pairs = [f for p in zip(prev, cur) for f in p]
    first = [bytes(p) for p in encode_canonical(pairs, (72, 96))]
    assert first == [bytes(p) for p in encode_canonical(pairs, (72, 96))]
    field = source_rate_field(prev, cur, (72, 96))
    assert field.residual.shape == (6, 72, 96) and field.mv.shape == (6, 9, 12, 2)
    assert not field.intra.any() and np.isfinite(field.mv).any()
    with pytest.raises(ValueError, match="larger than the frames"):
        encode_canonical(pairs, (100, 96))


def test_vectors_read_only_where_wanted_are_the_same_vectors():
    prev, cur = _moving_pair()
    packets = encode_canonical([f for p in zip(prev, cur) for f in p])
    luma, every, _ = decode_with_vectors(packets, 12)
    wanted = np.arange(12) % 2 == 1
    luma2, some, _ = decode_with_vectors(packets, 12, wanted)
    assert np.array_equal(luma, luma2)
    for k in range(12):
        if wanted[k]:
            assert np.array_equal(some[k], every[k])
        else:
            assert some[k] is None


def _square_clip(height, width, pan):
    scene = moving_square(frames=66, height=height, width=width, size=height // 3,
                          velocity=(0.5, 1.5), pan=pan, start=(height // 4, width // 5), seed=2)
    luma = scene.frames.mean(axis=3).round().astype(np.uint8)  # a luma stand-in is enough
    ids = np.arange(1, 65)
    return ClipFrames(scene.frames[ids], luma[ids], ids, 66, luma[ids - 1]), scene


@pytest.mark.parametrize("pan", [(0, 0), (1, 1)])
def test_map_resolution_keeps_the_moving_object(pan):
    """168x224 frames, crop 112 (map at 112x149), K 512 of 4096: measured here, the square
    covers 87.3% / 86.3% of the picks at the source's resolution and 87.1% / 86.3% at the
    map's (still / panning background), and the picks overlap with a Jaccard index of 0.90 /
    0.87; the bounds leave a margin."""
    clip, scene = _square_clip(168, 224, pan)
    cover = np.zeros(scene.frames.shape[:3], dtype=np.float32)
    for t, (y, x, s) in enumerate(scene.boxes):
        cover[t, max(y, 0):y + s, max(x, 0):x + s] = 1.0
    cover = patch_scores(cover[clip.ids], 112, 112, 14)
    picks = {r: select_clip(clip, 112, make_options("clean", K_keep=512, map_resolution=r))
             .indices for r in ("source", "map")}
    share = {r: float((cover[p] >= 0.5).mean()) for r, p in picks.items()}
    overlap = len(np.intersect1d(picks["source"], picks["map"])) / \
        len(np.union1d(picks["source"], picks["map"]))
    assert abs(share["map"] - share["source"]) <= 0.03 and share["map"] > 0.8
    assert overlap >= 0.75


# --- exact fast paths of the clean map -----------------------------------------------------

def test_row_nanmedian_equals_numpy_on_short_and_long_rows():
    """numpy takes another path below 600 values a row; both must be matched bit for bit."""
    from eval_encoder.codec.saliency import row_nanmedian

    rng = np.random.default_rng(8)
    for n in (1, 2, 5, 599, 600, 1201):
        for trial in range(6):
            x = rng.normal(0, 3, (9, n)).astype(np.float32)
            x = np.round(x * 4) / 4 if trial % 2 else x  # ties
            x[rng.random((9, n)) < 0.15 * trial] = np.nan
            x[:, 0] = 1.5  # every row keeps a value
            got, want = row_nanmedian(x), np.nanmedian(x, axis=1)
            assert got.dtype == want.dtype and np.array_equal(got, want)


def test_luma_wrapped_in_place_encodes_to_the_same_stream():
    import av

    from eval_encoder.codec.motion import _video_frame

    prev, cur = _moving_pair(w=123)  # an odd width
    pairs = [f for p in zip(prev, cur) for f in p]
    wrapped = [bytes(p) for p in encode_canonical(pairs, (70, 93))]
    fortran = [np.asfortranarray(f) for f in pairs]  # not C-contiguous: copied, not wrapped
    assert not fortran[0].flags.c_contiguous
    copied = [bytes(p) for p in encode_canonical(fortran, (70, 93))]
    assert wrapped == copied
    assert _video_frame(pairs[0], "gray").to_ndarray().tobytes() == pairs[0].tobytes()
    assert isinstance(_video_frame(pairs[0][:, ::2], "gray"), av.VideoFrame)
