"""Cost of live logging (``--report_to``), in real probe runs of the demo's size.

    python benchmarks/bench_live_log.py [--rounds 5] [--epochs 3] [--heads 3]
        [--train_per_class 4] [--val 8]

Every variant is a whole ``probe`` run, in this process, on generated demo clips with the
tiny OneVision encoder (the demo's; the cheapest step there is, so logging's share is at its
largest), on one thread, W&B offline: ``none``, ``tensorboard``, ``wandb``. Rounds
interleave the variants. Printed per backend, against ``none`` (median and range over
rounds): the whole run's time (opening and closing the backend included: a fixed cost),
the training loop's time per step, and the milliseconds each step spends in the live log
(``RunLog.step``, timed by wrapping it here) with their share of the loop.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("WANDB_MODE", "offline")

import argparse  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from eval_encoder.demo import generate_dataset, save_tiny_encoder  # noqa: E402
from eval_encoder.probe import live as live_mod  # noqa: E402
from eval_encoder.probe import trainer as trainer_mod  # noqa: E402
from eval_encoder.probe.run import main as probe_main  # noqa: E402

VARIANTS = ("none", "tensorboard", "wandb")


class Clock:
    """Seconds spent in ``cls.name`` (and calls) while the context is open."""

    def __init__(self, cls, name):
        self.cls, self.name, self.original = cls, name, getattr(cls, name)
        self.seconds, self.calls = 0.0, 0

    def __enter__(self):
        clock, original = self, self.original

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - start
                clock.calls += 1

        setattr(self.cls, self.name, timed)
        return self

    def __exit__(self, *exc):
        setattr(self.cls, self.name, self.original)


def flags(args, data: Path, weights: Path, report: Path, backend: str):
    rates = [f"{1e-4 * 3 ** i:.6g}" for i in range(args.heads)]
    return ["--model_family", "sampling", "--model_name", "ov_encoder_tiny", "--model_weight",
            str(weights), "--dataset", "demo", "--data_root", str(data), "--num_frames", "2",
            "--batch_size", "4", "--default_epoch", str(args.epochs), "--default_lr_list",
            *rates, "--monitor_clips", "0", "--dali_py_num_workers", "0", "--device", "cpu",
            "--save_report", str(report), "--report_to", backend]


def one_run(args, data: Path, weights: Path, report: Path, backend: str) -> dict:
    """Seconds of the run, of its training loop, in the live log, and its steps."""
    with Clock(live_mod.RunLog, "step") as logged, \
            Clock(trainer_mod.ProbeTrainer, "train_epoch") as loop:
        start = time.perf_counter()
        code = probe_main(flags(args, data, weights, report, backend))
        seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"a probe run failed (--report_to {backend}): exit {code}")
    return {"run": seconds, "loop": loop.seconds, "log": logged.seconds, "steps": logged.calls}


def spread(values, fmt="{:.3f}") -> str:
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}-{fmt.format(max(values))})")


def measure(args) -> dict:
    """variant -> one figure dict per round, the variants interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ.setdefault("WANDB_DIR", str(root))
        for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            os.environ.setdefault(var, str(root / "wandb-home"))
        generate_dataset(root / "data", "demo", train_per_class=args.train_per_class,
                         val_clips=args.val, seed=0)
        weights = save_tiny_encoder(root)
        one_run(args, root / "data", weights, root / "warm-up", "none")  # imports, preflight
        out = {v: [] for v in VARIANTS}
        for r in range(args.rounds):
            for v in VARIANTS:
                out[v].append(one_run(args, root / "data", weights, root / f"{r}-{v}", v))
    return out


def report(args, out: dict) -> None:
    rounds, steps = range(args.rounds), out["none"][0]["steps"]
    print(f"{args.rounds} rounds, one thread, {args.heads} heads, {steps} optimiser steps "
          f"per run; median (range)")
    for v in VARIANTS:
        runs, base = out[v], out["none"]
        per_step = [1e3 * x["log"] / x["steps"] for x in runs]
        share = [x["log"] / x["loop"] for x in runs]
        print(f"{v:12s} run {spread([runs[i]['run'] / base[i]['run'] for i in rounds])} x none"
              f", loop {spread([runs[i]['loop'] / base[i]['loop'] for i in rounds])} x none"
              f", log {spread(per_step, '{:.3f}')} ms/step = {spread(share, '{:.4f}')} of "
              f"the loop")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--train_per_class", type=int, default=4)
    parser.add_argument("--val", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    try:
        report(args, measure(args))
    finally:
        logging.disable(logging.NOTSET)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
