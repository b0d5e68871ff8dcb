"""Sharding and batch loaders (torch DataLoader on CPU, DALI on GPU) with one batch contract.

Sharding rules:
  train  every epoch one permutation (same on all ranks, seeded by seed and epoch), padded by
         wrapping to a multiple of the world size, then strided: every rank runs the same number
         of steps, so gradient all-reduces line up; the last step may be a partial batch.
         With ``drop_last`` (as published) the permutation is cut to floor(n/W)*W samples
         instead, strided the same way, and each rank keeps only its floor(floor(n/W)/B) full
         batches: the samples left out change every epoch with the permutation.
  val    clips strided over ranks (rank r takes clips r, r+W, ...), all views of a clip on the
         same rank, no padding and no permutation: every clip is scored exactly once whatever
         the world size.
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from eval_encoder.video.dataset import ClipDataset
from eval_encoder.video.transforms import TransformSpec, transform_clip

log = logging.getLogger("eval_encoder.loader")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def train_steps(n: int, world: int, batch_size: int, drop_last: bool) -> int:
    """Training steps per epoch, the same on every rank: ceil(ceil(n/W)/B), or with
    ``drop_last`` the published floor(floor(n/W)/B). Raises ValueError when that is 0."""
    if drop_last:
        steps, rule = (n // world) // batch_size, "floor(floor(n/W)/B)"
    else:
        steps, rule = _ceil_div(_ceil_div(n, world), batch_size), "ceil(ceil(n/W)/B)"
    if steps <= 0:
        raise ValueError(f"no training step per epoch: n={n} training samples, world size W={world}, "
                         f"batch size B={batch_size} per rank give {rule} = 0 (drop_last="
                         f"{drop_last}); use a smaller --batch_size or fewer ranks")
    return steps


def train_order(n: int, epoch: int, rank: int, world: int, seed: int, drop_last: bool = False,
                batch_size: Optional[int] = None) -> List[int]:
    """This rank's sample indices for a training epoch (see module docstring).

    ``drop_last`` (needs ``batch_size``, the per-rank batch) keeps full batches only, as the
    published loader; without it every sample is used and the shard is padded by wrapping.
    """
    perm = np.random.default_rng([seed, epoch, 7]).permutation(n)
    if drop_last:
        if batch_size is None:
            raise ValueError("train_order: drop_last needs the per-rank batch_size")
        keep = train_steps(n, world, batch_size, drop_last=True) * batch_size
        return perm[:(n // world) * world][rank::world][:keep].tolist()
    pad = (-n) % world
    if pad:
        perm = np.concatenate([perm, perm[:pad]])
    return perm[rank::world].tolist()


def val_order(num_clips: int, views: int, rank: int, world: int) -> List[int]:
    """This rank's sample indices for evaluation: its clips' views, in order."""
    return [c * views + v for c in range(rank, num_clips, world) for v in range(views)]


class _Indexed(torch.utils.data.Dataset):
    """Map-style view of a ClipDataset whose keys are (sample index, epoch) pairs."""

    def __init__(self, ds: ClipDataset, tspec: TransformSpec):
        self.ds = ds
        self.tspec = tspec

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: Tuple[int, int]) -> Dict:
        index, epoch = key
        s = self.ds.sample(index, epoch)
        if s.error is not None:
            return {"error": s.error, "index": s.index, "path": s.path}
        item = {
            "pixel_values": transform_clip(s.frames, self.tspec, s.crop_pos, s.jitter),
            "labels": s.label,
            "frame_indices": torch.as_tensor(s.frame_indices, dtype=torch.long),
            "total_frames": s.total_frames,
            "index": s.index,
            "clip_index": s.clip_index,
        }
        for key_name, value in s.extras.items():
            item[key_name] = torch.as_tensor(value)
        return item


def collate(items: Sequence[Dict]) -> Dict:
    """Stack good samples; failed ones go to ``skipped`` with their reason, never replaced."""
    good = [it for it in items if "error" not in it]
    skipped = [{"index": it["index"], "path": it["path"], "reason": it["error"]}
               for it in items if "error" in it]
    batch: Dict = {"skipped": skipped}
    if not good:
        return batch
    for key in good[0]:
        values = [it[key] for it in good]
        batch[key] = torch.stack(values) if torch.is_tensor(values[0]) else torch.as_tensor(values)
    return batch


class _OrderSampler(torch.utils.data.Sampler):
    def __init__(self, order_fn: Callable[[int], List[int]]):
        self.order_fn = order_fn
        self.epoch = 0

    def __iter__(self):
        return iter([(i, self.epoch) for i in self.order_fn(self.epoch)])

    def __len__(self) -> int:
        return len(self.order_fn(self.epoch))


class TorchLoader:
    """Batches from a torch DataLoader; ``set_epoch`` re-draws the order and the randomness."""

    def __init__(self, ds: ClipDataset, order_fn, batch_size: int, tspec: TransformSpec, workers: int):
        self.sampler = _OrderSampler(order_fn)
        self.batch_size = batch_size
        self.loader = torch.utils.data.DataLoader(
            _Indexed(ds, tspec), batch_size=batch_size, sampler=self.sampler, num_workers=workers,
            collate_fn=collate, drop_last=False, persistent_workers=workers > 0)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self):
        return iter(self.loader)


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def pick_backend(requested: str, device: torch.device) -> str:
    """'dali' on CUDA when DALI is installed, else 'torch'; an explicit choice is honoured."""
    if requested == "auto":
        return "dali" if device.type == "cuda" and dali_available() else "torch"
    if requested == "dali" and not dali_available():
        raise RuntimeError("--loader dali needs NVIDIA DALI: pip install -e '.[dali]'")
    return requested


def make_loader(ds: ClipDataset, order_fn, batch_size: int, tspec: TransformSpec, backend: str,
                device: torch.device, workers: int, dali_threads: int, seed: int,
                extras_keys: Sequence[str] = ()):
    """A loader over ``order_fn(epoch)`` with the shared batch contract (see dali.py)."""
    workers = max(0, min(workers, os.cpu_count() or 1))
    if backend == "dali":
        from eval_encoder.video.dali import build_dali_loader

        device_id = device.index if device.type == "cuda" else None
        return build_dali_loader(ds, order_fn, batch_size, tspec, device_id, dali_threads,
                                 workers, seed, extras_keys=tuple(extras_keys))
    return TorchLoader(ds, order_fn, batch_size, tspec, workers)
