"""Codec-style patch selection for one clip, with the on-disk cache around it.

The stages, each a table entry chosen by an option (never by the protocol's name):
frame ids and zeroed frames (:mod:`schedule`), motion against the source predecessor or the
previous sampled frame (``MOTION``), the map on the pixel grid as published or on motion
cells (``GRIDS``), and the top-K choice with its static fallback (:mod:`select`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from eval_encoder.codec import cache as _cache
from eval_encoder.codec import published
from eval_encoder.codec.motion import MotionField, motion_field, source_rate_field
from eval_encoder.codec.options import CodecOptionError, CodecOptions, check_options, make_options
from eval_encoder.codec.reencode import PIXELS
from eval_encoder.codec.saliency import saliency
from eval_encoder.codec.schedule import frame_ids, zeroed
from eval_encoder.codec.select import (
    FLAG_CACHE_RECOMPUTED,
    FLAG_SHORT_CLIP,
    Selection,
    choose,
    patch_scores,
)
from eval_encoder.video.dataset import FLAG_TRUNCATED
from eval_encoder.video.decode import ClipDecodeError, decode_formats, decode_picked
from eval_encoder.video.manifest import Segment
from eval_encoder.video.transforms import resize_plan

log = logging.getLogger("eval_encoder.codec")


@dataclass
class ClipFrames:
    """The sampled frames of a clip (RGB [T, H, W, 3] and the decoder's luma [T, H, W]),
    their source ids [T], the clip's frame count, and (for source-rate motion) the luma of
    each frame's source predecessor [T, H, W] (zeros where no map is made)."""

    frames: np.ndarray
    luma: np.ndarray
    ids: np.ndarray
    total: int
    previous: Optional[np.ndarray] = None
    truncated: bool = False


def _source_motion(clip: ClipFrames, live: np.ndarray,
                   size: Optional[Tuple[int, int]] = None) -> Tuple[np.ndarray, MotionField]:
    pos = np.flatnonzero(live)
    if clip.previous is None:
        raise ValueError("source-rate motion (--mv_reference source) needs each sampled "
                         "frame's predecessor")
    if not pos.size:  # every map is zero: nothing to re-encode
        return pos, None
    # lists of views: the full-resolution frames are not copied
    return pos, source_rate_field([clip.previous[i] for i in pos], [clip.luma[i] for i in pos],
                                  size)


def _sampled_motion(clip: ClipFrames, live: np.ndarray,
                    size: Optional[Tuple[int, int]] = None) -> Tuple[np.ndarray, MotionField]:
    field = motion_field(clip.luma, size)
    pos = np.flatnonzero(live & ~field.intra)
    return pos, MotionField(field.mv[pos], field.residual[pos], field.intra[pos])


# --mv_reference: (positions with a motion field, the field of those positions at ``size``)
MOTION = {"source": _source_motion, "sampled": _sampled_motion}


# a downscale that removes less than this share of the pixels costs more than it saves (its
# resampling pass, a frame size off the 8-pixel cells): at 320x240 -> 299x224 the motion
# stage took 104-111 ms instead of 98-107 ms on a real clip (CPU time, one thread)
MIN_SAVING = 0.25


def map_shape(h: int, w: int, short_side: int) -> Tuple[int, int]:
    """(h, w) of frames [h, w] resized as the pixels are (shorter side to ``short_side``,
    the transform's own rounding); the frames' own size when that would not remove at least
    MIN_SAVING of the pixels (never enlarged)."""
    short = min(h, w)
    size = resize_plan(h, short, short_side)[0], resize_plan(w, short, short_side)[0]
    return size if size[0] * size[1] <= (1 - MIN_SAVING) * h * w else (h, w)


# --map_resolution: the (h, w) the re-encode and the map work at, from the frames' (h, w)
# and the resize's shorter side. The map is pooled into patches of the resized crop, so
# detail finer than that resize reaches the picks only through the per-pixel normalisation
# and through the motion search (its measured effect: the protocol's "codec map resolution").
RESOLUTIONS = {"source": lambda h, w, short_side: (h, w), "map": map_shape}


def _pixel_scores(field: MotionField, opts: CodecOptions, crop: int, _short: int):
    """Patch sums of the published 8-bit maps (the shorter side goes to the crop size)."""
    maps = np.stack([published.frame_map(field.mv[i], field.residual[i], opts)
                     for i in range(field.residual.shape[0])])
    sums = published.patch_sums(published.resize_crop_maps(maps, crop), opts.patch_size)
    return sums.reshape(maps.shape[0], -1), float(opts.patch_size ** 2)


def _cell_scores(field: MotionField, opts: CodecOptions, crop: int, short: int):
    """Patch means (0..255) of the cell maps, resized and cropped like the pixels."""
    per_frame = (crop // opts.patch_size) ** 2
    scores = np.zeros((field.residual.shape[0], per_frame))
    inter, maps = saliency(field, opts)
    if inter.size:
        scores[inter] = patch_scores(maps, short, crop, opts.patch_size).reshape(-1, per_frame)
    return scores * 255.0, 1.0


# --map_grid: (per-patch scores [frames, patches], patch area that turns them into means)
GRIDS = {"pixel": _pixel_scores, "cell": _cell_scores}


def select_clip(clip: ClipFrames, input_size: int, opts: CodecOptions,
                short_side: Optional[int] = None) -> Selection:
    """Select ``opts.K_keep`` patches of the T x (input_size/patch_size)^2 grid of ``clip``."""
    per_frame, short_side = (input_size // opts.patch_size) ** 2, short_side or input_size
    size = RESOLUTIONS[opts.map_resolution](*clip.luma.shape[1:3], short_side)
    pos, field = MOTION[opts.mv_reference](clip, ~zeroed(clip.ids, opts.zero_frames), size)
    scores, area = np.zeros((clip.ids.size, per_frame)), 1.0
    if pos.size:
        part, area = GRIDS[opts.map_grid](field, opts, input_size, short_side)
        scores[pos] = part
    return choose(scores.reshape(-1), opts.K_keep, per_frame, opts, area)


def select_from_frames(luma: np.ndarray, K: int, patch_size: int, input_size: int,
                       opts: CodecOptions, short_side: Optional[int] = None,
                       previous: Optional[np.ndarray] = None,
                       ids: Optional[np.ndarray] = None) -> Selection:
    """Select K patches from uint8 luma frames [T,H,W]. ``ids``: their source frame numbers
    (default 0..T-1); ``previous``: the luma of each frame's source predecessor, needed by
    ``mv_reference='source'``."""
    ids = np.arange(luma.shape[0]) if ids is None else np.asarray(ids, dtype=np.int64)
    clip = ClipFrames(luma, luma, ids, int(ids.max()) + 1, previous)
    opts = opts if (opts.K_keep, opts.patch_size) == (K, patch_size) else \
        make_options(**{**opts.__dict__, "K_keep": K, "patch_size": patch_size})
    return select_clip(clip, input_size, opts, short_side)


@dataclass
class Selector:
    """Selection with fixed parameters, reading and filling the cache when it has a folder."""

    num_frames: int
    input_size: int
    opts: CodecOptions
    short_side: Optional[int] = None

    def __post_init__(self) -> None:
        check_options(self.opts)
        p = self.opts.patch_size
        if self.input_size % p:
            raise CodecOptionError(f"input_size {self.input_size} is not a multiple of the "
                                   f"codec patch_size {p}")
        if self.short_side is not None and self.short_side < self.input_size:
            raise CodecOptionError(f"short_side_size {self.short_side} is smaller than "
                                   f"input_size {self.input_size}")
        self.pixels = PIXELS[self.opts.codec_pixels]
        self.pixels.check()  # before any clip is read: a missing encoder fails the run here
        self.grid = self.num_frames * (self.input_size // p) ** 2
        self.params = _cache.selection_params(self.num_frames, self.opts.K_keep, p,
                                              self.input_size, self.short_side or self.input_size,
                                              self.opts, self.pixels.params())

    def _wanted(self, total: int, with_previous: bool) -> np.ndarray:
        """The sampled ids, then the predecessors of those that get a map."""
        ids = frame_ids(total, self.num_frames, self.opts.codec_frame_ids)
        if not with_previous:
            return ids
        return np.concatenate([ids, ids[~zeroed(ids, self.opts.zero_frames)] - 1])

    def _fetch(self, path: str, idx: np.ndarray, threads: int, segment=None):
        """RGB and luma of the sampled frames, luma of the predecessors (one decode pass)."""
        t = self.num_frames
        wanted = {int(i): ("luma",) for i in idx[t:]}
        wanted.update({int(i): ("rgb24", "luma") for i in idx[:t]})
        got = decode_formats(path, wanted, threads, segment)
        stack = lambda ids, fmt: np.stack([got[int(i), fmt] for i in ids])  # noqa: E731
        # the predecessors stay a list: decode() places them, one copy in all
        return (stack(idx[:t], "rgb24"), stack(idx[:t], "luma"),
                [got[int(i), "luma"] for i in idx[t:]] if idx.size > t else None)

    def decode(self, path: str, threads: int = 1, with_previous: bool = False,
               segment: Optional[Segment] = None) -> ClipFrames:
        """Decode the sampled frames of ``path`` (of its ``segment``: ids count from the
        segment's start, as if it were trimmed) and, if asked, the predecessors needed; from
        the file ``--codec_pixels`` names (the original, or its re-encoded copy)."""
        with self.pixels.open(path, self.opts.cache_dir, threads, segment) as (file, seg, lost):
            (rgb, luma, prev), idx, total, truncated = decode_picked(
                file, lambda n: self._wanted(n, with_previous), threads, self._fetch, seg)
        ids = idx[:self.num_frames]
        clip = ClipFrames(rgb, luma, ids, total, truncated=truncated or lost)
        if with_previous and prev is not None:
            clip.previous = np.zeros(luma.shape, dtype=luma.dtype)  # zero pages until written
            for k, frame in zip(np.flatnonzero(~zeroed(ids, self.opts.zero_frames)), prev):
                clip.previous[k] = frame
        return clip

    def compute(self, clip: ClipFrames, path: str = "<frames>") -> Selection:
        """Select from a decoded clip; ``path`` names it in errors."""
        import av

        try:
            return select_clip(clip, self.input_size, self.opts, self.short_side)
        except av.error.FFmpegError as exc:  # e.g. frames too small for the canonical encoder
            raise ClipDecodeError(f"{path}: codec re-encode failed ({exc})") from exc

    def lookup(self, path: str, segment: Optional[Segment] = None
               ) -> Tuple[Optional[Selection], Optional[str], bool]:
        """(cached selection or None, cache file or None, whether a damaged file was found);
        a segment of a long video has its own entry."""
        if not self.opts.cache_dir:
            return None, None, False
        key = _cache.cache_key(path, self.params, segment)
        file = _cache.cache_path(self.opts.cache_dir, key)
        try:
            return _cache.read_entry(file, self.opts.K_keep, self.grid, key,
                                     _cache.params_digest(self.params)), file, False
        except _cache.CacheDamaged as exc:  # a mismatch names both keys
            log.warning("damaged codec cache entry %s for %s (%s); recomputing", file, path, exc)
            return None, file, True

    def _fresh(self, path: str, clip: ClipFrames, file: Optional[str]) -> Selection:
        sel = self.compute(clip, path)
        if file is not None:  # the file's name is its key
            _cache.write_entry(file, sel, params=_cache.params_digest(self.params))
        return sel

    def _flags(self, sel: Selection, damaged: bool, clip: ClipFrames) -> int:
        """Stored flags plus the per-load ones (damaged entry replaced, short clip)."""
        flags = sel.flags | (FLAG_CACHE_RECOMPUTED if damaged else 0)
        flags |= FLAG_TRUNCATED if clip.truncated else 0
        return flags | (FLAG_SHORT_CLIP if clip.total < self.num_frames else 0)

    def _needs_previous(self) -> bool:
        return self.opts.mv_reference == "source"

    def precompute(self, path: str, threads: int = 1,
                   segment: Optional[Segment] = None) -> Tuple[str, int]:
        """Give ``path`` (or its ``segment``) a valid cache entry: ("hit" | "computed" |
        "recomputed", flags). A hit does not decode the video."""
        if not self.opts.cache_dir:
            raise CodecOptionError("precomputing needs a cache folder (--cache_dir)")
        sel, file, damaged = self.lookup(path, segment)
        if sel is not None:
            self.pixels.prepare(path, self.opts.cache_dir, threads, segment)  # a run needs both
            return "hit", sel.flags
        clip = self.decode(path, threads, self._needs_previous(), segment)
        sel = self._fresh(path, clip, file)
        return ("recomputed" if damaged else "computed"), self._flags(sel, False, clip)

    def load(self, path: str, threads: int = 1, segment: Optional[Segment] = None
             ) -> Tuple[np.ndarray, np.ndarray, int, Selection]:
        """Decode the ``num_frames`` sampled frames of ``path`` (of its ``segment``) and select
        patches (from the cache when it holds them): (frames uint8 [T, H, W, 3], ids [T],
        total, selection)."""
        sel, file, damaged = self.lookup(path, segment)
        clip = self.decode(path, threads, sel is None and self._needs_previous(), segment)
        if sel is None:
            sel = self._fresh(path, clip, file)
        return clip.frames, clip.ids, clip.total, Selection(sel.indices,
                                                             self._flags(sel, damaged, clip))


def select_patches(video_path: str, num_frames: int = 64, K: int = 2048, patch_size: int = 14,
                   input_size: int = 224, protocol: str = "paper", **options) -> np.ndarray:
    """Indices (int64, sorted) of the K most informative patches of the
    ``num_frames x (input_size/patch_size)^2`` grid of ``video_path``'s uniformly sampled,
    resized and centre-cropped frames.

    ``protocol`` (paper | clean) sets every option left out; ``options`` are CodecOptions
    fields (``mv_compensate``, ``center_prior``, ..., ``cache_dir``) plus
    ``short_side_size`` (resize size before the crop; default ``input_size``) and
    ``decode_threads``. Unreadable videos raise ClipDecodeError.
    """
    if "K_keep" in options:
        raise CodecOptionError("select_patches: give the budget as K=, not K_keep=")
    short_side = options.pop("short_side_size", None)
    threads = options.pop("decode_threads", 1)
    opts = make_options(protocol, K_keep=K, patch_size=patch_size, **options)
    return Selector(num_frames, input_size, opts, short_side).load(video_path, threads)[3].indices
