"""Synthetic clips with known motion, for tests, benchmarks and demos of the codec selection.

A textured square moves over a textured background that is static or pans; the ground
truth (where the square is in each frame) comes with the frames. Videos are written with
PyAV, single-threaded, so they are the same on every run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np


@dataclass
class Scene:
    """Frames uint8 [T, H, W, 3] and the square's box (y0, x0, size) per frame [T, 3]."""

    frames: np.ndarray
    boxes: np.ndarray


def texture(h: int, w: int, seed: int, smooth: int = 3) -> np.ndarray:
    """Random RGB texture with some spatial correlation (so block matching has structure)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(h + smooth, w + smooth, 3)).astype(np.float32)
    ii = noise.cumsum(0).cumsum(1)
    ii = np.pad(ii, ((1, 0), (1, 0), (0, 0)))
    k = smooth
    box = (ii[k:k + h, k:k + w] - ii[:h, k:k + w] - ii[k:k + h, :w] + ii[:h, :w]) / (k * k)
    box = (box - box.mean()) / (box.std() + 1e-6) * 60 + 128
    return np.clip(box, 0, 255).astype(np.uint8)


def moving_square(frames: int = 64, height: int = 120, width: int = 160, size: int = 40,
                  velocity: Tuple[float, float] = (1.0, 1.5), pan: Tuple[int, int] = (0, 0),
                  start: Tuple[int, int] = (20, 10), seed: int = 0) -> Scene:
    """A ``size`` square moving by ``velocity`` (dy, dx) pixels per frame over a background
    that moves by ``pan`` (dy, dx) integer pixels per frame; ``size=0`` gives no square."""
    margin_y, margin_x = abs(pan[0]) * frames, abs(pan[1]) * frames
    bg = texture(height + margin_y, width + margin_x, seed)
    obj = texture(max(size, 1), max(size, 1), seed + 1, smooth=2)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    boxes = np.zeros((frames, 3), dtype=np.int64)
    for t in range(frames):
        oy = t * pan[0] if pan[0] >= 0 else margin_y + t * pan[0]
        ox = t * pan[1] if pan[1] >= 0 else margin_x + t * pan[1]
        out[t] = bg[oy:oy + height, ox:ox + width]
        y = int(round(start[0] + velocity[0] * t))
        x = int(round(start[1] + velocity[1] * t))
        boxes[t] = (y, x, size)
        ys, xs = slice(max(y, 0), min(y + size, height)), slice(max(x, 0), min(x + size, width))
        if ys.stop > ys.start and xs.stop > xs.start:  # some of the square is in view
            out[t, ys, xs] = obj[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x]
    return Scene(out, boxes)


def write_video(path: str, frames: np.ndarray, codec: str = "libx264", rate: int = 25,
                options: dict = None) -> str:
    """Write uint8 RGB frames [T, H, W, 3] with PyAV (single-threaded, deterministic)."""
    import av

    opts = {"libx264": {"preset": "veryfast", "crf": "18"},
            "libx265": {"preset": "ultrafast", "crf": "18", "x265-params": "log-level=none"},
            "mpeg4": {"qscale": "2"}}.get(codec, {})
    opts.update(options or {})
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        stream.options = opts
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_moving_clips(folder: str, height: int, width: int, frames: int, count: int) -> List[str]:
    """``count`` H.264 clips of ``frames`` frames at height x width in ``folder``: a textured
    square moving over a background panning 2 px per frame (the benchmarks' clips)."""
    paths = []
    for i in range(count):
        scene = moving_square(frames=frames, height=height, width=width, size=height // 3,
                              velocity=(0.3, -1.0), pan=(0, 2), start=(height // 3, width // 2),
                              seed=i)
        paths.append(write_video(os.path.join(folder, f"c{height}_{i}.mp4"), scene.frames))
    return paths
