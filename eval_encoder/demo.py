"""The embedded demo: real H.264 clips generated here, a tiny random OneVision Encoder saved in
the published checkpoint format, and one probe run over them through torchrun.

``python -m eval_encoder demo`` runs it all; ``--generate-only`` just writes the data.
Classes are motion directions of a textured square (right, left, down, up); each class also
tints its square, so that the tiny randomly initialised demo encoder, which has learnt nothing
about motion, still gives the probe something to find.
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch

from eval_encoder.encoders.onevision import OneVisionEncoder
from eval_encoder.encoders.onevision_config import onevision_config
from eval_encoder.config import ConfigError
from eval_encoder.livelog import check_report_to
from eval_encoder.logs import setup_logging
from eval_encoder.parsing import ArgumentParser
from eval_encoder.prepare.write import CLASSES_NAME, classes_text
from eval_encoder.probe.args import parse_config

log = logging.getLogger("eval_encoder.demo")

PROG = "python -m eval_encoder demo"
EPILOG = ("Other flags go to the probe and win over the demo's (`python -m eval_encoder probe "
          "--help` lists them), e.g. --protocol clean or --default_epoch 1.")
TINY = "ov_encoder_tiny"

DIRECTIONS = [(1, 0), (-1, 0), (0, 1), (0, -1)]  # class 0..3: right, left, down, up
# each class also tints its square, so even the tiny random demo encoder has a cue it can pass on
TINTS = [(1.0, 0.35, 0.35), (0.35, 1.0, 0.35), (0.35, 0.35, 1.0), (1.0, 1.0, 0.35)]
CLASS_NAMES = ["right (red)", "left (green)", "down (blue)", "up (yellow)"]  # classes.csv


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
    """Write ``root/name/{videos,train_new.csv,val_new.csv,classes.csv}`` (classes.csv as
    ``prepare`` writes it: the report names the classes); an odd val count tests sharding."""
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
    (folder / CLASSES_NAME).write_text(classes_text(CLASS_NAMES), encoding="utf-8")


def generate(out: Path) -> Path:
    """Demo data for the ``demo`` and ``demo2`` cards under ``out/data``; returns that folder."""
    data = out / "data"
    generate_dataset(data, "demo", train_per_class=4, val_clips=7, seed=0)
    generate_dataset(data, "demo2", train_per_class=3, val_clips=5, seed=1)
    return data


def save_tiny_encoder(out: Path, seed: int = 0) -> Path:
    """A randomly initialised tiny OneVision Encoder saved in the published format."""
    folder = out / "weights" / TINY
    if not (folder / "config.json").is_file():
        torch.manual_seed(seed)
        OneVisionEncoder(onevision_config(TINY)).save_pretrained(folder)
    return folder


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's pick), for torchrun's rendezvous."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe_flags(data: Path, weights: Path, report: Path, extra: Sequence[str] = ()) -> List[str]:
    """The upstream-style probe flags, scaled to the demo; the epochs are the demo card's."""
    return [
        "--eval_freq", "1", "--default_lr_list", "0.001", "0.0001", "--batch_size", "4",
        "--default_weight_decay", "0", "--dali_py_num_workers", "0", "--model_family",
        "llava_vit_sampling", "--dataset", "demo", "--num_frames", "4", "--model_weight", str(weights),
        "--model_name", TINY, "--embedding_size", "128", "--frames_token_num", "256",
        "--data_root", str(data), "--save_report", str(report), *extra]


def probe_command(data: Path, weights: Path, report: Path, nproc: int, extra: Sequence[str] = (),
                  port: Optional[int] = None) -> List[str]:
    """The upstream-style command line, scaled to the demo (``port``: a free one if None)."""
    port = free_port() if port is None else port
    script = Path(__file__).resolve().parent / "attentive_probe.py"
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                f"--master_port={port}"] if nproc > 1 else [sys.executable]
    return launcher + [str(script), *probe_flags(data, weights, report, extra)]


def check_probe_flags(out: Path, extra: Sequence[str]) -> None:
    """Parse the probe's flags here, before anything is generated, so that a mistake in the
    flags given to the demo (a live log whose package is missing among them) is reported as
    the demo's, once, with status 2 (argparse's), not by every process torchrun starts."""
    flags = probe_flags(out / "data", out / "weights" / TINY, out / "report", extra)
    try:
        check_report_to(parse_config(flags, prog=PROG).report_to)  # before torchrun starts
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(PROG, description=__doc__, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".demo", help="folder for data, weights and results")
    parser.add_argument("--nproc_per_node", type=int, default=1, help="processes (torchrun when > 1)")
    parser.add_argument("--generate-only", action="store_true", help="write the data and weights only")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Generate the demo data and encoder, then run the probe on them; the probe's last lines
    give the top-1, the record's path and the leaderboard command that shows it."""
    setup_logging()
    args, extra = build_parser().parse_known_args(argv)
    out = Path(args.out)
    if not args.generate_only:
        check_probe_flags(out, extra)
    data = generate(out)
    weights = save_tiny_encoder(out)
    log.info("demo data in %s, tiny encoder in %s", data, weights)
    if args.generate_only:
        return 0
    cmd = probe_command(data, weights, out / "report", args.nproc_per_node, extra)
    log.info("running: %s", " ".join(cmd))
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
