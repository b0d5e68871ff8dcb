"""Cost of a run of several head kinds (``--probe_head ov linear knn``) against ``ov`` alone.

    python benchmarks/bench_pooled_heads.py [--encoder vit_base_patch16_224] [--frames 2]
        [--batch 2] [--train 8] [--val 4] [--epochs 5] [--lrs 3] [--wds 2] [--rounds 3]

Both runs do what a probe run does, on one thread, with the trainer's own pieces: every epoch
one training step per batch (the frozen encoder's pass, then every trained head's forward,
backward and AdamW step: the ov grid, and in the second run the linear grid beside it on the
same tokens), then one validation pass scoring every head. The second run also pools the
train split once in the evaluation view for its knn heads (k = 10, 20, 100, 200 clamped to
the train clips), fits them and scores them in the same validation pass. Rounds interleave
the two runs; printed: the median seconds of each and the median and range over rounds of
their ratio. ``--encoder none`` uses random tokens of ``--width`` (heads only).
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from eval_encoder.distributed import DistEnv  # noqa: E402
from eval_encoder.features.pool import TokenLayout, pool_tokens  # noqa: E402
from eval_encoder.probe.heads import bank_logits, build_head, head_grid  # noqa: E402
from eval_encoder.probe.trainer import HeadState, ProbeTrainer, make_heads  # noqa: E402

ENV = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
POOL = dict(pool="mean")
KS = (10, 20, 100, 200)


class Encoder(nn.Module):
    """A frozen timm image encoder frame by frame ([B, T*N, D]), or random tokens."""

    def __init__(self, name: str, batch: int, frames: int, tokens: int, width: int):
        super().__init__()
        self.model = None
        if name != "none":
            import timm

            self.model = timm.create_model(name, pretrained=False, num_classes=0).eval()
            self.frames = torch.randn(batch, frames, 3, 224, 224)
        else:
            self.tokens = torch.randn(batch, tokens, width)

    def forward(self, batch):
        if self.model is None:
            return self.tokens + 0  # a fresh tensor, as an encoder gives
        b, t = self.frames.shape[:2]
        out = self.model.forward_features(self.frames.flatten(0, 1))
        return out.reshape(b, t * out.shape[1], out.shape[2])


def heads_of(kinds, args, dim: int):
    heads = []
    grid = head_grid([1e-4 * (1 + i) for i in range(args.lrs)], [1e-4 * i for i in range(args.wds)])
    for kind in kinds:
        if kind == "knn":
            heads += [HeadState(f"knn k={k}", None, None,
                                build_head("knn", dim, args.classes, k=min(k, args.train), **POOL),
                                None, None) for k in KS]
        else:
            options = POOL if kind == "linear" else None
            heads += make_heads(grid, dim, args.classes, 100, 1e-7, ENV.device, len(heads),
                                kind=kind, options=options, named=len(kinds) > 1)
    return heads


def run_time(kinds, args, encoder: Encoder, dim: int) -> float:
    """Seconds of one simulated run of ``kinds`` (training, knn pooling, validation)."""
    torch.manual_seed(0)
    heads = heads_of(kinds, args, dim)
    trainer = ProbeTrainer(encoder, heads, ENV, 0.1, 5.0, args.classes)
    labels = torch.randint(0, args.classes, (args.batch,))
    batch = {"labels": labels, "skipped": []}
    steps = args.train // args.batch
    start = time.perf_counter()
    for epoch in range(args.epochs):
        for step in range(steps):
            trainer.train_step(batch, epoch, epoch * steps + step)
    knn = [h.module for h in heads if not h.trains]
    if knn:  # one pass over the train split in the evaluation view
        with torch.no_grad():
            feats = torch.cat([pool_tokens(trainer.tokens(batch, "knn_train").float(),
                                           "mean", TokenLayout()) for _ in range(steps)])
        for m in knn:
            m.fit(feats, torch.arange(len(feats)) % args.classes)
    modules = [h.module for h in heads]
    with torch.no_grad():
        for _ in range(args.val // args.batch):
            bank_logits(modules, trainer.tokens(batch, "val").float())
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="vit_base_patch16_224")
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--tokens", type=int, default=2 * 196)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--train", type=int, default=8)
    parser.add_argument("--val", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--classes", type=int, default=174)
    parser.add_argument("--lrs", type=int, default=3)
    parser.add_argument("--wds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    encoder = Encoder(args.encoder, args.batch, args.frames, args.tokens, args.width)
    with torch.no_grad():
        dim = encoder(None).shape[-1]
    variants = (("ov",), ("ov", "linear", "knn"))
    times = {v: [] for v in variants}
    for _ in range(args.rounds):
        for v in variants:
            times[v].append(run_time(v, args, encoder, dim))
    ratios = [b / a for a, b in zip(*times.values())]
    print(f"{args.encoder} (width {dim}), {args.epochs} epochs x {args.train // args.batch} "
          f"steps of {args.batch} clips, {args.val} val clips, {args.lrs}x{args.wds} grid, "
          f"{args.rounds} rounds, one thread")
    for v in variants:
        print(f"  {' '.join(v):14s} {statistics.median(times[v]):8.2f} s/run")
    print(f"  ratio {statistics.median(ratios):.3f}x (range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
