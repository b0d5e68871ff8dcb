"""What the paper's validation draw adds to its numbers, beside the deltas
(``leaderboard --reported --val_optimism``).

The published scripts score each evaluation on a multiset of clips drawn per rank (a clip 0..W
times) and report the best evaluation; ``results/val_sampling_optimism.csv`` holds, per
dataset, the expected gain of that choice for a head that does not change between
evaluations, simulated at the paper's OneVision Encoder numbers (benchmarks/
bench_val_sampling.py; the model in :mod:`eval_encoder.stats.selection`). The board quotes it
in a footnote: a delta of about that size is what the paper's sampling alone gives.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import pandas as pd

from eval_encoder import resources
from eval_encoder.report.names import DISPLAY_NAMES, LeaderboardError

OPTIMISM_CSV = resources.optimism_csv()
MODEL = "same_head"  # the model the note quotes (the CSV also holds "epoch_noise")


def load_optimism(path: Path = OPTIMISM_CSV) -> pd.DataFrame:
    """The stored figures: a row per (dataset, model), columns as the benchmark writes them."""
    path = Path(path)
    if not path.is_file():
        raise LeaderboardError(f"validation-draw figures not found: {path}")
    return pd.read_csv(path, comment="#")


def gains(table: pd.DataFrame, model: str = MODEL) -> Dict[str, pd.Series]:
    """dataset -> its row of ``model``."""
    return {row.dataset: row for _, row in table[table.model == model].iterrows()}


def optimism_note(table: pd.DataFrame, datasets: Sequence[str]) -> str:
    """The board's footnote: each dataset's expected gain (points) and its Monte-Carlo error."""
    rows = gains(table)
    missing = [d for d in datasets if d not in rows]
    if missing:
        raise LeaderboardError(f"no validation-draw figure for {', '.join(missing)}")
    cells = ", ".join(f"{DISPLAY_NAMES.get(d, d)} +{rows[d].gain:.2f}" for d in datasets)
    first = rows[datasets[0]]
    error = max(rows[d].gain_error for d in datasets)
    return (f"paper's validation draw: the best of E evaluations (E = the card's epochs), each "
            f"scoring the clips {first.world} ranks draw on their own (a clip 0..{first.world} "
            f"times), is expected to exceed a fixed head's accuracy by {cells} points "
            f"(simulated at the paper's OneVision Encoder 8-frame numbers; Monte-Carlo error at "
            f"most {error:.2f}; results/val_sampling_optimism.csv): a Δ of that size can come "
            "from the paper's sampling alone")
