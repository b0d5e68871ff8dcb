"""``python -m eval_encoder prepare <dataset>``: official annotations -> a data root.

    python -m eval_encoder prepare ssv2 --annotations /dl/ssv2/labels --videos /dl/ssv2/videos \\
        --out /data/attentive_probe [--link | --no_link]

Reads the annotation files as their publishers distribute them (``--annotations`` takes
folders, searched recursively, or files), finds the videos they name under ``--videos`` and
writes ``<out>/<dataset>/``: the card's train and val manifests (``path,label`` lines, or
``path,label,start,end`` segments of long videos), ``classes.csv`` (``index,name``) and
``prepare_report.json``, which lists every annotated video not found on disk (those lines
are left out of the manifests, and counted). Manifest paths are relative to
``<out>/<dataset>``: videos outside the data root are reached through a ``videos`` link
(``--link`` forces one, ``--no_link`` uses a relative path instead). Then runs ``check``
on the result. Exit status: 2 when the annotations cannot be read or disagree with the card
(nothing is written then), else check's (1 when a run would fail, 0 otherwise).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from eval_encoder.logs import add_verbosity_flags, setup_logging
from eval_encoder.parsing import ArgumentParser
from eval_encoder.prepare.base import AnnotationFiles, Format, PrepareError, VideoIndex
from eval_encoder.prepare.check import DEFAULT_THREADS, check_and_report
from eval_encoder.prepare.registry import FORMATS, TARGETS, load_formats, target
from eval_encoder.prepare.write import annotation_context, validate, write_dataset
from eval_encoder.registry import RegistryError
from eval_encoder.video.manifest import ManifestError, load_card


def targets_help() -> str:
    """Every target with its official files and where they come from."""
    load_formats()
    lines = ["targets:"]
    for name, tgt in TARGETS.items():
        lines.append(f"  {name:<16} {tgt.format.files}")
    lines.append("\nwhere the official files come from:")
    for name, fmt in FORMATS.items():
        lines.append(f"  {name:<16} {fmt.source}; videos: {fmt.videos}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``prepare`` command line, with every registered format's own options."""
    load_formats()
    parser = ArgumentParser("python -m eval_encoder prepare", description=__doc__,
                            epilog=targets_help(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a dataset card name, or a group (epic)")
    parser.add_argument("--annotations", nargs="+", required=True,
                        help="official annotation files, or folders holding them")
    parser.add_argument("--videos", required=True, help="folder holding the videos")
    parser.add_argument("--out", required=True, help="the data root to write <dataset>/ into")
    link = parser.add_mutually_exclusive_group()
    link.add_argument("--link", dest="link", action="store_true", default=None,
                      help="always reach the videos through <out>/<dataset>/videos")
    link.add_argument("--no_link", dest="link", action="store_false",
                      help="never link; manifest paths lead to --videos by a relative path")
    parser.add_argument("--no_check", action="store_true", help="skip the check at the end")
    parser.add_argument("--min_frames", type=int, default=16, help="check: shorter clips are listed")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="check: files opened at once")
    for fmt in (f for _, f in FORMATS.items()):
        for opt in fmt.options:
            parser.add_argument(f"--{opt.name}", choices=opt.choices, default=None,
                                help=f"{opt.help} (default {opt.default})")

    add_verbosity_flags(parser)  # -v/-q
    return parser


def format_options(fmt: Format, args: argparse.Namespace) -> Dict[str, str]:
    """The chosen format's options (defaults filled in); an option of another format given
    on the command line is an error rather than silently unused."""
    own = {opt.name for opt in fmt.options}
    for _, other in FORMATS.items():
        for opt in other.options:
            if opt.name not in own and getattr(args, opt.name) is not None:
                raise PrepareError(f"--{opt.name} applies to {other.name}, not {fmt.name}")
    return {opt.name: getattr(args, opt.name) or opt.default for opt in fmt.options}


def summary(report: Dict) -> str:
    """The printed summary of one prepared dataset."""
    lines = [f"{report['dataset']}: {report['num_classes']} classes, "
             f"{report['video_files_found']} video files under {report['videos']}"]
    for split, r in report["splits"].items():
        absent = (f"; {r['absent_videos_count']} annotated videos absent on disk, "
                  f"{r['absent_lines']} lines left out" if r["absent_lines"] else "")
        lines.append(f"  {split}: {r['written_lines']} of {r['annotated_lines']} lines "
                     f"written to {r['manifest']}{absent}")
    for reason, s in report["skipped"].items():
        lines.append(f"  left out by rule: {s['count']} x {reason}")
    if report["ambiguous_names"]:
        lines.append(f"  {len(report['ambiguous_names'])} names matched several files "
                     "(first in sorted order used)")
    return "\n".join(lines)


def prepare(args: argparse.Namespace) -> List[Dict]:
    """Read, validate and write every dataset of the target; returns their reports."""
    tgt = target(args.dataset)
    options = format_options(tgt.format, args)
    files = AnnotationFiles(args.annotations)
    prepared = tgt.format.read(files, tgt.datasets, options)
    cards = {p.dataset: load_card(p.dataset) for p in prepared}
    for p in prepared:
        validate(p, cards[p.dataset])
    if not Path(args.videos).is_dir():
        raise PrepareError(f"--videos {args.videos}: not a folder")
    index = VideoIndex(args.videos)
    context = annotation_context(files.used, args.videos, options, tgt.name)
    return [write_dataset(p, cards[p.dataset], index, Path(args.out), args.link, context)
            for p in prepared]


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m eval_encoder prepare``: write the target's datasets, then check each."""
    setup_logging()
    args = build_parser().parse_args(argv)
    try:
        reports = prepare(args)
    except (PrepareError, ManifestError, RegistryError) as exc:
        print(f"prepare failed: {exc}", file=sys.stderr)
        return 2
    status = 0
    for report in reports:
        print(summary(report))
        print(f"  report: {Path(args.out) / report['dataset'] / 'prepare_report.json'}")
        if not args.no_check:
            result, text = check_and_report(args.out, report["dataset"],
                                            min_frames=args.min_frames, threads=args.threads)
            print(text)
            status = max(status, 0 if result["ok"] else 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
