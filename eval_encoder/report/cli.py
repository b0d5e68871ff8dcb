"""``python -m eval_encoder leaderboard``: run records -> leaderboard tables (md / csv / tex)
and plots, beside the reported numbers (see :mod:`eval_encoder.report.board` for what a
table shows).

Usage: ``python -m eval_encoder leaderboard [--runs DIR] [--protocol NAME] [--reported
[--val_optimism]] [--format md|csv|tex] [--plot FILE.png] [--metric NAME] [--ci
[bootstrap|exact]] [--resamples N] [--gflops] [--plot_compute FILE.png]``.

One table per published evaluation the records' protocols follow: the OneVision paper's
(runs of ``paper`` and ``clean``) and V-JEPA 2's (runs of ``vjepa2``), each with its own
datasets and, with ``--reported``, its own reported numbers and deltas; ``--protocol NAME``
shows one table, of that protocol's runs. Several tables are printed one after the other,
each under a title line (a Markdown heading, a ``#`` line in csv, a ``%`` line in tex); a
single table prints exactly as it always has.

Head kinds: records of runs of several kinds (``--probe_head ov linear knn``) fill one table
per kind (each kind's reported head per run), one after the other under titles that name the
kind; records of one kind print as before. ``--probe_head KIND`` shows that kind's table(s)
only. The reported numbers stand beside the tables of the kind their published code probes
with (ov: the OneVision paper, vjepa2: V-JEPA 2) only.

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
from typing import Any, Dict, List, Optional, Sequence

from eval_encoder import stats
from eval_encoder.logs import add_verbosity_flags, setup_logging
from eval_encoder.parsing import ArgumentParser
from eval_encoder.protocol import PROTOCOLS, PUBLISHED, Published
from eval_encoder.report.board import Board, build_board, default_columns
from eval_encoder.report.kinds import kinds_of_records, published_kind, records_by_kind
from eval_encoder.report.names import LeaderboardError
from eval_encoder.report.optimism import load_optimism, optimism_note
from eval_encoder.report.plots import plot_board, plot_compute
from eval_encoder.report.records import add_runs_flag, load_records, records_by_table
from eval_encoder.report.render import FORMATS, render_tables
from eval_encoder.report.reported import load_reported
from eval_encoder.report.selection import SELECTIONS, select_records
from eval_encoder.report.reported import reported_csv as reported_path

log = logging.getLogger(__name__)


SELECTION_NOTE = {"heldout": "each run's head and epoch chosen on held-out training clips, "
                            "scored once on val", "val": "each run's best (head, epoch) on val, "
                            "the split it reports (optimistic by the choice)"}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m eval_encoder leaderboard",
        description="Build the attentive-probe leaderboard from run records.")
    add_runs_flag(parser)
    _add_choice_flags(parser)
    _add_output_flags(parser)
    add_verbosity_flags(parser)  # -v/-q
    return parser


def _add_choice_flags(parser: argparse.ArgumentParser) -> None:
    """Which runs and numbers the tables hold: protocol, head kind, selection, reported."""
    parser.add_argument("--protocol", choices=PROTOCOLS,
                        help="one table, of this protocol's runs (and with --reported the numbers "
                             "of the published code it follows); default: a table per published "
                             "code the records' protocols follow (the OneVision paper: paper and "
                             "clean; V-JEPA 2: vjepa2)")
    parser.add_argument("--probe_head", metavar="KIND",
                        help="the tables of this head kind only (each run's reported head of "
                             "that kind); default: a table per kind the records hold")
    parser.add_argument("--selection", choices=SELECTIONS,
                        help="which number of each run to table: 'heldout' (the head chosen on "
                             "held-out training clips, --select_on heldout) or 'val' (the grid's "
                             "validation maximum, as the papers report); default: each record's "
                             "reported number")
    parser.add_argument("--reported", action="store_true",
                        help="show the reported numbers beside the measured ones, with deltas")
    parser.add_argument("--val_optimism", action="store_true",
                        help="with --reported: a footnote with each dataset's expected gain from "
                             "the paper's validation draw (results/val_sampling_optimism.csv)")
    parser.add_argument("--reported_csv",
                        help="reported numbers (default: the shipped file of the table's "
                             "published code: results/paper_attentive_probe.csv, "
                             "results/vjepa2_attentive_probe.csv); one table only")
    parser.add_argument("--datasets", help="comma-separated benchmark columns that AVG is over "
                        "(default: with --reported the paper's eight, else the datasets the "
                        "records hold: the paper's among them, or all when none is the paper's; "
                        "others are shown after AVG's)")
    parser.add_argument("--metric", default="top1", choices=list(stats.VIEWS),
                        help="what the cells show (default top1; action adds an epic_action "
                             "column, verb and noun both right, to the top-1 table)")


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    """How the tables are written: format, file, plots, compute and intervals."""
    parser.add_argument("--format", default="md", choices=FORMATS, help="table format (default md)")
    parser.add_argument("--out", help="write the table here instead of standard output")
    parser.add_argument("--plot", metavar="FILE.png", help="also save a plot (needs matplotlib)")
    parser.add_argument("--gflops", action="store_true",
                        help="add a GFLOPs/clip column: the encoder's GFLOPs per clip (one "
                             "view) from the records' compute; – where a record has none")
    parser.add_argument("--plot_compute", metavar="FILE.png",
                        help="also save accuracy against encoder GFLOPs per clip (log x), a "
                             "point per measured row (needs matplotlib)")
    parser.add_argument("--ci", nargs="?", const="bootstrap", choices=stats.INTERVALS,
                        help=f"show a {stats.LEVEL * 100:.0f}%% interval for every cell and AVG: "
                             "bootstrap over the clips (the default when --ci is given alone) "
                             "or exact (Clopper-Pearson for single-run top-1/top-5 cells)")
    parser.add_argument("--resamples", type=int, default=stats.RESAMPLES,
                        help=f"bootstrap resamples (default {stats.RESAMPLES})")


def make_board(runs: str, reported: bool = False, reported_csv: Optional[Path] = None,
               datasets: Optional[Sequence[str]] = None, metric: str = "top1",
               ci: Optional[str] = None, resamples: int = stats.RESAMPLES,
               protocol: Optional[str] = None) -> Board:
    """The first table :func:`make_boards` makes (the only one, for records of one table)."""
    return make_boards(runs, reported, reported_csv, datasets, metric, ci, resamples,
                       protocol)[0]


def make_boards(runs: str, reported: bool = False, reported_csv: Optional[Path] = None,
                datasets: Optional[Sequence[str]] = None, metric: str = "top1",
                ci: Optional[str] = None, resamples: int = stats.RESAMPLES,
                protocol: Optional[str] = None, kind: Optional[str] = None,
                selection: Optional[str] = None) -> List[Board]:
    """Load the records under ``runs`` and build a table per published code they follow (one,
    of ``protocol``'s runs, when given) and per head kind (see :mod:`eval_encoder.report.kinds`;
    ``kind``: that kind's only), each beside its reported numbers with ``reported``."""
    records, left_out = select_records(load_records(Path(runs)), selection)
    if not records:
        log.warning("no run records under %s", runs)
    tables = [(name, k, recs) for name, held in records_by_table(records, protocol).items()
              for k, recs in records_by_kind(held, kind).items()]
    if kind and not any(recs for _, _, recs in tables):
        raise LeaderboardError(f"--probe_head {kind}: no record reports a head of that kind "
                               f"(they hold: {', '.join(kinds_of_records(records)) or 'none'})")
    if reported_csv and len(tables) > 1:
        raise LeaderboardError("--reported_csv holds one table's numbers, and the records fill "
                               f"{len(tables)} tables: choose one with --protocol")
    boards = [_kind_table(PUBLISHED[name], k, recs, reported, reported_csv, datasets, metric,
                          ci, resamples) for name, k, recs in tables]
    if kind and len(boards) == 1:  # no title line names it
        boards[0].notes.append(f"probe head: each run's reported {kind} head")
    for board in boards:
        board.notes += left_out + ([f"selection: {SELECTION_NOTE[selection]}"] if selection
                                   else [])
    return boards


def _kind_table(published: Published, kind: Optional[str], records, reported: bool,
                reported_csv: Optional[Path], datasets, metric: str, ci: Optional[str],
                resamples: int) -> Board:
    """One kind's table; the reported numbers only beside their own kind's."""
    own = kind in (None, published_kind(published.reproduced_by))
    board = _table(published, records, reported and own, reported_csv, datasets, metric, ci,
                   resamples)
    board.head_kind = kind
    if reported and not own:
        board.notes.append(f"no reported numbers beside the {kind} heads: "
                           f"{published.title} reports {published_kind(published.reproduced_by)}"
                           " heads")
    return board


def _table(published: Published, records: Sequence[Dict[str, Any]], reported: bool,
           reported_csv: Optional[Path], datasets: Optional[Sequence[str]], metric: str,
           ci: Optional[str], resamples: int) -> Board:
    rep = (load_reported(Path(reported_csv or reported_path(published)), published)
           if reported else None)
    columns = datasets or default_columns(records, reported, published)
    return build_board(records, columns, rep, metric, ci, resamples, published)


def val_optimism_note(reported: bool, datasets: Sequence[str]) -> str:
    """``--val_optimism``'s footnote; it explains the paper's rows, so --reported is needed."""
    if not reported:
        raise LeaderboardError("--val_optimism explains the paper's numbers: give --reported too")
    return optimism_note(load_optimism(), datasets)


def add_optimism(boards: Sequence[Board], reported: bool) -> None:
    """``--val_optimism``: the footnote under each table whose reported numbers it explains."""
    explained = [b for b in boards if b.published.val_draw_note]
    if not explained:
        raise LeaderboardError("--val_optimism explains the OneVision paper's numbers; these "
                               "records fill no table of them")
    for board in explained:
        board.notes.append(val_optimism_note(reported, board.datasets))


def write_plots(boards: Sequence[Board], plot: Optional[str], compute: Optional[str]) -> None:
    if (plot or compute) and len(boards) > 1:
        raise LeaderboardError(f"a plot shows one table and the records fill {len(boards)}: "
                               "choose one with --protocol")
    if plot:
        plot_board(boards[0], plot)
    if compute:
        plot_compute(boards[0], compute)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m eval_encoder leaderboard``: print (or write) the tables, optionally a plot."""
    args = build_parser().parse_args(argv)
    setup_logging()
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    try:
        boards = make_boards(args.runs, args.reported, args.reported_csv, datasets, args.metric,
                             args.ci, args.resamples, args.protocol, args.probe_head,
                             args.selection)
        for board in boards:
            board.gflops = args.gflops
        if args.val_optimism:
            add_optimism(boards, args.reported)
        text = render_tables(boards, args.format)
        write_plots(boards, args.plot, args.plot_compute)
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
