"""Clip transforms in torch (CPU path); the DALI pipeline in dali.py applies the same ops.

resize shorter side (bicubic) -> crop -> (train) colour jitter -> normalise -> [C, T, H, W].
Random jitter parameters are drawn here, per sample, from a seeded generator and handed to
whichever pipeline runs, so torch and DALI apply the very same jitter.

Two behaviours are data of :class:`TransformSpec` (filled from the protocol):
``round_pixels`` keeps frames as 8-bit levels after resize+crop and after every colour op, as
the published DALI pipeline does (uint8 in, uint8 out); ``brightness_mode`` reads the brightness
draw as DALI's multiplier ("multiply", as published) or as an additive shift ("shift").
"""
from __future__ import annotations

import math
import threading
from dataclasses import astuple, dataclass
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np
import torch


@dataclass(frozen=True)
class JitterParams:
    """One sample's colour jitter, as upstream: each op applied with p=0.8, BGR swap p=0.1."""

    brightness_contrast: bool = False
    contrast: float = 1.0
    brightness: float = 0.0  # TransformSpec.brightness_mode says how this draw is applied
    saturation_on: bool = False
    saturation: float = 1.0
    hue_on: bool = False
    hue: float = 0.0  # degrees, as DALI's hue operator takes it
    bgr: bool = False

    def as_array(self) -> np.ndarray:
        return np.asarray(astuple(self), dtype=np.float32)


def draw_jitter(rng: np.random.Generator) -> JitterParams:
    """Draw one sample's jitter with upstream's probabilities and ranges."""
    return JitterParams(
        brightness_contrast=bool(rng.random() < 0.8),
        contrast=float(rng.uniform(0.6, 1.4)),
        brightness=float(rng.uniform(-0.125, 0.125)),
        saturation_on=bool(rng.random() < 0.8),
        saturation=float(rng.uniform(0.6, 1.4)),
        hue_on=bool(rng.random() < 0.8),
        hue=float(rng.uniform(-0.2, 0.2)),
        bgr=bool(rng.random() < 0.1),
    )


# ----------------------------------------------------------------------------------------------
# Deterministic transforms (torch, CPU). Every step mirrors what the DALI pipeline in dali.py
# computes, down to DALI's float32 filter tables, so both loaders give the same tensors.
# ----------------------------------------------------------------------------------------------

# DALI tabulates its cubic window (Keys, a = -0.5) at 129 points over [-2, 2] and interpolates
# the table linearly; using the exact polynomial instead differs by up to ~2e-4 per weight.
_CUBIC_TABLE_SIZE = 129
# DALI's RGB -> YIQ matrix; DALI (2.x) goes back with its exact inverse, not the rounded
# textbook YIQ -> RGB table (measured: the rounded table is off by up to 0.7 of 255).
_RGB2YIQ = np.array([[.299, .587, .114], [.596, -.274, -.321], [.211, -.523, .311]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)
_CONTRAST_CENTRE = 128.0  # DALI's default centre for uint8 data; our data stay in 0..255

# brightness_mode -> (DALI ``brightness`` multiplier, ``brightness_shift`` as a fraction of 0..255)
# for a draw ``b``; works on floats and on DALI graph nodes alike.
BRIGHTNESS_MODES = {
    "multiply": lambda b: (b, 0.0),  # published: fn.brightness_contrast(..., brightness=b)
    "shift": lambda b: (1.0, b),  # ours: an additive shift of b * 255 levels
}


@dataclass(frozen=True)
class TransformSpec:
    """Crop size, resize target of the shorter side, normalisation (0..1 scale), and how the
    pixels are kept between ops (``round_pixels``) and brightness is applied (``brightness_mode``,
    a key of :data:`BRIGHTNESS_MODES`). The defaults are the float pipeline with an additive
    brightness shift; a run passes both values from its resolved protocol.
    """

    input_size: int
    short_side: int
    mean: tuple
    std: tuple
    round_pixels: bool = False
    brightness_mode: str = "shift"

    def __post_init__(self):
        if self.input_size <= 0 or self.short_side < self.input_size:
            raise ValueError(f"TransformSpec: need 0 < input_size <= short_side, got input_size="
                             f"{self.input_size}, short_side={self.short_side}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"TransformSpec: mean and std need 3 values, std > 0; got "
                             f"mean={self.mean}, std={self.std}")
        if self.brightness_mode not in BRIGHTNESS_MODES:
            raise ValueError(f"TransformSpec: brightness_mode must be one of "
                             f"{sorted(BRIGHTNESS_MODES)}, got {self.brightness_mode!r}")
        if not isinstance(self.round_pixels, bool):
            raise ValueError(f"TransformSpec: round_pixels must be True or False, got "
                             f"{self.round_pixels!r}")


def _cubic_table() -> np.ndarray:
    x = (np.float32(4) * (np.arange(_CUBIC_TABLE_SIZE, dtype=np.float32) - np.float32(64))
         / np.float32(128))
    a = np.abs(x)
    a2, a3 = a * a, a * a * a
    inner = np.float32(1.5) * a3 - np.float32(2.5) * a2 + np.float32(1.0)
    outer = np.float32(-0.5) * a3 + np.float32(2.5) * a2 - np.float32(4.0) * a + np.float32(2.0)
    return np.where(a >= 2, np.float32(0), np.where(a > 1, outer, inner)).astype(np.float32)


_CUBIC = _cubic_table()


def _table_lookup(x: np.ndarray) -> np.ndarray:
    """The tabulated window at fractional table positions ``x`` (zero outside the table)."""
    x0 = np.floor(x).astype(np.int64)
    d = (x - x0.astype(np.float32)).astype(np.float32)
    n = _CUBIC_TABLE_SIZE
    f0 = np.where((x0 >= 0) & (x0 < n), _CUBIC[np.clip(x0, 0, n - 1)], np.float32(0))
    f1 = np.where((x0 + 1 >= 0) & (x0 + 1 < n), _CUBIC[np.clip(x0 + 1, 0, n - 1)], np.float32(0))
    inside = (x > -1) & (x < n)
    return np.where(inside, f0 + d * (f1 - f0), np.float32(0)).astype(np.float32)


def resize_plan(in_size: int, in_short: int, short_side: int) -> Tuple[int, float, float]:
    """One axis of DALI's ``resize_shorter``: (output size, ROI start, input step per output).

    The scale is ``short_side / in_short`` on both axes; the output size is rounded and, as
    DALI's default ``subpixel_scale`` does, the input ROI is shrunk or grown about its centre so
    that the scale stays exact. Values are rounded to float32 where DALI holds them in float32.
    """
    scale = np.float32(short_side) / np.float32(in_short)
    out_f = float(np.float32(in_size * float(scale)))
    out = max(1, int(math.floor(abs(out_f) + 0.5)))
    lo, hi = 0.0, float(in_size)
    if out != out_f:
        adjust = out / out_f
        centre = (lo + hi) * 0.5
        lo, hi = centre + (lo - centre) * adjust, centre + (hi - centre) * adjust
    lo32, hi32 = np.float32(lo), np.float32(hi)
    return out, float(lo32), float(np.float32((hi32 - lo32) / np.float32(out)))


@lru_cache(maxsize=32)  # a few clip sizes per dataset; each entry is a dense [out, in] matrix
def resample_weights(in_size: int, out_size: int, origin: float, step: float) -> np.ndarray:
    """[out_size, in_size] float32 weights of DALI's CPU cubic resampling along one axis.

    Output pixel x is centred at input ``origin + (x + 0.5) * step - 0.5``; when shrinking
    (step > 1) the window is widened by ``step`` (antialiasing); each row is normalised to sum
    to one and taps beyond the border are clamped to the edge pixel (DALI replicates edges).
    """
    f32 = np.float32
    step, origin = f32(step), f32(origin)
    width = max(f32(4), f32(4) * step)
    table_step = f32(128) / width  # table entries per input pixel
    anchor = f32(64) / table_step
    support = int(math.ceil(f32(128) / table_step))
    start = f32(origin + f32(0.5) * step - f32(0.5) - anchor)
    pos = (np.arange(out_size, dtype=f32) * step + start).astype(f32)
    first = np.ceil(pos)
    frac = (first - pos).astype(f32)
    taps = np.arange(support, dtype=f32)
    coeffs = _table_lookup(((frac[:, None] + taps[None]) * table_step).astype(f32))
    total = np.zeros(out_size, f32)
    for k in range(support):  # sequential float32 sum, as DALI normalises
        total = (total + coeffs[:, k]).astype(f32)
    coeffs = (coeffs / np.where(total == 0, f32(1), total)[:, None]).astype(f32)
    cols = np.clip(first.astype(np.int64)[:, None] + np.arange(support)[None], 0, in_size - 1)
    weights = np.zeros((out_size, in_size), np.float64)
    np.add.at(weights, (np.repeat(np.arange(out_size), support), cols.reshape(-1)), coeffs.reshape(-1))
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


def crop_start(size: int, crop: int, pos: float) -> int:
    """First pixel of a ``crop``-wide window at relative position ``pos`` (DALI's rounding)."""
    if not 0.0 <= pos <= 1.0:
        raise ValueError(f"crop position must be in [0, 1], got {pos}")
    if crop > size:
        raise ValueError(f"crop of {crop} pixels does not fit in {size}")
    return int(math.floor(float(np.float32(pos) * np.float32(size - crop)) + 0.5))


# Output rows per band of the banded resize: a band reads only the input rows its outputs
# need, so a pass costs ~(band x step + filter support) multiply-adds per output instead of
# the whole input axis; 32 measured fastest of 8/16/32/64 at 320x240 and 640x360.
_BAND = 32


@dataclass(frozen=True)
class AxisPlan:
    """One axis of resize-then-crop: the input window ``[start, stop)`` that the kept output
    pixels read (filter support included) and, per band of kept outputs, ``(first output,
    end output, first input, end input, weights [outputs, inputs])``, inputs counted from
    ``start``. The weights are the rows of the full-axis resampling matrix
    (:func:`resample_weights`) with only their zero columns left out."""

    start: int
    stop: int
    bands: Tuple[Tuple[int, int, int, int, torch.Tensor], ...]


def _support(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per row, the first input with a nonzero weight and one past the last."""
    nonzero = rows != 0
    return nonzero.argmax(1), rows.shape[1] - nonzero[:, ::-1].argmax(1)


@lru_cache(maxsize=64)  # validation: a few clip sizes at the centre crop; training crops are random and miss
def axis_plan(in_size: int, in_short: int, short_side: int, crop: int, pos: float) -> AxisPlan:
    """The :class:`AxisPlan` of resizing an axis of ``in_size`` pixels (shorter side
    ``in_short``) as DALI's ``resize_shorter`` to ``short_side``, then keeping the ``crop``
    outputs from :func:`crop_start` at ``pos``."""
    out, origin, step = resize_plan(in_size, in_short, short_side)
    first = crop_start(out, crop, pos)
    rows = resample_weights(in_size, out, origin, step)[first:first + crop]
    lo, hi = _support(rows)
    start, bands = int(lo.min()), []
    for a in range(0, crop, _BAND):
        b = min(a + _BAND, crop)
        i0, i1 = int(lo[a:b].min()), int(hi[a:b].max())
        weights = torch.tensor(rows[a:b, i0:i1])  # a copy: the cached matrix stays read-only
        bands.append((a, b, i0 - start, i1 - start, weights))
    return AxisPlan(start, int(hi.max()), tuple(bands))


# Per-thread scratch tensors for resize_crop's intermediates (the float window, the column
# pass): reused from clip to clip, because fresh tens-of-MB allocations come back from the
# allocator as new pages, and faulting them in cost ~2 ms a clip at 320x240 (measured). Up to
# _SCRATCH_MAX elements each (64 MB of float32: 16 frames of 640x360); larger windows, where
# the faults weigh less against the arithmetic, are allocated per call.
_SCRATCH = threading.local()
_SCRATCH_MAX = 16 << 20


def _scratch(name: str, shape: Tuple[int, ...]) -> torch.Tensor:
    """A float32 tensor of ``shape`` private to this thread, reused across calls by ``name``."""
    held = getattr(_SCRATCH, name, None)
    numel = math.prod(shape)
    if numel > _SCRATCH_MAX:
        return torch.empty(shape, dtype=torch.float32)
    if held is None or held.numel() < numel:
        held = torch.empty(numel, dtype=torch.float32)
        setattr(_SCRATCH, name, held)
    return held[:numel].view(shape)


def _resample_columns(x: torch.Tensor, plan: AxisPlan, size: int) -> torch.Tensor:
    """[N, window] -> [N, size]: each band of outputs from its own input columns."""
    out = _scratch("columns", (x.shape[0], size))
    for a, b, i0, i1, weights in plan.bands:
        out[:, a:b] = torch.mm(x[:, i0:i1], weights.t())
    return out


def _resample_rows(x: torch.Tensor, plan: AxisPlan, out: torch.Tensor) -> torch.Tensor:
    """[B, window, W] -> ``out`` [B, size, W]: each band of output rows from its own input rows."""
    for a, b, i0, i1, weights in plan.bands:
        out[:, a:b] = torch.matmul(weights, x[:, i0:i1])
    return out


def resize_crop(frames: torch.Tensor, spec: TransformSpec, crop_pos=(0.5, 0.5),
                out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """uint8/float [T,H,W,3] -> float32 [3,T,S,S]: shorter side to ``spec.short_side`` (DALI's
    cubic, antialiased when shrinking), then the S x S window at ``crop_pos`` = (x, y); into
    ``out`` (float32 [3,T,S,S], contiguous) when given.

    Equal, to float32 round-off, to resizing the whole frame and then cropping: only the
    outputs inside the crop are computed, each from the input pixels its filter taps reach
    (:func:`axis_plan`: same scale, offset and weights); only that input window is converted
    to float. Columns first, then rows, in bands of outputs.
    """
    t, h, w, _ = frames.shape
    size, short = spec.input_size, min(h, w)
    py = axis_plan(h, short, spec.short_side, size, float(crop_pos[1]))
    px = axis_plan(w, short, spec.short_side, size, float(crop_pos[0]))
    window = frames[:, py.start:py.stop, px.start:px.stop]
    x = _scratch("window", (3, t) + tuple(window.shape[1:3]))
    x.copy_(window.permute(3, 0, 1, 2))  # uint8 -> float of the window only
    cols = _resample_columns(x.view(-1, x.shape[-1]), px, size)
    out = torch.empty((3, t, size, size), dtype=torch.float32) if out is None else out
    _resample_rows(cols.view(3 * t, -1, size), py, out.view(3 * t, size, size))
    return out


def colour_matrix(hue: float = 0.0, saturation: float = 1.0) -> np.ndarray:
    """DALI's hue/saturation matrix: to YIQ, rotate IQ by ``hue`` degrees, scale IQ, back."""
    rad = hue * math.pi / 180.0
    rot = np.eye(3)
    rot[1, 1] = rot[2, 2] = math.cos(rad)
    rot[1, 2], rot[2, 1] = math.sin(rad), -math.sin(rad)
    sat = np.diag([1.0, saturation, saturation])
    return (_YIQ2RGB @ rot @ sat @ _RGB2YIQ).astype(np.float32)


def _apply_matrix(x: torch.Tensor, m: np.ndarray) -> torch.Tensor:
    # products summed left to right per output channel, as DALI's CPU colour-twist kernel does:
    # one source fewer of float noise that could tip a value at k + 0.5 the other way
    return torch.stack([x[0] * float(r[0]) + x[1] * float(r[1]) + x[2] * float(r[2]) for r in m])


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """Float -> DALI's 8-bit level, kept as float32: round half up, saturate to [0, 255].

    DALI stores a float result as uint8 with ``ConvertSat`` (dali/core/convert.h): on CPU
    ``std::round`` (half away from zero, i.e. half up for what survives the clamp) then clamp,
    which tests/test_dali.py measures on DALI 2.4 (0.5 * 201 -> 101, 0.5 * 1 -> 1). On GPU,
    where the published runs ran, CUDA's ``__float2int_rn`` rounds half to even: the two
    differ only on values exactly at k + 0.5 (measured: ~2e-5 of resized values, ~1e-6 of
    brightness outputs), and DALI's GPU kernels sum in another float order anyway.
    """
    low = torch.floor(x)  # x - floor(x) is exact in float32 here, unlike x + 0.5
    return torch.where(x - low >= 0.5, low + 1.0, low).clamp_(0.0, 255.0)


def _clamp(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_(0.0, 255.0)


def settle_fn(spec: TransformSpec):
    """What happens to pixel values after each op: 8-bit levels, or a clamp to [0, 255]."""
    return to_levels if spec.round_pixels else _clamp


def brightness_coefficients(jitter: JitterParams, spec: TransformSpec) -> Tuple[float, float]:
    """(multiplier, addend) of DALI's ``brightness_contrast``, ``out = in * mul + add``.

    DALI: ``out = shift * R + bright * (128 + contrast * (in - 128))`` (R = 255 for uint8 output,
    1 for float; 128 = its default centre for uint8). Formed in float32 in DALI's order, which
    scales ``bright`` by R_out / R_in on the way (a round trip that can move it by one ulp).
    """
    f32 = np.float32
    bright, shift = BRIGHTNESS_MODES[spec.brightness_mode](jitter.brightness)
    span = f32(255.0 if spec.round_pixels else 1.0)
    c, centre = f32(jitter.contrast), f32(_CONTRAST_CENTRE)
    norm = f32(f32(f32(bright) * span) / span)
    add = f32(f32(f32(shift) * f32(255.0)) + f32(norm * f32(centre - f32(c * centre))))
    return float(f32(norm * c)), float(add)


def apply_jitter(x: torch.Tensor, jitter: JitterParams, spec: TransformSpec) -> torch.Tensor:
    """Colour jitter on float [3,...] RGB in 0..255; after each op the values are settled
    (:func:`settle_fn`: 8-bit levels with ``spec.round_pixels``, else clamped to [0, 255]).

    brightness/contrast: DALI's ``brightness_contrast`` (:func:`brightness_coefficients`) with
    the draw read as ``spec.brightness_mode`` says: "multiply" as published (a negative draw
    turns the clip black, but for pixels darker than 128 (1 - 1 / contrast), which end a few
    levels above 0), "shift" as an additive ``b * 255``.
    saturation / hue: DALI's YIQ colour matrices (hue in degrees). Then an optional RGB->BGR swap.
    """
    settle = settle_fn(spec)
    if jitter.brightness_contrast:
        mul, add = brightness_coefficients(jitter, spec)
        x = settle(x * mul + add)
    if jitter.saturation_on:
        x = settle(_apply_matrix(x, colour_matrix(saturation=jitter.saturation)))
    if jitter.hue_on:
        x = settle(_apply_matrix(x, colour_matrix(hue=jitter.hue)))
    if jitter.bgr:
        x = x.flip(0)
    return x


def normalise(x: torch.Tensor, spec: TransformSpec,
              out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(x / 255 - mean) / std per channel of [3, ...], computed as DALI does: (x - 255 m) / (255 s);
    into ``out`` when given (e.g. the sample's slot of a batch)."""
    shape = (3,) + (1,) * (x.dim() - 1)
    mean = torch.tensor([m * 255.0 for m in spec.mean], dtype=torch.float32).view(shape)
    inv = torch.tensor([1.0 / (s * 255.0) for s in spec.std], dtype=torch.float32).view(shape)
    return torch.sub(x, mean, out=out).mul_(inv)


def _as_frames(frames) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if not torch.is_tensor(t) or t.dtype != torch.uint8 or t.dim() != 4 or t.shape[-1] != 3:
        desc = f"{getattr(t, 'dtype', type(t))} {tuple(getattr(t, 'shape', ()))}"
        raise ValueError(f"transform_clip needs uint8 frames [T, H, W, 3], got {desc}")
    if min(t.shape[:3]) == 0:
        raise ValueError(f"transform_clip got empty frames {tuple(t.shape)}")
    return t


def transform_clip(frames, spec: TransformSpec, crop_pos=(0.5, 0.5),
                   jitter: Optional[JitterParams] = None,
                   out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """uint8 [T,H,W,3] RGB (numpy or torch) -> normalised float32 [3,T,S,S] (written into
    ``out`` when given: a batch's slot, so the batch needs no stacking copy).

    Resize the shorter side to ``spec.short_side`` (bicubic as DALI computes it, antialiased
    when shrinking), crop S x S at ``crop_pos`` = (x, y) in [0, 1] (0.5 = centre), apply
    ``jitter`` if given (see :func:`apply_jitter`), normalise with ``spec.mean``/``spec.std``.
    In float32; with ``spec.round_pixels`` the crop and every colour op end in 8-bit levels
    (:func:`to_levels`), as in the published uint8 pipeline. Matches the DALI pipeline to ~1e-5
    without rounding; with it, to the level except where a value sits on a rounding boundary.
    """
    frames = _as_frames(frames)
    own = getattr(jitter, "transform", None)
    if own is not None:  # an augmentation that makes its own crop (V-JEPA 2's, video/augment.py)
        return own(frames, spec, out)
    # the resized crop is an intermediate here (normalise writes elsewhere): reuse its memory
    size = spec.input_size
    x = resize_crop(frames, spec, crop_pos, out=_scratch("resized", (3, frames.shape[0], size, size)))
    if spec.round_pixels:  # the published resize outputs uint8; the float path keeps overshoot
        x = to_levels(x)
    if jitter is not None:
        x = apply_jitter(x, jitter, spec)
    return normalise(x, spec, out)
