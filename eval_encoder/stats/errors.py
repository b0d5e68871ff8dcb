"""The errors of the statistics: an unusable prediction file or comparison."""
from __future__ import annotations


class StatsError(ValueError):
    """A prediction file or a comparison that cannot be used, with the reason."""


class MissingPredictions(StatsError):
    """A record without (or whose file lacks) per-clip predictions, e.g. an older record."""


class ClipsDiffer(StatsError):
    """Two prediction files that should cover the same clips do not."""
