"""The feature cache in a run: a clip view's pooled vector, computed once per (encoder weights,
what changes its tokens, pool, draw) and read back by any later run (``features/cache.py``).

It answers the passes whose tokens only pooled heads read:

* ``knn_train`` (the train clips in the evaluation view, probe/pooled.py) in every run;
* ``train``, ``val`` and ``monitor`` too when every head of the run is pooled (``linear``,
  ``knn``): a second such run on the same encoder and data then runs no encoder at all, with
  the same numbers (the vectors are pooled in float32 exactly as the heads pool them, and
  stored in float32).

A sample's identity is its clip's manifest identity (``ManifestEntry.id``) and its index in the
pass's dataset (which, with the seed and the epoch, decides its random draws: crops, jitter,
windows); the view folder is (split, epoch, seed), the key the encoder's weights, the options
that change its tokens, the manifests and the pool. Training draws change every epoch, so a
cached linear run stores a vector per training clip per epoch. ``--feature_cache off`` turns
it off.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch

from eval_encoder.config import ProbeConfig
from eval_encoder.features.cache import FeatureCache, encoder_digest, pixel_options
from eval_encoder.features.pool import TokenLayout, pool_tokens, resolve_pool
from eval_encoder.files import file_sha256
from eval_encoder.probe.data import Splits
from eval_encoder.probe.heads.options import kinds_of
from eval_encoder.encoders.weights import weights_identity

log = logging.getLogger("eval_encoder.run")

ALWAYS = ("knn_train",)  # passes no head but a pooled one reads, in any run
POOLED_RUN = ("train", "val", "monitor")  # the others, when every head is pooled


@dataclass
class PooledSource:
    """Pooled vectors [B, D] of a batch's samples from the cache, or computed and stored."""

    cache: FeatureCache
    pooling: Tuple[str, TokenLayout]
    entries: Dict[str, Sequence]  # pass -> the manifest entries of its dataset, in order
    views: Dict[str, int]  # pass -> views per clip of its dataset
    seed: int

    @property
    def splits(self) -> Tuple[str, ...]:
        return tuple(self.entries)

    def sample_ids(self, batch: Dict, split: str) -> List[str]:
        """Each sample's clip identity and its index in the pass's dataset."""
        entries, views = self.entries[split], self.views[split]
        return [f"{entries[i // views].id}|{i}" for i in batch["index"].tolist()]

    def view(self, split: str, epoch: int) -> Dict:
        return {"split": split, "epoch": epoch, "seed": self.seed}

    def vectors(self, batch: Dict, split: str, epoch: int, encode: Callable[[], torch.Tensor],
                device: torch.device) -> torch.Tensor:
        """[B, D] float32: the batch's pooled vectors, from the cache when it holds every
        sample of the batch, else from ``encode()`` (the tokens), then stored."""
        ids, view = self.sample_ids(batch, split), self.view(split, epoch)
        found = self.cache.lookup(ids, view)
        if found is not None:
            return found.to(device)
        vectors = pool_tokens(encode().float(), *self.pooling)
        self.cache.store(ids, view, vectors.cpu())
        return vectors


def token_options(cfg: ProbeConfig, spec, splits: Splits) -> Dict:
    """What decides a sample's tokens besides the weights: pixels, frames and patches
    (``pixel_options``), the model's own options, and the manifests the indices refer to."""
    model = ("dataset", "model_family", "model_name", "encoder_module", "attn_implementation",
             "token_layout", "frames_token_num", "target_frames", "num_tokens")
    return {**pixel_options(cfg, spec), **{name: getattr(cfg, name) for name in model},
            "manifests": [file_sha256(splits.train_csv), file_sha256(splits.val_csv)]}


def source_passes(cfg: ProbeConfig, splits: Splits) -> Dict[str, Any]:
    """Pass -> the dataset whose samples it reads, for the passes the cache answers."""
    kinds = kinds_of(cfg)
    passes = {"knn_train": splits.train} if any(k.pooled and not k.trains for k in kinds) else {}
    if all(k.pooled for k in kinds):
        passes.update(train=splits.train, val=splits.val)
        if splits.monitor is not None:
            passes["monitor"] = splits.monitor
    return passes


def attach_cache(cfg: ProbeConfig, splits: Splits, trainer) -> None:
    """Give ``trainer`` the run's feature cache when it is on and a pass would use it."""
    if cfg.feature_cache == "on" and source_passes(cfg, splits):
        trainer.pooled_source = pooled_source(cfg, splits, trainer.encoder, trainer.env.rank)


def run_pooling(cfg: ProbeConfig, spec) -> Tuple[str, TokenLayout]:
    """The run's pooling, as its pooled heads apply it: ``--probe_pool`` resolved for the
    encoder's tokens, and where their prefix tokens are."""
    layout = TokenLayout.of(spec, cfg.num_frames, cfg.num_segments or 1)
    return resolve_pool(cfg.probe_pool, layout), layout


def pooled_source(cfg: ProbeConfig, splits: Splits, encoder, rank: int) -> PooledSource:
    """The run's cache of pooled vectors."""
    pooling = run_pooling(cfg, encoder.spec)
    weights = weights_identity(encoder, cfg)["weights_sha256"] or encoder_digest(encoder)
    cache = FeatureCache(cfg.save_report, weights, token_options(cfg, encoder.spec, splits),
                         pooling[0], rank=rank)
    passes = source_passes(cfg, splits)
    log.info("feature cache %s: pooled vectors of %s", cache.folder, ", ".join(passes))
    return PooledSource(cache, pooling, {k: ds.entries for k, ds in passes.items()},
                        {k: (1 if k == "knn_train" else ds.views) for k, ds in passes.items()},
                        cfg.seed)
