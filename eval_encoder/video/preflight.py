"""Before training: does every clip of both splits open, with a video stream?

An undecodable validation clip used to show up only at the end of a run (``--eval_mode end``
scores once, after all training). This check opens each container and looks for its video
stream -- no decoding -- on a thread pool, and remembers the clips that passed by file
identity (absolute path, size, mtime) in ``<save_report>/preflight/<dataset>.json``, so a
rerun only re-opens clips that changed. Failures are never cached: a clip that failed is
checked again next time. Under torchrun each rank checks a strided share of the clips and
the results are gathered, so every rank sees the same failures.
"""
from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from eval_encoder.files import atomic_open
from eval_encoder.video.decode import ClipDecodeError, check_opens

log = logging.getLogger("eval_encoder.preflight")

CACHE_FORMAT = "eval_encoder.preflight"
CACHE_VERSION = 1
# opening a container waits on storage more than on the CPU
DEFAULT_THREADS = min(32, 4 * (os.cpu_count() or 1))
SHOWN = 5  # failures named in an error message; the record lists all of them

Identity = Tuple[int, int]  # (size, mtime_ns)
Gather = Callable[[Any], List[Any]]


def cache_file(save_report: str, dataset: str) -> str:
    """Where the clips of ``dataset`` that opened are remembered."""
    return os.path.join(save_report, "preflight", f"{dataset}.json")


def _checker() -> str:
    """What decides whether a clip opens: a PyAV/FFmpeg upgrade invalidates the cache."""
    import av

    return f"av={av.__version__};avformat={av.library_versions.get('libavformat')}"


def load_cache(path: str) -> Dict[str, Identity]:
    """Clips known to open ``{abspath: (size, mtime_ns)}``; an unreadable, foreign or stale
    cache is reported and treated as empty (every clip is checked again)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("preflight cache %s is unreadable (%s); checking every clip again", path, exc)
        return {}
    wanted = (CACHE_FORMAT, CACHE_VERSION, _checker())
    found = tuple(data.get(k) for k in ("format", "version", "checker")) \
        if isinstance(data, dict) else None
    if found != wanted or not isinstance(data.get("clips"), dict):
        log.info("preflight cache %s was made by %s, not %s; checking every clip again",
                 path, found, wanted)
        return {}
    return {p: tuple(v) for p, v in data["clips"].items()}


def save_cache(path: str, clips: Dict[str, Identity]) -> None:
    """Write the cache atomically (files.atomic_open: readable as the umask allows)."""
    data = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "checker": _checker(),
            "clips": {p: list(v) for p, v in sorted(clips.items())}}
    with atomic_open(path, "w", prefix=".tmp-", suffix=".json", encoding="utf-8") as fh:
        json.dump(data, fh)


def identity(path: str) -> Optional[Identity]:
    """(size, mtime_ns) of ``path``, None if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def check_clip(path: str, known: Dict[str, Identity]) -> Tuple[Optional[Identity], Optional[str]]:
    """(identity to remember, None) if ``path`` opens with a video stream (or is cached with
    the same identity), else (None, reason)."""
    ident = identity(os.path.abspath(path))
    if ident is not None and known.get(os.path.abspath(path)) == ident:
        return ident, None
    try:
        check_opens(path)
    except ClipDecodeError as exc:
        return None, _reason(str(exc), path)
    return ident, None


def _reason(message: str, path: str) -> str:
    """The error without the leading path (the listing names the clip already)."""
    return message[len(path) + 2:] if message.startswith(f"{path}: ") else message


def check_paths(paths: Sequence[str], cache: Optional[str] = None,
                threads: int = DEFAULT_THREADS, shard: Tuple[int, int] = (0, 1),
                gather: Optional[Gather] = None) -> Dict[str, str]:
    """``{path: reason}`` for every path that does not open with a video stream.

    ``shard=(rank, world)``: this process checks ``paths[rank::world]``; ``gather`` (e.g.
    ``distributed.all_gather_objects``) merges the shares, and rank 0 updates the cache.
    """
    start = time.time()
    rank, world = shard
    known = load_cache(cache) if cache else {}
    stored = dict(known)
    mine = sorted(set(paths))[rank::world]
    mine_result = _check_all(mine, known, threads, show=rank == 0)
    failed: Dict[str, str] = {}
    for ok, bad in gather(mine_result) if gather is not None else [mine_result]:
        known.update(ok)
        failed.update(bad)
    for path in failed:
        known.pop(os.path.abspath(path), None)
    if cache and rank == 0 and known != stored:
        save_cache(cache, known)
    log.info("preflight: %d clips open-checked in %.1f s, %d failed", len(set(paths)),
             time.time() - start, len(failed))
    return failed


def _check_all(paths: Sequence[str], known: Dict[str, Identity], threads: int,
               show: bool) -> Tuple[Dict[str, Identity], Dict[str, str]]:
    """(clips that opened {abspath: identity}, failures {path: reason}) of ``paths``."""
    passed: Dict[str, Identity] = {}
    failed: Dict[str, str] = {}
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="preflight") as pool:
        results = pool.map(lambda p: (p, *check_clip(p, known)), paths)
        for path, ident, reason in tqdm(results, total=len(paths), desc="preflight",
                                        disable=not show or len(paths) < 1000, leave=False):
            if reason is not None:
                failed[path] = reason
            elif ident is not None:
                passed[os.path.abspath(path)] = ident
    return passed, failed


def failures_by_split(paths: Dict[str, Sequence[str]], **kw) -> Dict[str, Dict[str, str]]:
    """:func:`check_paths` over all splits at once (one pool, one cache write), then
    ``{split: {path: reason}}``."""
    failed = check_paths([p for split in paths.values() for p in split], **kw)
    return {name: {p: failed[p] for p in split if p in failed} for name, split in paths.items()}


def limit_message(split: str, lost: int, clips: int, limit: float,
                  listed: Sequence[Dict]) -> str:
    """The error of a split with more unreadable clips than ``--max_skip_fraction`` allows:
    the count and the first few clips with their reasons (the record lists all)."""
    shown = "; ".join(f"{item['path']}: {item['reason']}" for item in listed[:SHOWN])
    more = f" (and {len(listed) - SHOWN} more, listed in the run record)" \
        if len(listed) > SHOWN else ""
    return (f"{lost} of {clips} {split} clips could not be read (limit {limit:.1%}; "
            f"--max_skip_fraction): {shown}{more}")
