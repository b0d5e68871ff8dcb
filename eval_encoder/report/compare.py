"""``python -m eval_encoder compare A B``: is A better than B beyond the noise of the clips?

A and B are each a *run* or a leaderboard *row*:

- a run: a record path, or a run id found under ``--runs`` (``<runs>/<dataset>/<run_id>.json``);
- a row: a method label as the leaderboard prints it, optionally with ``@<frames>`` and
  ``:<protocol>`` (``"OneVision Encoder@8:paper"``); the row's latest complete records per
  dataset are used (all seeds of the latest configuration, as the leaderboard shows them).

On every dataset both have, the clips of their per-clip prediction files are matched by id and
it prints A, B, the difference A - B in points with its paired bootstrap interval (the clips
resampled jointly, so what both get right or wrong cancels; for two single runs of a share
where either has fewer than 10 clips right or wrong, or no clip is discordant, Newcombe's
hybrid score interval instead, marked ⁿ: see :mod:`eval_encoder.stats.small`) and, for two single runs of a
share-of-clips metric (top-1, top-5), the clips only one of them gets right and the exact
McNemar p-value. AVG is the mean difference over those datasets, its interval from each
dataset's paired replicates averaged. It ends with a sentence: "A is better on 5 of 8
datasets; significant at 0.05 on 3."

Significant means McNemar p < alpha where McNemar applies, otherwise (seed-means, mean
per-class accuracy, mAP) a paired interval at level 1 - alpha that excludes 0. Each dataset
is tested on its own: with 8 datasets at 0.05, about one in three comparisons of two equal
encoders finds at least one "significant" dataset.

Each run is compared by its first ``--probe_head`` kind's reported head, or by the kind
``--probe_head`` names (a run of several kinds keeps per-clip predictions for each). Runs whose
compared heads are of different kinds (ov against linear) are refused, and so are runs on
different validation manifests (``record["dataset"]["val_manifest_sha256"]``) are
refused, naming the dataset and both hashes, and so are clips present in one file only.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from eval_encoder import stats
from eval_encoder.logs import add_verbosity_flags, setup_logging
from eval_encoder.parsing import ArgumentParser
from eval_encoder.report.cells import pick_latest
from eval_encoder.report.kinds import kind_view, record_kinds
from eval_encoder.report.names import DISPLAY_NAMES, PAPER_DATASETS, ROW_KEYS
from eval_encoder.report.selection import SELECTIONS, selection_view
from eval_encoder.report.records import (
    add_runs_flag,
    load_record,
    load_records,
    records_frame,
    row_labels,
)

log = logging.getLogger(__name__)

ROW_SPEC = re.compile(r"^(?P<method>.+?)(?:@(?P<frames>\d+))?(?::(?P<protocol>[\w*]+))?$")


class CompareError(ValueError):
    """Two runs or rows that cannot be compared, with the reason."""


@dataclass
class Side:
    """One side of a comparison: how it was named and its records per dataset (seeds)."""

    label: str
    runs: Dict[str, List[Dict[str, Any]]]


@dataclass
class Line:
    dataset: str
    result: stats.Paired
    significant: bool


@dataclass
class Comparison:
    a: Side
    b: Side
    metric: str
    alpha: float
    resamples: int
    lines: List[Line]  # benchmark datasets, in the leaderboard's order
    derived: List[Line] = field(default_factory=list)  # e.g. epic_action, not in AVG
    avg: Optional[Tuple[float, stats.Interval]] = None
    unpaired: List[str] = field(default_factory=list)  # "diving48 (A only)"


# ----------------------------------------------------------------------------- naming a side
def resolve(spec: str, runs: Path) -> Side:
    """A run (record path or run id under ``runs``) or a leaderboard row."""
    record = _as_record(spec, runs)
    if record is not None:
        labels = row_labels(record)
        name = record["dataset"]["name"]
        return Side(f"run {record.get('run_id')} ({labels['method']}, {labels['frames']} "
                    f"frames, {labels['protocol']}; {name})", {name: [record]})
    return _as_row(spec, runs)


def _as_record(spec: str, runs: Path) -> Optional[Dict[str, Any]]:
    path = Path(spec)
    if path.is_file():
        return _complete(load_record(path))
    found = sorted(Path(runs).glob(f"*/{path.stem if spec.endswith('.json') else spec}.json"))
    if len(found) > 1:
        raise CompareError(f"run id {spec!r} names {len(found)} records: "
                           + ", ".join(map(str, found)))
    return _complete(load_record(found[0])) if found else None


def _complete(record: Dict[str, Any]) -> Dict[str, Any]:
    if record["status"] != "complete":
        raise CompareError(f"{record['_path']}: a failed run has nothing to compare "
                           f"({record.get('error')})")
    return record


def _as_row(spec: str, runs: Path) -> Side:
    """The latest complete records of the leaderboard row named ``method[@frames][:protocol]``."""
    records = load_records(Path(runs))
    picked = pick_latest(records_frame(records)) if records else None
    done = picked[picked["status"] == "complete"] if picked is not None else None
    if done is None or done.empty:
        raise CompareError(f"{spec!r} is not a record file, and {runs} holds no complete run "
                           "to find it as a run id or leaderboard row")
    match = _matching(done, spec)
    rows = match[ROW_KEYS].drop_duplicates().to_dict("records")
    if len(rows) != 1:
        raise CompareError(_row_problem(spec, rows, done))
    row = rows[0]
    cells = {line["dataset"]: [records[i] for i in line["refs"]]
             for line in match.to_dict("records")}
    return Side(f"{row['method']} ({row['frames']} frames, {row['protocol']}; "
                f"{len(cells)} dataset{'s' * (len(cells) != 1)})", cells)


def _matching(done, spec: str):
    parts = ROW_SPEC.match(spec).groupdict()
    keep = done["method"] == parts["method"]
    if parts["frames"]:
        keep &= done["frames"] == int(parts["frames"])
    if parts["protocol"]:
        keep &= done["protocol"] == parts["protocol"]
    return done[keep]


def _row_problem(spec: str, rows: List[Dict[str, Any]], done) -> str:
    def name(row: Dict[str, Any]) -> str:
        return f"{row['method']}@{row['frames']}:{row['protocol']}"

    if rows:
        return (f"{spec!r} names {len(rows)} leaderboard rows; say which: "
                + ", ".join(repr(name(r)) for r in rows))
    known = sorted({name(r) for r in done[ROW_KEYS].to_dict("records")})
    return (f"{spec!r} is neither a record file, a run id nor a leaderboard row; rows: "
            + ", ".join(map(repr, known)))


# ----------------------------------------------------------------------------- comparing
def compare(a: Side, b: Side, metric: str = "top1", resamples: int = stats.RESAMPLES,
            alpha: float = 0.05) -> Comparison:
    """A against B on every dataset both have, and on their average."""
    view = stats.view(metric)
    shared = [d for d in a.runs if d in b.runs]
    if not shared:
        raise CompareError(f"nothing to compare: A has {', '.join(sorted(a.runs))}; "
                           f"B has {', '.join(sorted(b.runs))}")
    order = {d: i for i, d in enumerate(PAPER_DATASETS)}
    shared.sort(key=lambda d: (order.get(d, len(order)), d))
    lines = [_dataset_line(d, a.runs[d], b.runs[d], view.metric, resamples, alpha)
             for d in shared]
    out = Comparison(a, b, metric, alpha, resamples, lines)
    out.unpaired = [f"{d} ({side} only)" for side, mine, other in (("A", a, b), ("B", b, a))
                    for d in sorted(mine.runs) if d not in other.runs]
    out.derived = [line for name in view.derived
                   for line in [_derived_line(name, a, b, resamples, alpha)] if line]
    if len(lines) > 1:
        diff = float(np.mean([line.result.diff for line in lines]))
        out.avg = diff, stats.average_interval([line.result.replicates for line in lines],
                                               1.0 - alpha)
    return out


def _dataset_line(dataset: str, a: List[Dict[str, Any]], b: List[Dict[str, Any]], metric: str,
                  resamples: int, alpha: float) -> Line:
    check_manifests(dataset, a, b)
    check_kinds(dataset, a, b)
    measures = [stats.measure(r, metric, ids=True) for r in (*a, *b)]
    names = [f"{side} ({stats.where(r)})" for side, rs in (("A", a), ("B", b)) for r in rs]
    result = stats.paired(measures[:len(a)], measures[len(a):], names, dataset, resamples,
                          1.0 - alpha)
    return Line(dataset, result, _significant(result, alpha))


def _derived_line(name: str, a: Side, b: Side, resamples: int, alpha: float) -> Optional[Line]:
    """A derived column (epic_action) when both sides have both of its parts."""
    first, second = stats.DERIVED[name].parts
    if not all(part in side.runs for part in (first, second) for side in (a, b)):
        log.info("%s: needs %s and %s on both sides", name, first, second)
        return None
    for part in (first, second):
        check_manifests(part, a.runs[part], b.runs[part])
    sides = [stats.seed_pairs(s.runs[first], s.runs[second]) for s in (a, b)]
    measures = [[stats.derived_measure(name, x, y) for x, y in pairs] for pairs in sides]
    names = [f"{side} ({stats.where(x)})" for side, pairs in zip("AB", sides) for x, _ in pairs]
    result = stats.paired(measures[0], measures[1], names, name, resamples, 1.0 - alpha)
    return Line(name, result, _significant(result, alpha))


def check_kinds(dataset: str, a: Sequence[Dict[str, Any]], b: Sequence[Dict[str, Any]]
                ) -> None:
    """Refuse runs whose reported heads (those of their per-clip predictions: a run's first
    head kind) are of different kinds: like is compared with like."""
    kinds = [(side, stats.where(r), record_kinds(r)[0])
             for side, runs in (("A", a), ("B", b)) for r in runs]
    other = next((k for k in kinds if k[2] != kinds[0][2]), None)
    if other is not None:
        first = kinds[0]
        raise CompareError(
            f"cannot compare {dataset}: {first[0]} {first[1]} reports a {first[2]} head and "
            f"{other[0]} {other[1]} a {other[2]} head; compare runs of one head kind "
            "(--probe_head KIND compares that kind's heads of both)")


def check_manifests(dataset: str, a: Sequence[Dict[str, Any]], b: Sequence[Dict[str, Any]]
                    ) -> None:
    """Refuse runs of one dataset on different validation manifests."""
    hashes = [(side, stats.where(r), (r.get("dataset") or {}).get("val_manifest_sha256"))
              for side, runs in (("A", a), ("B", b)) for r in runs]
    known = [h for h in hashes if h[2]]
    differ = [h for h in known if h[2] != known[0][2]] if known else []
    if differ:
        first, other = known[0], differ[0]
        raise CompareError(
            f"cannot compare {dataset}: the validation manifests differ ({first[0]} "
            f"{first[1]}: {first[2]}; {other[0]} {other[1]}: {other[2]}); results on "
            "different validation sets are not paired")
    if len(known) < len(hashes):
        log.warning("%s: a record without val_manifest_sha256; clips are matched by id only",
                    dataset)


def _significant(result: stats.Paired, alpha: float) -> bool:
    if result.p is not None:
        return result.p < alpha
    return result.interval.lo > 0 or result.interval.hi < 0


# ----------------------------------------------------------------------------- output
NEWCOMBE_MARK = "ⁿ"
NEWCOMBE_NOTE = (f"{NEWCOMBE_MARK}: Newcombe's hybrid score interval (Wilson intervals of A and B "
                 "joined through their correlation), not the bootstrap: a run with fewer than "
                 f"{stats.MINORITY} clips right or wrong, or no clip that only one gets right; "
                 "in AVG its resampled values are draws of the Dirichlet(2x2 table + 1/2)")
def render(c: Comparison) -> str:
    """The comparison as plain text: the two sides, a line per dataset, AVG, a sentence."""
    title = stats.METRICS[stats.VIEWS[c.metric].metric].title
    level = f"{1 - c.alpha:.0%}"
    out = [f"A: {c.a.label}", f"B: {c.b.label}",
           f"{title} (%); A - B in points with its {level} paired bootstrap interval "
           f"({c.resamples:,} joint resamples of the clips, seed {stats.SEED}); p: exact McNemar "
           "test on the clips only one of them gets right (single runs of top-1/top-5)", "",
           f"{'dataset':<16}{'clips':>7}{'A':>7}{'B':>7}{'A - B':>8}  {level + ' interval':<17}"
           f"{'A only':>7}{'B only':>7}{'p':>10}"]
    out += [_text_line(line) for line in c.lines]
    if c.avg is not None:
        diff, iv = c.avg
        out.append(f"{'AVG':<16}{'':>7}{_mean(c, 'a'):>7.1f}{_mean(c, 'b'):>7.1f}{diff:>+8.1f}  "
                   f"[{iv.lo:+.1f}, {iv.hi:+.1f}]")
    out += [_text_line(line) + "  (not in AVG)" for line in c.derived]
    if any(line.significant for line in [*c.lines, *c.derived]):
        out.append(f"* significant at {c.alpha:g}")
    if any(line.result.interval.method == "newcombe" for line in [*c.lines, *c.derived]):
        out.append(NEWCOMBE_NOTE)
    if c.unpaired:
        out.append(f"not compared: {', '.join(c.unpaired)}")
    return "\n".join(out + ["", summary(c)]) + "\n"


def _text_line(line: Line) -> str:
    r = line.result
    name = DISPLAY_NAMES.get(line.dataset, line.dataset)
    counts = (f"{r.only_a:>7}{r.only_b:>7}{_p_text(r.p):>10}" if r.p is not None
              else f"{'':>7}{'':>7}{'-':>10}")
    mark = NEWCOMBE_MARK if r.interval.method == "newcombe" else ""
    return (f"{name:<16}{r.clips:>7}{r.a:>7.1f}{r.b:>7.1f}{r.diff:>+8.1f}  "
            f"{'[' + f'{r.interval.lo:+.1f}, {r.interval.hi:+.1f}' + ']' + mark:<17}{counts}"
            + (" *" if line.significant else ""))


def _p_text(p: float) -> str:
    if p <= 0.0:
        return "<1e-300"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _mean(c: Comparison, side: str) -> float:
    return float(np.mean([getattr(line.result, side) for line in c.lines]))


def summary(c: Comparison) -> str:
    """"A is better on 5 of 8 datasets; significant at 0.05 on 3." (B's count when it wins any.)"""
    n = len(c.lines)
    a = [line for line in c.lines if line.result.diff > 0]
    b = [line for line in c.lines if line.result.diff < 0]
    text = (f"A is better on {len(a)} of {n} dataset{'s' * (n != 1)}; significant at "
            f"{c.alpha:g} on {sum(line.significant for line in a)}.")
    if b:
        text += f" B is better on {len(b)}; significant on {sum(line.significant for line in b)}."
    return text


def selected(side: Side, selection: Optional[str], kind: Optional[str] = None) -> Side:
    """``side`` with each record as ``selection`` and then head ``kind`` show it; a record
    that cannot is refused."""
    runs = {}
    for dataset, records in side.runs.items():
        views = [selection_view(r, selection) for r in records]
        if any(v is None for v in views):
            raise CompareError(f"--selection {selection}: a {dataset} run of {side.label} has "
                               "no such number")
        runs[dataset] = [_of_kind(v, kind, dataset, side) for v in views]
    label = f"{side.label}, its {kind} head" if kind else side.label
    return dataclasses.replace(side, label=label, runs=runs)


def _of_kind(record: Dict[str, Any], kind: Optional[str], dataset: str, side: Side
             ) -> Dict[str, Any]:
    """``record`` as its head ``kind`` shows it (itself when no kind is asked)."""
    view = record if kind is None else kind_view(record, kind)
    if view is None:
        raise CompareError(f"--probe_head {kind}: the {dataset} run {stats.where(record)} of "
                           f"{side.label} has no {kind} head (its kinds: "
                           f"{', '.join(record_kinds(record))})")
    return view


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m eval_encoder compare",
        description="Paired comparison of two runs or leaderboard rows on the same clips.")
    parser.add_argument("a", metavar="RUN_OR_ROW_A",
                        help="a record path, a run id, or a row: 'method[@frames][:protocol]'")
    parser.add_argument("b", metavar="RUN_OR_ROW_B", help="the same, for B")
    add_runs_flag(parser)
    parser.add_argument("--metric", default="top1", choices=list(stats.VIEWS),
                        help="what to compare (default top1; action adds epic_action)")
    parser.add_argument("--selection", choices=SELECTIONS,
                        help="compare the heads chosen on held-out clips ('heldout') or the "
                             "grids' val maxima ('val'); default: each record's reported head")
    parser.add_argument("--probe_head", metavar="KIND",
                        help="compare this head kind's reported heads (e.g. linear of two "
                             "runs of --probe_head ov linear knn); default: each run's first "
                             "kind")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="significance level (default 0.05; the interval is at 1 - alpha)")
    parser.add_argument("--resamples", type=int, default=stats.RESAMPLES,
                        help=f"bootstrap resamples (default {stats.RESAMPLES})")
    add_verbosity_flags(parser)  # -v/-q
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m eval_encoder compare``: print the comparison; exit 2 when it is refused."""
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        if not 0.0 < args.alpha < 1.0:
            raise CompareError(f"--alpha must be between 0 and 1 (got {args.alpha})")
        a, b = (selected(resolve(spec, Path(args.runs)), args.selection, args.probe_head)
                for spec in (args.a, args.b))
        text = render(compare(a, b, args.metric, args.resamples, args.alpha))
    except ValueError as exc:  # CompareError, StatsError, unreadable records
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
