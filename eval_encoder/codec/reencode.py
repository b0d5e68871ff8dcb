"""``--codec_pixels reencoded``: each clip re-encoded to HEVC as the published pipeline's step 2
re-encodes its datasets, kept on disk, and decoded in place of the original file.

The published step (``tools/tools_for_hevc/step2_convert_videos2hevc.py``) runs once per video::

    ffmpeg -i SRC -vf scale=trunc(iw/2)*2:trunc(ih/2)*2 -c:v libx265 -pix_fmt yuv420p
      -preset fast -crf 23 -g 16 -x265-params keyint=16:min-keyint=16:scenecut=0:bframes=0:
      ref=1:repeat-headers=1 -tag:v hvc1 -movflags +faststart -an DST.mp4

and its codec probe reads both the encoder's pixels and the motion from ``<ds>_hevc/``. Here the
same settings run through PyAV (no ffmpeg binary), with these choices:

- frame for frame: frame k of the copy is frame k of the clip as :mod:`eval_encoder.video.decode`
  numbers it. (The ffmpeg command writes a constant-rate mp4, so a variable-rate source gains or
  loses frames there; a constant-rate one, the usual case, does not.)
- a segment of a long video is re-encoded alone, its first frame an intra frame, as if it had
  been cut out first: the selection already counts frame ids, and the 16-frame GOP of
  ``--zero_frames gop16``, from the segment's start, and re-encoding the whole video for each
  segment would cost the whole video every time.
- the decoder's picture types are cleared before encoding, as the ffmpeg command does (libx265
  would otherwise put an intra frame wherever the source has one).
- x265's thread pool is the clip source's decode threads, with one frame thread. The decoded
  pixels do not depend on either (pools 1 and 2, frame threads 1 to 3: the same frames; only
  x265's info message, which prints its settings, differs), so neither is in the cache key.
  ``pools=none`` would turn wavefront coding off and change the pixels: it is never used.
- frames of an odd size or another pixel format go through swscale's bicubic filter, as
  ffmpeg's scale filter, but on its bit-exact, accurately rounded path on one thread (the
  same copy on every machine); frames already yuv420p at an even size are passed as they are.
- the colour tags of the first frame are copied, as ffmpeg copies them, so that the copy
  decodes to RGB with the original's matrix and range.

Cache: ``<cache_dir>/hevc/<key[:2]>/<key>.mp4``; ``key`` hashes the source file's content, the
segment and :func:`reencode_params` (the settings above, the format version and the FFmpeg
libraries). The file's ``comment`` tag holds a stamp (``format``, ``key``, ``frames``,
``source_frames``). An entry without a readable stamp, of another format or key, or whose
packets do not number ``frames``, is reported and made again. Entries are written to a unique
temporary file in their folder and renamed into place, so concurrent writers leave one whole
file.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Tuple

from eval_encoder.codec.cache import content_id
from eval_encoder.codec.options import CodecOptionError
from eval_encoder.files import atomic_path
from eval_encoder.video.decode import ClipDecodeError, clip_frames, count_frames, video_rate
from eval_encoder.video.manifest import Segment

log = logging.getLogger("eval_encoder.codec")

FORMAT = "eval_encoder.hevc-copy/1"  # bump when the stamp or the copy's frames change
GOP = 16
X265_PARAMS = f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes=0:ref=1:repeat-headers=1"
PRESET, CRF, PIX_FMT, TAG = "fast", 23, "yuv420p", "hvc1"
COLOUR_TAGS = ("color_primaries", "color_trc", "colorspace", "color_range")
# what the FFmpeg build must offer: (codec name, what it is in an error message)
NEEDED = (("libx265", "the libx265 encoder"), ("hevc", "the HEVC decoder"))


def available_codecs() -> FrozenSet[str]:
    """Names of the encoders and decoders of the FFmpeg that PyAV loads."""
    import av

    return frozenset(av.codecs_available)


def require_reencoder() -> None:
    """CodecOptionError naming ``--codec_pixels reencoded`` and what the FFmpeg build lacks."""
    missing = [what for name, what in NEEDED if name not in available_codecs()]
    if missing:
        import av

        raise CodecOptionError(
            f"--codec_pixels reencoded re-encodes each clip to HEVC with libx265, as the "
            f"published step 2 does, but the FFmpeg that PyAV {av.__version__} loads lacks "
            f"{' and '.join(missing)}; install a PyAV build whose FFmpeg has them (the PyPI "
            "wheels do) or use --codec_pixels source")


def reencode_params() -> Dict:
    """Everything besides the source that the copy's decoded frames depend on."""
    import av

    return {"format": FORMAT, "encoder": "libx265", "preset": PRESET, "crf": CRF, "gop": GOP,
            "x265": X265_PARAMS, "pix_fmt": PIX_FMT, "size": "even, bicubic, bit-exact",
            "libs": f"av={av.__version__};avcodec={av.library_versions.get('libavcodec')}"}


def copy_key(path: str, segment: Optional[Segment] = None) -> str:
    """Hex key of (the source's content, its segment if any, :func:`reencode_params`)."""
    where = None if segment is None else [segment.start, segment.end, segment.unit]
    text = json.dumps({"video": content_id(path), "segment": where, **reencode_params()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def copy_path(cache_dir: str, key: str) -> str:
    """``<cache_dir>/hevc/<key[:2]>/<key>.mp4``."""
    return os.path.join(cache_dir, "hevc", key[:2], f"{key}.mp4")


@dataclass(frozen=True)
class Copy:
    """A re-encoded clip: its file, its frames, and the frames its source's stream holds."""

    path: str
    frames: int
    source_frames: int

    @property
    def truncated(self) -> bool:
        """The source had a damaged tail: only the frames before it were re-encoded."""
        return self.frames < self.source_frames


def _even(n: int) -> int:
    return max(2, n // 2 * 2)


def _x265_options(threads: int) -> Dict[str, str]:
    return {"preset": PRESET, "crf": str(CRF),
            "x265-params": f"{X265_PARAMS}:pools={max(1, threads)}:frame-threads=1:"
                           "log-level=error"}


def _add_stream(out, first, rate, threads: int):
    stream = out.add_stream("libx265", rate=rate)
    stream.width, stream.height = _even(first.width), _even(first.height)
    stream.pix_fmt, stream.codec_tag, stream.gop_size = PIX_FMT, TAG, GOP
    for tag in COLOUR_TAGS:
        setattr(stream.codec_context, tag, getattr(first, tag))
    stream.options = _x265_options(threads)
    return stream


def _fitter(width: int, height: int):
    """Frame -> yuv420p frame of the even size: as ffmpeg's scale filter, bicubic, but with
    swscale's bit-exact, accurately rounded path on one thread, so every machine makes the same
    copy; a frame already in that format and size is passed as it is (no filter runs)."""
    from av.video.reformatter import Interpolation, VideoReformatter

    flags = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
    scaler = VideoReformatter()

    def fit(frame):
        if (frame.format.name, frame.width, frame.height) == (PIX_FMT, width, height):
            return frame
        return scaler.reformat(frame, width=width, height=height, format=PIX_FMT,
                               interpolation=flags, threads=1)
    return fit


def _encode(stream, frames: Iterable, rate) -> List:
    """The packets of ``frames`` (VideoFrames) encoded by ``stream``, numbered 0, 1, ... at
    ``rate`` (they are muxed once the stamp, which needs their count, is set)."""
    packets, time_base, fit = [], 1 / Fraction(rate), _fitter(stream.width, stream.height)
    for n, frame in enumerate(frames):
        frame = fit(frame)
        frame.pts, frame.time_base = n, time_base
        frame.pict_type = 0  # no picture type: x265 places the intra frames, as under ffmpeg
        packets.extend(stream.encode(frame))
    packets.extend(stream.encode(None))
    return packets


def write_copy(src: str, dst: str, threads: int = 1, segment: Optional[Segment] = None,
               stamp: Optional[Dict] = None) -> Tuple[int, int]:
    """Re-encode ``src`` (its ``segment``) to ``dst`` as published; ``stamp`` goes into the
    file's comment tag with the frame counts. Returns (frames, source frames)."""
    import av

    frames = (frame for _, frame in clip_frames(src, threads, segment))
    first = next(frames, None)
    if first is None:
        raise ClipDecodeError(f"{src}: no decodable frame to re-encode")
    rate = video_rate(src)
    with av.open(dst, "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = _add_stream(out, first, rate, threads)
        try:
            packets = _encode(stream, itertools.chain([first], frames), rate)
        except av.error.FFmpegError as exc:  # e.g. frames too small for x265
            raise ClipDecodeError(f"{src}: HEVC re-encode (--codec_pixels reencoded) failed "
                                  f"({exc})") from exc
        n = sum(p.size > 0 for p in packets)
        source_frames = count_frames(src) if segment is None else n
        # the container copies its tags when the first packet is muxed
        out.metadata["comment"] = json.dumps({**(stamp or {}), "frames": n,
                                              "source_frames": source_frames}, sort_keys=True)
        for packet in packets:
            out.mux(packet)
    return n, source_frames


def read_stamp(path: str) -> Dict:
    """The stamp in a copy's comment tag ({} when it has none)."""
    import av

    with av.open(path) as container:
        text = container.metadata.get("comment", "")
    try:
        stamp = json.loads(text)
    except ValueError:
        return {}
    return stamp if isinstance(stamp, dict) else {}


def check_copy(path: str, key: str) -> Copy:
    """The copy at ``path`` if its stamp and packet count hold; ValueError saying why not."""
    import av

    try:
        stamp = read_stamp(path)
        packets = count_frames(path)
    except (av.error.FFmpegError, ClipDecodeError) as exc:
        raise ValueError(f"unreadable ({exc})") from None
    if stamp.get("format") != FORMAT or stamp.get("key") != key:
        raise ValueError(f"stamp {stamp.get('format')!r} / key {stamp.get('key')!r}, expected "
                         f"{FORMAT!r} / {key}")
    if packets != stamp.get("frames"):
        raise ValueError(f"{packets} packets, the stamp says {stamp.get('frames')} frames")
    return Copy(path, packets, int(stamp.get("source_frames", packets)))


def make_copy(src: str, dst: str, key: str, threads: int = 1,
              segment: Optional[Segment] = None) -> Copy:
    """Write the copy of ``src`` to ``dst`` through a temporary file and a rename (with the
    umask's mode, as every atomic write: :func:`eval_encoder.files.atomic_path`)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with atomic_path(dst, prefix=".tmp-", suffix=".mp4") as tmp:
        frames, source = write_copy(src, tmp, threads, segment, {"format": FORMAT, "key": key})
    return Copy(dst, frames, source)


def cached_copy(cache_dir: str, src: str, threads: int = 1,
                segment: Optional[Segment] = None) -> Tuple[Copy, str]:
    """The re-encoded copy of ``src`` (its ``segment``) in ``cache_dir``, made if absent or
    damaged: (copy, "hit" | "computed" | "recomputed")."""
    key = copy_key(src, segment)
    dst = copy_path(cache_dir, key)
    if not os.path.exists(dst):
        return make_copy(src, dst, key, threads, segment), "computed"
    try:
        return check_copy(dst, key), "hit"
    except ValueError as exc:
        log.warning("damaged re-encoded copy %s of %s (%s); re-encoding", dst, src, exc)
    return make_copy(src, dst, key, threads, segment), "recomputed"


class Original:
    """``--codec_pixels source``: frames are decoded from the clip's own file."""

    def check(self) -> None:
        """Nothing to check: any file PyAV decodes will do."""

    def params(self) -> Optional[Dict]:
        """No parameters (the selection's cache key stays as it was before the option)."""
        return None

    def prepare(self, src: str, cache_dir: Optional[str], threads: int = 1,
                segment: Optional[Segment] = None) -> None:
        """Nothing to make ahead."""

    @contextlib.contextmanager
    def open(self, src: str, cache_dir: Optional[str], threads: int = 1,
             segment: Optional[Segment] = None) -> Iterator[Tuple[str, Optional[Segment], bool]]:
        """(file to decode, segment of it, whether the source's tail was lost)."""
        yield src, segment, False


class Reencoded:
    """``--codec_pixels reencoded``: frames are decoded from the clip's HEVC copy, kept in
    ``<cache_dir>/hevc`` (a temporary file when there is no cache folder)."""

    def check(self) -> None:
        require_reencoder()

    def params(self) -> Optional[Dict]:
        return reencode_params()

    def prepare(self, src: str, cache_dir: Optional[str], threads: int = 1,
                segment: Optional[Segment] = None) -> Optional[str]:
        """Make the cached copy if it is missing: "hit" | "computed" | "recomputed"."""
        return cached_copy(cache_dir, src, threads, segment)[1] if cache_dir else None

    @contextlib.contextmanager
    def open(self, src: str, cache_dir: Optional[str], threads: int = 1,
             segment: Optional[Segment] = None) -> Iterator[Tuple[str, Optional[Segment], bool]]:
        """(the copy, no segment: it holds the segment alone, whether the source's tail was
        lost)."""
        if cache_dir:
            copy = cached_copy(cache_dir, src, threads, segment)[0]
            yield copy.path, None, copy.truncated
            return
        with tempfile.TemporaryDirectory(prefix="hevc-copy-") as folder:
            dst = os.path.join(folder, "copy.mp4")
            frames, source = write_copy(src, dst, threads, segment)
            yield dst, None, frames < source


# --codec_pixels: where the frames the encoder sees and the selection reads are decoded from
PIXELS = {"source": Original(), "reencoded": Reencoded()}
