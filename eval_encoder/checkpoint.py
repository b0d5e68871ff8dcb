"""Save, find and load what a killed probe run needs to continue exactly where it stopped.

A checkpoint holds every head (weights, AdamW and LinearLR state, status, history), the list
of head copies kept for ``--eval_mode end``, the loss of the epoch so far, each rank's
counters, the random states, the position (epoch, optimiser steps done in it), the world
size and the config hash with the resolved config. Data order and augmentation are functions
of (seed, epoch, clip), so the continuation sees the very batches the killed run would have
seen: the final record equals an uninterrupted run's.

Epochs count from 0, as the log's ``epoch 0 (1 of 10)`` and the record's ``history[].epoch``
do. Files are ``<dir>/e<epoch>-s<step>.pt`` (``step`` optimiser steps done in that epoch) and
``<dir>/e<epoch>-end.pt`` (the epoch done); ``torch.save`` of tensors, numbers and strings
only, read back with ``weights_only=True``, written atomically (temporary file, fsync,
rename); the newest ``KEEP`` are kept. The head copies of an evaluation epoch are written
once, beside them, as ``copies-e<epoch>.pt``, and the checkpoints name them: a checkpoint
stays one size however many copies the run keeps, and a copy is written once, not at every
save. The default folder is ``<save_report>/checkpoints/<dataset>/<config hash>``: a rerun of
the same command finds it. A damaged file is reported and the next older one is used; a
checkpoint of another configuration is refused with the options that differ. A complete run
removes its files and the folders they leave empty.
"""
from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from eval_encoder import distributed as dist
from eval_encoder.files import atomic_open

FORMAT = "eval_encoder.checkpoint"
COPIES_FORMAT = "eval_encoder.head_copies"
VERSION = 2  # 2: head copies in their own files (version 1 held them inline; still read)
READS = (1, 2)
KEEP = 2
# e0003-s0000120.pt: 120 steps into epoch 3; e0003-end.pt: epoch 3 done (written as
# e0004-s0000000.pt before version 2: the same position)
_NAME = re.compile(r"^e(\d{4})-(?:s(\d{7})|end)\.pt$")
_COPIES = re.compile(r"^copies-e(\d{4})\.pt$")

log = logging.getLogger("eval_encoder.checkpoint")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run, with the reason."""


@dataclass(frozen=True)
class Position:
    """Where a run stands: optimiser steps done in ``epoch`` (an epoch end is (epoch + 1, 0))."""

    epoch: int
    step: int

    def file_name(self) -> str:
        """``e0003-s0000120.pt`` inside epoch 3, ``e0003-end.pt`` once it is done."""
        if self.step == 0 and self.epoch > 0:
            return f"e{self.epoch - 1:04d}-end.pt"
        return f"e{self.epoch:04d}-s{self.step:07d}.pt"

    @classmethod
    def of_name(cls, name: str) -> Optional["Position"]:
        """The position a checkpoint file's name gives, None for another file."""
        m = _NAME.match(name)
        if m is None:
            return None
        epoch, step = int(m.group(1)), m.group(2)
        return cls(epoch, int(step)) if step is not None else cls(epoch + 1, 0)


def default_dir(save_report: str, dataset: str, config_hash: str) -> Path:
    return Path(save_report) / "checkpoints" / dataset / config_hash


def find(folder: Path) -> List[Path]:
    """Checkpoint files of ``folder``, newest position first."""
    if not folder.is_dir():
        return []
    named = [(pos.epoch, pos.step, p.name, p) for p in folder.iterdir()
             if (pos := Position.of_name(p.name)) is not None]
    return [p for *_, p in sorted(named, reverse=True)]


def save(folder: Path, position: Position, state: Dict[str, Any]) -> Tuple[Path, int]:
    """Write ``state`` atomically as the checkpoint of ``position``; keep the newest KEEP.
    Returns (path, bytes)."""
    path = folder / position.file_name()
    with atomic_open(path, "wb", prefix=".tmp-", suffix=".pt", fsync=True) as fh:
        torch.save({"format": FORMAT, "version": VERSION, **state}, fh)
    for old in find(folder)[KEEP:]:
        old.unlink(missing_ok=True)
    return path, path.stat().st_size


def load(path: Path) -> Dict[str, Any]:
    """A checkpoint's state, with the head copies it names read from their files beside it
    (each ``snapshots`` entry gets its ``state``); CheckpointError when it or a copies file
    is damaged, missing or of another format."""
    state = _read(path, FORMAT, "checkpoint")
    copies: Dict[str, Dict[int, Any]] = {}
    for snap in state.get("snapshots", []):
        if "file" in snap:
            if snap["file"] not in copies:
                copies[snap["file"]] = load_copies(path.parent / snap["file"])
            if snap["head"] not in copies[snap["file"]]:
                raise CheckpointError(f"{path.parent / snap['file']}: no copy of head "
                                      f"{snap['head']}, which {path.name} names")
            snap["state"] = copies[snap["file"]][snap["head"]]
    return state


def _read(path: Path, fmt: str, what: str) -> Dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: the {what} file is missing") from None
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise CheckpointError(f"{path}: damaged or not a {what} ({type(exc).__name__}: "
                              f"{exc})") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise CheckpointError(f"{path}: not an eval_encoder {what}")
    if state.get("version") not in READS:
        raise CheckpointError(f"{path}: {what} version {state.get('version')} is not one of "
                              f"{', '.join(map(str, READS))}")
    return state


def copies_name(epoch: int) -> str:
    return f"copies-e{epoch:04d}.pt"


def save_copies(folder: Path, epoch: int, states: Dict[int, Any]) -> Tuple[Path, int]:
    """Write the head copies of evaluation epoch ``epoch`` ({head index: state dict}) once,
    atomically; returns (path, bytes)."""
    path = folder / copies_name(epoch)
    with atomic_open(path, "wb", prefix=".tmp-", suffix=".pt", fsync=True) as fh:
        torch.save({"format": COPIES_FORMAT, "version": VERSION, "epoch": epoch,
                    "copies": [{"head": i, "state": st} for i, st in states.items()]}, fh)
    return path, path.stat().st_size


def load_copies(path: Path) -> Dict[int, Any]:
    """{head index: state dict} of a copies file."""
    return {c["head"]: c["state"] for c in _read(path, COPIES_FORMAT, "head copies")["copies"]}


def remove_all(folder: Path, root: Path) -> None:
    """A complete run's checkpoints and head copies, then the folders from ``folder`` up to
    ``root`` (not included) that this leaves empty; a folder another run still uses stays."""
    for path in [*find(folder), *(p for p in _listing(folder) if _COPIES.match(p.name))]:
        path.unlink(missing_ok=True)
    root = root.resolve()
    folder = folder.resolve()
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (another configuration's checkpoints), or gone
            return
        folder = folder.parent


def _listing(folder: Path) -> List[Path]:
    return list(folder.iterdir()) if folder.is_dir() else []


def config_differences(saved: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
    """``name: saved -> current`` for every option whose value differs."""
    keys = sorted(set(saved) | set(current))
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys
            if saved.get(k) != current.get(k)]


def check_matches(state: Dict[str, Any], path: Path, config_hash: str, config: Dict[str, Any],
                  world_size: int) -> None:
    """Refuse a checkpoint of another configuration or world size, saying what differs."""
    if state["config_hash"] != config_hash:
        diff = config_differences(json.loads(state["config"]), config)
        raise CheckpointError(f"{path} was written by another configuration (hash "
                              f"{state['config_hash']}, this run {config_hash}); differing "
                              f"options: {'; '.join(diff[:12]) or 'none visible'}")
    if state["world_size"] != world_size:
        raise CheckpointError(f"{path} was written by {state['world_size']} processes; resume "
                              f"it with the same number (this run has {world_size})")


def newest_usable(folder: Path) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """The newest checkpoint of ``folder`` that loads; damaged ones are reported and skipped."""
    for path in find(folder):
        try:
            return path, load(path)
        except CheckpointError as exc:
            log.warning("%s; trying an older checkpoint", exc)
    return None


def rng_state() -> Dict[str, Any]:
    """The process's random states (torch, numpy's global generator, Python's)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": json.dumps([np_state[0], np_state[1].tolist(), *np_state[2:]]),
            "python": json.dumps(random.getstate())}


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = json.loads(state["numpy"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


# ----------------------------------------------------------------------------- run state

def encode(value: Any) -> Any:
    """JSON-safe form keeping sets and non-string dict keys (counters, histories)."""
    if isinstance(value, set):
        return {"set": [encode(v) for v in sorted(value, key=repr)]}
    if isinstance(value, dict):
        return {"dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, dict) and "set" in value:
        return {decode(v) for v in value["set"]}
    if isinstance(value, dict) and "dict" in value:
        return {decode(k): decode(v) for k, v in value["dict"]}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


class Checkpointer:
    """When to save (each epoch end, and every ``every_min`` minutes inside one, decided on
    rank 0 and shared), gathering the state from every rank; rank 0 writes, each evaluation
    epoch's head copies once. ``root``: the folder above ``folder`` that a complete run
    leaves in place (default: ``folder``'s parent)."""

    def __init__(self, folder: Path, every_min: float, config_hash: str,
                 config: Dict[str, Any], env, root: Optional[Path] = None):
        self.folder, self.every_s = folder, max(0.0, every_min) * 60.0
        self.root = root if root is not None else folder.parent
        self.config_hash, self.config, self.env = config_hash, config, env
        self.last = _now()
        self.saves, self.bytes, self.seconds = 0, 0, 0.0
        self.copies_written: Dict[int, int] = {}  # epoch -> bytes of its copies file

    def adopt(self, path: Path, state: Dict[str, Any]) -> None:
        """A run resumed from ``path``: copies files already in this folder need no rewrite."""
        if path.parent.resolve() == self.folder.resolve():
            for snap in state.get("snapshots", []):
                if "file" in snap and snap["epoch"] not in self.copies_written:
                    self.copies_written[snap["epoch"]] = (self.folder / snap["file"]).stat().st_size

    def due(self) -> bool:
        """Whether a step checkpoint is due, the same answer on every rank (one collective)."""
        flag = torch.tensor([1.0 if self.env.is_main and _now() - self.last >= self.every_s
                             else 0.0], dtype=torch.float64)
        if dist.active():
            flag = flag.to(self.env.device)
            dist.all_reduce_sum_(flag)
        return bool(flag.item() > 0)

    def save(self, run_state: Dict[str, Any], position: Position) -> None:
        """Gather every rank's part of ``run_state`` and write it (rank 0); collective."""
        start = _now()
        per_rank = dist.all_gather_objects(run_state.pop("per_rank"))
        if self.env.is_main:
            state = {**run_state, "per_rank": json.dumps([encode(p) for p in per_rank]),
                     "position": [position.epoch, position.step], "config_hash": self.config_hash,
                     "config": json.dumps(self.config, default=str),
                     "world_size": self.env.world_size}
            state["snapshots"] = self._store_copies(state.get("snapshots", []))
            path, size = save(self.folder, position, state)
            self.saves, self.bytes = self.saves + 1, size
            log.info("checkpoint %s (%.1f MB; head copies apart: %d file(s), %.1f MB)", path,
                     size / 1e6, len(self.copies_written), self.copies_bytes / 1e6)
        self.last = _now()
        self.seconds += self.last - start

    @property
    def copies_bytes(self) -> int:
        return sum(self.copies_written.values())

    def _store_copies(self, snapshots: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Write the copies of each evaluation epoch not written yet; the entries that name
        them (epoch, head, file) instead of holding them."""
        by_epoch: Dict[int, Dict[int, Any]] = {}
        for snap in snapshots:
            by_epoch.setdefault(snap["epoch"], {})[snap["head"]] = snap["state"]
        for epoch in sorted(set(by_epoch) - set(self.copies_written)):
            path, size = save_copies(self.folder, epoch, by_epoch[epoch])
            self.copies_written[epoch] = size
            log.info("head copies of epoch %d: %s (%.1f MB, written once)", epoch, path,
                     size / 1e6)
        return [{"epoch": s["epoch"], "head": s["head"], "file": copies_name(s["epoch"])}
                for s in snapshots]

    def remove(self) -> None:
        """A complete run: its checkpoints, head copies and the folders left empty go."""
        remove_all(self.folder, self.root)

    def describe(self) -> Dict[str, Any]:
        """The record's ``checkpoints`` block."""
        return {"dir": str(self.folder), "saves": self.saves, "last_bytes": self.bytes,
                "copies_bytes": self.copies_bytes, "seconds": round(self.seconds, 3)}


def _now() -> float:
    import time

    return time.monotonic()
