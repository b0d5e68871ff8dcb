"""The embedded demo: real H.264 clips generated here, a tiny random OneVision Encoder saved in
the published checkpoint format, and one probe run over them through torchrun.

``python -m eval_encoder demo`` runs it all; ``--generate-only`` just writes the data.
Classes are motion directions of a textured square (right, left, down, up); each class also
tints its square, so that the tiny randomly initialised demo encoder, which has learnt nothing
about motion, still gives the probe something to find.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from eval_encoder.encoders.onevision import OneVisionEncoder
from eval_encoder.encoders.onevision_config import onevision_config
from eval_encoder.logs import setup_logging

log = logging.getLogger("eval_encoder.demo")

DIRECTIONS = [(1, 0), (-1, 0), (0, 1), (0, -1)]  # class 0..3: right, left, down, up
# each class also tints its square, so even the tiny random demo encoder has a cue it can pass on
TINTS = [(1.0, 0.35, 0.35), (0.35, 1.0, 0.35), (0.35, 0.35, 1.0), (1.0, 1.0, 0.35)]


def render_clip(direction, num_frames: int, width: int, height: int, rng: np.random.Generator,
                tint=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Frames uint8 [T, H, W, 3]: a textured square moving over a static textured background."""
    background = rng.integers(40, 120, size=(height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    background = np.kron(background, np.ones((4, 4, 1), dtype=np.uint8))[:height, :width]
    side = height // 3
    patch = (rng.integers(150, 255, size=(side, side, 3)) * np.asarray(tint)).astype(np.uint8)
    dx, dy = direction
    span_x, span_y = width - side, height - side
    step = max(1, min(span_x, span_y) // max(1, num_frames))
    travel = step * (num_frames - 1)
    x0 = _start(rng, span_x, travel, dx)
    y0 = _start(rng, span_y, travel, dy)
    frames = []
    for t in range(num_frames):
        x = int(np.clip(x0 + dx * step * t, 0, span_x))
        y = int(np.clip(y0 + dy * step * t, 0, span_y))
        frame = background.copy()
        frame[y:y + side, x:x + side] = patch
        frames.append(frame)
    return np.stack(frames)


def _start(rng: np.random.Generator, span: int, travel: int, direction: int) -> int:
    """A start position from which the whole path stays inside the frame where possible."""
    if direction == 0:
        return int(rng.integers(0, span + 1))
    room = max(0, span - travel)
    start = int(rng.integers(0, room + 1))
    return start if direction > 0 else span - start


def write_video(path: Path, frames: np.ndarray, fps: int = 12, codec: str = "libx264") -> None:
    """Encode frames with PyAV, single-threaded so the bytes are reproducible."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "23"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate_dataset(root: Path, name: str, train_per_class: int, val_clips: int, seed: int,
                     size=(96, 72), frames: Sequence[int] = (12, 20)) -> None:
    """Write ``root/name/{videos,train_new.csv,val_new.csv}``; an odd val count tests sharding."""
    rng = np.random.default_rng(seed)
    folder = root / name
    rows = {"train": [], "val": []}
    plan = [("train", i % len(DIRECTIONS)) for i in range(train_per_class * len(DIRECTIONS))]
    plan += [("val", i % len(DIRECTIONS)) for i in range(val_clips)]
    for n, (split, label) in enumerate(plan):
        rel = f"videos/{split}_{n:03d}.mp4"
        t = int(rng.integers(frames[0], frames[1] + 1))
        write_video(folder / rel, render_clip(DIRECTIONS[label], t, size[0], size[1], rng,
                                                     TINTS[label]))
        rows[split].append(f"{rel},{label}")
    for split, lines in rows.items():
        (folder / f"{split}_new.csv").write_text("\n".join(lines) + "\n")


def generate(out: Path) -> Path:
    """Demo data for the ``demo`` and ``demo2`` cards under ``out/data``; returns that folder."""
    data = out / "data"
    generate_dataset(data, "demo", train_per_class=4, val_clips=7, seed=0)
    generate_dataset(data, "demo2", train_per_class=3, val_clips=5, seed=1)
    return data


def save_tiny_encoder(out: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny OneVision Encoder saved in the published format."""
    folder = out / "weights" / "ov_encoder_tiny"
    if not (folder / "config.json").is_file():
        torch.manual_seed(seed)
        OneVisionEncoder(onevision_config("ov_encoder_tiny")).save_pretrained(folder)
    return folder


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's pick), for torchrun's rendezvous."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe_command(data: Path, weights: Path, report: Path, nproc: int, extra: Sequence[str] = (),
                  port: Optional[int] = None) -> List[str]:
    """The upstream-style command line, scaled to the demo (``port``: a free one if None)."""
    port = free_port() if port is None else port
    script = Path(__file__).resolve().parent / "attentive_probe.py"
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                f"--master_port={port}"] if nproc > 1 else [sys.executable]
    return launcher + [
        str(script), "--eval_freq", "1", "--default_lr_list", "0.001", "0.0001", "--batch_size", "4",
        "--default_weight_decay", "0", "--dali_py_num_workers", "0", "--model_family",
        "llava_vit_sampling", "--dataset", "demo", "--num_frames", "4", "--model_weight", str(weights),
        "--model_name", "ov_encoder_tiny", "--embedding_size", "128", "--frames_token_num", "256",
        "--default_epoch", "10", "--data_root", str(data), "--save_report", str(report), *extra]


def main(argv: Optional[Sequence[str]] = None) -> int:
    setup_logging()
    parser = argparse.ArgumentParser("python -m eval_encoder demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".demo", help="folder for data, weights and results")
    parser.add_argument("--nproc_per_node", type=int, default=1, help="processes (torchrun when > 1)")
    parser.add_argument("--generate-only", action="store_true", help="write the data and weights only")
    args, extra = parser.parse_known_args(argv)
    out = Path(args.out)
    data = generate(out)
    weights = save_tiny_encoder(out)
    log.info("demo data in %s, tiny encoder in %s", data, weights)
    if args.generate_only:
        return 0
    report = out / "report"
    cmd = probe_command(data, weights, report, args.nproc_per_node, extra)
    log.info("running: %s", " ".join(cmd))
    code = subprocess.call(cmd)
    if code == 0:
        latest = max((report / "runs" / "demo").glob("*.json"), key=os.path.getmtime)
        record = json.loads(latest.read_text())
        r = record["reported"]
        print(f"demo: top-1 {r['top1']:.1f}%  top-5 {r['top5']:.1f}%  head {r['head']}  "
              f"({record['samples']['val']['scored']}/{record['samples']['val']['expected']} val clips "
              f"scored, {record['wall_time_s']:.1f} s)  record: {latest}")
    return code


if __name__ == "__main__":
    sys.exit(main())
