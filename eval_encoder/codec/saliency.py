"""Per-pixel saliency of each frame from its motion field and residual (upstream's recipe).

motion: magnitude in pixels after removing camera motion (median or mean translation, or a
least-squares similarity / affine field fitted with iterative trimming of outliers),
optionally replaced by its local variance; residual: |r| or its gradient magnitude. Each is
normalised per frame by its 95th percentile and clipped to [0, 1], the two are fused, a
centred Gaussian prior boosts the middle, and intra frames score 0.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

from eval_encoder.codec.motion import CELL, MotionField
from eval_encoder.codec.options import CodecOptions

PERCENTILE = 95.0
# normalisation floor of the residual: below one luma level a frame's residual is round-off,
# and dividing by it would turn that round-off into full saliency (the motion map's floor is
# the option mv_floor: 1 px, one integer-pel step, under the clean protocol)
RES_FLOOR = 1.0
TRIM_KEEP = 0.7  # fraction of vectors kept by each trimming step of the camera fit
TRIM_STEPS = 2
MIN_FIT_POINTS = 64


@lru_cache(maxsize=16)
def _design(hc: int, wc: int, mode: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows for dx and dy [N, P] of a similarity or affine motion model on a [-1, 1] grid,
    and their summed outer products [N, P*P] (the normal equations as one matrix product)."""
    y, x = np.meshgrid(np.linspace(-1, 1, hc, dtype=np.float32),
                       np.linspace(-1, 1, wc, dtype=np.float32), indexing="ij")
    x, y = x.ravel(), y.ravel()
    one, zero = np.ones_like(x), np.zeros_like(x)
    if mode == "similarity":  # dx = tx + a x - b y ; dy = ty + b x + a y
        ax, ay = np.stack([one, zero, x, -y], 1), np.stack([zero, one, y, x], 1)
    else:  # affine: dx = a0 + a1 x + a2 y ; dy = b0 + b1 x + b2 y
        ax = np.stack([one, x, y, zero, zero, zero], 1)
        ay = np.stack([zero, zero, zero, one, x, y], 1)
    outer = (ax[:, :, None] * ax[:, None, :] + ay[:, :, None] * ay[:, None, :]).reshape(len(x), -1)
    for arr in (ax, ay, outer):
        arr.setflags(write=False)
    return ax, ay, outer


def _solve(design: Tuple[np.ndarray, np.ndarray, np.ndarray], vx: np.ndarray, vy: np.ndarray,
           weight: np.ndarray) -> np.ndarray:
    """Weighted least squares for every frame at once: params [F, P] (normal equations)."""
    ax, ay, outer = design
    p = ax.shape[1]
    ata = (weight @ outer).reshape(-1, p, p)
    atb = (weight * vx) @ ax + (weight * vy) @ ay
    ata += 1e-6 * np.eye(p, dtype=ata.dtype)  # keeps degenerate frames solvable
    return np.linalg.solve(ata, atb[..., None])[..., 0]


def _keep_smallest(err: np.ndarray, valid: np.ndarray, keep: float) -> np.ndarray:
    """Per frame, the ``keep`` fraction of valid points with the smallest error (as weights)."""
    masked = np.where(valid, err, np.inf)
    count = np.maximum((valid.sum(1) * keep).astype(np.int64), 1)
    order = np.sort(masked, axis=1)
    cut = np.take_along_axis(order, (count - 1)[:, None], axis=1)
    return (valid & (masked <= cut)).astype(np.float32)


def row_nanmedian(x: np.ndarray) -> np.ndarray:
    """``np.nanmedian(x, axis=1)`` of float [F, N] rows with at least one finite value, by
    one sort of all rows (NaN sorts last) instead of numpy's row-by-row loop for long rows:
    the middle value, or the two middle values summed and halved in the input's precision,
    as np.median's mean computes them."""
    order = np.sort(x, axis=1)
    count = np.isfinite(x).sum(axis=1)
    lo = np.take_along_axis(order, ((count - 1) // 2)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(order, (count // 2)[:, None], axis=1)[:, 0]
    return np.where(count % 2 == 1, lo, (lo + hi) / x.dtype.type(2))


def camera_motion(mv: np.ndarray, mode: str) -> np.ndarray:
    """The camera's share of motion fields [F, h, w, 2] (NaN = no vector) under ``mode``."""
    f, hc, wc, _ = mv.shape
    vx, vy = mv[..., 0].reshape(f, -1), mv[..., 1].reshape(f, -1)
    valid = np.isfinite(vx)
    # frames without any vector (all intra blocks) have no camera motion to remove
    empty = ~valid.any(1)
    vx, vy = np.where(empty[:, None], 0.0, vx), np.where(empty[:, None], 0.0, vy)
    if mode == "mean":
        cam = np.stack([np.nanmean(vx, 1), np.nanmean(vy, 1)], 1)
        return np.broadcast_to(cam[:, None, None, :], mv.shape)
    med = np.stack([row_nanmedian(vx), row_nanmedian(vy)], 1)
    if mode == "median":
        return np.broadcast_to(med[:, None, None, :], mv.shape)
    design = _design(hc, wc, mode)
    ax, ay = design[:2]
    vx0, vy0 = np.nan_to_num(vx), np.nan_to_num(vy)
    # start from the median translation, then alternate fit / keep the best-fitting 70%
    err = np.hypot(vx0 - med[:, :1], vy0 - med[:, 1:])
    for _ in range(TRIM_STEPS):
        params = _solve(design, vx0, vy0, _keep_smallest(err, valid, TRIM_KEEP))
        px, py = params @ ax.T, params @ ay.T
        err = np.hypot(vx0 - px, vy0 - py)
    params = _solve(design, vx0, vy0, _keep_smallest(err, valid, TRIM_KEEP))
    cam = np.stack([params @ ax.T, params @ ay.T], -1).reshape(f, hc, wc, 2)
    # too few vectors for a model: the median translation, as upstream does
    few = valid.sum(1) < MIN_FIT_POINTS
    cam[few] = med[few][:, None, None, :]
    return cam


def _box_mean(x: np.ndarray, k: int) -> np.ndarray:
    """k x k mean over the last two axes with edge padding (integral image)."""
    pad = k // 2
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad + 1, pad), (pad + 1, pad)], mode="edge")
    xp[..., 0, :] = 0
    xp[..., :, 0] = 0
    ii = xp.cumsum(-2).cumsum(-1)
    s = ii[..., k:, k:] - ii[..., :-k, k:] - ii[..., k:, :-k] + ii[..., :-k, :-k]
    return s / float(k * k)


def local_variance(x: np.ndarray, k: int) -> np.ndarray:
    """Variance in a k x k window over the last two axes (edge padded), >= 0."""
    x = x.astype(np.float64)
    return np.maximum(_box_mean(x * x, k) - _box_mean(x, k) ** 2, 0.0).astype(np.float32)


def normalise(score: np.ndarray, floor: float) -> np.ndarray:
    """Divide each frame [F, ...] by its 95th percentile (at least ``floor``), clip to [0, 1]."""
    flat = score.reshape(score.shape[0], -1)
    scale = np.maximum(np.percentile(flat, PERCENTILE, axis=1), floor).astype(np.float32)
    return np.clip(score / scale.reshape(-1, *([1] * (score.ndim - 1))), 0.0, 1.0)


def int_percentile(values: np.ndarray, q: float) -> np.ndarray:
    """``np.percentile(values[f], q)`` (linear method) per frame of small non-negative
    integers [F, ...], from per-frame histograms: exact, and far cheaper than sorting."""
    f = values.shape[0]
    flat = values.reshape(f, -1)
    n, top = flat.shape[1], int(flat.max()) + 1
    # one small bincount per frame: an [F * N] offset index array would cost more than all
    counts = np.stack([np.bincount(row, minlength=top) for row in flat])
    cum = counts.cumsum(axis=1)
    rank = (n - 1) * q / 100.0
    lo = int(np.floor(rank))
    v_lo = (cum <= lo).sum(axis=1)  # the lo-th smallest value (0-based)
    v_hi = (cum <= min(lo + 1, n - 1)).sum(axis=1)
    return v_lo + (rank - lo) * (v_hi - v_lo)


def _scaled(levels: np.ndarray, scale: np.ndarray, gain: float,
            out: Optional[np.ndarray] = None) -> np.ndarray:
    """gain * min(levels / scale_f, 1) per frame [F, ...] as float32, in one buffer (``out``
    when given)."""
    out = np.empty(levels.shape, dtype=np.float32) if out is None else out
    factor = (gain / scale.astype(np.float64)).astype(np.float32)
    np.multiply(levels, factor.reshape(-1, *([1] * (levels.ndim - 1))), out=out)
    return np.minimum(out, np.float32(gain), out=out)


def motion_energy(mv: np.ndarray, opts: CodecOptions) -> np.ndarray:
    """Normalised motion energy [F, h, w] on the motion-cell grid; 0 where no vector."""
    rel = mv - camera_motion(mv, opts.mv_compensate) if opts.mv_compensate != "none" else mv
    mag = np.nan_to_num(np.hypot(rel[..., 0], rel[..., 1]))
    if opts.mv_use_inconsistency:
        mag = local_variance(mag, opts.mv_incon_ksize)
    return normalise(mag, opts.mv_floor)


def residual_energy(res: np.ndarray, use_grad: bool, gain: float = 1.0,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    """Normalised residual energy [F, H, W], times ``gain``: |r|, or the mean of |d/dx| and
    |d/dy| of r (written into ``out`` [F, H, W] float32 when given).

    Both are integer-valued (the gradient in half levels), so percentiles come from
    per-frame histograms instead of sorting. (``gain`` lets the weighted fusion skip a pass.)
    """
    if not use_grad:
        levels = np.abs(res)
        div = 1.0
    else:  # |gx| + |gy| in whole levels; the score is half of it
        r = np.pad(res.astype(np.int16), ((0, 0), (1, 1), (1, 1)), mode="edge")
        levels = np.abs(r[:, 1:-1, 2:] - r[:, 1:-1, :-2]) + np.abs(r[:, 2:, 1:-1] - r[:, :-2, 1:-1])
        div = 2.0
    scale = np.maximum(int_percentile(levels, PERCENTILE) / div, RES_FLOOR)
    return _scaled(levels, scale * div, gain, out)


def residual_gain(opts: CodecOptions) -> float:
    """The weight the fusion gives the residual map (folded into its normalisation)."""
    return opts.w_res / (opts.w_mv + opts.w_res) if opts.fuse_mode == "weighted" else 1.0


def fuse(mv: np.ndarray, res: np.ndarray, opts: CodecOptions) -> np.ndarray:
    """Fuse motion energy on cells [F, h, w] with residual energy [F, H, W] (H, W multiples
    of CELL; already times :func:`residual_gain`), in place in ``res``: weighted mean, max,
    clipped sum or geometric mean. Returns values in [0, 1]."""
    f, h, w = res.shape
    # the cell grid widened to pixels, broadcast over each cell's CELL rows (cheaper than
    # building the full-resolution motion map)
    rows, m = res.reshape(f, h // CELL, CELL, w), np.repeat(mv, CELL, axis=2)[:, :, None, :]
    if opts.fuse_mode == "max":
        np.maximum(rows, m, out=rows)
    elif opts.fuse_mode == "sum":
        np.add(rows, m, out=rows)
        np.minimum(res, 1.0, out=res)
    elif opts.fuse_mode == "geomean":
        np.multiply(rows, m, out=rows)
        np.sqrt(res, out=res)
    else:  # the residual already carries its weight
        np.add(rows, (m * (opts.w_mv / (opts.w_mv + opts.w_res))).astype(np.float32), out=rows)
    return res


def center_weight(h: int, w: int, sigma_frac: float) -> np.ndarray:
    """Centred Gaussian [H, W] with peak 1 and sigma ``sigma_frac * min(H, W)`` pixels."""
    sigma = max(sigma_frac * min(h, w), 1.0)
    yy = (np.arange(h, dtype=np.float32) - (h - 1) / 2) ** 2
    xx = (np.arange(w, dtype=np.float32) - (w - 1) / 2) ** 2
    return np.exp(-0.5 * (yy[:, None] + xx[None, :]) / sigma**2)


@lru_cache(maxsize=8)
def _prior_gain(h: int, w: int, strength: float, sigma_frac: float) -> np.ndarray:
    """``1 + strength * center_weight`` [H, W] float32 (read-only: one per frame size)."""
    gain = 1.0 + strength * center_weight(h, w, sigma_frac)
    gain.setflags(write=False)
    return gain


def _frames(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``x[idx]``, as a view when ``idx`` is a contiguous run (the usual 1..T-1)."""
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return x[idx[0]:idx[0] + idx.size]
    return x[idx]


def saliency(field: MotionField, opts: CodecOptions) -> Tuple[np.ndarray, np.ndarray]:
    """(inter-frame numbers [F], their saliency float32 [F, H, W] in [0, 1]); the other
    (intra) frames score 0 and are not materialised."""
    _, h, w = field.residual.shape
    inter = np.flatnonzero(~field.intra)
    if inter.size == 0:
        return inter, np.zeros((0, h, w), dtype=np.float32)
    mv = motion_energy(_frames(field.mv, inter), opts)
    # percentiles over the frame itself, written into whole cells so that motion broadcasts
    # over them; what lies past the frame is cropped after the (pixel-wise) fusion, so it
    # is left at zero rather than filled
    res = np.zeros((inter.size, h + -h % CELL, w + -w % CELL), dtype=np.float32)
    residual_energy(_frames(field.residual, inter), opts.res_use_grad, residual_gain(opts),
                    out=res[:, :h, :w])
    fused = fuse(mv, res, opts)[:, :h, :w]
    if opts.center_prior > 0:
        fused *= _prior_gain(h, w, opts.center_prior, opts.center_sigma)
        np.minimum(fused, 1.0, out=fused)
    return inter, fused
