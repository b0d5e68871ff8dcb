"""The paper's numbers as shipped (``results/paper_attentive_probe.csv``): read and checked
cell by cell, and each reported AVG recomputed from its own printed cells."""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd

from eval_encoder import resources
from eval_encoder.protocol import REPORTED
from eval_encoder.report.names import PAPER_DATASETS, LeaderboardError
from eval_encoder.report.records import res_text

REPORTED_CSV = resources.reported_csv()


def load_reported(path: Path = REPORTED_CSV) -> pd.DataFrame:
    """The paper's table as shipped: frames, method, arch, res, avg and the eight datasets.

    Every cell must be a number; an error names the file, line and column.
    """
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"reported numbers not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    skipped = next(i for i, line in enumerate([*lines, ""]) if not line.startswith("#"))
    frame = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    expected = ["frames", "method", "arch", "res", "avg", *PAPER_DATASETS]
    if list(frame.columns) != expected:
        raise LeaderboardError(f"{path}: columns {list(frame.columns)}, expected {expected}")
    for col in ["frames", "res", "avg", *PAPER_DATASETS]:
        frame[col] = [_number(path, skipped + 2 + i, col, v) for i, v in enumerate(frame[col])]
    frame["frames"] = frame["frames"].astype(int)
    frame["res"] = frame["res"].map(res_text)
    frame["protocol"] = REPORTED
    frame["source"] = "reported"
    frame["order"] = range(len(frame))
    return frame


def _number(path: Path, line: int, col: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise LeaderboardError(f"{path}:{line}: column {col!r}: {text!r} is not a number")
    return value


def check_reported_avgs(reported: pd.DataFrame) -> pd.DataFrame:
    """Recompute each reported AVG from its own printed cells; add avg_mean and avg_flag.

    The paper prints one decimal, so the check is: mean of the printed cells, computed
    exactly (Decimal), rounded half-up to one decimal, equals the printed AVG. Half-up is how
    a table is normally rounded; half-even gives the same answer on the shipped CSV. A
    flagged AVG may still be the correctly rounded mean of the *unrounded* accuracies: each
    cell carries up to +-0.05 of rounding, so a gap up to 0.1 can come from that; the
    footnote gives the gap so a reader can judge.
    """
    out = reported.copy()
    means, flags = [], []
    for _, row in out.iterrows():
        cells = [Decimal(repr(float(row[d]))) for d in PAPER_DATASETS]
        mean = sum(cells) / len(cells)
        shown = mean.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        means.append(float(mean))
        flags.append(shown != Decimal(repr(float(row["avg"]))).quantize(Decimal("0.1")))
    out["avg_mean"] = means
    out["avg_flag"] = flags
    return out
