"""A cache of pooled features, so that a second linear or kNN probe of the same encoder on the
same data does not run the encoder at all.

Where: ``<results root>/features/<key>/<view>/``, each view folder a feature store
(``store.py``: safetensors shards with size/sha256 sidecars, a header). The key is the sha256
of what decides the numbers:

* the encoder's weights identity (``weights``: the sha256 of its weight files, as
  ``encoders/weights.py`` computes it for the run record; :func:`encoder_digest` gives one
  for weights with no file, such as random ones),
* the preprocessing options that change pixels (``preprocessing``: a JSON-able mapping, e.g.
  :func:`pixel_options` of the run's config and encoder spec),
* the pool (``mean``, ``cls``; resolved, not ``auto``).

The view (``view``: a mapping such as ``{"split": "val", "view": 0}``, and for training
views the draw: ``{"split": "train", "view": 0, "epoch": 3, "seed": 1}``) names the folder
inside the key's.

Use::

    cache = FeatureCache(results_root, weights=sha, preprocessing=pixel_options(cfg, spec),
                         pool="mean", rank=env.rank)
    feats = cache.lookup(clip_ids, view)      # [len(clip_ids), D], or None if any is missing
    if feats is None:
        feats = compute(...)
        cache.store(clip_ids, view, feats)

Several ranks may use one cache: each writes its own shard files (named by rank and a random
tag; no two writers of one file) and reads everybody's. A shard whose size or sha256 differs
from its sidecar is set aside with a warning and its clips are a miss, computed again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import torch

from eval_encoder import __version__
from eval_encoder.features.store import (
    StoreError,
    entries,
    load_shard,
    quarantine,
    read_header,
    read_sidecars,
    shard_name,
    write_header,
    write_shard,
)

log = logging.getLogger("eval_encoder.features")

KEY_CHARS = 16  # hex digits of the key's sha256 in the folder name


def canonical(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal mappings give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(weights: str, preprocessing: Mapping, pool: str) -> str:
    """The cache folder's name for (weights identity, pixel options, pool)."""
    if not weights:
        raise ValueError("a feature cache needs the weights' identity (their sha256, or "
                         "encoder_digest(encoder) for weights without a file)")
    text = canonical({"weights": weights, "preprocessing": dict(preprocessing), "pool": pool})
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


def view_folder(view: Mapping) -> str:
    """``split=val,view=0`` style folder name of a view description (safe characters only)."""
    text = ",".join(f"{k}={view[k]}" for k in sorted(view))
    return re.sub(r"[^A-Za-z0-9=,._-]", "_", text) or "all"


def encoder_digest(encoder: torch.nn.Module) -> str:
    """sha256 of an encoder's parameters and buffers (names, dtypes, shapes, bytes): the
    identity of weights that have no file to hash (random initialisation)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def pixel_options(cfg, spec) -> Dict[str, Any]:
    """The options of a run (``cfg``: ProbeConfig, ``spec``: EncoderSpec) that change the
    encoder's input pixels or which frames and patches it sees."""
    out = {name: getattr(cfg, name, None) for name in (
        "num_frames", "frame_step", "num_segments", "eval_window", "short_side_size",
        "round_pixels", "brightness_mode", "train_augment", "num_temporal_crops",
        "num_spatial_crops")}
    out.update(input_size=spec.input_size, mean=list(spec.mean), std=list(spec.std),
               tubelet_size=spec.tubelet_size, clip_source=spec.clip_source)
    if spec.clip_source != "frames":  # the codec's patch selection picks what is seen
        out["codec"] = asdict(cfg.codec)
    return out


class FeatureCache:
    """Pooled features by (clip ids, view) under one key (see the module)."""

    def __init__(self, results_root: os.PathLike, weights: str, preprocessing: Mapping,
                 pool: str, rank: int = 0):
        self.key = cache_key(weights, preprocessing, pool)
        self.folder = Path(results_root) / "features" / self.key
        self.description = {"weights_sha256": weights, "preprocessing": dict(preprocessing),
                            "pool": pool, "eval_encoder": __version__}
        self.rank = rank
        self._found: Dict[str, Dict] = {}  # view folder -> (clip, view) -> located

    def lookup(self, clip_ids: Sequence, view: Mapping) -> Optional[torch.Tensor]:
        """``[len(clip_ids), ...]`` in ``clip_ids`` order, or None when any clip is missing
        (or only in a damaged shard, which is then set aside)."""
        folder = self.folder / view_folder(view)
        ids = [str(c) for c in clip_ids]
        found = self._located(folder, ids)
        if found is None:
            return None
        try:
            shards = {name: load_shard(folder, side) for name, side in self._shards(found).items()}
        except StoreError as exc:
            log.warning("feature cache: %s; recomputing its clips", exc)
            self._set_aside(folder, found)
            return None
        return torch.stack([shards[found[c][0]["shard"]][found[c][1]] for c in ids])

    def store(self, clip_ids: Sequence, view: Mapping, tensor: torch.Tensor) -> None:
        """Write ``tensor`` (a row per clip id) as one shard of this rank."""
        folder = self.folder / view_folder(view)
        if read_header(folder) is None:  # every writer writes the same header, atomically
            write_header(folder, dict(self.description, view=dict(view)))
        rows = [{"clip": str(c), "label": None, "view": 0} for c in clip_ids]
        write_shard(folder, shard_name(self.rank), tensor, rows)
        self._found.pop(str(folder), None)

    def _located(self, folder: Path, ids: Sequence[str]) -> Optional[Dict]:
        """clip -> (sidecar, row) for every id, reading the sidecars again on a miss."""
        known = self._found.get(str(folder))
        if known is None or any((c, 0) not in known for c in ids):
            known = entries(read_sidecars(folder)) if folder.is_dir() else {}
            self._found[str(folder)] = known
        if any((c, 0) not in known for c in ids):
            return None
        return {c: known[(c, 0)][:2] for c in ids}

    @staticmethod
    def _shards(found: Dict) -> Dict[str, Dict]:
        return {side["shard"]: side for side, _ in found.values()}

    def _set_aside(self, folder: Path, found: Dict) -> None:
        for name, side in self._shards(found).items():
            try:
                load_shard(folder, side)
            except StoreError:
                quarantine(folder, side)
        self._found.pop(str(folder), None)
