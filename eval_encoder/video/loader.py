"""Batch loaders (the torch DataLoader on any device, the default; NVIDIA DALI on request)
with one batch contract.

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
import math
import os
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from eval_encoder.video.dataset import ClipDataset, Sample
from eval_encoder.video.transforms import TransformSpec, transform_clip

log = logging.getLogger("eval_encoder.loader")

Batches = Callable[[int], List[List[int]]]


def val_order(num_clips: int, views: int, rank: int, world: int) -> List[int]:
    """This rank's sample indices for evaluation: its clips' views, in order."""
    return [c * views + v for c in range(rank, num_clips, world) for v in range(views)]


def _fields(s: Sample) -> Dict:
    """A good sample's batch entries, but for its pixels."""
    item = {
        "labels": s.label,
        "frame_indices": torch.as_tensor(s.frame_indices, dtype=torch.long),
        "total_frames": s.total_frames,
        "index": s.index,
        "clip_index": s.clip_index,
    }
    for key_name, value in s.extras.items():
        item[key_name] = torch.as_tensor(value)
    return item


def _failed(s: Sample) -> Dict:
    return {"error": s.error, "index": s.index, "path": s.path}


class _Indexed(torch.utils.data.Dataset):
    """Map-style view of a ClipDataset whose keys are (sample index, epoch) pairs."""

    def __init__(self, ds: ClipDataset, tspec: TransformSpec):
        self.ds = ds
        self.tspec = tspec

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: Tuple[int, int]) -> Dict:
        s = self.ds.sample(*key)
        if s.error is not None:
            return _failed(s)
        pixels = transform_clip(s.frames, self.tspec, s.crop_pos, s.jitter)
        return {"pixel_values": pixels, **_fields(s)}


def _pixel_buffer(shape: Tuple[int, ...]) -> torch.Tensor:
    """The batch's float32 pixel tensor. In a loader worker it is made in shared memory, as
    torch's default collate does, so that handing it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32)
    elem = torch.empty(0, dtype=torch.float32)
    storage = elem._typed_storage()._new_shared(math.prod(shape), device=elem.device)
    return elem.new(storage).view(shape)


class _Batched(_Indexed):
    """Keys are a whole batch of (sample index, epoch) pairs; each good sample's transform
    writes its pixels straight into its slot of the batch (no stacking copy), and failed
    samples go to ``skipped`` as in :func:`collate`."""

    def __getitem__(self, keys: Sequence[Tuple[int, int]]) -> Dict:
        samples = [self.ds.sample(*key) for key in keys]
        good = [s for s in samples if s.error is None]
        batch = collate([_failed(s) for s in samples if s.error is not None]
                        + [_fields(s) for s in good])
        if good:
            size = self.tspec.input_size
            pixels = _pixel_buffer((len(good), 3, good[0].frames.shape[0], size, size))
            for slot, s in zip(pixels, good):
                transform_clip(s.frames, self.tspec, s.crop_pos, s.jitter, out=slot)
            batch = {"pixel_values": pixels, **batch}
        return batch


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


# batches each worker prepares ahead of the one being consumed: decoding overlaps compute
PREFETCH_BATCHES = 2


class TorchLoader:
    """Batches from a torch DataLoader; ``set_epoch`` re-draws the order and the randomness.

    Each worker builds whole batches (:class:`_Batched`) and keeps ``PREFETCH_BATCHES`` ready;
    workers persist across passes; on CUDA the batches are pinned for a fast copy to the device.
    """

    def __init__(self, ds: ClipDataset, batches: Batches, tspec: TransformSpec, workers: int,
                 pin_memory: bool = False):
        self.sampler = _BatchSampler(batches)
        # (each worker runs one torch thread: DataLoader sets it; the workers are the parallelism)
        extra = dict(prefetch_factor=PREFETCH_BATCHES, persistent_workers=True) if workers > 0 else {}
        # batch_size=None: the sampler yields whole batches, which _Batched assembles itself
        self.loader = torch.utils.data.DataLoader(
            _Batched(ds, tspec), sampler=self.sampler, batch_size=None, num_workers=workers,
            collate_fn=_as_is, pin_memory=pin_memory, **extra)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.sampler.epoch, self.sampler.start = epoch, start

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        return iter(self.loader)


def _as_is(batch: Dict) -> Dict:
    return batch


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def pick_backend(requested: str, device: torch.device) -> str:
    """``auto`` is the torch loader on every device: the path the CPU tests run line for line
    (on CUDA it only adds pinned memory). DALI on the GPU is asked for with ``--loader dali``
    until a GPU run has checked it (tests/test_gpu.py, benchmarks/gpu_check.sh)."""
    if requested == "auto":
        return "torch"
    if requested == "dali" and not dali_available():
        raise RuntimeError("--loader dali needs NVIDIA DALI: pip install -e '.[dali]'")
    return requested


def make_loader(ds: ClipDataset, batches: Batches, batch_size: int, tspec: TransformSpec,
                backend: str, device: torch.device, workers: int, dali_threads: int, seed: int,
                extras_keys: Sequence[str] = ()):
    """A loader over ``batches(epoch)`` (none longer than ``batch_size``) with the shared
    batch contract (see dali.py); ``workers`` as :func:`loader_workers` caps it."""
    workers = loader_workers(workers)
    if backend == "dali":
        from eval_encoder.video.dali import build_dali_loader

        device_id = device.index if device.type == "cuda" else None
        return build_dali_loader(ds, batches, batch_size, tspec, device_id, dali_threads,
                                 workers, seed, extras_keys=tuple(extras_keys))
    return TorchLoader(ds, batches, tspec, workers, pin_memory=device.type == "cuda")


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def loader_workers(requested: int) -> int:
    """Decode worker processes for ``--dali_py_num_workers``: as many as asked, but no more
    than this rank's share of the CPUs it may run on (those CPUs / ``LOCAL_WORLD_SIZE``):
    workers beyond the cores only add start-up time, memory and contention."""
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    share = max(1, _usable_cpus() // ranks)
    if requested > share:
        log.info("--dali_py_num_workers %d: using %d decode workers (%d CPUs for %d local "
                 "processes)", requested, share, _usable_cpus(), ranks)
    return max(0, min(requested, share))
