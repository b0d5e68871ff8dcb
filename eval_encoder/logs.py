"""Logging set-up: rank 0 logs at INFO (or as -v/-q say), other ranks only warnings and errors.

Lines carry a ``[rank N]`` prefix only when several processes write (torchrun with
``WORLD_SIZE`` > 1); single-process tools (ls, leaderboard, suite, check, prepare) log plain
lines. Every command line takes ``-v``/``-q`` through :func:`add_verbosity_flags`.

A run's result (its final score, the record's path, the command that shows it) is not a log
line: :func:`result` prints it to standard output at every verbosity short of ``-qq``, so ``-q``
quiets the progress and keeps the answer, and ``-qq`` leaves errors only.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional

# the level the command line asked for (-v/-q); setup_logging and later flags apply it
_requested = {"level": logging.INFO}


class _RankFilter(logging.Filter):
    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return self.rank == 0 or record.levelno >= logging.WARNING


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is logged (not the stream of the
    first set-up, which a caller such as a test runner may have replaced and closed since)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def log_format(world_size: int) -> str:
    """The line format: the rank prefix only when more than one process logs."""
    rank = "[rank %(rank)s] " if world_size > 1 else ""
    return f"%(asctime)s {rank}%(message)s"


def setup_logging(level: Optional[int] = None) -> None:
    """Configure the ``eval_encoder`` logger once for this process (``level``: default the
    one -v/-q asked for, else INFO); a later call only changes the level."""
    logger = logging.getLogger("eval_encoder")
    logger.setLevel(_requested["level"] if level is None else level)
    if getattr(logger, "_eval_encoder_configured", False):
        return
    handler = _Stderr()
    handler.addFilter(_RankFilter(int(os.environ.get("RANK", "0"))))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    handler.setFormatter(logging.Formatter(log_format(world), "%H:%M:%S"))
    logger.addHandler(handler)
    logger.propagate = False
    logger._eval_encoder_configured = True


class _Verbosity(argparse.Action):
    """-v lowers the logging threshold one step (INFO -> DEBUG), -q raises it (-> WARNING,
    -qq -> ERROR); applied at once, so it works whether logging is set up before or after."""

    def __init__(self, option_strings, dest, step: int = 0, **kwargs):
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0,
                         default=argparse.SUPPRESS, **kwargs)
        self.step = step

    def __call__(self, parser, namespace, values, option_string=None):
        level = min(max(_requested["level"] + self.step, logging.DEBUG), logging.CRITICAL)
        _requested["level"] = level
        logging.getLogger("eval_encoder").setLevel(level)


def add_verbosity_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``-v/--verbose`` and ``-q/--quiet`` (repeatable) to ``parser``; they set the
    ``eval_encoder`` log level and leave nothing in the parsed namespace. Building the parser
    starts again from INFO, so one command's flags do not leak into the next."""
    _requested["level"] = logging.INFO
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action=_Verbosity, step=-10,
                       help="more log lines (debug); repeatable")
    group.add_argument("-q", "--quiet", action=_Verbosity, step=10,
                       help="fewer log lines: -q warnings and errors only, -qq errors only")


def result(text: str) -> None:
    """Print a command's result to standard output, unless ``-qq`` (errors only) was asked
    for; ``-q`` hides log lines, not results. Callers print on rank 0 only."""
    if logging.getLogger("eval_encoder").getEffectiveLevel() < logging.ERROR:
        print(text, flush=True)
