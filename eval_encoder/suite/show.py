"""What a suite tells people: a line per event (above a progress bar, if one is shown), each
dataset's outcome, the recipe's leaderboard row and the closing summary with its exit status."""
from __future__ import annotations

import sys
from typing import Sequence

from tqdm import tqdm

from eval_encoder import record as rec
from eval_encoder.report.board import build_board
from eval_encoder.report.kinds import records_by_kind
from eval_encoder.report.records import load_record
from eval_encoder.report.render import render as render_board
from eval_encoder.suite.books import DONE, Outcome


def _say(text: str) -> None:
    with tqdm.external_write_mode(file=sys.stdout):  # above a progress bar, if one is shown
        print(f"== suite {text}", flush=True)


def _describe(o: Outcome) -> str:
    said = f"[{o.protocol} protocol] " if o.protocol else ""
    if o.status == "skipped":
        return f"{said}already complete (top-1 {o.top1:.2f}%{o.kinds}), skipped: {o.record_path}"
    if o.status == "complete":
        return f"{said}complete in {o.wall_s:.0f} s, top-1 {o.top1:.2f}%{o.kinds}: {o.record_path}"
    if o.status == "busy":
        return f"skipped: {o.error}"
    if o.status in ("submitted", "running", "interrupted"):
        return f"{said}{o.status}: job {o.job} {o.error or ''} (log {o.log})"
    return f"{said}FAILED after {o.wall_s:.0f} s: {o.error} (record {o.record_path})"


def recipe_row(outcomes: Sequence[Outcome], fmt: str = "md") -> str:
    """The leaderboard row(s) of this suite run: its datasets as the benchmark columns."""
    paths = [o.record_path for o in outcomes if o.record_path is not None]
    if not paths:  # queued or busy only: no record to show yet
        return "(no run recorded yet: no leaderboard row)\n"
    # failed runs too: the board lists each failure with its record's error
    tables = records_by_kind([load_record(p) for p in paths])
    return "\n".join((f"{kind} heads:\n" if kind else "")
                     + render_board(build_board(recs, [o.dataset for o in outcomes]), fmt)
                     for kind, recs in tables.items())


def where_shown(outcomes: Sequence[Outcome], save_report: str) -> str:
    """The records' paths and the leaderboard command that shows them (nothing without a
    record)."""
    paths = [o.record_path for o in outcomes if o.record_path is not None]
    if not paths:
        return ""
    lines = [f"run record: {p}" for p in paths]
    return "\n" + "\n".join([*lines, f"show it: {rec.leaderboard_command(save_report)}"]) + "\n"


def _summary(name: str, outcomes: Sequence[Outcome], save_report: str, submitted_ok: bool) -> int:
    """Print the outcomes and the recipe's leaderboard row; the exit status."""
    print(f"\n{name}: " + ", ".join(f"{o.dataset} {o.status}" for o in outcomes) + "\n")
    print(recipe_row(outcomes), end="")
    print(where_shown(outcomes, save_report), end="")
    waiting = [o for o in outcomes if o.status in ("submitted", "running", "interrupted")]
    if waiting:
        print(f"\n{len(waiting)} job(s) not ended: `python -m eval_encoder suite status {name} "
              f"--save_report {save_report}` shows them, `suite collect` gathers them")
    ok = DONE + (("submitted",) if submitted_ok else ())
    return 0 if all(o.status in ok for o in outcomes) else 1
