"""Logging set-up: rank 0 logs at INFO, other ranks only warnings and errors."""
from __future__ import annotations

import logging
import os
import sys


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


def setup_logging(level: int = logging.INFO) -> None:
    """Configure the ``eval_encoder`` logger once for this process."""
    rank = int(os.environ.get("RANK", "0"))
    logger = logging.getLogger("eval_encoder")
    if getattr(logger, "_eval_encoder_configured", False):
        return
    handler = _Stderr()
    handler.addFilter(_RankFilter(rank))
    handler.setFormatter(logging.Formatter("%(asctime)s [rank %(rank)s] %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    logger._eval_encoder_configured = True
