"""One suite at a time per (recipe, dataset) on a ``--save_report``: an fcntl.flock on
``<save_report>/suite/<recipe>/<dataset>.lock`` that notes who holds it.

The holder removes the file as it lets go (still holding the lock, and only the file it
locked), so a finished suite leaves no lock behind. A suite that was waiting on the removed
file finds, once it has the lock, that the path no longer names it, and takes the lock of
the path anew: two suites never both hold a dataset, and no suite removes a lock another
one holds.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Optional, Tuple

from eval_encoder.files import release_lock, take_lock
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
    fd, _ = take_lock(path, wait, on_wait=lambda owner: _say_waiting(path, owner))
    if fd is not None:
        _note_owner(fd)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            release_lock(fd, path)


def try_lock(path: Path) -> Tuple[Optional[contextlib.ExitStack], str]:
    """Take the lock at ``path`` without waiting: (its holder, to close when done; "") or,
    when another suite holds it, (None, who holds it). Closing the holder removes the file."""
    fd, owner = take_lock(path, wait=False)
    if fd is None:
        return None, owner
    _note_owner(fd)
    stack = contextlib.ExitStack()
    stack.callback(release_lock, fd, path)
    return stack, ""


def _say_waiting(path: Path, owner: str) -> None:
    _say(f"{path.parent.name} / {path.stem}: another suite is running it ({owner}); waiting "
         f"for {path} (--no_wait_lock skips the dataset instead)")


def _note_owner(fd: int) -> None:
    """Who holds the lock, for the message of a suite that finds it taken."""
    owner = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, owner.encode(), 0)
