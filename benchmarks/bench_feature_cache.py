"""Cost of the pooled head kinds and of the feature cache, in real probe runs.

    python benchmarks/bench_feature_cache.py [--rounds 3] [--epochs 3] [--frames 2]
        [--train_per_class 3] [--val 8] [--model clip_vit_base_patch16]

Every variant is a whole ``probe`` run, in this process, on generated demo clips (PyAV), with a
frozen ViT-B/16 of random weights (``--model_weight random``) frame by frame at 224 px, on one
thread:

  ov              the ov grid alone (3 learning rates)
  ov+linear+knn   the same run with a linear grid (3 rates) and knn heads (``--knn_k``: 5, 10) beside it
  pooled, off     linear + knn, ``--feature_cache off``: every pass encodes
  pooled, warm    linear + knn on a warm cache (a run before the rounds filled it): no pass
                  encodes; clips are still decoded

Rounds interleave the variants. Printed: each variant's median seconds, the ratios
``ov+linear+knn / ov`` and ``warm / off`` (median and range over rounds), and the encoder's
share of the ``off`` run (seconds inside ``ProbeTrainer.encode``, timed by wrapping it here).
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from eval_encoder.demo import generate_dataset  # noqa: E402
from eval_encoder.probe import trainer as trainer_mod  # noqa: E402
from eval_encoder.probe.run import main as probe_main  # noqa: E402

VARIANTS = {
    "ov": ["--probe_head", "ov"],
    "ov+linear+knn": ["--probe_head", "ov", "linear", "knn"],
    "pooled, off": ["--probe_head", "linear", "knn", "--feature_cache", "off"],
    "pooled, warm": ["--probe_head", "linear", "knn"],
}


class EncoderClock:
    """Seconds spent in ProbeTrainer.encode (the frozen encoder's passes)."""

    def __init__(self):
        self.seconds = 0.0
        self.original = trainer_mod.ProbeTrainer.encode

    def __enter__(self):
        clock, original = self, self.original

        def timed(trainer, batch, split):
            start = time.perf_counter()
            try:
                return original(trainer, batch, split)
            finally:
                clock.seconds += time.perf_counter() - start

        trainer_mod.ProbeTrainer.encode = timed
        return self

    def __exit__(self, *exc):
        trainer_mod.ProbeTrainer.encode = self.original


def flags(args, data: Path, report: Path):
    return ["--model_family", "clip", "--model_name", args.model, "--model_weight", "random",
            "--dataset", "demo", "--data_root", str(data), "--num_frames", str(args.frames),
            "--input_size", "224", "--batch_size", "4", "--default_epoch", str(args.epochs),
            "--default_lr_list", "1e-4", "3e-4", "1e-3",
            "--monitor_clips", "0", "--dali_py_num_workers", "0", "--loader", "torch",
            "--device", "cpu", "--save_report", str(report)]


def one_run(args, data: Path, report: Path, extra) -> tuple:
    """(seconds, encoder seconds) of one probe run."""
    with EncoderClock() as clock:
        start = time.perf_counter()
        knn = ["--knn_k", *map(str, args.knn_k)] if "knn" in extra else []
        code = probe_main(flags(args, data, report) + extra + knn)
        seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"a probe run failed ({extra}): exit {code}")
    return seconds, clock.seconds


def spread(values) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--train_per_class", type=int, default=3)
    parser.add_argument("--val", type=int, default=8)
    parser.add_argument("--model", default="clip_vit_base_patch16")
    parser.add_argument("--knn_k", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--only", choices=["heads", "cache"],
                        help="heads: ov and ov+linear+knn only; cache: the pooled pair only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_dataset(root / "data", "demo", train_per_class=args.train_per_class,
                         val_clips=args.val, seed=0)
        warm = root / "warm"
        variants = {name: extra for name, extra in VARIANTS.items()
                    if args.only is None or (name.startswith("pooled") == (args.only == "cache"))}
        if "pooled, warm" in variants:
            one_run(args, root / "data", warm, VARIANTS["pooled, warm"])  # fills the cache
        times = {name: [] for name in variants}
        encoder_share = []
        for r in range(args.rounds):
            for name, extra in variants.items():
                report = warm if name == "pooled, warm" else root / f"{r}-{len(times[name])}"
                seconds, in_encoder = one_run(args, root / "data", report, extra)
                times[name].append(seconds)
                if name == "pooled, off":
                    encoder_share.append(in_encoder / seconds)
    for name, values in times.items():
        print(f"{name:15s} {statistics.median(values):7.2f} s (median of {len(values)})")
    rounds = range(args.rounds)
    if "ov" in times:
        print("ov+linear+knn / ov:", spread([times["ov+linear+knn"][i] / times["ov"][i]
                                             for i in rounds]))
    if "pooled, off" in times:
        print("warm / off:        ", spread([times["pooled, warm"][i] / times["pooled, off"][i]
                                             for i in rounds]))
        print("encoder share of the off run:", spread(encoder_share))


if __name__ == "__main__":
    main()
