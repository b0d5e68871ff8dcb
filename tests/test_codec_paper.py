"""The published codec stages (paper protocol), pinned with numbers derived from the published
loader's description (OneVision-Encoder ``ap_dataloader_dali_codec.py``), not from our code."""
import numpy as np
import pytest

from eval_encoder.codec import Selector, make_options
from eval_encoder.codec import published as pub
from eval_encoder.codec.motion import CELL, source_rate_field
from eval_encoder.codec.schedule import frame_ids, zeroed
from eval_encoder.codec.select import choose, uniform_frame_patches
from eval_encoder.codec.synthetic import moving_square, write_video


# --- frame ids and zeroed frames -----------------------------------------------------------

@pytest.mark.parametrize("n", [40, 64, 65, 100, 150, 301, 1000])
def test_frame_ids_truncate_linspace_as_published(n):
    assert np.array_equal(frame_ids(n, 64, "trunc"), np.linspace(0, n - 1, 64, dtype=int))
    assert np.array_equal(frame_ids(n, 64, "round"), np.round(np.linspace(0, n - 1, 64)))


def test_rounding_moves_about_half_of_the_ids_by_one_frame():
    moved = [int((frame_ids(n, 64, "trunc") != frame_ids(n, 64, "round")).sum())
             for n in range(200, 400)]
    assert 20 <= np.median(moved) <= 40 and max(moved) <= 64


def _published_zeros(ids):
    """Written out from the published loop: intra ids are the source frames on the 16-frame
    GOP grid that were sampled (at most the first 8); each id's map goes to its last
    position; positions never written stay zero."""
    last_pos = {int(fid): i for i, fid in enumerate(ids)}
    intra = [fid for fid in sorted(set(int(v) for v in ids)) if fid % 16 == 0][:8]
    written = set(last_pos.values()) - {last_pos[fid] for fid in intra}
    return np.array([i not in written for i in range(len(ids))])


@pytest.mark.parametrize("n", [20, 40, 64, 150, 333, 2000])
def test_gop16_zeroes_sampled_intra_frames_and_repeats(n):
    ids = frame_ids(n, 64, "trunc")
    assert np.array_equal(zeroed(ids, "gop16"), _published_zeros(ids))


def test_gop16_hand_worked_cases():
    # ids floor(i * 149 / 63): of the GOP grid 0, 16, ..., 144 only 0, 16, 80, 96 and 144 are
    # hit (32 would need i in [13.53, 13.95)), at i = 0, 7, 34, 41, 61
    ids = frame_ids(150, 64, "trunc")
    expected = {0, 7, 34, 41, 61}
    assert set(np.flatnonzero(zeroed(ids, "gop16"))) == expected
    assert all(ids[i] % 16 == 0 for i in expected)
    many = frame_ids(1009, 64, "trunc")  # ids 0, 16, 32, ...: every id on the grid, first 8 only
    on_grid = [i for i, v in enumerate(many) if v % 16 == 0]
    assert len(on_grid) > 8 and list(np.flatnonzero(zeroed(many, "gop16"))) == on_grid[:8]
    short = np.array([0, 0, 1, 1, 2])  # repeats keep their last position (gop16) / first
    assert zeroed(short, "gop16").tolist() == [True, True, True, False, False]
    assert zeroed(short, "unreferenced").tolist() == [True, True, False, True, False]


# --- source-rate motion ------------------------------------------------------------------------

def test_vectors_span_one_source_frame_whatever_the_sampling_gap(tmp_path):
    """A square moving 3 px right per source frame over a still background: the vectors of
    the sampled frames on the square are (-3, 0) (one source frame back), though the
    sampled frames are ~4.7 source frames apart."""
    from eval_encoder.codec.synthetic import texture

    bg, patch = texture(96, 160, seed=1), texture(32, 32, seed=9, smooth=2)
    frames = np.repeat(bg[None], 300, axis=0)
    for t in range(300):
        x = 8 + (3 * t) % 120
        frames[t, 30:62, x:x + 32] = patch
    path = write_video(str(tmp_path / "steady.mp4"), frames)
    sel = Selector(64, 84, make_options("paper", K_keep=256))
    clip = sel.decode(path, with_previous=True)
    live = ~zeroed(clip.ids, "gop16")
    field = source_rate_field(clip.previous[live], clip.luma[live])
    inner = []
    for k, fid in enumerate(clip.ids[live]):
        x = 8 + (3 * fid) % 120
        if (3 * fid) % 120 >= 3:  # the pair does not straddle the wrap-around jump
            inner.append(field.mv[k, 32 // CELL:56 // CELL, (x + 8) // CELL:(x + 24) // CELL])
    cells = np.concatenate([c.reshape(-1, 2) for c in inner])
    assert len(inner) > 40
    assert np.array_equal(np.nanmedian(cells, 0), [-3, 0])
    assert np.mean(np.all(cells == [-3, 0], axis=1)) > 0.6  # x264's search is not exhaustive


# --- the published map stages ------------------------------------------------------------------

def test_box_filter_is_one_short_and_centred_one_pixel_in():
    x = np.random.default_rng(0).uniform(0, 9, size=(7, 9)).astype(np.float32)
    got = pub.box_mean(x, 3)
    assert got.shape == (6, 8)
    padded = np.pad(x, 1, mode="edge")
    for i in range(6):
        for j in range(8):  # published output (i, j) = window of padded rows i+1..i+3
            assert got[i, j] == pytest.approx(padded[i + 1:i + 4, j + 1:j + 4].mean(), abs=1e-4)


def test_variance_window_sees_only_block_edges_on_the_pixel_grid():
    mag = np.zeros((32, 32), np.float32)
    mag[8:16, 8:16] = 4.0  # one moving 8x8 block
    var = pub.local_variance(mag, 3)
    inside = pub.local_variance(mag, 3)[9:14, 9:14]  # the output is shifted by one pixel
    assert np.all(inside <= 1e-4) and var.max() > 1.0
    # only windows straddling the edge: centres within a pixel of it, 10 x 10 - 6 x 6 of them
    assert (var > 1e-3).sum() == 10 * 10 - 6 * 6


def test_motion_floor_turns_any_motion_salient_on_a_still_frame():
    vx = np.zeros((40, 40), np.float32)
    vx[:8, :8] = 1.0  # one block moved one pixel; p95 of the magnitude is 0
    paper = make_options("paper", mv_compensate="none")
    clean = make_options("clean", mv_compensate="none")
    assert pub.motion_energy(vx, vx * 0, paper)[:8, :8].min() == 1.0  # 1 / max(0, 1e-6) -> 1
    half = make_options("paper", mv_compensate="none", mv_floor=2.0)
    assert pub.motion_energy(vx, vx * 0, half)[:8, :8].max() == 0.5


def test_similarity_fit_uses_moving_pixels_only():
    """Published: only pixels with |dx| + |dy| > 1e-3 enter the camera fit, so over a still
    background the fitted 'camera' is the moving object itself."""
    vx, vy = np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32)
    vx[16:48, 16:48], vy[16:48, 16:48] = 3.0, -1.0  # 1024 moving pixels, the rest still
    rx, ry = pub.compensate(vx, vy, "similarity")
    assert np.abs(rx[16:48, 16:48]).max() < 1e-4 and np.abs(ry[16:48, 16:48]).max() < 1e-4
    assert np.abs(rx[0, 0] + 3.0) < 0.5  # the still background now "moves"
    few_x = np.zeros((64, 64), np.float32)
    few_x[:4, :4] = 2.0  # fewer than 64 moving pixels: median translation (0)
    assert np.array_equal(pub.compensate(few_x, few_x * 0, "similarity")[0], few_x)


def test_map_is_stored_as_truncated_uint8():
    cells = np.zeros((4, 4, 2), np.float32)
    res = np.zeros((32, 32), np.int16)
    res[:, :16] = 10  # residual p95 = 10: the left half is 1.0, the rest 0
    res[:, :2] = 5  # 0.5 -> 127.5 -> 127 (truncated, not rounded)
    opts = make_options("paper", mv_compensate="none", center_prior=0.0)
    out = pub.frame_map(cells, res, opts)  # motion map is 0: fused = residual / 2
    assert out.dtype == np.uint8
    assert out[0, 0] == int(0.25 * 255) and out[0, 5] == int(0.5 * 255) and out[0, 20] == 0


def _keys_cubic(t, a=-0.75):
    t = abs(t)
    if t <= 1:
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
    return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a if t < 2 else 0.0


def test_cubic_resize_follows_keys_a_075_with_clamped_edges():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(1, 9, 13), dtype=np.uint8)
    out = pub.resize_cubic_u8(img, 14, 20)
    ref = np.zeros((14, 20))
    for oy in range(14):
        for ox in range(20):
            fy, fx = (oy + 0.5) * 9 / 14 - 0.5, (ox + 0.5) * 13 / 20 - 0.5
            y0, x0 = int(np.floor(fy)), int(np.floor(fx))
            for dy in range(-1, 3):
                for dx in range(-1, 3):
                    w = _keys_cubic(fy - (y0 + dy)) * _keys_cubic(fx - (x0 + dx))
                    ref[oy, ox] += w * img[0, min(max(y0 + dy, 0), 8), min(max(x0 + dx, 0), 12)]
    want = np.clip(np.round(ref), 0, 255)
    assert np.abs(out[0].astype(int) - want).max() <= 1  # 11-bit fixed-point weights


def test_resize_crop_and_patch_sums_as_published():
    maps = np.full((2, 240, 320), 7, np.uint8)
    maps[:, :, 0] = 200  # a column outside the centre window
    out = pub.resize_crop_maps(maps, 224)
    assert out.shape == (2, 224, 224)  # 320 * 224/240 = 298.67 -> 299; crop from (299-224)//2
    assert np.all(out == 7)
    sums = pub.patch_sums(out, 14)
    assert sums.dtype == np.uint64 and sums.shape == (2 * 256,) and np.all(sums == 7 * 196)


# --- top-K and the static fallback ----------------------------------------------------------

def test_topk_ties_partition_or_stable():
    scores = np.array([5, 1, 5, 5, 0, 5, 2, 5], dtype=np.float64)
    part = choose(scores, 3, 8, make_options("paper", static_fallback=0)).indices
    assert np.array_equal(part, np.sort(np.argpartition(scores, -3)[-3:]))
    stable = choose(scores, 3, 8, make_options("clean", static_fallback=0)).indices
    assert stable.tolist() == [0, 2, 3]


def test_static_fallback_spreads_a_small_budget_as_published():
    # 64 frames of 256 patches, K = 100: frames 0, 21, 42, 63 get 25 patches each, at
    # positions round(i * 256 / 25) for i < 25
    picked = uniform_frame_patches(64, 256, 4, 100)
    positions = [min(255, int(round(i * 256 / 25))) for i in range(25)]
    want = [t * 256 + p for t in (0, 21, 42, 63) for p in positions]
    assert picked.tolist() == want


def test_paper_selection_never_picks_zeroed_frames(tmp_path):
    scene = moving_square(frames=150, height=96, width=128, size=32, velocity=(0.5, 1.5))
    path = write_video(str(tmp_path / "c.mp4"), scene.frames)
    sel = Selector(64, 112, make_options("paper", K_keep=512, patch_size=14, static_fallback=0))
    frames, ids, total, chosen = sel.load(path)
    assert np.array_equal(ids, np.linspace(0, 149, 64, dtype=int))
    frames_used = set((chosen.indices // 64).tolist())
    assert not frames_used & set(np.flatnonzero(zeroed(ids, "gop16")).tolist())
