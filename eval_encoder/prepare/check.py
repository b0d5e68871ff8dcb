"""``python -m eval_encoder check``: is a data root ready for a run?

    python -m eval_encoder check --data_root D --dataset X [--json OUT] [--min_frames 16]

Reads both manifests of the dataset's card (``path,label`` and segment lines
``path,label,start,end``), opens every video once on a thread pool (PyAV: open the container,
find the video stream, decode nothing) and reports: lines per split and per class; missing and
unreadable files; duration, resolution, frame-rate and codec histograms; clips or segments
shorter than ``--min_frames``; segments past their video's end; repeated lines; and any
overlap of train and val (the same whole clip, or time-overlapping segments of one video).
The report is printed and written as JSON (``<data_root>/<dataset>/check_report.json`` by
default). Exit status 1 when a run would fail: a split without lines, more than
``--max_missing_fraction`` (1%, the probe's default ``--max_skip_fraction``) of a split's lines
on missing or unreadable files, or any train/val overlap; 0 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from tqdm import tqdm

from eval_encoder.logs import add_verbosity_flags, setup_logging
from eval_encoder.parsing import ArgumentParser
from eval_encoder.prepare.base import Segment
from eval_encoder.prepare.lines import Entry, format_time, read_entries
from eval_encoder.prepare.write import write_atomic
from eval_encoder.video.manifest import ManifestError, invisible_note, load_card, split_paths

log = logging.getLogger("eval_encoder.check")

REPORT_NAME = "check_report.json"
DEFAULT_THREADS = min(32, 4 * (os.cpu_count() or 1))  # opening waits on storage, not the CPU
DURATION_BINS = ((2, "<2s"), (5, "2-5s"), (10, "5-10s"), (30, "10-30s"), (60, "30-60s"),
                 (300, "1-5min"), (1800, "5-30min"), (float("inf"), ">=30min"))
SHOWN = 5  # problems named per kind in the printed report; the JSON lists all


@dataclass
class ClipInfo:
    """What opening one file found: ``error`` is None when it opened with a video stream."""

    error: Optional[str] = None
    missing: bool = False
    codec: Optional[str] = None
    width: int = 0
    height: int = 0
    fps: float = 0.0
    frames: Optional[int] = None
    duration: Optional[float] = None


def _stream_info(container, stream) -> ClipInfo:
    """Codec, size, rate, frame count and duration from the headers (nothing decoded)."""
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate
    duration = (float(stream.duration * stream.time_base) if stream.duration
                else container.duration / 1e6 if container.duration else None)
    fps = float(rate) if rate else 0.0
    frames = stream.frames or (round(duration * fps) if duration and fps else None)
    return ClipInfo(codec=ctx.name, width=ctx.width, height=ctx.height, fps=fps,
                    frames=frames, duration=duration)


def probe(path: str) -> ClipInfo:
    """Open ``path`` and describe its first video stream (cover images do not count)."""
    import av

    if not os.path.isfile(path):
        return ClipInfo(error=f"file not found{invisible_note(path)}", missing=True)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        return ClipInfo(error=f"cannot open ({exc})")
    try:
        still = av.stream.Disposition.attached_pic | av.stream.Disposition.timed_thumbnails
        streams = [s for s in container.streams.video if not (s.disposition & still)]
        if not streams:
            return ClipInfo(error="no video stream (besides cover images)")
        return _stream_info(container, streams[0])
    finally:
        container.close()


def probe_all(paths: Sequence[str], threads: int = DEFAULT_THREADS) -> Dict[str, ClipInfo]:
    """``{path: info}`` for every path, opened in parallel."""
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="check") as pool:
        infos = list(tqdm(pool.map(probe, paths), total=len(paths), desc="check", leave=False,
                          disable=len(paths) < 1000 or None))
    return dict(zip(paths, infos))


def segment_frames(entry: Entry, info: ClipInfo) -> Optional[float]:
    """Frames the entry covers: the whole clip's, or its segment's (seconds x rate)."""
    seg = entry.segment
    if seg is None:
        return info.frames
    if seg.unit == "f":
        return seg.end - seg.start
    return (seg.end - seg.start) * info.fps if info.fps else None


def past_end(seg: Optional[Segment], info: ClipInfo) -> bool:
    """Whether a segment ends after its video (one frame of slack for rounded timestamps and
    frame counts read from the container)."""
    if seg is None:
        return False
    if seg.unit == "f":
        return info.frames is not None and seg.end > info.frames + 1
    slack = 1 / info.fps if info.fps else 0.0
    return info.duration is not None and seg.end > info.duration + slack


def seg_text(seg: Optional[Segment]) -> Optional[str]:
    """``"12.0-15.5"`` / ``"100f-200f"``, None for a whole clip."""
    return None if seg is None else f"{format_time(seg.start, seg.unit)}-{format_time(seg.end, seg.unit)}"


def class_names(folder: str, num_classes: int) -> List[str]:
    """Names from ``classes.csv`` beside the manifests (written by prepare), else indices."""
    path = os.path.join(folder, "classes.csv")
    names = [str(i) for i in range(num_classes)]
    if os.path.isfile(path):
        with open(path, encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("index", "").isdigit() and int(row["index"]) < num_classes:
                    names[int(row["index"])] = f"{row['index']} {row['name']}"
    return names


def repeats(entries: Sequence[Entry]) -> Tuple[List[Dict], List[Dict]]:
    """(identical lines, same clip or segment under different labels), each with its lines."""
    groups: Dict[Tuple, List[Entry]] = defaultdict(list)
    for e in entries:
        groups[(e.path, e.segment)].append(e)
    duplicates, conflicting = [], []
    for (path, seg), group in groups.items():
        labels = Counter(e.label for e in group)
        item = {"path": path, "segment": seg_text(seg), "lines": [e.line for e in group],
                "labels": sorted(labels)}
        if any(n > 1 for n in labels.values()):
            duplicates.append(item)
        if len(labels) > 1:
            conflicting.append(item)
    return duplicates, conflicting


def split_report(entries: Sequence[Entry], folder: str, infos: Dict[str, ClipInfo],
                 names: Sequence[str], min_frames: int) -> Dict[str, Any]:
    """Counts and problems of one split."""
    paths = {e.path: os.path.join(folder, e.path) for e in entries}
    bad = {rel: infos[full] for rel, full in paths.items() if infos[full].error}
    lost = sum(1 for e in entries if e.path in bad)
    ok = [(e, infos[paths[e.path]]) for e in entries if e.path not in bad]
    short = [{"path": e.path, "segment": seg_text(e.segment), "frames": f}
             for e, info in ok if (f := segment_frames(e, info)) is not None and f < min_frames]
    duplicates, conflicting = repeats(entries)
    per_class = Counter(e.label for e in entries)
    return {"lines": len(entries), "files": len(paths),
            "per_class": {names[i]: per_class.get(i, 0) for i in range(len(names))},
            "classes_present": len(per_class),
            "missing": sorted(rel for rel, i in bad.items() if i.missing),
            "unreadable": [{"path": rel, "reason": i.error} for rel, i in sorted(bad.items())
                           if not i.missing],
            "lost_lines": lost, "lost_fraction": lost / len(entries) if entries else 0.0,
            "short": short,
            "segments_past_end": [{"path": e.path, "segment": seg_text(e.segment)}
                                  for e, info in ok if past_end(e.segment, info)],
            "duplicates": duplicates, "conflicting_labels": conflicting}


def _overlaps(a: Segment, b: Segment) -> bool:
    return a.unit == b.unit and min(a.end, b.end) > max(a.start, b.start)


def overlap(train: Sequence[Entry], val: Sequence[Entry]) -> Dict[str, List]:
    """Train/val leaks: a whole clip used in both splits (``same_path``), and segments of one
    video overlapping in time across the splits (``same_segment``, identical ones included)."""
    by_path: Dict[str, Tuple[List, List]] = defaultdict(lambda: ([], []))
    for side, entries in enumerate((train, val)):
        for e in entries:
            by_path[e.path][side].append(e.segment)
    same_path, same_segment = [], []
    for path, (t, v) in sorted(by_path.items()):
        if not (t and v):
            continue
        if None in t or None in v:
            same_path.append(path)
            continue
        same_segment += [{"path": path, "train": seg_text(a), "val": seg_text(b)}
                         for a in t for b in v if _overlaps(a, b)]
    return {"same_path": same_path, "same_segment": same_segment}


def _bin(seconds: Optional[float]) -> str:
    if seconds is None:
        return "unknown"
    return next(name for top, name in DURATION_BINS if seconds < top)


def _counts(values: Iterable[str]) -> Dict[str, int]:
    return dict(Counter(values).most_common())


def histograms(infos: Iterable[ClipInfo]) -> Dict[str, Dict[str, int]]:
    """Duration (in bins, shortest first), resolution, frame-rate and codec counts over the
    files that opened, most common first."""
    ok = [i for i in infos if not i.error]
    order = {name: n for n, (_, name) in enumerate(DURATION_BINS)}
    durations = Counter(_bin(i.duration) for i in ok)
    return {"duration": {k: durations[k] for k in sorted(durations, key=lambda k: order.get(k, 99))},
            "resolution": _counts(f"{i.width}x{i.height}" for i in ok),
            "fps": _counts(f"{i.fps:.4g}" for i in ok),
            "codec": _counts(i.codec or "unknown" for i in ok)}


def problems(report: Dict[str, Any], max_missing: float) -> List[str]:
    """The findings that would make a run fail."""
    found = []
    for split, r in report["splits"].items():
        if not r["lines"]:
            found.append(f"{split}: manifest has no lines")
        elif r["lost_fraction"] > max_missing:
            found.append(f"{split}: {r['lost_lines']} of {r['lines']} lines "
                         f"({r['lost_fraction']:.1%}) name missing or unreadable files "
                         f"(limit {max_missing:.1%})")
    over = report["overlap"]
    if over["same_path"] or over["same_segment"]:
        found.append(f"train/val overlap: {len(over['same_path'])} clips in both splits, "
                     f"{len(over['same_segment'])} overlapping segment pairs")
    return found


def run_check(data_root: str, dataset: str, min_frames: int = 16,
              threads: int = DEFAULT_THREADS, max_missing: float = 0.01) -> Dict[str, Any]:
    """The check report of ``<data_root>/<dataset>`` (see the module notes)."""
    start = time.time()
    card = load_card(dataset)
    folder, train_csv, val_csv = split_paths(card, data_root)
    entries = {"train": read_entries(train_csv, card.num_classes),
               "val": read_entries(val_csv, card.num_classes)}
    files = sorted({os.path.join(folder, e.path) for es in entries.values() for e in es})
    infos = probe_all(files, threads)
    names = class_names(folder, card.num_classes)
    report = {"format": "eval_encoder.check_report", "version": 1, "dataset": card.name,
              "folder": os.path.abspath(folder), "manifests": {"train": train_csv, "val": val_csv},
              "min_frames": min_frames, "max_missing_fraction": max_missing,
              "splits": {s: split_report(es, folder, infos, names, min_frames)
                         for s, es in entries.items()},
              "overlap": overlap(entries["train"], entries["val"]),
              "histograms": histograms(infos.values())}
    report["problems"] = problems(report, max_missing)
    report["ok"] = not report["problems"]
    report["seconds"] = round(time.time() - start, 3)
    log.info("check %s: %d files opened in %.1f s", dataset, len(files), report["seconds"])
    return report


def _describe(item: Any) -> str:
    """One listed problem as ``path [segment] (reason)``."""
    if not isinstance(item, dict):
        return str(item)
    text = item["path"] + (f" [{item['segment']}]" if item.get("segment") else "")
    return text + (f" ({item['reason']})" if "reason" in item else "")


def _shown(items: Sequence[Any]) -> str:
    listed = "; ".join(map(_describe, items[:SHOWN]))
    return listed + (f"; ... {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _split_lines(split: str, r: Dict[str, Any]) -> List[str]:
    counts = [n for n in r["per_class"].values() if n]
    spread = f"{min(counts)}-{max(counts)} per class" if counts else "no classes"
    out = [f"  {split}: {r['lines']} lines, {r['files']} files, {r['classes_present']}/"
           f"{len(r['per_class'])} classes ({spread})"]
    for kind in ("missing", "unreadable", "short", "segments_past_end", "duplicates",
                 "conflicting_labels"):
        if r[kind]:
            out.append(f"    {kind.replace('_', ' ')}: {len(r[kind])}: {_shown(r[kind])}")
    return out


def format_report(report: Dict[str, Any], json_path: str) -> str:
    """The short printed form of a check report."""
    lines = [f"check {report['dataset']} ({report['folder']}), {report['seconds']:.1f} s"]
    for split, r in report["splits"].items():
        lines += _split_lines(split, r)
    over = report["overlap"]
    lines.append(f"  train/val overlap: {len(over['same_path'])} same path, "
                 f"{len(over['same_segment'])} same segment")
    for name, counts in report["histograms"].items():
        top = ", ".join(f"{k}: {v}" for k, v in list(counts.items())[:6])
        lines.append(f"  {name}: {top}" + (" ..." if len(counts) > 6 else ""))
    verdict = "OK" if report["ok"] else "FAIL: " + "; ".join(report["problems"])
    lines.append(f"  {verdict} (report: {json_path})")
    return "\n".join(lines)


def write_report(report: Dict[str, Any], path: str) -> None:
    """Write the report as JSON (atomically)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(path), json.dumps(report, indent=1) + "\n")


def check_and_report(data_root: str, dataset: str, json_path: Optional[str] = None,
                     **kw) -> Tuple[Dict[str, Any], str]:
    """Run the check, write its JSON, return (report, printed text)."""
    report = run_check(data_root, dataset, **kw)
    path = json_path or os.path.join(report["folder"], REPORT_NAME)
    write_report(report, path)
    return report, format_report(report, path)


def build_parser() -> argparse.ArgumentParser:
    """The ``check`` command line."""
    parser = ArgumentParser("python -m eval_encoder check", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", required=True, help="folder holding <dataset>/<manifest>.csv")
    parser.add_argument("--dataset", required=True, help="dataset card name (datasets/<name>.yaml)")
    parser.add_argument("--json", default=None,
                        help=f"where to write the report (default <data_root>/<dataset>/{REPORT_NAME})")
    parser.add_argument("--min_frames", type=int, default=16,
                        help="clips or segments with fewer frames are listed as short")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="files opened at once")
    parser.add_argument("--max_missing_fraction", type=float, default=0.01,
                        help="share of a split's lines on missing/unreadable files that fails")

    add_verbosity_flags(parser)  # -v/-q
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m eval_encoder check``: print the report, write its JSON, 1 if a run would fail."""
    setup_logging()
    args = build_parser().parse_args(argv)
    try:
        report, text = check_and_report(args.data_root, args.dataset, args.json,
                                        min_frames=args.min_frames, threads=args.threads,
                                        max_missing=args.max_missing_fraction)
    except ManifestError as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        return 1
    print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
