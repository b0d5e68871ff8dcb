"""Motion vectors and motion-compensated luma residuals of a canonical H.264 re-encode.

Two ways of feeding it (``--mv_reference``): ``source`` codes each sampled frame after its own
source predecessor (:func:`source_rate_field`), so its vectors span one source frame as in
the published pipeline's HEVC stream; ``sampled`` codes the sampled frames one after another
(:func:`motion_field`), so a vector spans the gap between two sampled frames.

FFmpeg exports motion vectors for H.264 and MPEG-4 Part 2 but not for HEVC, VP9 or AV1,
and it never exports residuals. So whatever the input codec, the sampled frames are
re-encoded in memory (from the decoder's own luma) to one canonical luma-only stream: frame 0 intra, every other frame
a P-frame with one reference, integer-pel motion search, no weighted prediction, fixed QP,
single-threaded (x264 is then bit-exact from run to run, which keeps caches reproducible).
Its vectors are read back with ``flags2=+export_mvs`` under slice threading (frame
threading drops or alters vectors on some frames), and the residual is computed here as
``luma - reference luma displaced by the block's vector``, at integer pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional, Sequence, Tuple

import numpy as np

# motion vectors live on a grid of CELL x CELL pixel cells: FFmpeg exports H.264 vectors
# per 16x16, 16x8, 8x16 or 8x8 block, so no exported block is ever split
CELL = 8

# every setting that shapes the stream (all are part of the cache key). The stream is luma
# only (4:0:0): chroma plays no part in the analysis, and skipping it halves the cost.
X264_PARAMS = ("keyint=infinite:min-keyint=1:scenecut=0:bframes=0:ref=1:weightp=0:"
               "subme=0:me=dia:partitions=p8x8:8x8dct=0:cabac=0:no-deblock=1:aq-mode=0:"
               "mbtree=0:rc-lookahead=0:trellis=0:psy=0:log-level=none")
X264_QP = 20


@dataclass
class MotionField:
    """What the canonical re-encode says about T frames of size H x W.

    ``mv``: float32 [T, ceil(H/CELL), ceil(W/CELL), 2] (dx, dy) in pixels from each cell to
    its reference, NaN where no vector exists (intra frame, intra blocks).
    ``residual``: int16 [T, H, W], luma minus its motion-compensated prediction (0 on intra
    frames). ``intra``: bool [T], frames coded without reference.
    """

    mv: np.ndarray
    residual: np.ndarray
    intra: np.ndarray


def _shrinker(size: Optional[Tuple[int, int]], h: int, w: int):
    """Frame -> frame at ``size`` (h, w) in luma: swscale's area filter with its bit-exact,
    accurately rounded path, one thread (the same bytes on every CPU, so caches agree), or
    None at the frames' own size."""
    if size is None or tuple(size) == (h, w):
        return None
    from av.video.reformatter import Interpolation, VideoReformatter

    if size[0] > h or size[1] > w:
        raise ValueError(f"analysis size {tuple(size)} is larger than the frames ({h}, {w})")
    flags = Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
    scaler = VideoReformatter()
    return lambda frame: scaler.reformat(frame, width=size[1], height=size[0], format="gray",
                                         interpolation=flags, threads=1)


def _video_frame(img: np.ndarray, fmt: str):
    """A VideoFrame of ``img``: luma is wrapped in place (the encoder or the scaler copies it
    anyway; same bytes, no copy of our own), RGB is copied as PyAV converts it."""
    import av

    if fmt == "gray" and img.flags.c_contiguous:
        return av.VideoFrame.from_numpy_buffer(img, format="gray")
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=fmt)


def encode_canonical(frames: Sequence[np.ndarray], size: Optional[Tuple[int, int]] = None) -> List:
    """Encode uint8 luma [H, W] (or RGB [H, W, 3], converted to luma) frames (an array
    [T, ...] or a sequence of frames) as the canonical H.264 packets (luma only), downscaled
    to ``size`` (h, w) first when given."""
    import av

    t, (h, w) = len(frames), frames[0].shape[:2]
    fmt = "gray" if frames[0].ndim == 2 else "rgb24"
    shrink = _shrinker(size, h, w)
    out_h, out_w = (h, w) if shrink is None else size
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = out_w, out_h, "gray"
    enc.time_base, enc.framerate = Fraction(1, 25), Fraction(25)
    enc.thread_count = 1
    enc.options = {"preset": "ultrafast", "qp": str(X264_QP), "x264-params": X264_PARAMS}
    packets = []
    for i in range(t):
        frame = _video_frame(frames[i], fmt)
        frame = frame if shrink is None else shrink(frame)
        frame.pts = i
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))
    return packets


def _luma(frame) -> np.ndarray:
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _count_error(got: int, expected: int) -> RuntimeError:
    return RuntimeError(f"canonical re-encode returned {got} frames for {expected}")


def decode_with_vectors(packets: List, expected: int, wanted: Optional[np.ndarray] = None
                        ) -> Tuple[np.ndarray, List, np.ndarray]:
    """Decode canonical packets: (luma uint8 [T, H, W], per-frame vector arrays, intra [T]).
    ``wanted``: bool [T], the frames whose vectors are read (default: all; others get None)."""
    import av

    dec = av.CodecContext.create("h264", "r")
    dec.options = {"flags2": "+export_mvs"}
    dec.thread_type = "SLICE"
    dec.thread_count = 1
    luma, vectors, intra = None, [], []
    for packet in [*packets, None]:
        for frame in dec.decode(packet):
            k = len(vectors)
            if k >= expected:
                raise _count_error(k + 1, expected)
            if luma is None:  # filled in place: no per-frame copy to stack afterwards
                luma = np.empty((expected, frame.height, frame.width), dtype=np.uint8)
            luma[k] = _luma(frame)
            side = frame.side_data.get("MOTION_VECTORS") if wanted is None or wanted[k] else None
            vectors.append(side.to_ndarray() if side is not None else None)
            intra.append(frame.pict_type == av.video.frame.PictureType.I)
    if len(vectors) != expected:
        raise _count_error(len(vectors), expected)
    return luma, vectors, np.asarray(intra, dtype=bool)


def paint_vectors(vectors: List, t: int, h: int, w: int) -> np.ndarray:
    """Motion field [T, ceil(H/CELL), ceil(W/CELL), 2] in pixels from exported block vectors.

    FFmpeg gives each block's centre (dst_x, dst_y), size (w, h) and motion in units of
    1/motion_scale pixel; the block at dst is predicted from dst + motion. Cells without a
    past-reference vector stay NaN.
    """
    hc, wc = -(-h // CELL), -(-w // CELL)
    field = np.full((t, hc + 2, wc + 2, 2), np.nan, dtype=np.float32)  # margin: edge macroblocks
    rows = [(i, v) for i, v in enumerate(vectors) if v is not None and len(v)]
    if not rows:
        return field[:, :hc, :wc]
    frame_of = np.concatenate([np.full(len(v), i) for i, v in rows])
    mv = np.concatenate([v for _, v in rows])
    past = mv["source"] < 0
    if not past.all():  # B-frame style future references cannot occur in our stream; skip any
        frame_of, mv = frame_of[past], mv[past]
    bw, bh = mv["w"].astype(np.int64), mv["h"].astype(np.int64)
    if np.any(bw % CELL) or np.any(bh % CELL):
        raise RuntimeError(f"exported block sizes {sorted(set(zip(bw, bh)))} are not multiples "
                           f"of the {CELL}-pixel motion cell")
    scale = np.maximum(mv["motion_scale"].astype(np.float32), 1.0)
    vec = np.stack([mv["motion_x"] / scale, mv["motion_y"] / scale], axis=1)
    x0 = (mv["dst_x"].astype(np.int64) - bw // 2) // CELL
    y0 = (mv["dst_y"].astype(np.int64) - bh // 2) // CELL
    # expand every block into its cells, then paint all cells in one assignment
    across = bw // CELL
    count = across * (bh // CELL)
    owner = np.repeat(np.arange(count.size), count)
    local = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
    yi = np.clip(y0[owner] + local // across[owner], 0, hc + 1)
    xi = np.clip(x0[owner] + local % across[owner], 0, wc + 1)
    flat = (frame_of[owner] * (hc + 2) + yi) * (wc + 2) + xi
    field.reshape(-1, 2)[flat] = vec[owner]
    return field[:, :hc, :wc]


def pad_to_cells(img: np.ndarray) -> np.ndarray:
    """Edge-pad the last two axes up to whole CELL x CELL cells."""
    h, w = img.shape[-2:]
    extra = [(0, 0)] * (img.ndim - 2) + [(0, -h % CELL), (0, -w % CELL)]
    return np.pad(img, extra, mode="edge") if any(e[1] for e in extra) else img


def _dominant(disp: np.ndarray) -> np.ndarray:
    """The most frequent (dx, dy) of a frame's cell displacements [h, w, 2]."""
    flat = disp.reshape(-1, 2)
    span = int(np.abs(flat).max()) * 2 + 1
    # a histogram of the keys: argmax takes the smallest of equally frequent keys, as a
    # sort-based count would
    key = int(np.argmax(np.bincount((flat[:, 1] + span // 2) * span + flat[:, 0] + span // 2)))
    return np.array([key % span - span // 2, key // span - span // 2])


def _cells(img: np.ndarray, hc: int, wc: int) -> np.ndarray:
    """View [hc*CELL, wc*CELL] as [hc, wc, CELL, CELL] (cell rows, cell columns, pixels)."""
    return img.reshape(hc, CELL, wc, CELL).transpose(0, 2, 1, 3)


def _cell_residual(cur: np.ndarray, ref: np.ndarray, cells: np.ndarray,
                   origin: np.ndarray) -> np.ndarray:
    """Residual int16 of one padded frame [hp, wp] against its reference, per CELL cell."""
    hp, wp = cur.shape
    hc, wc = hp // CELL, wp // CELL
    disp = np.nan_to_num(cells).round().astype(np.int64)  # [hc, wc, (dx, dy)]
    # clamping a source into a margin of at least one cell leaves its pixels unchanged
    src = np.clip(origin + disp, -CELL, [wp, hp])
    margin = int(max(CELL, np.abs(src - origin).max()))
    ext = np.pad(ref, margin, mode="edge")
    dx, dy = _dominant(src - origin)
    res = np.subtract(cur, ext[margin + dy:margin + dy + hp, margin + dx:margin + dx + wp],
                      dtype=np.int16)
    other = np.any(src - origin != (dx, dy), axis=-1)
    if other.any():
        windows = np.lib.stride_tricks.sliding_window_view(ext, (CELL, CELL))
        ys, xs = src[other, 1] + margin, src[other, 0] + margin
        _cells(res, hc, wc)[other] = _cells(cur, hc, wc)[other] - windows[ys, xs].astype(np.int16)
    return res


def compensated_residual(luma: np.ndarray, field: np.ndarray, intra: np.ndarray,
                         frames: Optional[np.ndarray] = None) -> np.ndarray:
    """Residual int16 [len(frames), H, W] of ``frames`` (default: all): luma minus the previous
    frame's luma shifted by the vectors (0 for intra frames).

    Per CELL x CELL cell (a cell never straddles two blocks) the prediction is the reference
    cell the vector points to, edge-extended beyond the frame as in H.264. Cells without a
    vector (intra blocks) are predicted from the co-located pixels. For speed, the whole
    frame is first predicted with its most common displacement (the still background, or
    the pan), and only the cells that move otherwise are gathered one by one.
    """
    t, h, w = luma.shape
    frames = np.arange(t) if frames is None else np.asarray(frames)
    padded = pad_to_cells(luma)
    hp, wp = padded.shape[1:]
    res = np.zeros((frames.size, hp, wp), dtype=np.int16)
    origin = np.stack(np.meshgrid(np.arange(wp // CELL) * CELL, np.arange(hp // CELL) * CELL), -1)
    for k, i in enumerate(frames):  # frame by frame: the working set stays in cache
        if i > 0 and not intra[i]:
            res[k] = _cell_residual(padded[i], padded[i - 1], field[i], origin)
    return res[:, :h, :w]


def _check_frames(frames: Sequence[np.ndarray]) -> None:
    first = frames[0] if len(frames) else np.zeros(0)
    if first.ndim not in (2, 3) or first.shape[2:] not in ((), (3,)) or first.dtype != np.uint8 \
            or any(f.shape != first.shape or f.dtype != first.dtype for f in frames):
        raise ValueError(f"frames must be uint8 [T, H, W] luma or [T, H, W, 3] RGB, got "
                         f"{first.dtype} {(len(frames), *first.shape)}")


def _coded(frames: Sequence[np.ndarray], size: Optional[Tuple[int, int]] = None,
           wanted: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(luma, vector field, intra) of the canonical re-encode of ``frames`` (at ``size``);
    the field is painted for the ``wanted`` frames only (bool [T], default all), NaN elsewhere."""
    _check_frames(frames)
    t = len(frames)
    luma, vectors, intra = decode_with_vectors(encode_canonical(frames, size), t, wanted)
    intra[0] = True  # the first frame has no reference whatever the stream says
    field = paint_vectors(vectors, t, *luma.shape[1:])
    field[intra] = np.nan
    return luma, field, intra


def motion_field(frames: np.ndarray, size: Optional[Tuple[int, int]] = None) -> MotionField:
    """Re-encode uint8 luma [T, H, W] (or RGB [T, H, W, 3]) frames (downscaled to ``size``
    (h, w) when given) and return their motion field and residual, each frame against the one
    before it."""
    luma, field, intra = _coded(frames, size)
    return MotionField(mv=field, residual=compensated_residual(luma, field, intra), intra=intra)


def source_rate_field(previous: Sequence[np.ndarray], frames: Sequence[np.ndarray],
                      size: Optional[Tuple[int, int]] = None) -> MotionField:
    """Motion and residual of each luma frame [T, H, W] (an array or a sequence of frames)
    against its own predecessor in the source, ``previous`` [T, H, W]: the stream interleaves
    them (predecessor, frame, ...), one reference per P-frame, so every frame's vectors span
    one source frame, whatever the distance between the sampled frames. (The predecessors
    are P-frames too, predicted from the frame before them: their vectors are not read, and
    P-coding them costs a tenth of intra coding to encode and decode.) ``size``: as in
    :func:`motion_field`."""
    shapes = [(len(x), *x[0].shape) if len(x) else (0,) for x in (previous, frames)]
    if shapes[0] != shapes[1]:
        raise ValueError(f"predecessors {shapes[0]} and frames {shapes[1]} differ")
    t = len(frames)
    pairs = [f for pair in zip(previous, frames) for f in pair]  # views: nothing is copied
    odd = np.arange(1, 2 * t, 2)
    luma, field, intra = _coded(pairs, size, np.arange(2 * t) % 2 == 1)
    return MotionField(mv=field[odd], residual=compensated_residual(luma, field, intra, odd),
                       intra=intra[odd])
