"""On-disk cache of selected patch indices: one ``.npy`` per clip, no pickle.

The file name is a hash of every parameter that changes the indices (frames, input and
resize size, patch size, K, all selection options, the method version, the libraries that
produce the canonical stream) and of the video's content. The file holds one int64 array
``[MAGIC, VERSION, flags, n, checksum, key (8 words), params (8 words), index_0 ..
index_{n-1}]``: the entry's own key and the hash of its selection parameters (64 ASCII
characters each) travel inside it, so an entry copied or renamed over another clip's is
recognised. A file that is truncated, altered, of another format version or holding another
key is reported and recomputed, never used. Writes go to a unique temporary file that is
renamed into place, so ranks or workers writing the same entry at once leave one complete
file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zlib
from dataclasses import asdict
from typing import Dict, Optional, Tuple

import numpy as np

from eval_encoder.codec.motion import X264_PARAMS, X264_QP
from eval_encoder.codec.options import NOT_IN_KEY, CodecOptions
from eval_encoder.codec.select import Selection
from eval_encoder.files import atomic_open

log = logging.getLogger("eval_encoder.codec")

MAGIC = 0x43_4F_44_45_43_49_44_58  # "CODECIDX"
FILE_VERSION = 2  # 2: the entry stores its key and parameter hash
# bump when the selection's numbers change for the same inputs
METHOD_VERSION = "codec-select-3"  # 3: --map_resolution (clean: the map's size)
_TEXT_WORDS = 8  # a 64-character key or hash as 8 int64 words
_HEADER = 5 + 2 * _TEXT_WORDS


class CacheDamaged(ValueError):
    """A cache file that exists but cannot be trusted."""


class CacheKeyMismatch(CacheDamaged):
    """A well-formed entry that holds another key's selection (copied or renamed over)."""


def _library_versions() -> str:
    import av

    return f"av={av.__version__};avcodec={av.library_versions.get('libavcodec')}"


# options added later, at the value that selects as before they existed: left out of the key
# there, so the entries made before stay valid
KEY_NEUTRAL = {"codec_pixels": "source"}


def selection_params(num_frames: int, K: int, patch_size: int, input_size: int,
                     short_side: int, opts: CodecOptions, pixels: Optional[Dict] = None) -> Dict:
    """Everything, besides the video, that the selected indices depend on; ``pixels``: the
    parameters of the copy the frames are decoded from (``--codec_pixels``), if any."""
    options = {k: v for k, v in asdict(opts).items()
               if k not in NOT_IN_KEY and KEY_NEUTRAL.get(k, object()) != v}
    options.update(K_keep=K, patch_size=patch_size)
    params = {"method": METHOD_VERSION, "num_frames": num_frames, "input_size": input_size,
              "short_side": short_side, "options": options, "x264": [X264_PARAMS, X264_QP],
              "libs": _library_versions()}
    return {**params, "pixels": pixels} if pixels else params


_CONTENT_IDS: Dict[Tuple[str, int, int], str] = {}


def content_id(path: str) -> str:
    """sha256 of the file's bytes, memoised per (path, size, mtime) in this process."""
    st = os.stat(path)
    memo = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if memo not in _CONTENT_IDS:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _CONTENT_IDS[memo] = digest.hexdigest()
    return _CONTENT_IDS[memo]


def cache_key(video_path: str, params: Dict, segment=None) -> str:
    """Hex key of (video content, segment of it if any, selection parameters)."""
    where = None if segment is None else [segment.start, segment.end, segment.unit]
    text = json.dumps({"video": content_id(video_path), "segment": where, **params},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def params_digest(params: Dict) -> str:
    """Hex hash of the selection parameters alone (stored in each entry)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def cache_path(cache_dir: str, key: str) -> str:
    """``<cache_dir>/<key[:2]>/<key>.npy`` (two-level, so no folder grows huge)."""
    return os.path.join(cache_dir, key[:2], f"{key}.npy")


def _checksum(indices: np.ndarray, flags: int, text: np.ndarray) -> int:
    return zlib.crc32(np.int64(flags).tobytes() + text.astype("<i8").tobytes()
                      + indices.astype("<i8").tobytes())


def _text_words(key: str, params: str) -> np.ndarray:
    """The key and the parameter hash as 2 x 8 int64 words (ASCII, zero-padded)."""
    raw = b""
    for text in (key, params):
        data = text.encode("ascii")
        if len(data) > 8 * _TEXT_WORDS:
            raise ValueError(f"cache key {text!r} is longer than {8 * _TEXT_WORDS} characters")
        raw += data.ljust(8 * _TEXT_WORDS, b"\0")
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)


def _words_text(words: np.ndarray) -> Tuple[str, str]:
    raw = words.astype("<i8").tobytes()
    half = 8 * _TEXT_WORDS
    return (raw[:half].rstrip(b"\0").decode("ascii", "replace"),
            raw[half:].rstrip(b"\0").decode("ascii", "replace"))


def encode_entry(sel: Selection, key: str = "", params: str = "") -> np.ndarray:
    """The entry's int64 array: header, ``key`` and ``params`` (hash), indices."""
    idx = np.asarray(sel.indices, dtype=np.int64)
    text = _text_words(key, params)
    header = [MAGIC, FILE_VERSION, sel.flags, idx.size, _checksum(idx, sel.flags, text)]
    return np.concatenate([np.asarray(header, dtype=np.int64), text, idx])


def decode_entry(arr: np.ndarray, expected_k: int, grid: int, key: Optional[str] = None,
                 params: Optional[str] = None) -> Selection:
    """Check a loaded array against the format, the expected ``key`` and ``params`` hash
    (None: not checked) and the key's K and grid; raise CacheDamaged (CacheKeyMismatch for
    an intact entry of another key)."""
    if arr.dtype != np.int64 or arr.ndim != 1 or arr.size < 2:
        raise CacheDamaged(f"bad array {arr.dtype} {arr.shape}")
    magic, version = int(arr[0]), int(arr[1])
    if magic != MAGIC or version != FILE_VERSION:
        raise CacheDamaged(f"not a version-{FILE_VERSION} codec index file (magic {magic:#x}, "
                           f"version {version})")
    if arr.size < _HEADER:
        raise CacheDamaged(f"header cut short ({arr.size} of {_HEADER} words)")
    flags, n, crc = (int(v) for v in arr[2:5])
    text, idx = arr[5:_HEADER], arr[_HEADER:]
    if n != idx.size or n != min(expected_k, grid):
        raise CacheDamaged(f"holds {idx.size} indices, header says {n}, key says "
                           f"{min(expected_k, grid)}")
    if crc != _checksum(idx, flags, text):
        raise CacheDamaged("checksum mismatch")
    _check_key(_words_text(text), key, params)
    if n and (idx[0] < 0 or idx[-1] >= grid or np.any(np.diff(idx) <= 0)):
        raise CacheDamaged("indices not sorted, unique and inside the grid")
    return Selection(idx.copy(), flags)


def _check_key(stored: Tuple[str, str], key: Optional[str], params: Optional[str]) -> None:
    """An intact entry made for another key: say whose, and whether the parameters differ."""
    (got_key, got_params), want = stored, (key, params)
    if (key is None or got_key == key) and (params is None or got_params == params):
        return
    what = "another clip's selection" if params is None or got_params == params else \
        "a selection made with other parameters"
    raise CacheKeyMismatch(f"holds {what}: key {got_key} (parameters {got_params}), expected "
                           f"key {want[0]} (parameters {want[1]})")


_NPY_HEADER = re.compile(rb"\{'descr': '<i8', 'fortran_order': False, 'shape': \((\d+),\), \} *\n")


def _npy_bytes(arr: np.ndarray) -> bytes:
    """A version-1 ``.npy`` file of an int64 vector (what np.save writes; np.load reads it)."""
    header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }" % arr.size
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"  # data aligned to 64 bytes
    prefix = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
    return prefix + header + arr.astype("<i8").tobytes()


def _parse_npy(raw: bytes) -> np.ndarray:
    """The int64 vector of a file written by :func:`_npy_bytes`, parsed strictly.

    np.load would parse the header with ast.literal_eval, which on Python 3.11 can fail with
    a SystemError when threads load at the same time; our entries have one fixed layout.
    """
    if raw[:8] != b"\x93NUMPY\x01\x00" or len(raw) < 10:
        raise CacheDamaged("not a version-1 .npy file")
    end = 10 + int.from_bytes(raw[8:10], "little")
    match = _NPY_HEADER.fullmatch(raw[10:end])
    if match is None:
        raise CacheDamaged(f"unexpected .npy header {raw[10:end][:80]!r}")
    n = int(match.group(1))
    if len(raw) != end + 8 * n:
        raise CacheDamaged(f"{len(raw) - end} data bytes for {n} int64 values")
    return np.frombuffer(raw, dtype="<i8", offset=end).astype(np.int64)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def read_entry(path: str, expected_k: int, grid: int, key: Optional[str] = None,
               params: Optional[str] = None) -> Optional[Selection]:
    """The cached selection, None if absent; a damaged file, or one holding another key
    than ``key`` (default: the file's name, which is the key) or another parameter hash
    than ``params`` (default: not checked), raises CacheDamaged."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    return decode_entry(_parse_npy(raw), expected_k, grid, key or _stem(path), params)


def write_entry(path: str, sel: Selection, key: Optional[str] = None, params: str = "") -> None:
    """Write atomically (files.atomic_open: readable as the umask allows). The entry
    stores ``key`` (default: the file's name) and the ``params`` hash."""
    with atomic_open(path, "wb", prefix=".tmp-", suffix=".npy", fsync=True) as fh:
        fh.write(_npy_bytes(encode_entry(sel, key or _stem(path), params)))
