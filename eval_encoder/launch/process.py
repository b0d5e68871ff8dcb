"""Running a trainer as a child process of the suite: output passed on and logged, and the
child's whole process group stopped with the suite.

The child leads its own session and process group: a stop (Ctrl-C, SIGTERM) of the suite is
forwarded to that group (torchrun passes it on to its workers, which sit in sessions of their
own), which is killed if it has not ended within STOP_GRACE_S; and on Linux the child gets
SIGTERM from the kernel when the suite dies, even by ``kill -9`` (PR_SET_PDEATHSIG).
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Set, Tuple

# set by a launcher for its children; a suite started under a launcher must not pass them on
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # holds eval_encoder/
TAIL_BYTES = 4000
# how long a stopped trainer may take to end before its group is killed (torchrun itself
# gives its workers 30 s between SIGTERM and SIGKILL)
STOP_GRACE_S = 60.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# children running now (several when datasets run in parallel threads), for a stop
_LIVE: Set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """The suite was asked to stop by ``signum`` (SIGINT or SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


class _Output:
    """Where the trainer's output goes: the log file, written unbuffered so a killed suite
    leaves every line it received; the terminal; and the last few thousand bytes."""

    def __init__(self, sink, echo: bool = True):
        self.sink = sink
        self.out = getattr(sys.stdout, "buffer", None) if echo else None
        self.tail: collections.deque = collections.deque()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.sink.write(chunk)
        if self.out is not None:
            self.out.write(chunk)
            self.out.flush()
        self.tail.append(chunk)
        self.size += len(chunk)
        while self.size - len(self.tail[0]) > TAIL_BYTES:
            self.size -= len(self.tail.popleft())

    def text(self) -> str:
        return b"".join(self.tail).decode("utf-8", "replace")[-TAIL_BYTES:]


def child_env() -> Dict[str, str]:
    """The suite's environment without a launcher's variables, for a trainer it starts."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    # the trainer imports the very package this suite runs from, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def _prctl():
    """libc's prctl on Linux, else None (looked up before fork: the child only calls it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(sig: int = signal.SIGTERM) -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the kernel send ``sig`` to the child when this process
    dies, ``kill -9`` included; None where prctl is unavailable (then only a suite that
    lives to see its stop signal takes the trainer down)."""
    prctl, parent = _prctl(), os.getpid()
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the suite died before the line above took effect
            os.kill(os.getpid(), sig)
    return preexec


def stream_process(cmd: Sequence[str], log_path: Path, echo: bool = True) -> Tuple[int, str]:
    """Run ``cmd``, passing its output through as it comes (progress bars included; not with
    ``echo`` off) and into ``log_path``; returns the exit status and the output's last few
    thousand bytes.

    The child leads its own session and process group: a stop (Ctrl-C, SIGTERM) of the
    suite is forwarded to that group, which is killed if it has not ended within
    STOP_GRACE_S; and the child gets SIGTERM if the suite dies without stopping it (see
    :func:`die_with_parent`). In a thread other than the main one, :func:`stop_live` does
    the stopping.
    """
    with open(log_path, "wb", buffering=0) as sink, sigterm_interrupts(), subprocess.Popen(
            list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=child_env(), start_new_session=True,
            preexec_fn=die_with_parent()) as proc, _live(proc):
        output = _Output(sink, echo)
        try:
            while _pass_on(proc, output, SIGNAL_POLL_S, until_closed=True):
                pass
            code = _wait_polling(proc)
        except KeyboardInterrupt as exc:
            _stop_group(proc, getattr(exc, "signum", signal.SIGINT), output)
            raise
    return code, output.text()


@contextlib.contextmanager
def _live(proc: subprocess.Popen):
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        yield
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)


def stop_live(signum: int, threads: Sequence[threading.Thread],
              grace: float = STOP_GRACE_S) -> None:
    """Stop every child that ``stream_process`` runs in other ``threads``: ``signum`` to their
    groups, SIGKILL after ``grace`` seconds; the threads pass on their output to the end."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        _signal_group(proc, signum)
    deadline = time.monotonic() + grace
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with _LIVE_LOCK:
        procs = [p for p in _LIVE if p.poll() is None]
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)
    for thread in threads:
        thread.join()


@contextlib.contextmanager
def sigterm_interrupts():
    """While a trainer runs, SIGTERM to the suite raises :class:`Interrupted` as Ctrl-C
    raises KeyboardInterrupt, so both are forwarded (signal handlers: main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_interrupted(signum, _frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_group(proc: subprocess.Popen, signum: int, output: _Output) -> None:
    """Send ``signum`` to the child's group and keep passing its output on until it ends;
    SIGKILL the group after STOP_GRACE_S or at a second interrupt."""
    _signal_group(proc, signum)
    deadline = time.monotonic() + STOP_GRACE_S
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            _pass_on(proc, output, 0.2)
    except KeyboardInterrupt:  # asked a second time: stop waiting
        pass
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    while _pass_on(proc, output, 0.0):  # what it wrote last
        pass


# How often the main thread wakes from waiting on a trainer. A stop signal may land on any of
# the suite's threads (torch's OpenMP pool among them); Python only notes it there and runs the
# handler when the main thread next runs, which a read() or waitpid() blocked for hours never
# does. Waiting in short slices lets Ctrl-C and SIGTERM act within this time.
SIGNAL_POLL_S = 0.5


def _wait_polling(proc: subprocess.Popen) -> int:
    """``proc.wait()`` in slices of SIGNAL_POLL_S, so that signals are handled meanwhile."""
    while True:
        try:
            return proc.wait(timeout=SIGNAL_POLL_S)
        except subprocess.TimeoutExpired:
            continue


def _pass_on(proc: subprocess.Popen, output: _Output, timeout: float,
             until_closed: bool = False) -> bool:
    """Pass on what the child wrote within ``timeout`` seconds; True if anything came (with
    ``until_closed``: True until the child closes its output)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    chunk = proc.stdout.read1(65536) if ready else b""
    if chunk:
        output.write(chunk)
    if until_closed:  # ready with nothing to read: the output is closed
        return bool(chunk) or not ready
    if ready and not chunk:  # end of output while the process is still ending: do not spin
        time.sleep(timeout)
    return bool(chunk)


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:  # the group has ended already
        pass



def log_tail(path: str) -> str:
    """The last TAIL_BYTES of a log file ("" when there is none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - TAIL_BYTES))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
