"""``python -m eval_encoder leaderboard``: run records -> leaderboard tables (md / csv / tex)
and plots, beside the paper's numbers (see :mod:`eval_encoder.report.board` for what the
table shows).

Usage: ``python -m eval_encoder leaderboard [--runs DIR] [--reported [--val_optimism]]
[--format md|csv|tex] [--plot FILE.png] [--metric NAME] [--ci [bootstrap|exact]]
[--resamples N] [--gflops] [--plot_compute FILE.png]``.

``--val_optimism`` adds a footnote (md and tex) with the gain each dataset's paper number is
expected to owe to the published scripts' validation draw (see
:mod:`eval_encoder.report.optimism`).

Compute: ``--gflops`` adds a GFLOPs/clip column, the encoder's GFLOPs per clip (one view) that
the records' ``compute`` block holds (a dash where they hold none, and for the paper's rows);
``--plot_compute`` plots each measured row's score against it on a log axis
(:func:`eval_encoder.report.plots.plot_compute`).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from eval_encoder import stats
from eval_encoder.logs import add_verbosity_flags, setup_logging
from eval_encoder.parsing import ArgumentParser
from eval_encoder.report.board import Board, build_board, default_columns
from eval_encoder.report.names import LeaderboardError
from eval_encoder.report.optimism import load_optimism, optimism_note
from eval_encoder.report.plots import plot_board, plot_compute
from eval_encoder.report.records import add_runs_flag, load_records
from eval_encoder.report.render import FORMATS, render
from eval_encoder.report.reported import REPORTED_CSV, load_reported

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m eval_encoder leaderboard",
        description="Build the attentive-probe leaderboard from run records.")
    add_runs_flag(parser)
    parser.add_argument("--reported", action="store_true",
                        help="show the paper's numbers beside the measured ones, with deltas")
    parser.add_argument("--val_optimism", action="store_true",
                        help="with --reported: a footnote with each dataset's expected gain from "
                             "the paper's validation draw (results/val_sampling_optimism.csv)")
    parser.add_argument("--reported_csv", default=str(REPORTED_CSV),
                        help="reported numbers "
                             "(default: the shipped results/paper_attentive_probe.csv)")
    parser.add_argument("--format", default="md", choices=FORMATS, help="table format (default md)")
    parser.add_argument("--out", help="write the table here instead of standard output")
    parser.add_argument("--plot", metavar="FILE.png", help="also save a plot (needs matplotlib)")
    parser.add_argument("--gflops", action="store_true",
                        help="add a GFLOPs/clip column: the encoder's GFLOPs per clip (one "
                             "view) from the records' compute; – where a record has none")
    parser.add_argument("--plot_compute", metavar="FILE.png",
                        help="also save accuracy against encoder GFLOPs per clip (log x), a "
                             "point per measured row (needs matplotlib)")
    parser.add_argument("--datasets", help="comma-separated benchmark columns that AVG is over "
                        "(default: with --reported the paper's eight, else the datasets the "
                        "records hold: the paper's among them, or all when none is the paper's; "
                        "others are shown after AVG's)")
    parser.add_argument("--metric", default="top1", choices=list(stats.VIEWS),
                        help="what the cells show (default top1; action adds an epic_action "
                             "column, verb and noun both right, to the top-1 table)")
    parser.add_argument("--ci", nargs="?", const="bootstrap", choices=stats.INTERVALS,
                        help=f"show a {stats.LEVEL * 100:.0f}%% interval for every cell and AVG: "
                             "bootstrap over the clips (the default when --ci is given alone) "
                             "or exact (Clopper-Pearson for single-run top-1/top-5 cells)")
    parser.add_argument("--resamples", type=int, default=stats.RESAMPLES,
                        help=f"bootstrap resamples (default {stats.RESAMPLES})")
    add_verbosity_flags(parser)  # -v/-q
    return parser


def make_board(runs: str, reported: bool = False, reported_csv: Path = REPORTED_CSV,
               datasets: Optional[Sequence[str]] = None, metric: str = "top1",
               ci: Optional[str] = None, resamples: int = stats.RESAMPLES) -> Board:
    """Load the records under ``runs`` (and the paper's numbers) and build the board."""
    records = load_records(Path(runs))
    if not records:
        log.warning("no run records under %s", runs)
    rep = load_reported(Path(reported_csv)) if reported else None
    columns = datasets or default_columns(records, reported)
    return build_board(records, columns, rep, metric, ci, resamples)


def val_optimism_note(reported: bool, datasets: Sequence[str]) -> str:
    """``--val_optimism``'s footnote; it explains the paper's rows, so --reported is needed."""
    if not reported:
        raise LeaderboardError("--val_optimism explains the paper's numbers: give --reported too")
    return optimism_note(load_optimism(), datasets)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m eval_encoder leaderboard``: print (or write) the table, optionally a plot."""
    args = build_parser().parse_args(argv)
    setup_logging()
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    try:
        board = make_board(args.runs, args.reported, args.reported_csv, datasets, args.metric,
                           args.ci, args.resamples)
        board.gflops = args.gflops
        if args.val_optimism:
            board.notes.append(val_optimism_note(args.reported, board.datasets))
        text = render(board, args.format)
        if args.plot:
            plot_board(board, args.plot)
        if args.plot_compute:
            plot_compute(board, args.plot_compute)
    except ValueError as exc:  # LeaderboardError and unreadable records (read_record)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    for written in (args.plot, args.plot_compute):
        if written:
            print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
