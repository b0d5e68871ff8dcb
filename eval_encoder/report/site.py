"""``python -m eval_encoder report --runs R --out SITE``: a static HTML report of run records
that opens from disk, with no server and no network (CSS and JS inlined, figures as SVG files
beside the pages, no external reference).

- ``index.html``: the leaderboard of each protocol family and head kind
  (:func:`eval_encoder.report.cli.make_boards`, with the reported numbers and the ``--ci``
  intervals), sortable columns, and each table's accuracy against GFLOPs;
- ``runs/<dataset>/<run_id>.html``: a page per run of a cell, every seed of it
  (:mod:`eval_encoder.report.runpage`); ``cells/<dataset>/<method>-<hash>.html``: a page per
  cell of several seeds, listing them, with per-class numbers summed over them
  (:mod:`eval_encoder.report.cellpage`);
- ``compare-<n>.html``: each ``--compare A B`` (:mod:`eval_encoder.report.compare`), with the
  classes that moved most.

``--selection heldout|val`` shows each run's number as ``leaderboard --selection`` does (the
held-out choice, or the grid's validation maximum; runs without it left out, with a note).

Usage: ``python -m eval_encoder report [--runs DIR] --out SITE [--compare A B]... [--ci
bootstrap|exact] [--resamples N] [--top N] [--selection heldout|val]``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from eval_encoder import stats
from eval_encoder.logs import add_verbosity_flags, setup_logging
from eval_encoder.parsing import ArgumentParser
from eval_encoder.report import cellpage, classes, compare, figures, html, runpage
from eval_encoder.report.board import Board
from eval_encoder.report.classnames import names_in, record_labeller
from eval_encoder.report.cli import SELECTION_NOTE, make_boards
from eval_encoder.report.names import DISPLAY_NAMES, ROW_KEYS
from eval_encoder.report.records import add_runs_flag, load_records
from eval_encoder.report.render import head_text
from eval_encoder.report.selection import SELECTIONS, select_records

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m eval_encoder report",
                            description="A static HTML report of run records (opens from disk).")
    add_runs_flag(parser)
    parser.add_argument("--out", required=True, metavar="SITE", help="folder for the report")
    parser.add_argument("--compare", nargs=2, action="append", default=[],
                        metavar=("A", "B"), help="a comparison page of two runs or rows "
                        "(as `compare` names them); may be given several times")
    parser.add_argument("--ci", default="bootstrap", choices=stats.INTERVALS,
                        help="the cells' 95%% interval (default bootstrap)")
    parser.add_argument("--resamples", type=int, default=stats.RESAMPLES,
                        help=f"bootstrap resamples (default {stats.RESAMPLES})")
    parser.add_argument("--selection", choices=SELECTIONS,
                        help="which number of each run to show, as `leaderboard --selection`: "
                             "'heldout' (the head chosen on held-out training clips) or 'val' "
                             "(the grid's validation maximum); runs without it are left out, "
                             "said in a note; default: each record's reported number")
    parser.add_argument("--top", type=int, default=20,
                        help="confusions per run page, classes per comparison (default 20)")
    add_verbosity_flags(parser)  # -v/-q
    return parser


def _board_title(board: Board) -> str:
    return board.published.title + head_text(board)


def _lines(board: Board) -> List[Dict[str, Any]]:
    return board.picked.to_dict("records") if board.picked is not None else []


def cells_of(board: Board) -> Iterator[Tuple[Dict[str, Any], List[Dict[str, Any]]]]:
    """Each cell of the board (derived columns apart) with its records: the seeds of its
    latest configuration, or its latest failed run."""
    for line in _lines(board):
        if line["dataset"] not in stats.DERIVED:
            yield line, [board.records[i] for i in line["refs"]]


def run_pages(env, site: Path, records: List[Dict[str, Any]], boards: Sequence[Board],
              top: int, originals: Optional[Dict[str, Dict[str, Any]]] = None
              ) -> Dict[str, str]:
    """A page per record that fills a cell of a board (every seed of it); {record path:
    page}. ``records`` as ``--selection`` shows them, ``originals`` as written."""
    paths = {r["_path"] for b in boards for _, runs in cells_of(b) for r in runs}
    pages = {}
    for record in records:
        if record["_path"] in paths:
            original = (originals or {}).get(record["_path"])
            pages[record["_path"]] = write_run(env, site, record, top, original)
    return pages


def write_run(env, site: Path, record: Dict[str, Any], top: int,
              original: Optional[Dict[str, Any]] = None) -> str:
    context = runpage.run_context(record, top, original)
    stem = context["page"][:-len(".html")]
    for i, grid in enumerate(context["grids"]):
        grid["svg"] = _figure(site, context["page"], figures.heatmap_svg, grid,
                              f"{stem}.grid{i}.svg")
        grid["title"] = figures.grid_title(grid)
    context["curves_svg"] = (_figure(site, context["page"], figures.curves_svg,
                                     context["curves"], f"{stem}.curves.svg")
                             if context["curves"] else None)
    html.write_page(env, site, context["page"], "run.html",
                    title=f"{context['row']['method']} on {record['dataset']['name']}",
                    names=DISPLAY_NAMES, **context)
    return context["page"]


def _figure(site: Path, page: str, draw, data, name: str) -> str:
    """Draw into ``site/name``; the figure's address relative to ``page``."""
    draw(data, site / name)
    return Path(name).name if Path(name).parent == Path(page).parent else name


def cell_links(env, site: Path, board: Board, pages: Dict[str, str], top: int
               ) -> Dict[tuple, str]:
    """(row keys, dataset) -> where a cell links: the page of a cell of several seeds
    (written here), else its run's page (a derived column's: its first part's run)."""
    links = {}
    for line in _lines(board):
        runs = [board.records[i] for i in line["refs"]]
        if line["dataset"] in stats.DERIVED:
            target = pages.get(line["path"])
        elif line["status"] == "complete" and len(runs) > 1:
            target = write_cell(env, site, line, runs, pages, board.head_kind, top)
        else:
            target = pages.get(runs[0]["_path"])
        if target:
            links[(*[line[k] for k in ROW_KEYS], line["dataset"])] = target
    return links


def write_cell(env, site: Path, line: Dict[str, Any], runs: List[Dict[str, Any]],
               pages: Dict[str, str], kind: Optional[str], top: int) -> str:
    context = cellpage.cell_context(line, runs, pages, kind, top)
    name = DISPLAY_NAMES.get(line["dataset"], line["dataset"])
    html.write_page(env, site, context["page"], "cell.html",
                    title=f"{line['method']} on {name}, {len(runs)} seeds", names=DISPLAY_NAMES,
                    **context)
    return context["page"]


def index_page(env, site: Path, boards: Sequence[Board], pages: Dict[str, str],
               comparisons: List[Dict[str, str]], runs: str, seconds: float, top: int,
               selection: Optional[str] = None) -> Path:
    tables = []
    for i, board in enumerate(boards):
        view = html.board_view(board, cell_links(env, site, board, pages, top))
        for failure in view["failures"]:
            failure["href"] = pages.get(failure["record"])
        svg = figures.compute_svg(board, site / f"figures/compute-{i}.svg")
        tables.append({"title": _board_title(board), "view": view,
                       "compute": f"figures/compute-{i}.svg" if svg else None})
    return html.write_page(env, site, "index.html", "index.html", title="eval_encoder report",
                           tables=tables, comparisons=comparisons, runs=runs,
                           seconds=seconds, pages=len(pages), selection=selection,
                           selection_note=SELECTION_NOTE.get(selection))


def compare_page(env, site: Path, n: int, a: str, b: str, runs: Path, resamples: int,
                 top: int, pages: Dict[str, str], selection: Optional[str] = None
                 ) -> Dict[str, str]:
    """``compare A B`` (under ``selection``, as ``compare --selection``) as
    ``compare-<n>.html``; {page, title}."""
    c = compare.compare(*(compare.selected(compare.resolve(x, runs), selection) for x in (a, b)),
                        resamples=resamples)
    moves = {line.dataset: classes.moved([classes.load(r) for r in c.a.runs[line.dataset]],
                                         [classes.load(r) for r in c.b.runs[line.dataset]], top)
             for line in c.lines}
    labels = {d: record_labeller(c.a.runs[d][0]) for d in moves}
    name = f"compare-{n}.html"
    html.write_page(env, site, name, "compare.html", title=f"{a} vs {b}", c=c, moves=moves,
                    labels=labels, summary=compare.summary(c), names=DISPLAY_NAMES,
                    level=1 - c.alpha,
                    links={r["_path"]: pages.get(r["_path"]) for side in (c.a, c.b)
                           for rs in side.runs.values() for r in rs})
    return {"page": name, "title": f"{a} vs {b}"}


def build_site(runs: str, out: str, pairs: Sequence[Sequence[str]] = (), ci: str = "bootstrap",
               resamples: int = stats.RESAMPLES, top: int = 20,
               selection: Optional[str] = None) -> Path:
    """Write the report of the records under ``runs`` into ``out``, each run's number as
    ``selection`` chooses it (``leaderboard --selection``); returns the index."""
    start = time.perf_counter()
    site = Path(out)
    site.mkdir(parents=True, exist_ok=True)
    env = html.environment()
    names_in.cache_clear()  # class names as the files now say
    boards = make_boards(runs, reported=True, ci=ci, resamples=resamples, selection=selection)
    for board in boards:
        board.gflops = True
    records = load_records(Path(runs))
    views, _ = select_records(records, selection)
    pages = run_pages(env, site, views, boards, top, {r["_path"]: r for r in records})
    comparisons = [compare_page(env, site, n, a, b, Path(runs), resamples, top, pages, selection)
                   for n, (a, b) in enumerate(pairs, 1)]
    index = index_page(env, site, boards, pages, comparisons, runs,
                       time.perf_counter() - start, top, selection)
    log.info("report of %d run page(s) in %.1f s: %s", len(pages),
             time.perf_counter() - start, index)
    return index


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m eval_encoder report``: write the site and print its index's path."""
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        index = build_site(args.runs, args.out, args.compare, args.ci, args.resamples, args.top,
                           args.selection)
    except ValueError as exc:  # LeaderboardError, CompareError, StatsError, unreadable records
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {index.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
