"""``python -m eval_encoder codec precompute``: fill the codec index cache for a whole split.

    python -m eval_encoder codec precompute --data_root /data --dataset diving48 \\
        --split both --workers 8 --cache_dir /cache/codec --K_keep 2048 --mv_compensate median

Every clip of the chosen manifests gets a cache entry for exactly the parameters given
(the same flags, with the same defaults, as the probe), so a later probe run with those
flags reads indices instead of computing them. Under ``--codec_pixels reencoded`` each clip's
HEVC copy is made too (``<cache_dir>/hevc``; the slow part), also where its indices are cached. Existing valid entries are kept; damaged
ones are recomputed and counted. Unreadable videos are listed, and make the exit status 1.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from dataclasses import fields
from typing import List, Optional, Tuple

from eval_encoder.codec.options import CodecOptionError, CodecOptions, make_options
from eval_encoder.codec.pipeline import Selector
from eval_encoder.flags import add_field
from eval_encoder.video.decode import ClipDecodeError
from eval_encoder.video.manifest import ManifestError, load_card, read_manifest, split_paths

log = logging.getLogger("eval_encoder.codec")

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("python -m eval_encoder codec",
                                     description="codec patch selection tools")
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("precompute", help="fill the index cache for a dataset split",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pre.add_argument("--data_root", required=True, help="folder holding <dataset>/<manifest>.csv")
    pre.add_argument("--dataset", required=True, help="dataset card name (datasets/<name>.yaml)")
    pre.add_argument("--split", choices=["train", "val", "both"], default="both")
    pre.add_argument("--train_data_csv_path", default=None, help="train manifest (default: card's)")
    pre.add_argument("--val_data_csv_path", default=None, help="val manifest (default: card's)")
    pre.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                     help="worker processes (0: in this process)")
    pre.add_argument("--decode_threads", type=int, default=1, help="threads per video decoder")
    pre.add_argument("--input_size", type=int, default=224, help="crop size of the encoder input")
    pre.add_argument("--short_side_size", type=int, default=None,
                     help="resize the shorter side to this before the crop (default: input size)")
    pre.add_argument("--num_frames", type=int, default=64, help="uniformly sampled frames")
    pre.add_argument("--protocol", choices=["paper", "clean"], default="paper",
                     help="sets every selection option left out, as the probe does")
    group = pre.add_argument_group("codec patch selection (as in the probe)")
    for f in fields(CodecOptions):
        add_field(group, f)
    return parser


def clip_paths(args: argparse.Namespace) -> List[str]:
    """Video paths of the chosen split(s), in manifest order, without duplicates."""
    card = load_card(args.dataset)
    root, train_csv, val_csv = split_paths(card, args.data_root, args.train_data_csv_path,
                                           args.val_data_csv_path)
    manifests = {"train": [train_csv], "val": [val_csv], "both": [train_csv, val_csv]}[args.split]
    paths = [os.path.join(root, entry.path)
             for manifest in manifests for entry in read_manifest(manifest, card.num_classes)]
    return list(dict.fromkeys(paths))


_WORKER: Optional[Tuple[Selector, int]] = None


def _init_worker(selector: Selector, threads: int) -> None:
    global _WORKER
    _WORKER = (selector, threads)


def _one(path: str) -> Tuple[str, str, int]:
    """(path, status, flags or 0); status "failed: <reason>" for unreadable videos."""
    selector, threads = _WORKER
    try:
        status, flags = selector.precompute(path, threads)
    except ClipDecodeError as exc:
        return path, f"failed: {exc}", 0
    return path, status, flags


@contextlib.contextmanager
def _one_thread_env():
    """Environment with single-threaded BLAS/OpenMP while worker processes are spawned:
    workers are the parallelism, and nested thread pools would oversubscribe the cores."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(paths: List[str], selector: Selector, args: argparse.Namespace):
    """Yield per-clip results from a pool of spawned workers, or inline with --workers 0."""
    if args.workers <= 0:
        _init_worker(selector, args.decode_threads)
        yield from map(_one, paths)
        return
    with _one_thread_env():
        pool = mp.get_context("spawn").Pool(args.workers, _init_worker,
                                            (selector, args.decode_threads))
    with pool:
        yield from pool.imap_unordered(_one, paths, chunksize=1)


def precompute(args: argparse.Namespace) -> int:
    """Fill the cache for the split(s) in ``args``; prints a summary with clips/s."""
    from tqdm import tqdm

    codec = {f.name: getattr(args, f.name) for f in fields(CodecOptions) if hasattr(args, f.name)}
    opts = make_options(args.protocol, **codec)
    if not opts.cache_dir:
        raise CodecOptionError("precompute needs --cache_dir (where the indices are stored)")
    selector = Selector(args.num_frames, args.input_size, opts, args.short_side_size)
    paths = clip_paths(args)
    counts: Counter = Counter()
    failures = []
    start = time.perf_counter()
    for path, status, flags in tqdm(_run(paths, selector, args), total=len(paths),
                                    desc="codec precompute", unit="clip"):
        counts["failed" if status.startswith("failed") else status] += 1
        counts["static fallback"] += bool(flags & 1)
        if status.startswith("failed"):
            failures.append(status[len("failed: "):])
    elapsed = time.perf_counter() - start
    print(f"{len(paths)} clips in {elapsed:.1f} s ({len(paths) / max(elapsed, 1e-9):.2f} clips/s): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; cache {opts.cache_dir}")
    for reason in failures[:20]:
        print(f"unreadable: {reason}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m eval_encoder codec ...``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return precompute(args)
    except (CodecOptionError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
