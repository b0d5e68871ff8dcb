"""Clip sources and the per-sample producer shared by the torch and DALI pipelines.

A *clip source* turns a manifest entry into raw frames plus whatever the encoder reads
from the batch (frame indices, total frames, visible patch indices). Which source runs is
declared by the encoder (``EncoderSpec.clip_source``), never by a branch in the trainer.

A broken clip is never replaced by another one: the sample comes back with ``error`` set,
the loader drops it from the batch and the trainer counts and lists it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from eval_encoder.registry import CLIP_SOURCES
from eval_encoder.video.decode import ClipDecodeError, decode_counted
from eval_encoder.video.manifest import ManifestEntry, Segment
from eval_encoder.video.augment import augment_drawer
from eval_encoder.video.transforms import JitterParams
from eval_encoder.video.windows import ClipPlan


# bit -> name of the per-clip "flags" extra a clip source may set (codec: fallback taken, ...);
# the run record counts each flag per split. Clips with FLAG_TRUNCATED are also listed by
# path, with the frames used (the batch's total_frames) and, where the source gives the
# "packets" extra, the stream's packet count.
FLAG_TRUNCATED = 16
FLAG_NAMES: Dict[int, str] = {FLAG_TRUNCATED: "fewer_decodable_frames_than_packets"}
# flag name -> what it means for the number, for the warning at the end of a run (a flag
# without an entry, such as the codec's static fallback, is the method working as meant)
FLAG_WARNINGS: Dict[str, str] = {
    "fewer_decodable_frames_than_packets": "decoded fewer frames than their packets promise "
                                           "(a damaged or cut file): the last frame repeats",
}


@dataclass
class Sample:
    """One view of one clip, before transforms."""

    index: int  # position in the (view-expanded) split
    clip_index: int  # position of the clip in the manifest
    label: int
    path: str
    frames: Optional[np.ndarray] = None  # uint8 [T, H, W, 3]
    frame_indices: Optional[np.ndarray] = None  # int64 [T]
    total_frames: int = 0
    crop_pos: Tuple[float, float] = (0.5, 0.5)  # (x, y) of the crop window, in [0, 1]
    # the training augmentation's draws: the OneVision jitter, or one that makes its own crop
    # (video/augment.py; it has a ``transform``)
    jitter: Optional[JitterParams] = None
    extras: Dict[str, np.ndarray] = field(default_factory=dict)
    error: Optional[str] = None


@dataclass
class ClipRequest:
    path: str
    train: bool
    rng: np.random.Generator
    temporal_view: int = 0
    num_temporal_views: int = 1
    segment: Optional[Segment] = None  # a stretch of a long video (manifest start, end)


class FramesSource:
    """The frames a :class:`ClipPlan` picks: ``--num_frames`` per segment (train: drawn; eval:
    at the centres, or drawn under ``--eval_window random``), segment after segment."""

    extras_keys = ("flags", "packets")  # what load() adds to each sample, for the batch

    def __init__(self, num_frames: int, decode_threads: int = 1, cfg=None, **_):
        self.plan = clip_plan(num_frames, cfg)
        self.num_frames = self.plan.frames_per_clip
        self.segments = self.plan.segments
        self.decode_threads = decode_threads

    def load(self, req: ClipRequest) -> Tuple[np.ndarray, np.ndarray, int, Dict[str, np.ndarray]]:
        pick = self.plan.picker(req.train, req.rng, req.temporal_view, req.num_temporal_views)
        frames, idx, count = decode_counted(req.path, pick, self.decode_threads, req.segment)
        flags = np.array([FLAG_TRUNCATED if count.truncated else 0], dtype=np.int64)
        return frames, idx, count.used, {"flags": flags,
                                         "packets": np.array([count.packets], dtype=np.int64)}


def clip_plan(num_frames: int, cfg=None) -> ClipPlan:
    """The run's :class:`ClipPlan` (one segment spread over the clip without a config)."""
    if cfg is None:
        return ClipPlan(num_frames)
    return ClipPlan(num_frames, cfg.frame_step or 0, cfg.num_segments or 1,
                    cfg.eval_window or "centre")


CLIP_SOURCES.register("frames", FramesSource)


def spatial_crop_positions(num_views: int) -> List[float]:
    """Crop-window positions along the longer side: centre, or evenly from start to end."""
    if num_views <= 1:
        return [0.5]
    return [v / (num_views - 1) for v in range(num_views)]


class ClipDataset:
    """The split as a list of samples: clips x temporal views x spatial views.

    ``sample(i, epoch)`` is deterministic in (seed, epoch, i), whichever worker or rank
    computes it, so runs are reproducible across loaders and world sizes.
    """

    def __init__(self, entries: Sequence[ManifestEntry], video_root: str, source, train: bool,
                 seed: int, temporal_views: int = 1, spatial_views: int = 1,
                 augment: str = "ov"):
        self.entries = list(entries)
        self.video_root = video_root
        self.source = source
        self.train = train
        self.seed = seed
        self.temporal_views = 1 if train else temporal_views
        self.spatial_views = 1 if train else spatial_views
        self.spatial_pos = spatial_crop_positions(self.spatial_views)
        self.draw_augment = augment_drawer(augment)  # --train_augment
        self.segments = getattr(source, "segments", 1)

    @property
    def views(self) -> int:
        return self.temporal_views * self.spatial_views

    def __len__(self) -> int:
        return len(self.entries) * self.views

    def clip_of(self, index: int) -> int:
        return index // self.views

    def path_of(self, index: int) -> str:
        """The video file of sample ``index``."""
        return os.path.join(self.video_root, self.entries[self.clip_of(index)].path)

    def sample(self, index: int, epoch: int = 0) -> Sample:
        clip, view = divmod(index, self.views)
        t_view, s_view = divmod(view, self.spatial_views)
        entry = self.entries[clip]
        path = self.path_of(index)
        rng = np.random.default_rng([self.seed, epoch, index, int(self.train)])
        pos = self.spatial_pos[s_view]
        out = Sample(index=index, clip_index=clip, label=entry.label, path=path)
        req = ClipRequest(path, self.train, rng, t_view, self.temporal_views, entry.segment)
        try:
            out.frames, out.frame_indices, out.total_frames, out.extras = self.source.load(req)
        except ClipDecodeError as exc:
            out.error = str(exc)
            return out
        height, width = out.frames.shape[1:3]
        # spatial views slide along the longer side; the shorter one stays centred
        out.crop_pos = (pos, 0.5) if width >= height else (0.5, pos)
        if self.train:
            out.jitter = self.draw_augment(rng, self.segments)
        return out
