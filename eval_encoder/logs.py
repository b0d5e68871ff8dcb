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


def setup_logging(level: int = logging.INFO) -> None:
    """Configure the ``eval_encoder`` logger once for this process."""
    rank = int(os.environ.get("RANK", "0"))
    logger = logging.getLogger("eval_encoder")
    if getattr(logger, "_eval_encoder_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RankFilter(rank))
    handler.setFormatter(logging.Formatter("%(asctime)s [rank %(rank)s] %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    logger._eval_encoder_configured = True
