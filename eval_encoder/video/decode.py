"""Frame decoding with PyAV and segment-based frame sampling."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from eval_encoder.video.manifest import Segment, invisible_note


class ClipDecodeError(RuntimeError):
    """A clip that is missing or cannot be decoded; the message names the file."""


def segment_indices(total: int, num_frames: int, train: bool, rng: Optional[np.random.Generator] = None,
                    view: int = 0, num_views: int = 1) -> np.ndarray:
    """Frame indices of T equal segments over ``total`` frames (upstream's rule).

    Train: a uniform random point in each segment. Eval: the segment centre, or with
    ``num_views`` temporal views, the point ``(view + 0.5) / num_views`` of each segment.
    Clips shorter than T take every frame and repeat the last one.
    """
    if total <= 0:
        raise ValueError(f"a clip needs at least one frame, got {total}")
    if total < num_frames:
        return np.array(list(range(total)) + [total - 1] * (num_frames - total), dtype=np.int64)
    seg = (total - 1) / num_frames
    if train:
        if rng is None:
            raise ValueError("training-time sampling needs a random generator")
        offsets = rng.uniform(0.0, seg, size=num_frames)
    else:
        offsets = np.full(num_frames, seg * (view + 0.5) / num_views)
    idx = np.floor(seg * np.arange(num_frames) + offsets).astype(np.int64)
    return np.clip(idx, 0, total - 1)


def uniform_indices(total: int, num_frames: int) -> np.ndarray:
    """``num_frames`` indices spread evenly from the first to the last frame (codec's 64)."""
    if total <= 0:
        raise ValueError(f"a clip needs at least one frame, got {total}")
    return np.round(np.linspace(0, total - 1, num_frames)).astype(np.int64)


def to_rope_grid(frame_indices, total_frames, target_frames: int = 64):
    """Map source frame indices onto the ``target_frames`` RoPE grid: round(i/(n-1)*(g-1))."""
    import torch

    idx = torch.as_tensor(frame_indices, dtype=torch.float32)
    total = torch.as_tensor(total_frames, dtype=torch.float32).reshape(-1, *([1] * (idx.dim() - 1)))
    scaled = idx / torch.clamp(total - 1, min=1.0) * (target_frames - 1)
    return torch.round(scaled).long().clamp(0, target_frames - 1)


def _open(path: str, threads: int):
    import av

    if not os.path.isfile(path):
        raise ClipDecodeError(f"{path}: file not found{invisible_note(path)}")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ClipDecodeError(f"{path}: cannot open ({exc})") from exc
    # cover art and thumbnails are video streams too: skip them
    still = av.stream.Disposition.attached_pic | av.stream.Disposition.timed_thumbnails
    streams = [s for s in container.streams.video if not (s.disposition & still)]
    if not streams:
        container.close()
        raise ClipDecodeError(f"{path}: no video stream (besides cover images)")
    stream = streams[0]
    stream.thread_type = "SLICE"
    stream.thread_count = max(1, threads)
    return container, stream


def check_opens(path: str) -> None:
    """Open ``path`` and find its video stream, decoding nothing (the cheap check made
    before training); raises ClipDecodeError saying why not."""
    container, _ = _open(path, 1)
    container.close()


# ----------------------------------------------------------------------------- one open per sample

# Per-process memo of facts about a file (packet count, decodable frames, frame rate), keyed by
# its identity (absolute path, size, mtime_ns) as the preflight cache is: a changed file is a
# new key. Each loader worker fills its own; bounded so that a huge dataset cannot grow it
# without limit (~200 bytes an entry).
_FACTS: Dict[Tuple[str, str, int, int], float] = {}
_FACTS_LIMIT = 1 << 20
# a file up to this size keeps its packets after counting them, so it is demuxed only once;
# a larger one (a long video) is opened again to decode
KEEP_PACKETS_BYTES = 256 << 20

FileKey = Tuple[str, int, int]


def file_key(path: str) -> Optional[FileKey]:
    """(absolute path, size, mtime_ns) of ``path``; None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.path.abspath(path), st.st_size, st.st_mtime_ns


def _remembered(kind: str, key: Optional[FileKey], compute: Callable[[], float]) -> float:
    """``compute()``, memoised per process under (``kind``, file identity)."""
    if key is None:
        return compute()
    slot = (kind,) + key
    if slot not in _FACTS:
        value = compute()
        if len(_FACTS) >= _FACTS_LIMIT:
            _FACTS.pop(next(iter(_FACTS)))  # the oldest entry
        _FACTS[slot] = value
    return _FACTS[slot]


def clear_cache() -> None:
    """Forget every memoised frame count and rate (tests; a process that rewrites files in place
    within one mtime tick)."""
    _FACTS.clear()


class OpenClip:
    """A clip file opened once for one sample: its packet count (memoised by file identity,
    else counted by demuxing the file once and keeping the packets), then its frames, decoded
    from the kept packets or by demuxing from the start. Decoding consumes the decoder: a
    second :meth:`decode` opens the file again."""

    def __init__(self, path: str, threads: int = 1):
        self.path, self.threads = path, threads
        self.key = file_key(path)
        self.container, self.stream = _open(path, threads)
        self._packets: Optional[List] = None
        self._fresh = True  # neither demuxed to the end without keeping packets, nor decoded

    def __enter__(self) -> "OpenClip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def count(self) -> int:
        """Packets holding data in the video stream (the frame count, without decoding)."""
        return int(_remembered("packets", self.key, self._demux_count))

    def _demux_count(self) -> int:
        import av

        keep = self._fresh and self.key is not None and self.key[1] <= KEEP_PACKETS_BYTES
        packets, count = [], 0
        try:
            for packet in self.container.demux(self.stream):
                count += packet.size > 0
                if keep:
                    packets.append(packet)
        except av.error.FFmpegError as exc:
            raise ClipDecodeError(f"{self.path}: cannot read packets ({exc})") from exc
        self._packets, self._fresh = (packets if keep else None), keep
        return count

    def _frames(self):
        """The stream's frames in decoding order, as ``container.decode`` gives them."""
        if not self._fresh:  # demuxed or decoded already: start again from a new open
            self.close()
            self.container, self.stream = _open(self.path, self.threads)
            self._packets = None
        self._fresh = False
        if self._packets is not None:  # the demux's last (empty) packet flushes the decoder
            return (frame for packet in self._packets for frame in packet.decode())
        return self.container.decode(self.stream)

    def decode(self, wanted: Dict[int, Sequence[str]]) -> Dict[Tuple[int, str], np.ndarray]:
        """:func:`decode_formats` of this clip (no segment)."""
        import av

        try:
            keep = _collect(self._frames(), lambda frame, previous: previous + 1, 0, wanted)
        except av.error.FFmpegError as exc:
            raise ClipDecodeError(f"{self.path}: decoding failed ({exc})") from exc
        _require_all(keep, wanted, f"{self.path}: frames")
        return keep


def count_frames(path: str) -> int:
    """Frames in the first video stream, counted from its packets (no decoding; memoised by
    file identity)."""
    with OpenClip(path, 1) as clip:
        return clip.count()


# 8-bit formats whose first plane is the luma as coded
_LUMA_PLANE = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
                         "nv12", "nv21", "gray"})


def _convert(frame, fmt: str, size) -> np.ndarray:
    """``frame`` as RGB ("rgb24") or as its luma ("luma": the coded Y plane, no conversion,
    when the format has one; otherwise converted to gray), at ``size`` (w, h)."""
    if fmt == "luma" and frame.format.name in _LUMA_PLANE and (frame.width, frame.height) == size:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        return rows[:, :plane.width].copy()
    return frame.to_ndarray(format="gray" if fmt == "luma" else fmt, width=size[0], height=size[1])


def decode_formats(source: Union[str, OpenClip], wanted: Dict[int, Sequence[str]],
                   threads: int = 1, segment: Optional[Segment] = None
                   ) -> Dict[Tuple[int, str], np.ndarray]:
    """Decode frame ``n`` in each pixel format of ``wanted[n]`` ("rgb24": [H, W, 3], "luma":
    [H, W], see :func:`_convert`): ``{(n, format): array}``. ``source``: a path, or a clip
    already open (:class:`OpenClip`, so that counting and decoding open the file once).
    Decodes sequentially up to the largest index; with a ``segment``, ``n`` counts from the
    segment's first frame and the decoder seeks there first (:func:`decode_segment`). An index
    past the decodable end raises ClipDecodeError (nothing is substituted here)."""
    if not wanted:
        raise ValueError("no frame indices")
    if segment is not None:
        return decode_segment(getattr(source, "path", source), wanted, threads, segment)
    if isinstance(source, OpenClip):
        return source.decode(wanted)
    with OpenClip(source, threads) as clip:
        return clip.decode(wanted)


def _require_all(keep: Dict, wanted: Dict[int, Sequence[str]], what: str) -> None:
    """ClipDecodeError naming the wanted frames that were not decoded (past the end)."""
    missing = sorted(n for n in wanted if not all((n, f) in keep for f in wanted[n]))
    if missing:
        raise ClipDecodeError(f"{what} {missing[:5]} past the decodable end")


def decode_frames(source: Union[str, OpenClip], indices: Sequence[int], threads: int = 1,
                  segment: Optional[Segment] = None) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed; counted from the
    segment's first frame when there is one) as uint8 [T, H, W, 3] RGB; ``source`` as in
    :func:`decode_formats`."""
    keep = decode_formats(source, {int(i): ("rgb24",) for i in indices}, threads, segment)
    return np.stack([keep[int(i), "rgb24"] for i in indices])


# ----------------------------------------------------------------------------- segments

def frame_rate(stream, path: str) -> float:
    """The stream's frame rate (average, else guessed); ClipDecodeError when it has none."""
    rate = stream.average_rate or stream.guessed_rate
    if not rate or float(rate) <= 0:
        raise ClipDecodeError(f"{path}: no frame rate to place a segment in seconds")
    return float(rate)


def segment_range(segment: Segment, fps: float) -> Tuple[int, int]:
    """[first, end) frame indices of ``segment``: frames as given, or in seconds the frames
    whose timestamp i / fps lies in [start, end)."""
    if segment.unit == "f":
        return int(segment.start), int(segment.end)
    return math.ceil(segment.start * fps - 1e-9), math.ceil(segment.end * fps - 1e-9)


def segment_length(path: str, segment: Segment) -> int:
    """Frames in ``segment`` of ``path`` (the container is opened only for seconds)."""
    if segment.unit == "f":
        first, end = segment_range(segment, 1.0)
        return end - first
    first, end = segment_range(segment, _remembered("fps", file_key(path),
                                                    lambda: _read_frame_rate(path)))
    return end - first


def _read_frame_rate(path: str) -> float:
    container, stream = _open(path, 1)
    try:
        return frame_rate(stream, path)
    finally:
        container.close()


def video_rate(path: str):
    """The video stream's frame rate as a Fraction (average, else guessed; 25 when it has
    neither), for writing a copy of it."""
    from fractions import Fraction

    container, stream = _open(path, 1)
    try:
        return stream.average_rate or stream.guessed_rate or Fraction(25)
    finally:
        container.close()

def _frame_index(frame, stream, fps: float, previous: int) -> int:
    """A decoded frame's index in the file, from its timestamp (the previous one + 1 when the
    frame carries none)."""
    if frame.pts is None:
        return previous + 1
    return int(round(float((frame.pts - (stream.start_time or 0)) * stream.time_base) * fps))


def decode_segment(path: str, wanted: Dict[int, Sequence[str]], threads: int,
                   segment: Segment) -> Dict[Tuple[int, str], np.ndarray]:
    """:func:`decode_formats` within a segment of a long video: seek to the keyframe before
    its first wanted frame, decode forward, place frames by their timestamps; no trimming, no
    re-encoding. Keys count from the segment's first frame."""
    import av

    container, stream = _open(path, threads)
    try:
        fps = frame_rate(stream, path)
        first, _ = segment_range(segment, fps)
        start = first + min(wanted)
        container.seek(int((stream.start_time or 0) + start / fps / stream.time_base),
                       stream=stream, backward=True, any_frame=False)
        keep = _collect(container.decode(stream),
                        lambda frame, previous: _frame_index(frame, stream, fps, previous),
                        first, wanted)
    except av.error.FFmpegError as exc:
        raise ClipDecodeError(f"{path}: decoding failed ({exc})") from exc
    finally:
        container.close()
    _require_all(keep, wanted, f"{path}: segment (from frame {first}) frames")
    return keep


def clip_frames(path: str, threads: int = 1, segment: Optional[Segment] = None):
    """Yield ``(index, frame)`` (a PyAV VideoFrame) for every frame of ``path`` in order,
    numbered as :func:`decode_formats` numbers them. A whole file is numbered in decoding
    order and ends at a damaged tail (the frames before it are the clip, as
    :func:`decode_picked` samples it). A ``segment`` is sought as :func:`decode_segment` does
    and numbered by timestamps from its first frame: of two frames on one index the later is
    kept, a missing index repeats the frame before it (as a constant-rate output would), and
    a segment that ends past the decodable end raises ClipDecodeError."""
    container, stream = _open(path, threads)
    try:
        if segment is None:
            yield from _whole_frames(container, stream)
        else:
            yield from _segment_frames(container, stream, path, segment)
    finally:
        container.close()


def _whole_frames(container, stream):
    import av

    try:
        for index, frame in enumerate(container.decode(stream)):
            yield index, frame
    except av.error.FFmpegError:
        return  # a damaged tail: the frames before it are the decodable ones


def _segment_frames(container, stream, path: str, segment: Segment):
    import av

    fps = frame_rate(stream, path)
    first, end = segment_range(segment, fps)
    container.seek(int((stream.start_time or 0) + first / fps / stream.time_base),
                   stream=stream, backward=True, any_frame=False)
    index, held, out = first - 1, None, _Placer(first)
    try:
        for frame in container.decode(stream):
            index = _frame_index(frame, stream, fps, index)
            if index >= end:
                break
            if held is not None and index > held[0]:  # the held frame is the last on its index
                yield from out.place(*held)
            held = (index, frame) if index >= first else held
    except av.error.FFmpegError as exc:
        raise ClipDecodeError(f"{path}: decoding failed ({exc})") from exc
    if held is None or index < end - 1:  # the file ended before the segment did
        raise ClipDecodeError(f"{path}: segment {segment} ends past the decodable end")
    yield from out.place(*held)
    yield from out.place(end - 1, None)


class _Placer:
    """Numbers a segment's frames from its first: a gap repeats the frame before it."""

    def __init__(self, first: int):
        self.first, self.count, self.last = first, 0, None

    def place(self, index: int, frame):
        """Frames up to ``index``: the gap before it, then ``frame`` (None: the frame before)."""
        for n in range(self.count, index - self.first):
            yield n, self.last if self.last is not None else frame
        if index - self.first >= self.count:
            self.last = self.last if frame is None else frame
            yield index - self.first, self.last
        self.count = max(self.count, index - self.first + 1)


def _collect(frames, index_of: Callable, first: int, wanted: Dict[int, Sequence[str]]):
    """``{(n, format): array}`` for the wanted frames (n counted from file frame ``first``);
    ``index_of(frame, previous index)`` is a decoded frame's index in the file."""
    keep: Dict[Tuple[int, str], np.ndarray] = {}
    size, index, last = None, first - 1, first + max(wanted)
    for frame in frames:
        index = index_of(frame, index)
        # a stream may change resolution midway; every frame is scaled to the first's
        size = size or (frame.width, frame.height)
        for fmt in wanted.get(index - first, ()):
            keep[index - first, fmt] = _convert(frame, fmt, size)
        if index >= last:
            break
    return keep


def decode_clip(path: str, num_frames: int, train: bool, rng: Optional[np.random.Generator],
                threads: int = 1, view: int = 0, num_views: int = 1, uniform: bool = False,
                segment: Optional[Segment] = None):
    """Count, sample and decode one clip (or one segment of a long video): (frames
    [T,H,W,3] uint8, indices [T] counted from the clip's or segment's first frame, total)."""
    frames, idx, total, _ = decode_clip_checked(path, num_frames, train, rng, threads, view,
                                                num_views, uniform, segment)
    return frames, idx, total


@dataclass(frozen=True)
class FrameCount:
    """How a clip was sampled: over ``used`` frames, of the ``packets`` its stream holds;
    ``truncated`` when the packet count failed to decode and the decodable frames were used."""

    used: int
    packets: int
    truncated: bool


def _picker(num_frames: int, train: bool, rng: Optional[np.random.Generator], view: int,
            num_views: int, uniform: bool) -> Callable[[int], np.ndarray]:
    if uniform:
        return lambda n: uniform_indices(n, num_frames)
    return lambda n: segment_indices(n, num_frames, train, rng, view, num_views)


def decode_clip_checked(path: str, num_frames: int, train: bool,
                        rng: Optional[np.random.Generator], threads: int = 1, view: int = 0,
                        num_views: int = 1, uniform: bool = False,
                        segment: Optional[Segment] = None):
    """:func:`decode_clip` plus whether fewer frames decoded than the stream has packets
    (a damaged tail): such a clip is sampled over the frames that do decode, and flagged."""
    return decode_picked(path, _picker(num_frames, train, rng, view, num_views, uniform), threads,
                         segment=segment)


def decode_clip_counted(path: str, num_frames: int, train: bool,
                        rng: Optional[np.random.Generator], threads: int = 1, view: int = 0,
                        num_views: int = 1, uniform: bool = False,
                        segment: Optional[Segment] = None):
    """:func:`decode_clip_checked` with the :class:`FrameCount` in place of the total and the
    truncation flag: (frames [T,H,W,3] uint8, indices [T], FrameCount)."""
    pick = _picker(num_frames, train, rng, view, num_views, uniform)
    return _decode_counted(path, pick, threads, decode_frames, segment)


def decode_counted(path: str, pick: Callable[[int], np.ndarray], threads: int = 1,
                   segment: Optional[Segment] = None):
    """Decode the frames ``pick(total)`` chooses (see :func:`decode_picked`): (frames
    [T,H,W,3] uint8, indices [T], :class:`FrameCount`)."""
    return _decode_counted(path, pick, threads, decode_frames, segment)


def decode_picked(path: str, pick: Callable[[int], np.ndarray], threads: int = 1,
                  fetch: Callable = decode_frames, segment: Optional[Segment] = None):
    """Decode the frames ``pick(total)`` chooses with ``fetch(source, indices, threads,
    segment)``: (what fetch returns, indices, total, truncated). ``source`` is the clip opened
    once for counting and decoding (an :class:`OpenClip`), or a path (segments, and the retry
    of a damaged tail); :func:`decode_formats` takes either. A damaged tail is retried over the
    frames that do decode (``truncated``); a segment past the decodable end is an error."""
    out, idx, count = _decode_counted(path, pick, threads, fetch, segment)
    return out, idx, count.used, count.truncated


def _decode_segment_counted(path: str, pick: Callable[[int], np.ndarray], threads: int,
                            fetch: Callable, segment: Segment):
    total = segment_length(path, segment)
    if total <= 0:
        raise ClipDecodeError(f"{path}: empty segment {segment}")
    idx = pick(total)
    return fetch(path, idx, threads, segment), idx, FrameCount(total, total, False)


def _decode_counted(path: str, pick: Callable[[int], np.ndarray], threads: int,
                    fetch: Callable, segment: Optional[Segment] = None
                    ) -> Tuple[object, np.ndarray, FrameCount]:
    """(what fetch returns, indices, FrameCount): see :func:`decode_picked`."""
    if segment is not None:
        return _decode_segment_counted(path, pick, threads, fetch, segment)
    with OpenClip(path, threads) as clip:
        packets = clip.count()
        if packets == 0:
            raise ClipDecodeError(f"{path}: no video frames")
        idx = pick(packets)
        try:
            return fetch(clip, idx, threads, None), idx, FrameCount(packets, packets, False)
        except ClipDecodeError as exc:
            error = exc
    # a damaged tail (rare): sample again over the frames that do decode, from fresh opens
    total = int(_remembered("decodable", file_key(path), lambda: _decodable_count(path, threads)))
    if total == 0:
        raise error
    idx = pick(total)
    return fetch(path, idx, threads, None), idx, FrameCount(total, packets, True)


def _decodable_count(path: str, threads: int) -> int:
    import av

    container, stream = _open(path, threads)
    n = 0
    try:
        for _ in container.decode(stream):
            n += 1
    except av.error.FFmpegError:
        pass  # the frames before the error are the decodable ones; that is what we count
    finally:
        container.close()
    return n
