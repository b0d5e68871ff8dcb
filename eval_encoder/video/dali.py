"""The DALI data pipeline: the same samples and transforms as the torch loader, on GPU.

Python workers (DALI's parallel external source) produce one :class:`Sample` each, exactly as
the torch path does; DALI then resizes, crops, jitters and normalises with the parameters the
sample carries (crop position, :class:`JitterParams`), so both loaders give the same tensors
(see transforms.py). Runs on CPU too (``device_id=None``), which is how the tests use it.

Every batch DALI assembles is full: the last one is padded with dummy samples, and a clip that
fails to decode travels as a dummy carrying its index, path and reason. Dummies have
``valid = 0``; they are dropped before a batch is yielded and failed ones are listed in the
batch's ``"skipped"``. Batch keys are those of the torch loader (loader.py):
``pixel_values`` float [B,3,T,S,S], ``labels``, ``frame_indices`` [B,T], ``total_frames``,
``index``, ``clip_index`` (long), each of ``extras_keys``, and ``skipped``. A batch whose
samples all failed has only ``skipped``, as in the torch loader.

Worker processes cannot see the main process's state, so the pass's epoch and sample order
travel through a small memory-mapped file (:class:`_Schedule`) written between passes.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
import weakref
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from eval_encoder.video.dataset import ClipDataset, Sample
from eval_encoder.video.transforms import BRIGHTNESS_MODES, JitterParams, TransformSpec

log = logging.getLogger("eval_encoder.dali")

# per-sample "meta" vector
_LABEL, _TOTAL, _INDEX, _CLIP, _VALID = range(5)
_NUM_JITTER = len(JitterParams().as_array())


def _require_dali():
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as exc:
        raise ImportError("the DALI loader needs NVIDIA DALI, an optional extra: "
                          "pip install -e .[dali]") from exc
    return nvidia.dali


# ----------------------------------------------------------------------------------------------
# Graph: DALI ops equal to transforms.transform_clip
# ----------------------------------------------------------------------------------------------

def dali_transform(frames, crop_pos, jitter, tspec: TransformSpec, with_jitter: bool):
    """DALI graph (call inside a pipeline built with ``enable_conditionals=True``).

    ``frames``: uint8 FHWC node (CPU or GPU); ``crop_pos``: CPU float [2] (x, y);
    ``jitter``: CPU float [8] laid out as ``JitterParams.as_array()``. Returns float CFHW.
    With ``tspec.round_pixels`` resize, crop and jitter stay uint8 (DALI rounds and saturates
    each op's output), as the published pipeline; otherwise they run in float.
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    pixel_type = types.UINT8 if tspec.round_pixels else types.FLOAT
    video = fn.resize(frames, resize_shorter=float(tspec.short_side), interp_type=types.INTERP_CUBIC,
                      antialias=True, dtype=pixel_type)
    video = fn.crop(video, crop=(float(tspec.input_size), float(tspec.input_size)),
                    crop_pos_x=crop_pos[0], crop_pos_y=crop_pos[1])
    if with_jitter:
        video = _dali_jitter(video, jitter, tspec)
    return fn.crop_mirror_normalize(video, dtype=types.FLOAT, output_layout="CFHW",
                                    mean=[255.0 * m for m in tspec.mean],
                                    std=[255.0 * s for s in tspec.std])


def _dali_settle(tspec: TransformSpec):
    """After each colour op: uint8 is already rounded and saturated by DALI; float is clamped."""
    import nvidia.dali.math as dmath

    if tspec.round_pixels:
        return lambda video: video
    return lambda video: dmath.clamp(video, 0.0, 255.0)


def _dali_jitter(video, jitter, tspec: TransformSpec):
    """transforms.apply_jitter as DALI conditionals: an op runs only on samples whose flag is set."""
    import nvidia.dali.fn as fn

    settle = _dali_settle(tspec)
    bright, shift = BRIGHTNESS_MODES[tspec.brightness_mode](jitter[2])
    # DALI scales brightness_shift by the output type's range: 255 for uint8, 1 for float
    dali_shift = shift if tspec.round_pixels else shift * 255.0
    if jitter[0] > 0.5:
        video = settle(fn.brightness_contrast(video, contrast=jitter[1], brightness=bright,
                                              brightness_shift=dali_shift, contrast_center=128.0))
    if jitter[3] > 0.5:
        video = settle(fn.saturation(video, saturation=jitter[4]))
    if jitter[5] > 0.5:
        video = settle(fn.hue(video, hue=jitter[6]))
    if jitter[7] > 0.5:
        video = video[:, :, :, ::-1]
    return video


# ----------------------------------------------------------------------------------------------
# Feeding samples from Python workers
# ----------------------------------------------------------------------------------------------

class _Schedule:
    """This pass's (pass number, epoch, order) in a memory-mapped int64 file.

    The main process writes it while no pass runs; DALI's workers (forked or spawned) map it
    read-only. Header: [pass, epoch, n], then the order.
    """

    _HEADER = 3

    def __init__(self, capacity: int):
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, self.path = tempfile.mkstemp(prefix="eval_encoder_dali_", suffix=".order", dir=folder)
        os.close(fd)
        self.capacity = capacity
        self._map = np.memmap(self.path, dtype=np.int64, mode="w+", shape=(self._HEADER + capacity,))
        self._map[0] = -1
        self._finalizer = weakref.finalize(self, _remove_if_owner, self.path, os.getpid())

    def __getstate__(self):  # spawned workers re-map the file by its path
        return {"path": self.path, "capacity": self.capacity}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._map = None

    def write(self, pass_idx: int, epoch: int, order: Sequence[int]) -> None:
        self._map[self._HEADER:self._HEADER + len(order)] = np.asarray(order, dtype=np.int64)
        self._map[1:3] = (epoch, len(order))
        self._map[0] = pass_idx  # last: the header is complete once the pass number shows
        self._map.flush()

    def lookup(self, pass_idx: int, position: int) -> Tuple[int, int, int]:
        """(epoch, n, sample index at ``position`` or -1 past the end) for pass ``pass_idx``."""
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.int64, mode="r")
        current, epoch, n = (int(v) for v in self._map[:3])
        if pass_idx < current:  # a prefetch beyond the end of a finished pass
            raise StopIteration
        if pass_idx > current:
            raise RuntimeError(f"DALI asked for pass {pass_idx} before it was scheduled ({current})")
        index = int(self._map[self._HEADER + position]) if position < n else -1
        return epoch, n, index

    def close(self) -> None:
        self._map = None
        self._finalizer()


def _remove_if_owner(path: str, owner: int) -> None:
    if os.getpid() == owner and os.path.exists(path):
        os.unlink(path)


def _text(value: str) -> np.ndarray:
    return np.frombuffer(value.encode("utf-8"), dtype=np.uint8).copy()


class _SampleFeed:
    """The external-source callback: sample info -> one sample's arrays, in the order of
    ``outputs`` (the jitter vector only when jitter is applied), then per extra (flat, shape)."""

    def __init__(self, dataset: ClipDataset, schedule: _Schedule, batch_size: int,
                 tspec: TransformSpec, extras_keys: Sequence[str], with_jitter: bool):
        self.dataset = dataset
        self.schedule = schedule
        self.batch_size = batch_size
        self.extras_keys = tuple(extras_keys)
        self.with_jitter = with_jitter
        self.outputs = ("frames", "crop_pos") + (("jitter",) if with_jitter else ()) + (
            "meta", "frame_indices", "path", "reason")
        # dummies pass through the same ops (their rows are dropped after): one small frame
        self.dummy_shape = (1, tspec.input_size, tspec.input_size, 3)

    def num_outputs(self) -> int:
        return len(self.outputs) + 2 * len(self.extras_keys)

    def __call__(self, info):
        epoch, n, index = self.schedule.lookup(info.epoch_idx, info.idx_in_epoch)
        if info.idx_in_epoch >= math.ceil(n / self.batch_size) * self.batch_size:
            raise StopIteration
        if index < 0:
            return self._dummy(-1, "", "")
        sample = self.dataset.sample(index, epoch)
        if sample.error is not None:
            return self._dummy(sample.index, sample.path, sample.error)
        return self._pack(sample)

    def _pack(self, s: Sample) -> tuple:
        jitter = s.jitter.as_array() if s.jitter is not None else np.zeros(_NUM_JITTER, np.float32)
        meta = np.array([s.label, s.total_frames, s.index, s.clip_index, 1], dtype=np.int64)
        frames = np.ascontiguousarray(s.frames, dtype=np.uint8)
        row = self._row(frames, np.asarray(s.crop_pos, np.float32), jitter, meta,
                        np.asarray(s.frame_indices, np.int64), s.path, "")
        return row + self._extras(s)

    def _row(self, frames, crop_pos, jitter, meta, frame_indices, path: str, reason: str) -> tuple:
        parts = {"frames": frames, "crop_pos": crop_pos, "jitter": jitter, "meta": meta,
                 "frame_indices": frame_indices, "path": _text(path), "reason": _text(reason)}
        return tuple(parts[name] for name in self.outputs)

    def _extras(self, s: Sample) -> tuple:
        if set(s.extras) != set(self.extras_keys):
            raise ValueError(f"{s.path}: sample extras {sorted(s.extras)} differ from the loader's "
                             f"extras_keys {sorted(self.extras_keys)}")
        out = []
        for key in self.extras_keys:
            value = np.asarray(s.extras[key])
            if not (np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_):
                raise ValueError(f"{s.path}: extra {key!r} has dtype {value.dtype}; the DALI loader "
                                 "carries integer extras only")
            # flattened with its shape: every sample's arrays then have the same ndim, dummies too
            out += [value.astype(np.int64).reshape(-1), np.asarray(value.shape, np.int64)]
        return tuple(out)

    def _dummy(self, index: int, path: str, reason: str) -> tuple:
        meta = np.array([0, 0, index, -1, 0], dtype=np.int64)
        row = self._row(np.zeros(self.dummy_shape, np.uint8), np.full(2, 0.5, np.float32),
                        np.zeros(_NUM_JITTER, np.float32), meta, np.zeros(1, np.int64), path, reason)
        return row + (np.zeros(0, np.int64), np.zeros(1, np.int64)) * len(self.extras_keys)


# ----------------------------------------------------------------------------------------------
# The loader
# ----------------------------------------------------------------------------------------------

def _start_method() -> str:
    """fork is cheap, but DALI refuses it once CUDA is initialised in this process."""
    from nvidia.dali import backend

    return "spawn" if backend.IsDriverInitialized() else "fork"


def _build_pipeline(feed: _SampleFeed, tspec: TransformSpec, batch_size: int,
                    device_id: Optional[int], num_threads: int, py_workers: int, seed: int):
    from nvidia.dali import pipeline_def
    import nvidia.dali.fn as fn

    parallel = py_workers > 0
    extra = {"py_num_workers": py_workers, "py_start_method": _start_method()} if parallel else {}

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                  enable_conditionals=True, **extra)
    def graph():
        outs = fn.external_source(source=feed, num_outputs=feed.num_outputs(), batch=False,
                                  parallel=parallel, layout=["FHWC"] + [""] * (feed.num_outputs() - 1))
        named = dict(zip(feed.outputs, outs))
        frames = named["frames"].gpu() if device_id is not None else named["frames"]
        pixels = dali_transform(frames, named["crop_pos"], named.get("jitter"), tspec, feed.with_jitter)
        return (pixels,) + tuple(outs[2 + feed.with_jitter:])

    pipe = graph()
    if parallel:
        pipe.start_py_workers()  # before build(): build initialises CUDA, after which fork is refused
    pipe.build()
    return pipe


class DaliLoader:
    """Iterable of batch dicts; ``len`` is batches per pass, ``set_epoch`` picks the pass's epoch."""

    def __init__(self, dataset: ClipDataset, batches: Callable[[int], List[List[int]]],
                 batch_size: int, tspec: TransformSpec, device_id: Optional[int], num_threads: int,
                 py_workers: int, seed: int, extras_keys: Sequence[str] = ()):
        _require_dali()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset, self.batches, self.batch_size, self.tspec = dataset, batches, batch_size, tspec
        self.device_id, self.num_threads, self.py_workers = device_id, max(1, num_threads), py_workers
        self.seed, self.extras_keys = seed, tuple(extras_keys)
        self.device = torch.device("cpu" if device_id is None else f"cuda:{device_id}")
        self._epoch, self._start = 0, 0
        self._pipe = None
        self._schedule: Optional[_Schedule] = None
        self._passes = 0  # passes run by the current pipeline (DALI's epoch_idx)
        self._clean = True  # the previous pass ran to its end

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self._epoch, self._start = epoch, start

    def __len__(self) -> int:
        return len(self.batches(self._epoch)) - self._start

    def _order(self) -> List[int]:
        """The pass's batches laid end to end, each padded to the batch size with -1 (a dummy
        sample that is dropped), so DALI's fixed-size batches are exactly ours."""
        order: List[int] = []
        for batch in self.batches(self._epoch)[self._start:]:
            if len(batch) > self.batch_size:
                raise ValueError(f"a batch of {len(batch)} samples for a DALI batch size of "
                                 f"{self.batch_size}")
            order += [int(i) for i in batch] + [-1] * (self.batch_size - len(batch))
        return order

    def __iter__(self):
        order = self._order()
        if not order:
            return
        if self._pipe is None or not self._clean or len(order) > self._schedule.capacity:
            self._rebuild(len(order))
        elif self._passes > 0:
            self._pipe.reset()
        self._schedule.write(self._passes, self._epoch, order)
        self._clean = False
        for _ in range(math.ceil(len(order) / self.batch_size)):
            yield self._batch(self._pipe.run())
        self._finish_pass()

    def _finish_pass(self) -> None:
        try:  # the batch after the last one ends DALI's epoch
            self._pipe.run()
        except StopIteration:
            self._passes += 1
            self._clean = True
            return
        raise RuntimeError("DALI pipeline produced more batches than the order holds")

    def _rebuild(self, capacity: int) -> None:
        self.close()
        self._schedule = _Schedule(max(capacity, 1))
        feed = _SampleFeed(self.dataset, self._schedule, self.batch_size, self.tspec,
                           self.extras_keys, with_jitter=self.dataset.train)
        self._pipe = _build_pipeline(feed, self.tspec, self.batch_size, self.device_id,
                                     self.num_threads, self.py_workers, self.seed)
        self._passes, self._clean = 0, True
        log.debug("DALI pipeline built: batch %d, %d Python workers, %s, jitter %s",
                  self.batch_size, self.py_workers, self.device, feed.with_jitter)

    def close(self) -> None:
        """Stop the pipeline and its workers and remove the schedule file."""
        self._pipe = None
        if self._schedule is not None:
            self._schedule.close()
            self._schedule = None

    def _batch(self, outputs) -> Dict:
        pixels, meta, frame_idx, paths, reasons = outputs[:5]
        meta = _cpu_rows(meta)
        valid = [i for i, row in enumerate(meta) if row[_VALID] == 1]
        skipped = [{"index": int(row[_INDEX]), "path": _decode(paths, i), "reason": _decode(reasons, i)}
                   for i, row in enumerate(meta) if row[_VALID] == 0 and row[_INDEX] >= 0]
        if not valid:
            return {"skipped": skipped}
        rows = np.stack([meta[i] for i in valid])
        batch = {"pixel_values": _device_rows(pixels, valid, self.device)}
        long = lambda a: torch.as_tensor(a, dtype=torch.long).to(self.device)  # noqa: E731
        batch["labels"] = long(rows[:, _LABEL])
        frame_idx = _cpu_rows(frame_idx)
        batch["frame_indices"] = long(np.stack([frame_idx[i] for i in valid]))
        batch["total_frames"] = long(rows[:, _TOTAL])
        batch["index"] = long(rows[:, _INDEX])
        batch["clip_index"] = long(rows[:, _CLIP])
        for k, key in enumerate(self.extras_keys):
            flat, shapes = _cpu_rows(outputs[5 + 2 * k]), _cpu_rows(outputs[6 + 2 * k])
            batch[key] = long(np.stack([flat[i].reshape(shapes[i]) for i in valid]))
        batch["skipped"] = skipped
        return batch


def _cpu_rows(tensor_list) -> List[np.ndarray]:
    return [np.array(tensor_list[i]) for i in range(len(tensor_list))]


def _decode(tensor_list, i: int) -> str:
    return np.array(tensor_list[i]).tobytes().decode("utf-8")


def _device_rows(tensor_list, rows: List[int], device: torch.device) -> torch.Tensor:
    """Stack the chosen samples of a DALI TensorList as one torch tensor on ``device`` (a copy)."""
    if device.type == "cpu":
        return torch.from_numpy(np.stack([np.array(tensor_list[i]) for i in rows]))
    return torch.stack([torch.from_dlpack(tensor_list[i]) for i in rows]).to(device)


def build_dali_loader(dataset: ClipDataset, batches: Callable[[int], List[List[int]]],
                      batch_size: int, tspec: TransformSpec, device_id: Optional[int],
                      num_threads: int, py_workers: int, seed: int,
                      extras_keys: Sequence[str] = ()) -> DaliLoader:
    """A DALI loader over ``batches(epoch)`` (this rank's batches of sample indices, none
    longer than ``batch_size``) with the torch loader's batch contract; ``device_id=None``
    runs DALI on CPU. Needs the ``dali`` extra."""
    return DaliLoader(dataset, batches, batch_size, tspec, device_id, num_threads, py_workers,
                      seed, extras_keys)
