"""A simulated board for the HTML report's tests and measurements: ``rows`` x the paper's eight
datasets of synthetic complete records, each with a head grid (lr x wd, a history per head)
and a per-clip predictions file, written as the trainer writes them."""
from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from test_leaderboard import make_record, write_all
from test_stats import attach, predictions

PAPER = ("ssv2", "diving48", "perception_test", "charadesego", "epic_verb", "epic_noun", "k400",
         "hmdb51")
LRS, WDS, EPOCHS = (1e-4, 3e-4, 1e-3), (0.0, 0.05), 4


def heads(rng: np.random.Generator, reported: str) -> List[dict]:
    """A 3 x 2 grid of heads, each with EPOCHS of history."""
    out = []
    for lr in LRS:
        for wd in WDS:
            top1 = np.sort(rng.uniform(10, 80, EPOCHS)).round(2).tolist()
            loss = np.sort(rng.uniform(0.5, 3.0, EPOCHS))[::-1].round(3).tolist()
            name = f"lr{lr:g}_wd{wd:g}"
            out.append({"name": name, "kind": "ov", "lr": lr, "weight_decay": wd,
                        "status": "ok", "best_top1": max(top1), "last_top1": top1[-1],
                        "history": [{"epoch": e, "train_loss": loss[e], "top1": top1[e],
                                     "top5": 99.0} for e in range(EPOCHS)]})
    if reported not in {h["name"] for h in out}:
        raise ValueError(reported)
    return out


def board_records(root: Path, rows: int = 12, clips: int = 400, classes: int = 50,
                  seed: int = 0) -> Path:
    """Write ``rows`` x 8 records with prediction files under ``root/runs``; returns it."""
    rng = np.random.default_rng(seed)
    records = []
    for r in range(rows):
        for d, dataset in enumerate(PAPER):
            labels = rng.integers(0, classes, clips)
            skill = 0.3 + 0.04 * r + 0.02 * d
            hit = rng.random(clips) < skill
            guess = np.where(hit, labels, (labels + rng.integers(1, 4, clips)) % classes)
            rec = make_record(dataset, 100.0 * hit.mean(), method=f"Encoder {r:02d}",
                              frames=8 if r < 8 else 16)
            rec["run_id"] = f"enc{r:02d}-{dataset}"
            rec["dataset"]["num_classes"] = classes
            rec["reported"]["head"] = "lr0.0003_wd0"
            rec["heads"] = heads(rng, "lr0.0003_wd0")
            rec["compute"] = {"encoder": {"gflops_per_clip": 100.0 * (1 + r)}}
            rec["config"] = {**rec["config"], "seed": 0, "method_label": f"Encoder {r:02d}"}
            ids = [f"{dataset}/clip{i:05d}.mp4" for i in range(clips)]
            records.append(attach(rec, root, predictions(labels, guess, ids, classes=classes)))
    return write_all(root, records)
