"""One encoder pass per batch feeds every probe head; validation scores every clip once.

Each (learning rate, weight decay) pair gets its own head, AdamW and LinearLR schedule.
Gradients are synchronised by hand (one flat all-reduce over all heads, weighted by each
rank's number of good samples) rather than with DDP, so a batch that lost clips to decode
errors, or a head stopped by a non-finite loss, cannot desynchronise the ranks.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import nn
from tqdm import tqdm

from eval_encoder import distributed as dist
from eval_encoder.probe.head import ClassificationHead, head_name

log = logging.getLogger("eval_encoder.trainer")


class RunFailed(RuntimeError):
    """A run that cannot produce a trustworthy number (too many unreadable clips, ...)."""


@dataclass
class HeadState:
    name: str
    lr: float
    weight_decay: float
    module: ClassificationHead
    optimizer: torch.optim.Optimizer
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler]
    status: str = "ok"
    history: List[Dict] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.status == "ok"


@dataclass
class Counters:
    encoder_passes: Dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    batches: Dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0})
    skipped: Dict[str, Dict[int, Dict]] = field(default_factory=lambda: {"train": {}, "val": {}})
    flags: Dict[str, Dict[str, set]] = field(default_factory=lambda: {"train": {}, "val": {}})


def make_heads(grid, dim: int, num_classes: int, steps: int, min_lr: float,
               device: torch.device, seed: int) -> List[HeadState]:
    """One head, optimiser and LinearLR(lr -> min_lr over all steps) per (lr, wd)."""
    heads = []
    for i, (lr, wd) in enumerate(grid):
        torch.manual_seed(seed + i)  # the same initial head on every rank
        module = ClassificationHead(dim, num_classes).to(device)
        opt = torch.optim.AdamW(module.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                weight_decay=wd)
        sched = None
        if min_lr < lr:
            sched = torch.optim.lr_scheduler.LinearLR(
                opt, start_factor=1.0, end_factor=min_lr / lr, total_iters=max(1, steps))
        heads.append(HeadState(head_name(lr, wd), lr, wd, module, opt, sched))
    return heads


def _to_device(batch: Dict, device: torch.device) -> Dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class ProbeTrainer:
    """Trains a bank of heads on a frozen encoder and evaluates them."""

    def __init__(self, encoder: nn.Module, heads: List[HeadState], env, smoothing: float,
                 clip_grad: float, num_classes: int, num_tokens: Optional[int] = None,
                 print_freq: int = 10):
        self.encoder = encoder
        self.heads = heads
        self.env = env
        self.criterion = nn.CrossEntropyLoss(label_smoothing=smoothing)
        self.clip_grad = clip_grad
        self.num_classes = num_classes
        self.num_tokens = num_tokens
        self.print_freq = print_freq
        self.counters = Counters()

    # ---- encoder
    def tokens(self, batch: Dict, split: str) -> torch.Tensor:
        """The single encoder pass of a batch (counted, so tests can check it)."""
        with torch.no_grad(), _autocast(self.env.device):
            out = self.encoder(batch)
        self.counters.encoder_passes[split] += 1
        if self.num_tokens is not None and out.shape[1] != self.num_tokens:
            raise RunFailed(f"--num_tokens {self.num_tokens} but the encoder returned {out.shape[1]} tokens")
        return out

    def _note_batch(self, batch: Dict, split: str) -> None:
        self.counters.batches[split] += 1
        for item in batch.get("skipped", []):
            self.counters.skipped[split][item["index"]] = item
        if "flags" in batch:
            from eval_encoder.video.dataset import FLAG_NAMES

            # a set of sample indices per flag: a clip seen in several epochs counts once
            pairs = zip(batch["flags"].view(-1).tolist(), batch["index"].view(-1).tolist())
            for flags, index in pairs:
                for bit, name in FLAG_NAMES.items():
                    if int(flags) & bit:
                        self.counters.flags[split].setdefault(name, set()).add(int(index))

    def flag_counts(self, split: str) -> Dict[str, int]:
        """Samples of ``split`` (over all ranks) that carried each flag (collective call)."""
        merged: Dict[str, set] = {}
        for part in dist.all_gather_objects(self.counters.flags[split]):
            for name, indices in part.items():
                merged.setdefault(name, set()).update(indices)
        return {name: len(indices) for name, indices in sorted(merged.items())}

    # ---- training
    def train_epoch(self, loader, epoch: int) -> Dict[str, float]:
        """One epoch; returns each head's mean training loss."""
        for h in self.heads:
            h.module.train()
        sums = torch.zeros(len(self.heads), dtype=torch.float64)
        count = 0
        bar = tqdm(loader, total=len(loader), desc=f"train {epoch}", disable=not self.env.is_main,
                   leave=False, dynamic_ncols=True)
        for step, batch in enumerate(bar):
            self._note_batch(batch, "train")
            n_global, losses = self.train_step(batch, epoch, step)
            sums += losses
            count += n_global
            if self.env.is_main and (step + 1) % self.print_freq == 0:
                bar.set_postfix(loss=f"{(sums / max(count, 1)).min().item():.4f}")
        return {h.name: float(sums[i] / max(count, 1)) for i, h in enumerate(self.heads)}

    def train_step(self, batch: Dict, epoch: int, step: int):
        """Forward every live head on one encoder pass, sync gradients, step each head."""
        device = self.env.device
        n_local = int(batch["labels"].shape[0]) if "labels" in batch else 0
        losses = [None] * len(self.heads)
        if n_local:
            batch = _to_device(batch, device)
            feats = self.tokens(batch, "train")
            for i, h in enumerate(self.heads):
                if h.alive:
                    with _autocast(device):
                        logits = h.module(feats)
                    losses[i] = self.criterion(logits.float(), batch["labels"])
        # one collective carries the sample count and each head's finiteness
        stats = torch.zeros(len(self.heads) + 1, dtype=torch.float64)
        stats[0] = n_local
        for i, loss in enumerate(losses):
            if loss is not None:
                stats[i + 1] = 0.0 if torch.isfinite(loss) else 1.0
        stats = self._all_reduce(stats)
        n_global = int(stats[0])
        self._stop_nonfinite(stats[1:], epoch, step)
        live = [i for i, h in enumerate(self.heads) if h.alive]
        for i in live:
            self.heads[i].optimizer.zero_grad(set_to_none=False)
        if n_local and live:
            total = sum(losses[i] * n_local for i in live)
            total.backward()
        loss_sums = torch.zeros(len(self.heads), dtype=torch.float64)
        if n_global == 0:  # every clip of this step failed on every rank: nothing to learn
            return 0, loss_sums
        self._sync_grads(live, n_global)
        for i in live:
            h = self.heads[i]
            if self.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(h.module.parameters(), self.clip_grad)
            h.optimizer.step()
            if h.scheduler is not None:
                h.scheduler.step()
            if losses[i] is not None:
                loss_sums[i] = float(losses[i].detach()) * n_local
        return n_global, self._all_reduce(loss_sums)

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if not dist.active():
            return t
        moved = t.to(self.env.device)
        dist.all_reduce_sum_(moved)
        return moved.cpu()

    def _stop_nonfinite(self, flags: torch.Tensor, epoch: int, step: int) -> None:
        for i, h in enumerate(self.heads):
            if h.alive and flags[i] > 0:
                h.status = f"stopped: non-finite loss at epoch {epoch} step {step}"
                log.warning("head %s: non-finite loss at epoch %d step %d; it is stopped and "
                            "will not be reported", h.name, epoch, step)

    def _sync_grads(self, live: List[int], n_global: int) -> None:
        """Sum gradients over ranks and divide by the global sample count (one all-reduce)."""
        params = [p for i in live for p in self.heads[i].module.parameters()]
        if not params:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        if dist.active():
            dist.all_reduce_sum_(flat)
        flat /= max(n_global, 1)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    # ---- evaluation
    @torch.no_grad()
    def evaluate(self, loader, views: int, modules: List[nn.Module], desc: str = "val") -> List[Dict]:
        """Score every clip once with each of ``modules`` (heads, or snapshots of heads).

        Logits are averaged over a clip's views. Returns, on every rank, the scored clips
        ``{clip, label, top5: [module][5]}`` gathered from all ranks.
        """
        for m in modules:
            m.eval()
        sums: Dict[int, torch.Tensor] = {}
        seen: Dict[int, int] = defaultdict(int)
        labels: Dict[int, int] = {}
        bar = tqdm(loader, total=len(loader), desc=desc, disable=not self.env.is_main,
                   leave=False, dynamic_ncols=True)
        for batch in bar:
            self._note_batch(batch, "val")
            if "labels" not in batch:
                continue
            batch = _to_device(batch, self.env.device)
            # heads score in float32: bf16 logits would round before views are averaged
            feats = self.tokens(batch, "val").float()
            logits = torch.stack([m(feats) for m in modules], dim=1).cpu()
            for row, (clip, label) in enumerate(zip(batch["clip_index"].tolist(),
                                                    batch["labels"].tolist())):
                sums[clip] = sums.get(clip, 0) + logits[row]
                seen[clip] += 1
                labels[clip] = label
        local = []
        for clip, total in sums.items():
            if seen[clip] != views:
                continue  # a view failed to decode: the clip is listed as skipped, not scored
            top5 = total.topk(min(5, self.num_classes), dim=-1).indices
            local.append({"clip": clip, "label": labels[clip], "top5": top5.tolist()})
        return [item for part in dist.all_gather_objects(local) for item in part]


def accuracy(scored: List[Dict], head: int) -> Dict[str, float]:
    """Top-1 and top-5 accuracy (%) of one head over the scored clips."""
    if not scored:
        return {"top1": float("nan"), "top5": float("nan")}
    top1 = sum(1 for s in scored if s["top5"][head][0] == s["label"])
    top5 = sum(1 for s in scored if s["label"] in s["top5"][head])
    return {"top1": 100.0 * top1 / len(scored), "top5": 100.0 * top5 / len(scored)}


def check_scored_once(scored: List[Dict], expected_clips: int, skipped_clips: set) -> None:
    """Every clip is scored exactly once or listed as skipped; anything else is a bug."""
    clips = [s["clip"] for s in scored]
    if len(clips) != len(set(clips)):
        raise RunFailed("a validation clip was scored more than once")
    missing = set(range(expected_clips)) - set(clips) - skipped_clips
    if missing:
        raise RunFailed(f"{len(missing)} validation clips were neither scored nor skipped: "
                        f"{sorted(missing)[:10]}")


def is_finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
