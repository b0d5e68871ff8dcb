"""A folder of features: safetensors shards, a JSON header, a merged index; and its reader.

Layout of a store folder (written by ``python -m eval_encoder embed`` and, one folder per
view, by the feature cache, ``cache.py``)::

    header.json              what the features are: encoder, weights identity, preprocessing,
                             pool, views, package version (``complete`` once every clip is in)
    shards/<name>.safetensors  one tensor ``features``: a row per (clip, view), ``[rows, D]``
                             pooled or ``[rows, N, D]`` with ``pool: none``
    shards/<name>.json       the shard's sidecar: its bytes, sha256 and rows
                             (``{"clip", "label", "view"}``, in row order); written after the
                             shard, so a shard without one is unfinished and ignored
    index.jsonl              the merged index, a line per row: clip, label, view, shard, row

Each writer (one per rank) writes only shards it names (rank + a random tag), each atomically,
so no two writers share a file. Readers trust a shard only when its size and sha256 match its
sidecar. No pickle: safetensors and JSON only.

Reading (your own analyses)::

    from eval_encoder.features.store import open_store
    store = open_store("results/features/demo-val")
    store.clips()                      # clip ids (manifest paths), in index order
    x = store.get("videos/val_000.mp4", view=0)  # one clip's tensor
    X, y, ids = store.all(view=0)      # every clip's, stacked, with labels and ids
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch

from eval_encoder.files import atomic_path, file_sha256, write_atomic

log = logging.getLogger("eval_encoder.features")

FORMAT = "eval_encoder.features/1"
HEADER, INDEX, SHARDS = "header.json", "index.jsonl", "shards"
TENSOR = "features"
PathLike = Union[str, os.PathLike]
Row = Dict  # {"clip": str, "label": int, "view": int}


class StoreError(ValueError):
    """A store folder that cannot be read or does not hold what was asked (names the file)."""


# ---------------------------------------------------------------------------- shards
def shard_name(rank: int) -> str:
    """A shard name no other writer takes: the rank and a random tag."""
    return f"r{rank:05d}-{uuid.uuid4().hex[:12]}"


def write_shard(folder: PathLike, name: str, tensor: torch.Tensor, rows: Sequence[Row]) -> Dict:
    """Write ``tensor`` (a row per entry of ``rows``) as ``shards/<name>.safetensors``, then its
    sidecar; both atomically. Returns the sidecar."""
    from safetensors.torch import save_file

    if tensor.shape[0] != len(rows):
        raise StoreError(f"shard {name}: {tensor.shape[0]} rows of features for {len(rows)} clips")
    path = Path(folder) / SHARDS / f"{name}.safetensors"
    with atomic_path(path) as tmp:
        save_file({TENSOR: tensor.detach().cpu().contiguous()}, tmp, metadata={"format": FORMAT})
        size, digest = os.path.getsize(tmp), file_sha256(tmp)
    sidecar = {"shard": path.name, "bytes": size, "sha256": digest, "rows": list(rows)}
    write_atomic(path.with_suffix(".json"), json.dumps(sidecar) + "\n")
    return sidecar


def read_sidecars(folder: PathLike) -> List[Dict]:
    """Every finished shard's sidecar, by name; an unreadable one is skipped with a warning."""
    out = []
    for path in sorted((Path(folder) / SHARDS).glob("*.json")):
        try:
            sidecar = json.loads(path.read_text(encoding="utf-8"))
            _ = (len(sidecar["rows"]), sidecar["shard"])  # both must be there
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable shard sidecar (%s); its shard is ignored", path, exc)
            continue
        out.append(sidecar)
    return out


def load_shard(folder: PathLike, sidecar: Dict) -> torch.Tensor:
    """The shard's tensor, after checking its size and sha256 against the sidecar
    (StoreError naming the file otherwise)."""
    from safetensors.torch import load

    path = Path(folder) / SHARDS / sidecar["shard"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"{path}: cannot be read ({exc})") from None
    if len(data) != sidecar["bytes"]:
        raise StoreError(f"{path}: {len(data)} bytes, its sidecar says {sidecar['bytes']}")
    if hashlib.sha256(data).hexdigest() != sidecar["sha256"]:
        raise StoreError(f"{path}: sha256 differs from its sidecar's (a damaged shard)")
    return load(data)[TENSOR]


def quarantine(folder: PathLike, sidecar: Dict) -> None:
    """Set a damaged shard aside (its sidecar renamed ``.corrupt``), so that its clips count as
    missing and are computed again; another process may have done it already."""
    path = Path(folder) / SHARDS / Path(sidecar["shard"]).with_suffix(".json").name
    try:
        os.replace(path, path.with_suffix(".corrupt"))
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------- header, index
def read_header(folder: PathLike) -> Optional[Dict]:
    path = Path(folder) / HEADER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise StoreError(f"{path}: not JSON ({exc})") from None


def write_header(folder: PathLike, header: Dict) -> None:
    write_atomic(Path(folder) / HEADER, json.dumps(dict(header, format=FORMAT), indent=1,
                                                   sort_keys=True) + "\n")


def same_features(old: Dict, new: Dict, keys: Iterable[str]) -> List[str]:
    """The ``keys`` whose values differ between two headers (a resume must find none)."""
    return [k for k in keys if old.get(k) != new.get(k)]


def entries(sidecars: Sequence[Dict]) -> Dict[Tuple[str, int], Tuple[Dict, int, Row]]:
    """(clip, view) -> (sidecar, row, entry); a pair in two shards keeps its first."""
    out: Dict[Tuple[str, int], Tuple[Dict, int, Row]] = {}
    for sidecar in sidecars:
        for row, item in enumerate(sidecar["rows"]):
            out.setdefault((str(item["clip"]), int(item.get("view", 0))), (sidecar, row, item))
    return out


def write_index(folder: PathLike, order: Optional[Sequence[Tuple[str, int]]] = None) -> int:
    """The merged ``index.jsonl`` from every sidecar, in ``order`` ((clip, view) pairs) where
    given, else by shard; returns its line count."""
    found = entries(read_sidecars(folder))
    keys = [k for k in order if k in found] if order is not None else list(found)
    lines = [json.dumps({"clip": k[0], "label": found[k][2].get("label"), "view": k[1],
                         "shard": found[k][0]["shard"], "row": found[k][1]}) for k in keys]
    write_atomic(Path(folder) / INDEX, "".join(line + "\n" for line in lines))
    return len(lines)


def index_order(folder: PathLike) -> List[Tuple[str, int]]:
    """The (clip, view) pairs of ``index.jsonl`` in its order ([] without one)."""
    path = Path(folder) / INDEX
    if not path.is_file():
        return []
    try:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    except ValueError as exc:
        log.warning("%s: unreadable (%s); clips in shard order", path, exc)
        return []
    return [(str(item["clip"]), int(item["view"])) for item in lines]


# ---------------------------------------------------------------------------- writer
class ShardWriter:
    """One process's writer: rows gather in memory and go out as a shard of about
    ``shard_bytes`` (and at :meth:`flush`)."""

    def __init__(self, folder: PathLike, rank: int = 0, shard_bytes: int = 256 << 20):
        self.folder, self.rank, self.shard_bytes = Path(folder), rank, shard_bytes
        self.rows: List[Row] = []
        self.parts: List[torch.Tensor] = []
        self.written: List[Dict] = []

    def add(self, rows: Sequence[Row], tensor: torch.Tensor) -> None:
        self.rows.extend(rows)
        self.parts.append(tensor.detach().cpu())
        if sum(p.numel() * p.element_size() for p in self.parts) >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        tensor = torch.cat(self.parts)
        self.written.append(write_shard(self.folder, shard_name(self.rank), tensor, self.rows))
        self.rows, self.parts = [], []


# ---------------------------------------------------------------------------- reader
@dataclass
class Located:
    sidecar: Dict
    row: int
    entry: Row


class FeatureStore:
    """A store folder, read: its header, its clips, a clip's tensor, or all at once.

    Shards are checked (size, sha256) as they are first read; a damaged one raises
    StoreError naming it.
    """

    def __init__(self, folder: PathLike):
        self.folder = Path(folder)
        self.header = read_header(self.folder)
        if self.header is None:
            raise StoreError(f"{self.folder}: no {HEADER}: not a feature store (write one with "
                             "`python -m eval_encoder embed`)")
        found = entries(read_sidecars(self.folder))
        order = [k for k in index_order(self.folder) if k in found]  # the merged index's order
        keys = order + [k for k in found if k not in set(order)]
        self.located = {k: Located(*found[k]) for k in keys}
        self._loaded: Dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.located)

    def __contains__(self, key) -> bool:
        clip, view = key if isinstance(key, tuple) else (key, 0)
        return (str(clip), int(view)) in self.located

    def clips(self) -> List[str]:
        """Clip ids, each once, in the index's order (the manifest's, for ``embed``)."""
        return list(dict.fromkeys(clip for clip, _ in self.located))

    def views(self) -> List[int]:
        return sorted({view for _, view in self.located})

    def label(self, clip: str) -> Optional[int]:
        hit = next((v for (c, _), v in self.located.items() if c == clip), None)
        return None if hit is None else hit.entry.get("label")

    def get(self, clip: str, view: int = 0) -> torch.Tensor:
        """One clip's features for ``view`` (StoreError when absent)."""
        hit = self.located.get((str(clip), int(view)))
        if hit is None:
            raise StoreError(f"{self.folder}: no features for clip {clip!r} view {view} "
                             f"({len(self.clips())} clips, views {self.views()})")
        return self._shard(hit.sidecar)[hit.row]

    def all(self, view: int = 0, clips: Optional[Sequence[str]] = None
            ) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
        """(features stacked ``[clips, ...]``, labels ``[clips]`` (-1: none), clip ids) for
        ``view``, of ``clips`` (default: every clip that has that view)."""
        ids = [c for c in (clips if clips is not None else self.clips()) if (c, view) in self]
        if not ids:
            raise StoreError(f"{self.folder}: no clips with view {view}")
        rows = torch.stack([self.get(c, view) for c in ids])
        labels = [self.located[(c, view)].entry.get("label") for c in ids]
        return rows, torch.tensor([-1 if v is None else v for v in labels]), ids

    def _shard(self, sidecar: Dict) -> torch.Tensor:
        name = sidecar["shard"]
        if name not in self._loaded:
            self._loaded[name] = load_shard(self.folder, sidecar)
        return self._loaded[name]


def open_store(folder: PathLike) -> FeatureStore:
    """The store at ``folder`` (see the module)."""
    return FeatureStore(folder)
