"""Small file helpers shared by the drivers: atomic writes with the mode a plain ``open``
would give, file digests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

PathLike = Union[str, os.PathLike]


def umask() -> int:
    """The process's file-mode creation mask, read without changing it where Linux reports
    it (``/proc/self/status``); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: PathLike, prefix: Optional[str] = None, suffix: str = ".tmp",
                publish: Callable[[str, PathLike], None] = os.replace) -> Iterator[str]:
    """A uniquely named temporary file beside ``path`` for the body to fill (by name, or by
    opening it), then put in place in one step by ``publish(tmp, path)`` (``os.replace``; a
    hard link refuses a name that is taken), so a reader never sees half a file and two
    writers never tear each other's.

    The file gets the mode a plain ``open`` would give it, 0o666 less the umask, not
    ``mkstemp``'s 0o600 (nor safetensors' own 0o600): records, manifests, checkpoints and caches on shared storage are as
    readable as the umask lets any other file be. The temporary file never outlives the body.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())  # after the body: some writers recreate the file
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", prefix: Optional[str] = None,
                suffix: str = ".tmp", fsync: bool = False, **open_args) -> Iterator:
    """:func:`atomic_path`, opened: the body writes to the handle; ``fsync`` flushes the data
    to disk before the rename (checkpoints, caches that must survive a crash whole)."""
    with atomic_path(path, prefix, suffix) as tmp, open(tmp, mode, **open_args) as fh:
        yield fh
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())


def write_atomic(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_open`), so concurrent writers (two
    suites, a dry run) never tear the file or each other's."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def file_sha256(path: str) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
