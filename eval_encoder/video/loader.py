"""Batch loaders (torch DataLoader on CPU, DALI on GPU) with one batch contract.

A loader is given a function ``batches(epoch) -> [[sample index, ...], ...]``: this rank's
batches for the pass, in order, possibly short or empty (an empty batch yields a batch with
only ``skipped``, so every rank runs the same number of batches). Training batches come from
the step plan (video/steps.py: one permutation per epoch, cut into steps and micro-batches
the same way for every world size); validation batches from :func:`val_order`: clips strided
over ranks (rank r takes clips r, r+W, ...), all views of a clip on the same rank, no padding
and no permutation, so every clip is scored exactly once whatever the world size.
``set_epoch(epoch, start)`` picks the pass and skips its first ``start`` batches (resume).
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from eval_encoder.video.dataset import ClipDataset
from eval_encoder.video.transforms import TransformSpec, transform_clip

log = logging.getLogger("eval_encoder.loader")

Batches = Callable[[int], List[List[int]]]


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


class _BatchSampler(torch.utils.data.Sampler):
    """The pass's batches of (sample index, epoch) keys, from batch ``start`` on."""

    def __init__(self, batches: Batches):
        self.batches = batches
        self.epoch, self.start = 0, 0

    def __iter__(self):
        return iter([[(i, self.epoch) for i in b] for b in self.batches(self.epoch)[self.start:]])

    def __len__(self) -> int:
        return len(self.batches(self.epoch)) - self.start


class TorchLoader:
    """Batches from a torch DataLoader; ``set_epoch`` re-draws the order and the randomness."""

    def __init__(self, ds: ClipDataset, batches: Batches, tspec: TransformSpec, workers: int):
        self.sampler = _BatchSampler(batches)
        self.loader = torch.utils.data.DataLoader(
            _Indexed(ds, tspec), batch_sampler=self.sampler, num_workers=workers,
            collate_fn=collate, persistent_workers=workers > 0)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.sampler.epoch, self.sampler.start = epoch, start

    def __len__(self) -> int:
        return len(self.sampler)

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


def make_loader(ds: ClipDataset, batches: Batches, batch_size: int, tspec: TransformSpec,
                backend: str, device: torch.device, workers: int, dali_threads: int, seed: int,
                extras_keys: Sequence[str] = ()):
    """A loader over ``batches(epoch)`` (none longer than ``batch_size``) with the shared
    batch contract (see dali.py)."""
    workers = max(0, min(workers, os.cpu_count() or 1))
    if backend == "dali":
        from eval_encoder.video.dali import build_dali_loader

        device_id = device.index if device.type == "cuda" else None
        return build_dali_loader(ds, batches, batch_size, tspec, device_id, dali_threads,
                                 workers, seed, extras_keys=tuple(extras_keys))
    return TorchLoader(ds, batches, tspec, workers)
