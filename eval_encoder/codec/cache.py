"""On-disk cache of selected patch indices: one ``.npy`` per clip, no pickle.

The file name is a hash of every parameter that changes the indices (frames, input and
resize size, patch size, K, all selection options, the method version, the libraries that
produce the canonical stream) and of the video's content. The file holds one int64 array
``[MAGIC, VERSION, flags, n, checksum, index_0 .. index_{n-1}]``; a file that is truncated,
altered or inconsistent with its key is reported and recomputed, never used. Writes go to a
unique temporary file that is renamed into place, so ranks or workers writing the same
entry at once leave one complete file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import zlib
from dataclasses import asdict
from typing import Dict, Optional, Tuple

import numpy as np

from eval_encoder.codec.options import NOT_IN_KEY, CodecOptions
from eval_encoder.codec.select import Selection

log = logging.getLogger("eval_encoder.codec")

MAGIC = 0x43_4F_44_45_43_49_44_58  # "CODECIDX"
FILE_VERSION = 1
# bump when the selection's numbers change for the same inputs
METHOD_VERSION = "codec-select-2"
_HEADER = 5


class CacheDamaged(ValueError):
    """A cache file that exists but cannot be trusted."""


def _library_versions() -> str:
    import av

    return f"av={av.__version__};avcodec={av.library_versions.get('libavcodec')}"


def selection_params(num_frames: int, K: int, patch_size: int, input_size: int,
                     short_side: int, opts: CodecOptions) -> Dict:
    """Everything, besides the video, that the selected indices depend on."""
    from eval_encoder.codec.motion import X264_PARAMS, X264_QP

    options = {k: v for k, v in asdict(opts).items() if k not in NOT_IN_KEY}
    options.update(K_keep=K, patch_size=patch_size)
    return {"method": METHOD_VERSION, "num_frames": num_frames, "input_size": input_size,
            "short_side": short_side, "options": options, "x264": [X264_PARAMS, X264_QP],
            "libs": _library_versions()}


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


def cache_key(video_path: str, params: Dict) -> str:
    """Hex key of (video content, selection parameters)."""
    text = json.dumps({"video": content_id(video_path), **params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_path(cache_dir: str, key: str) -> str:
    """``<cache_dir>/<key[:2]>/<key>.npy`` (two-level, so no folder grows huge)."""
    return os.path.join(cache_dir, key[:2], f"{key}.npy")


def _checksum(indices: np.ndarray, flags: int) -> int:
    return zlib.crc32(np.int64(flags).tobytes() + indices.astype("<i8").tobytes())


def encode_entry(sel: Selection) -> np.ndarray:
    idx = np.asarray(sel.indices, dtype=np.int64)
    header = [MAGIC, FILE_VERSION, sel.flags, idx.size, _checksum(idx, sel.flags)]
    return np.concatenate([np.asarray(header, dtype=np.int64), idx])


def decode_entry(arr: np.ndarray, expected_k: int, grid: int) -> Selection:
    """Check a loaded array against the format and the key's K and grid; raise CacheDamaged."""
    if arr.dtype != np.int64 or arr.ndim != 1 or arr.size < _HEADER:
        raise CacheDamaged(f"bad array {arr.dtype} {arr.shape}")
    magic, version, flags, n, crc = (int(v) for v in arr[:_HEADER])
    idx = arr[_HEADER:]
    if magic != MAGIC or version != FILE_VERSION:
        raise CacheDamaged(f"not a codec index file (magic {magic:#x}, version {version})")
    if n != idx.size or n != min(expected_k, grid):
        raise CacheDamaged(f"holds {idx.size} indices, header says {n}, key says "
                           f"{min(expected_k, grid)}")
    if crc != _checksum(idx, flags):
        raise CacheDamaged("checksum mismatch")
    if n and (idx[0] < 0 or idx[-1] >= grid or np.any(np.diff(idx) <= 0)):
        raise CacheDamaged("indices not sorted, unique and inside the grid")
    return Selection(idx.copy(), flags)


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


def read_entry(path: str, expected_k: int, grid: int) -> Optional[Selection]:
    """The cached selection, None if absent; a damaged file raises CacheDamaged."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    return decode_entry(_parse_npy(raw), expected_k, grid)


def write_entry(path: str, sel: Selection) -> None:
    """Write atomically: a unique temporary file in the same folder, then rename."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_npy_bytes(encode_entry(sel)))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
