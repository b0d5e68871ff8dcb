"""Torch clip transforms: geometry, resampling weights, jitter and normalisation."""
import numpy as np
import pytest
import torch

from eval_encoder.video.transforms import (JitterParams, TransformSpec, colour_matrix, crop_start,
                                           resample_weights, resize_plan, transform_clip)

HALF = (0.5, 0.5, 0.5)


def _frames(t=3, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _column_ramp(t=2, h=32, w=64):
    """Pixel value = column index, in every channel."""
    return np.broadcast_to(np.arange(w, dtype=np.uint8)[None, None, :, None], (t, h, w, 3)).copy()


def test_shapes_and_dtype_numpy_and_torch_inputs_agree():
    spec = TransformSpec(input_size=16, short_side=20, mean=HALF, std=HALF)
    f = _frames()
    out = transform_clip(f, spec)
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
    assert torch.equal(out, transform_clip(torch.from_numpy(f), spec))


@pytest.mark.parametrize("bad", [np.zeros((2, 8, 8, 3), np.float32), np.zeros((2, 8, 8), np.uint8),
                                 np.zeros((2, 8, 8, 4), np.uint8), np.zeros((0, 8, 8, 3), np.uint8)])
def test_bad_frames_are_rejected(bad):
    with pytest.raises(ValueError, match="transform_clip"):
        transform_clip(bad, TransformSpec(4, 4, HALF, HALF))


def test_bad_spec_and_crop_position_are_rejected():
    with pytest.raises(ValueError, match="short_side"):
        TransformSpec(input_size=32, short_side=16, mean=HALF, std=HALF)
    with pytest.raises(ValueError, match="std"):
        TransformSpec(input_size=8, short_side=8, mean=HALF, std=(0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="1.5"):
        transform_clip(_frames(), TransformSpec(8, 8, HALF, HALF), crop_pos=(1.5, 0.5))


def test_centre_and_offset_crops_take_the_right_columns():
    # short side already at its target: the resampling is the identity, crops are exact
    spec = TransformSpec(input_size=32, short_side=32, mean=(0, 0, 0), std=(1 / 255,) * 3)
    f = _column_ramp()
    first_column = {pos: transform_clip(f, spec, crop_pos=(pos, 0.5))[0, 0, 0, 0].item()
                    for pos in (0.0, 0.5, 1.0)}
    assert first_column == {0.0: 0.0, 0.5: 16.0, 1.0: 32.0}
    row = transform_clip(f, spec)[0, 0, 0]
    assert torch.equal(row, torch.arange(16, 48, dtype=torch.float32))


def test_crop_start_rounds_half_up_like_dali():
    assert [crop_start(85, 64, p) for p in (0.0, 0.5, 1.0)] == [0, 11, 21]  # 10.5 -> 11
    assert crop_start(37, 16, 0.1) == 2 and crop_start(37, 16, 0.125) == 3


def test_normalisation_of_a_constant_frame():
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    spec = TransformSpec(input_size=8, short_side=10, mean=mean, std=std)
    out = transform_clip(np.full((2, 12, 16, 3), 100, np.uint8), spec)
    for c in range(3):
        expect = (100 / 255 - mean[c]) / std[c]
        assert torch.allclose(out[c], torch.full_like(out[c], expect), atol=1e-5)


def test_jitter_off_is_the_identity():
    spec = TransformSpec(16, 20, HALF, HALF)
    f = _frames()
    plain = transform_clip(f, spec)
    assert torch.equal(plain, transform_clip(f, spec, jitter=JitterParams()))
    # values without their flag are ignored
    off = JitterParams(contrast=1.4, brightness=0.1, saturation=0.6, hue=0.2)
    assert torch.equal(plain, transform_clip(f, spec, jitter=off))


def test_bgr_swap_reverses_channels():
    spec = TransformSpec(16, 20, HALF, HALF)  # equal per-channel stats: a swap is a flip
    f = _frames()
    assert torch.equal(transform_clip(f, spec, jitter=JitterParams(bgr=True)),
                       transform_clip(f, spec).flip(0))


def test_brightness_contrast_is_additive_and_clamped():
    spec = TransformSpec(4, 4, (0, 0, 0), (1 / 255,) * 3)  # output in 0..255
    f = np.full((1, 4, 4, 3), 200, np.uint8)
    out = transform_clip(f, spec, jitter=JitterParams(brightness_contrast=True, contrast=1.2, brightness=0.1))
    assert torch.allclose(out, torch.full_like(out, 1.2 * (200 - 128) + 128 + 25.5), atol=1e-4)
    out = transform_clip(f, spec, jitter=JitterParams(brightness_contrast=True, contrast=1.4, brightness=0.125))
    assert torch.all(out == 255.0)  # clamped


def test_neutral_colour_matrices_are_near_identity():
    assert np.allclose(colour_matrix(0.0, 1.0), np.eye(3), atol=1e-6)
    assert np.allclose(colour_matrix(360.0, 1.0), np.eye(3), atol=1e-5)
    assert not np.allclose(colour_matrix(90.0, 1.0), np.eye(3), atol=0.1)


def test_upscale_by_two_uses_the_cubic_window_and_clamps_edges():
    out, origin, step = resize_plan(8, 8, 16)
    assert (out, origin, step) == (16, 0.0, 0.5)
    w = resample_weights(8, 16, origin, step)
    # output 5 is centred at input 2.25: Keys(a=-0.5) taps at 1..4
    assert np.allclose(w[5, 1:5], [-0.0703125, 0.8671875, 0.2265625, -0.0234375], atol=1e-7)
    # output 0 sits at -0.25: the taps left of the image fold onto pixel 0
    assert np.allclose(w[0, :3], [1.0703125, -0.0703125, 0.0], atol=1e-7)
    assert np.allclose(w.sum(1), 1.0, atol=1e-6)


def test_downscale_keeps_a_ramp_and_a_constant():
    spec = TransformSpec(input_size=20, short_side=24, mean=(0, 0, 0), std=(1 / 255,) * 3)
    f = _column_ramp(h=40, w=64)  # 40 -> 24 (antialiased), 64 -> 38.4 -> 38 columns
    n, origin, step = resize_plan(64, 40, 24)
    assert n == 38 and abs(step - 40 / 24) < 1e-6 and abs(origin - (64 - 38 * step) / 2) < 1e-5
    row = transform_clip(f, spec)[0, 0, 10]
    start = crop_start(n, 20, 0.5)
    centres = origin + (np.arange(start, start + 20) + 0.5) * step - 0.5
    # away from the clamped borders a symmetric window keeps a ramp at the pixel centres (to
    # within 0.02: a widened window sampled at whole pixels is not exactly linear-preserving);
    # a half-pixel slip in the geometry would be off by 0.8
    inner = slice(3, 17)
    assert np.allclose(row.numpy()[inner], centres[inner], atol=0.02)
    const = transform_clip(np.full((1, 40, 64, 3), 77, np.uint8), spec)
    assert torch.allclose(const, torch.full_like(const, 77.0), atol=1e-3)


def test_spec_checks_the_protocol_fields():
    with pytest.raises(ValueError, match="brightness_mode"):
        TransformSpec(8, 8, HALF, HALF, brightness_mode="add")
    with pytest.raises(ValueError, match="round_pixels"):
        TransformSpec(8, 8, HALF, HALF, round_pixels=None)


def test_rounding_keeps_an_identity_resize_exact():
    # short side already at its target: the resampled values are the input levels themselves
    f = _column_ramp()
    plain = TransformSpec(32, 32, (0, 0, 0), (1 / 255,) * 3)
    rounded = TransformSpec(32, 32, (0, 0, 0), (1 / 255,) * 3, round_pixels=True)
    assert torch.equal(transform_clip(f, plain), transform_clip(f, rounded))


def _whole_then_crop(frames, short, crop, pos):
    """Reference: every output pixel of the whole resized frame (float64, the full resampling
    matrices), then the crop."""
    _, h, w, _ = frames.shape

    def axis(size, p):
        out, origin, step = resize_plan(size, min(h, w), short)
        first = crop_start(out, crop, p)
        return resample_weights(size, out, origin, step).astype(np.float64), first

    (wy, y0), (wx, x0) = axis(h, pos[1]), axis(w, pos[0])
    whole = np.einsum("yh,cthw,xw->ctyx", wy, frames.astype(np.float64).transpose(3, 0, 1, 2), wx)
    return whole[:, :, y0:y0 + crop, x0:x0 + crop]


@pytest.mark.parametrize("size,short,crop,pos", [
    ((48, 64), 40, 32, (0.5, 0.5)),     # shrink (antialiased, wider support)
    ((90, 130), 64, 56, (0.0, 1.0)),    # shrink, crops at the borders (clamped taps)
    ((40, 30), 56, 48, (1.0, 0.25)),    # enlarge
    ((33, 77), 33, 20, (0.3, 0.7)),     # identity scale, off-centre crop
    ((120, 160), 24, 20, (0.5, 0.5)),   # strong shrink: support of ~20 taps, several bands
])
def test_resizing_the_crop_window_equals_resizing_the_whole_frame_then_cropping(size, short,
                                                                                crop, pos):
    from eval_encoder.video.transforms import axis_plan, resize_crop

    frames = _frames(t=2, h=size[0], w=size[1], seed=sum(size))
    spec = TransformSpec(crop, short, (0, 0, 0), (1 / 255,) * 3)
    got = resize_crop(torch.from_numpy(frames), spec, pos)
    want = _whole_then_crop(frames, short, crop, pos)
    # same taps and weights; only float32 summation order differs (0..255 scale)
    assert np.abs(got.double().numpy() - want).max() < 2e-4
    # the window is all the outputs read: pixels outside it change nothing, to the bit
    py = axis_plan(size[0], min(size), short, crop, pos[1])
    px = axis_plan(size[1], min(size), short, crop, pos[0])
    outside = frames.copy()
    inside = np.zeros(frames.shape[1:3], bool)
    inside[py.start:py.stop, px.start:px.stop] = True
    outside[:, ~inside] = 255 - outside[:, ~inside]
    assert torch.equal(resize_crop(torch.from_numpy(outside), spec, pos), got)
    # and nothing inside it can be left out: each band's weights reach its first and last input
    for plan in (py, px):
        for _, _, i0, i1, weights in plan.bands:
            assert weights.shape[1] == i1 - i0 and weights[:, 0].abs().max() > 0
            assert weights[:, -1].abs().max() > 0


def test_a_crop_reads_less_than_the_whole_frame():
    from eval_encoder.video.transforms import axis_plan

    # 640x360 -> short side 224, centre 224 crop: 398 output columns, 224 kept
    plan = axis_plan(640, 360, 224, 224, 0.5)
    assert 224 * 360 / 224 < plan.stop - plan.start < 400
