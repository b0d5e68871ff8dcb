"""One suite at a time per (recipe, dataset) on a ``--save_report``: an fcntl.flock on
``<save_report>/suite/<recipe>/<dataset>.lock`` that notes who holds it."""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Optional, Tuple

from eval_encoder.suite.show import _say


def lock_path(save_report: str, recipe_name: str, dataset: str, node_rank: int = 0) -> Path:
    """The (recipe, dataset) lock; the other nodes of a multi-node suite have their own."""
    suffix = f".node{node_rank}" if node_rank else ""
    return Path(save_report) / "suite" / recipe_name / f"{dataset}{suffix}.lock"


@contextlib.contextmanager
def dataset_lock(save_report: str, recipe_name: str, dataset: str, wait: bool = True):
    """Hold the (recipe, dataset) lock while the body runs; yields False without it when
    another suite holds it and ``wait`` is off. The lock is an fcntl.flock on
    ``<save_report>/suite/<recipe>/<dataset>.lock`` and ends with this process."""
    path = lock_path(save_report, recipe_name, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        held = _take_lock(fd, path, wait)
        if held:
            _note_owner(fd)
        yield held
    finally:
        os.close(fd)  # releases the lock


def _take_lock(fd: int, path: Path, wait: bool) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
    if not wait:
        return False
    _say(f"{path.parent.name} / {path.stem}: another suite is running it ({owner}); waiting "
         f"for {path} (--no_wait_lock skips the dataset instead)")
    fcntl.flock(fd, fcntl.LOCK_EX)
    return True


def _note_owner(fd: int) -> None:
    """Who holds the lock, for the message of a suite that finds it taken."""
    owner = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, owner.encode(), 0)


def try_lock(path: Path) -> Tuple[Optional[contextlib.ExitStack], str]:
    """Take the lock at ``path`` without waiting: (its holder, to close when done; "") or,
    when another suite holds it, (None, who holds it)."""
    stack = contextlib.ExitStack()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    stack.callback(os.close, fd)  # closing releases the lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
        stack.close()
        return None, owner
    _note_owner(fd)
    return stack, ""
