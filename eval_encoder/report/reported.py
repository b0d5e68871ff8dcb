"""Reported numbers as shipped (``results/paper_attentive_probe.csv`` for the OneVision paper,
``results/vjepa2_attentive_probe.csv`` for V-JEPA 2): read and checked cell by cell, and each
reported AVG recomputed from its own printed cells."""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import List, Optional

import pandas as pd

from eval_encoder import resources
from eval_encoder.protocol import ONEVISION, PUBLISHED, Published
from eval_encoder.report.names import LeaderboardError
from eval_encoder.report.records import res_text

REPORTED_CSV = resources.reported_csv()


def reported_csv(published: Published) -> Path:
    """Where ``published``'s reported numbers are shipped."""
    return resources.reported_csv(published.reported_csv)


def load_reported(path: Path = REPORTED_CSV, published: Optional[Published] = None
                  ) -> pd.DataFrame:
    """A published table as shipped: (frames,) method, arch, res, avg and its datasets.

    Every cell must be a number (an AVG may be empty: not published); an error names the
    file, line and column. A table without frame blocks gets frames 0 on every row.
    """
    published = published or PUBLISHED[ONEVISION]
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"reported numbers not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    skipped = next(i for i, line in enumerate([*lines, ""]) if not line.startswith("#"))
    frame = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    keys = (["frames"] if published.frame_blocks else []) + ["method", "arch", "res"]
    expected = [*keys, "avg", *published.datasets]
    if list(frame.columns) != expected:
        raise LeaderboardError(f"{path}: columns {list(frame.columns)}, expected {expected}")
    numeric: List[str] = [k for k in ("frames", "res") if k in keys]
    for col in [*numeric, "avg", *published.datasets]:
        frame[col] = [_number(path, skipped + 2 + i, col, v, col == "avg")
                      for i, v in enumerate(frame[col])]
    frame["frames"] = frame["frames"].astype(int) if published.frame_blocks else 0
    frame["res"] = frame["res"].map(res_text)
    frame["protocol"] = published.reproduced_by
    frame["source"] = "reported"
    frame["order"] = range(len(frame))
    return frame


def _number(path: Path, line: int, col: str, text: str, may_be_empty: bool = False) -> float:
    if may_be_empty and not text.strip():
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise LeaderboardError(f"{path}:{line}: column {col!r}: {text!r} is not a number")
    return value


def check_reported_avgs(reported: pd.DataFrame, datasets=None) -> pd.DataFrame:
    """Recompute each reported AVG from its own printed cells; add avg_mean and avg_flag.

    The paper prints one decimal, so the check is: mean of the printed cells, computed
    exactly (Decimal), rounded half-up to one decimal, equals the printed AVG. Half-up is how
    a table is normally rounded; half-even gives the same answer on the shipped CSV. A
    flagged AVG may still be the correctly rounded mean of the *unrounded* accuracies: each
    cell carries up to +-0.05 of rounding, so a gap up to 0.1 can come from that; the
    footnote gives the gap so a reader can judge. An AVG that was not published is never
    flagged. ``datasets``: the AVG's columns (default: the OneVision paper's eight).
    """
    datasets = list(datasets or PUBLISHED[ONEVISION].datasets)
    out = reported.copy()
    means, flags = [], []
    for _, row in out.iterrows():
        cells = [Decimal(repr(float(row[d]))) for d in datasets]
        mean = sum(cells) / len(cells)
        shown = mean.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        means.append(float(mean))
        flags.append(not math.isnan(row["avg"])
                     and shown != Decimal(repr(float(row["avg"]))).quantize(Decimal("0.1")))
    out["avg_mean"] = means
    out["avg_flag"] = flags
    return out
