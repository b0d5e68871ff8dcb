"""Small file helpers shared by the drivers: atomic writes with the mode a plain ``open``
would give, lock files that go when their holder lets go, file digests."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple, Union

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
    ``mkstemp``'s 0o600 (nor safetensors' own 0o600): records, manifests, checkpoints and
    caches on shared storage are as readable as the umask lets any other file be. The
    temporary file never outlives the body.
    """
    path = Path(path)
    fd, tmp = _temporary(path, prefix or f".{path.name}.", suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())  # after the body: some writers recreate the file
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _temporary(path: Path, prefix: str, suffix: str):
    """mkstemp beside ``path``, making the folder; once more if a finishing run removed the
    folder, empty, between the two (checkpoint folders go when their run completes)."""
    try:
        return _mkstemp(path, prefix, suffix)
    except FileNotFoundError:
        return _mkstemp(path, prefix, suffix)


def _mkstemp(path: Path, prefix: str, suffix: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)


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


def take_lock(path: PathLike, wait: bool = True,
              on_wait: Optional[Callable[[str], None]] = None) -> Tuple[Optional[int], str]:
    """An exclusive fcntl.flock on ``path`` (made if absent): (descriptor, "") or, another
    process holding it and ``wait`` off, (None, what its holder wrote in it). ``on_wait``
    (holder) is called once before waiting. The lock counts only on the file ``path`` still
    names: one whose holder removed it as it let go (:func:`release_lock`) is given up and
    the path locked anew, so two processes never both hold it."""
    path, told = Path(path), False
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            holder = _try_flock(fd)
            if holder and not wait:
                os.close(fd)
                return None, holder
            if holder and on_wait is not None and not told:
                told = on_wait(holder) or True
            if holder:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        if _names(path, fd):
            return fd, ""
        os.close(fd)


def release_lock(fd: int, path: PathLike) -> None:
    """Let go of a :func:`take_lock` lock, removing its file first: the lock is still held
    and the file is the one locked, so no other process's lock file is touched."""
    try:
        if _names(Path(path), fd):
            Path(path).unlink(missing_ok=True)
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def file_lock(path: PathLike) -> Iterator[int]:
    """Hold the lock of ``path`` (waiting for it) while the body runs; the file goes after."""
    fd, _ = take_lock(path)
    try:
        yield fd
    finally:
        release_lock(fd, path)


def _try_flock(fd: int) -> str:
    """Take the lock without waiting: "" when taken, else what its holder wrote in it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return ""
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def file_sha256(path: str) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
