"""The published map, stage by stage, at pixel resolution (``--map_grid pixel``).

Written from the published loader's description (OneVision-Encoder
``dataloader/ap_dataloader_dali_codec.py``), on our source-rate motion field. Per frame:

1. motion in pixels on the pixel grid (intra blocks 0), camera motion removed: median or mean
   translation over all pixels, or a similarity / affine field fitted by least squares on at
   most 5000 evenly subsampled moving pixels (|dx| + |dy| > 1e-3), refitted once on the 70%
   that fit best; fewer than 64 moving pixels fall back to the median translation;
2. magnitude, or its local variance: a k x k box filter by float32 integral images whose
   output is one pixel short on each axis, stretched back with nearest-neighbour resizing;
3. each map divided by its 95th percentile (at least ``mv_floor``; residual at least 1) and
   clipped to [0, 1]; residual |r| with r clipped to the 8-bit range the decoder emits;
4. fusion, centre prior, then stored as uint8 by truncation of ``255 * map``;
5. shorter side resized to the crop size with a cubic (a = -0.75) filter as the published
   OpenCV build does it (Intel IPP: float32 weights and sums, round half to even), saturated
   to uint8, cropped at ``(size - crop) // 2``; patch scores are sums.

Percentiles follow numpy 1.26, the published environment's (:func:`select.percentile_f32`):
numpy 2 interpolates a float32 percentile in float32, which moves the normaliser by an ulp
and, through the 8-bit truncation, a few map pixels by one level.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

from eval_encoder.codec.motion import CELL
from eval_encoder.codec.options import CodecOptions
from eval_encoder.codec.select import percentile_f32, percentile_f32_levels

PERCENTILE = 95.0
RES_FLOOR = 1.0
MAX_FIT_POINTS = 5000
MIN_FIT_POINTS = 64
TRIM_KEEP = 0.7
FIT_ROUNDS = 2
CUBIC_A = -0.75


# ------------------------------------------------------------------ motion on the pixel grid

def _widen(cells: np.ndarray, h: int, w: int) -> np.ndarray:
    hc, wc = cells.shape
    wide = np.broadcast_to(cells[:, None, :, None], (hc, CELL, wc, CELL))
    return wide.reshape(hc * CELL, wc * CELL)[:h, :w]


def pixel_vectors(cells: np.ndarray, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cell vectors [hc, wc, 2] (NaN: none) widened to pixels: (vx, vy) float32 [h, w]."""
    cells = np.nan_to_num(cells).astype(np.float32)
    return _widen(cells[..., 0], h, w), _widen(cells[..., 1], h, w)


def _axes(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """Normalised pixel coordinates of the columns [w] and of the rows [h], float32."""
    return (np.linspace(-1.0, 1.0, w, dtype=np.float32),
            np.linspace(-1.0, 1.0, h, dtype=np.float32))


@lru_cache(maxsize=8)
def _design(h: int, w: int, mode: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised pixel coordinates (x, y) [N] and the interleaved rows [2N, P] (dx, dy)."""
    xx, yy = np.meshgrid(*_axes(h, w))
    x, y = xx.reshape(-1), yy.reshape(-1)
    one, zero = np.ones_like(x), np.zeros_like(x)
    if mode == "similarity":  # dx = tx + a x - b y ; dy = ty + b x + a y
        dx, dy = [one, zero, x, -y], [zero, one, y, x]
    else:  # affine: dx = a0 + a1 x + a2 y ; dy = b0 + b1 x + b2 y
        dx, dy = [one, x, y, zero, zero, zero], [zero, zero, zero, one, x, y]
    rows = np.empty((2 * x.size, len(dx)), dtype=np.float32)
    rows[0::2], rows[1::2] = np.stack(dx, 1), np.stack(dy, 1)
    for arr in (x, y, rows):
        arr.setflags(write=False)
    return x, y, rows


def _predict(x: np.ndarray, y: np.ndarray, p: np.ndarray, mode: str):
    c = [float(v) for v in p.reshape(-1)]
    if mode == "similarity":
        return (c[0] + c[2] * x - c[3] * y).astype(np.float32), \
            (c[1] + c[3] * x + c[2] * y).astype(np.float32)
    return (c[0] + c[1] * x + c[2] * y).astype(np.float32), \
        (c[3] + c[4] * x + c[5] * y).astype(np.float32)


def _fit_points(vx: np.ndarray, vy: np.ndarray) -> np.ndarray:
    """Moving pixels (|dx| + |dy| > 1e-3; the vectors are finite), evenly subsampled to at
    most MAX_FIT_POINTS."""
    idx = np.flatnonzero(np.abs(vx) + np.abs(vy) > 1e-3)
    if idx.size > MAX_FIT_POINTS:
        idx = idx[::int(math.ceil(idx.size / float(MAX_FIT_POINTS)))]
    return idx


def _fit(vx: np.ndarray, vy: np.ndarray, sel: np.ndarray, mode: str, h: int, w: int):
    """Least squares, then refit on the best-fitting 70% (FIT_ROUNDS fits in all): the
    camera field as a column term [1, w] and a row term [h, 1] per component, whose
    broadcast sum is the published per-pixel prediction (same float32 operations)."""
    x, y, rows = _design(h, w, mode)
    params = None
    for _ in range(FIT_ROUNDS):
        a = rows[np.concatenate([2 * sel, 2 * sel + 1])]
        b = np.concatenate([vx[sel], vy[sel]]).astype(np.float32)
        params = np.linalg.lstsq(a, b, rcond=None)[0].astype(np.float32)
        px, py = _predict(x[sel], y[sel], params, mode)
        err = np.sqrt((vx[sel] - px) ** 2 + (vy[sel] - py) ** 2)
        keep = int(max(MIN_FIT_POINTS, round(sel.size * TRIM_KEEP)))
        if sel.size < 2 * MIN_FIT_POINTS or keep >= sel.size:
            break
        sel = sel[np.argsort(err)[:keep]]
    cols, rows = _axes(h, w)
    return _predict_separable(cols[None, :], rows[:, None], params, mode)


def _predict_separable(x: np.ndarray, y: np.ndarray, p: np.ndarray, mode: str):
    """``_predict`` on a grid: each term depends on x or on y only, so ((c + a x) - b y)
    is a broadcast of a row and a column, with the very same float32 roundings."""
    c = [float(v) for v in p.reshape(-1)]
    if mode == "similarity":
        return (c[0] + c[2] * x) - c[3] * y, (c[1] + c[3] * x) + c[2] * y
    return (c[0] + c[1] * x) + c[2] * y, (c[3] + c[4] * x) + c[5] * y


def compensate(vx: np.ndarray, vy: np.ndarray, mode: str) -> Tuple[np.ndarray, np.ndarray]:
    """(vx, vy) [h, w] minus the camera's motion under ``mode``."""
    if mode == "none":
        return vx, vy
    if mode == "mean":
        return vx - float(np.mean(vx)), vy - float(np.mean(vy))
    flat_x, flat_y = np.ascontiguousarray(vx).reshape(-1), np.ascontiguousarray(vy).reshape(-1)
    sel = _fit_points(flat_x, flat_y) if mode in ("similarity", "affine") else None
    if sel is None or sel.size < MIN_FIT_POINTS:
        return vx - np.median(vx), vy - np.median(vy)
    cx, cy = _fit(flat_x, flat_y, sel, mode, *vx.shape)
    return vx - cx, vy - cy


# ------------------------------------------------------------------ normalised energies

def box_mean(x: np.ndarray, k: int) -> np.ndarray:
    """k x k mean by float32 integral images of the edge-padded map; the result is one pixel
    short on each axis (window centred at (i + 1, j + 1)), as the published filter gives."""
    pad = k // 2
    ii = np.pad(x.astype(np.float32), pad, mode="edge").cumsum(0).cumsum(1)
    return (ii[k:, k:] - ii[:-k, k:] - ii[k:, :-k] + ii[:-k, :-k]) / float(k * k)


def _nearest_source(src: int, dst: int) -> np.ndarray:
    step = 1.0 / (dst / src)
    return np.minimum(np.floor(np.arange(dst) * step).astype(np.int64), src - 1)


def nearest_resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize to [h, w]: source index floor(dst_index * src / dst)."""
    if img.shape == (h, w):
        return img
    return img[_nearest_source(img.shape[0], h)[:, None], _nearest_source(img.shape[1], w)[None, :]]


def local_variance(mag: np.ndarray, k: int) -> np.ndarray:
    """Variance of ``mag`` in a k x k window (k odd, >= 3), float32, >= 0."""
    k = max(3, int(k))
    k += 1 - k % 2
    mean = box_mean(mag, k)
    return np.maximum(box_mean(mag * mag, k) - mean * mean, 0.0).astype(np.float32)


def _unit(score: np.ndarray, floor: float, p95: Optional[float] = None) -> np.ndarray:
    """``score`` (>= 0) over max(its 95th percentile, ``floor``), clipped to [0, 1], float32;
    ``p95``: that percentile when the caller has it already."""
    scale = max(percentile_f32(score, PERCENTILE) if p95 is None else p95, floor)
    out = np.divide(score, scale, dtype=np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def motion_energy(vx: np.ndarray, vy: np.ndarray, opts: CodecOptions) -> np.ndarray:
    """Normalised motion energy [h, w] in [0, 1]."""
    vx, vy = compensate(vx, vy, opts.mv_compensate)
    mag = np.sqrt(vx * vx + vy * vy).astype(np.float32)
    score = local_variance(mag, opts.mv_incon_ksize) if opts.mv_use_inconsistency else mag
    return nearest_resize(_unit(score, opts.mv_floor), *vx.shape)


def residual_energy(res: np.ndarray, use_grad: bool) -> np.ndarray:
    """Normalised |r| (r clipped to the decoder's 8-bit range), or its wrap-around gradient.
    Both are whole (or half) levels, so their percentile comes from a histogram."""
    r = np.clip(res, -128, 127).astype(np.int16, copy=False)
    if not use_grad:
        levels = np.abs(r)
        p95 = percentile_f32_levels(levels, PERCENTILE)
        return _unit(levels.astype(np.float32), RES_FLOOR, p95)
    levels = np.abs(np.roll(r, -1, axis=1) - np.roll(r, 1, axis=1))
    levels += np.abs(np.roll(r, -1, axis=0) - np.roll(r, 1, axis=0))  # |gx| + |gy| <= 510
    p95 = percentile_f32_levels(levels, PERCENTILE, 0.5)
    return _unit(levels.astype(np.float32) * np.float32(0.5), RES_FLOOR, p95)


FUSIONS = {
    "weighted": lambda m, r, o: (o.w_mv * m + o.w_res * r) / float(o.w_mv + o.w_res),
    "max": lambda m, r, o: np.maximum(m, r),
    "sum": lambda m, r, o: m + r,
    "geomean": lambda m, r, o: np.sqrt(m * r),
}


@lru_cache(maxsize=8)
def prior_gain(h: int, w: int, strength: float, sigma_frac: float) -> np.ndarray:
    """``1 + strength * g`` [h, w] float32, g the centred Gaussian with peak 1 and sigma
    ``sigma_frac * min(h, w)``: the factor the map is multiplied by."""
    sigma = max(float(sigma_frac) * float(min(h, w)), 1.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d2 = (xx - (w - 1) * 0.5) ** 2 + (yy - (h - 1) * 0.5) ** 2
    weight = np.exp(-0.5 * d2 / (sigma * sigma)).astype(np.float32)
    gain = 1.0 + float(strength) * (weight / float(weight.max()))
    gain.setflags(write=False)
    return gain


def frame_map(cells: np.ndarray, res: np.ndarray, opts: CodecOptions) -> np.ndarray:
    """One frame's published map, uint8 [h, w], from cell vectors [hc, wc, 2]."""
    return pixel_map(*pixel_vectors(cells, *res.shape), res, opts)


def pixel_map(vx: np.ndarray, vy: np.ndarray, res: np.ndarray, opts: CodecOptions) -> np.ndarray:
    """One frame's published map, uint8 [h, w], from per-pixel vectors (px, pointing to the
    reference; 0 where none) and the signed luma residual [h, w]."""
    h, w = res.shape
    mv = motion_energy(vx, vy, opts)
    fused = np.clip(FUSIONS[opts.fuse_mode](mv, residual_energy(res, opts.res_use_grad), opts),
                    0.0, 1.0).astype(np.float32)
    if opts.center_prior > 0 and h > 1 and w > 1:
        gain = prior_gain(h, w, opts.center_prior, opts.center_sigma)
        fused = np.clip(fused * gain, 0.0, 1.0).astype(np.float32)
    return (fused * 255.0).astype(np.uint8)


# ------------------------------------------------------------------ resize, crop, patch sums

def _keys(t: np.ndarray) -> np.ndarray:
    """Keys' cubic kernel with a = -0.75 at distances ``t`` (float64)."""
    a, t = CUBIC_A, np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _cubic_taps(in_size: int, out_size: int, keep: slice) -> Tuple[np.ndarray, np.ndarray]:
    """Source taps [n, 4] (clamped at the edges) and float32 weights [n, 4] of the output
    pixels ``keep`` of a cubic (a = -0.75) resize with half-pixel centres; taps clamped onto
    the same edge pixel have their weights merged onto the first of them."""
    fx = (np.arange(out_size)[keep] + 0.5) * (in_size / out_size) - 0.5
    first = np.floor(fx).astype(np.int64)
    offsets = np.arange(-1, 3)
    weights = _keys(fx[:, None] - (first[:, None] + offsets[None, :]))
    taps = np.clip(first[:, None] + offsets[None, :], 0, in_size - 1)
    for k in range(1, 4):
        for j in range(k):
            same = (taps[:, k] == taps[:, j]) & (weights[:, k] != 0)
            weights[same, j] += weights[same, k]
            weights[same, k] = 0.0
    return taps, weights.astype(np.float32)


def _pairs(x: np.ndarray, taps: np.ndarray, w: np.ndarray, axis: int, fused: bool) -> np.ndarray:
    """Sum of 4 weighted taps of ``x`` along ``axis`` as (t0 + t1) + (t2 + t3) in float32;
    with ``fused`` each pair is one fused multiply-add, t0 * w0 + round(t1 * w1). Taps are
    gathered in place along the axis (uint8 stays uint8 until its product), so no pass
    transposes the frames: every element sees the same float operations either way."""
    shape = [1] * x.ndim
    shape[axis] = -1

    def prod(k: int, dtype=np.float32) -> np.ndarray:  # the cast happens inside the product
        return np.multiply(np.take(x, taps[:, k], axis=axis), w[:, k].astype(dtype).reshape(shape),
                           dtype=dtype)

    if not fused:
        return (prod(0) + prod(1)) + (prod(2) + prod(3))
    first = (prod(0, np.float64) + prod(1)).astype(np.float32)
    return first + (prod(2, np.float64) + prod(3)).astype(np.float32)


def resize_cubic_u8(img: np.ndarray, out_h: int, out_w: int, rows: slice = slice(None),
                    cols: slice = slice(None)) -> np.ndarray:
    """uint8 [F, h, w] resized to [F, out_h, out_w] (only the output ``rows`` x ``cols`` are
    computed) as the published OpenCV build computes it (its Intel IPP path): float32
    weights, a horizontal pass in float32, a vertical pass with fused multiply-adds, rounded
    half to even and saturated."""
    tx, wx = _cubic_taps(img.shape[2], out_w, cols)
    across = _pairs(img, tx, wx, 2, False)  # [F, h, cols]
    ty, wy = _cubic_taps(img.shape[1], out_h, rows)
    both = _pairs(across, ty, wy, 1, True)  # [F, rows, cols]
    np.rint(both, out=both)
    return np.clip(both, 0, 255, out=both).astype(np.uint8)


def resize_crop_maps(maps: np.ndarray, crop: int) -> np.ndarray:
    """uint8 maps [F, h, w]: shorter side to ``crop`` (sizes rounded as Python's round),
    then the crop x crop window starting at ``(size - crop) // 2`` on each axis."""
    _, h, w = maps.shape
    scale = crop / min(h, w)
    new_h, new_w = int(round(h * scale)), int(round(w * scale))
    y0, x0 = (new_h - crop) // 2, (new_w - crop) // 2
    return resize_cubic_u8(maps, new_h, new_w, slice(y0, y0 + crop), slice(x0, x0 + crop))


def patch_sums(maps: np.ndarray, patch: int) -> np.ndarray:
    """Sum of each patch of uint8 maps [F, S, S], flattened in (t, row, col) order: uint64."""
    f, s, _ = maps.shape
    g = s // patch
    return maps.reshape(f, g, patch, g, patch).sum(axis=(2, 4), dtype=np.uint64).reshape(-1)
