"""Save, find and load what a killed probe run needs to continue exactly where it stopped.

A checkpoint holds every head (weights, AdamW and LinearLR state, status, history), the head
copies kept for ``--eval_mode end``, the loss of the epoch so far, each rank's counters, the
random states, the position (epoch, optimiser steps done in it), the world size and the
config hash with the resolved config. Data order and augmentation are functions of (seed,
epoch, clip), so the continuation sees the very batches the killed run would have seen:
the final record equals an uninterrupted run's.

Files are ``<dir>/e<epoch>-s<step>.pt`` (``torch.save`` of tensors, numbers and strings only,
read back with ``weights_only=True``), written atomically (temporary file, fsync, rename);
the newest ``KEEP`` are kept. The default folder is
``<save_report>/checkpoints/<dataset>/<config hash>``: a rerun of the same command finds it.
A damaged file is reported and the next older one is used; a checkpoint of another
configuration is refused with the options that differ.
"""
from __future__ import annotations

import json
import logging
import os
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
VERSION = 1
KEEP = 2
_NAME = re.compile(r"^e(\d{4})-s(\d{7})\.pt$")

log = logging.getLogger("eval_encoder.checkpoint")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used for this run, with the reason."""


@dataclass(frozen=True)
class Position:
    """Where a run stands: optimiser steps done in ``epoch`` (an epoch end is (epoch + 1, 0))."""

    epoch: int
    step: int

    def file_name(self) -> str:
        return f"e{self.epoch:04d}-s{self.step:07d}.pt"


def default_dir(save_report: str, dataset: str, config_hash: str) -> Path:
    return Path(save_report) / "checkpoints" / dataset / config_hash


def find(folder: Path) -> List[Path]:
    """Checkpoint files of ``folder``, newest position first."""
    if not folder.is_dir():
        return []
    named = [(m.groups(), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(named, reverse=True)]


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
    """A checkpoint's state; CheckpointError when it is damaged or of another format."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({type(exc).__name__}: "
                              f"{exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an eval_encoder checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not "
                              f"{VERSION}")
    return state


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
    rank 0 and shared), gathering the state from every rank; rank 0 writes."""

    def __init__(self, folder: Path, every_min: float, config_hash: str,
                 config: Dict[str, Any], env):
        self.folder, self.every_s = folder, max(0.0, every_min) * 60.0
        self.config_hash, self.config, self.env = config_hash, config, env
        self.last = _now()
        self.saves, self.bytes, self.seconds = 0, 0, 0.0

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
            path, size = save(self.folder, position, state)
            self.saves, self.bytes = self.saves + 1, size
            log.info("checkpoint %s (%.1f MB)", path, size / 1e6)
        self.last = _now()
        self.seconds += self.last - start

    def describe(self) -> Dict[str, Any]:
        """The record's ``checkpoints`` block."""
        return {"dir": str(self.folder), "saves": self.saves, "last_bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


def _now() -> float:
    import time

    return time.monotonic()
