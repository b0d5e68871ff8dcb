"""``--select_on heldout``: honest selection of the reported head and epoch.

A fixed, class-stratified slice of the training manifest (:func:`heldout_indices`) is taken
out of training and scored, in the evaluation view, by every live head at each evaluation
epoch (:func:`score_heldout`). The (head, epoch) with the best held-out top-1 is chosen
(:func:`chosen_snapshots`, per head kind) before the validation split is looked at, and only
that snapshot's validation score is reported. With ``--heldout_val_max`` (the default) the
one validation pass scores every snapshot too, so the record also says what choosing on the
validation split would have reported (the grid's maximum, the papers' number) and the gap.

The slice depends on the seed and the manifest only: the same clips on any world size, at
every epoch and after a resume. Each class of n >= 2 clips gives round(fraction x n) clips,
at least one and at most n - 1; a class of one clip keeps it in training.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from eval_encoder.config import require
from eval_encoder.probe.trainer import ProbeTrainer, RunFailed, accuracy

log = logging.getLogger("eval_encoder.run")
HELDOUT_STREAM = 24_024  # the slice's own random stream beside the seed (any fixed number)
HELDOUT = "heldout"


def class_quota(n: int, fraction: float) -> int:
    """Clips a class of ``n`` gives to the held-out slice."""
    if n < 2:
        return 0
    return int(min(n - 1, max(1, np.floor(fraction * n + 0.5))))


def heldout_indices(labels: Sequence[int], fraction: float, seed: int) -> List[int]:
    """Sorted manifest indices of the held-out clips: per class, :func:`class_quota` clips
    drawn from ``numpy.random.default_rng([seed, HELDOUT_STREAM, class])``."""
    labels = np.asarray(labels, dtype=np.int64)
    picked: List[int] = []
    for label in np.unique(labels).tolist():
        members = np.flatnonzero(labels == label)
        rng = np.random.default_rng([seed, HELDOUT_STREAM, int(label)])
        take = class_quota(members.size, fraction)
        picked += members[rng.permutation(members.size)[:take]].tolist()
    return sorted(picked)


def split_entries(entries: Sequence, fraction: float, seed: int) -> Tuple[list, list]:
    """(training entries, held-out entries) of a training manifest, each in manifest order."""
    held = set(heldout_indices([e.label for e in entries], fraction, seed))
    return ([e for i, e in enumerate(entries) if i not in held],
            [e for i, e in enumerate(entries) if i in held])


# ----------------------------------------------------------------------------- scoring

def score_heldout(trainer: ProbeTrainer, loader, views: int,
                  owners: Sequence[Tuple[int, int]]) -> None:
    """Score the held-out clips with the heads ``owners`` = (epoch, head index) as they are
    now, into each head's history entry of that epoch (a collective call; nothing without a
    held-out loader)."""
    if loader is None or not owners:
        return
    loader.set_epoch(0)
    epochs = sorted({e for e, _ in owners})
    scored = trainer.evaluate(loader, views,
                              [trainer.heads[i].module for _, i in owners],
                              f"heldout {epochs[-1]}", split=HELDOUT)
    if not len(scored):
        raise RunFailed("no held-out clip could be scored")
    for j, (epoch, i) in enumerate(owners):
        one = accuracy(scored, j)
        entry_of(trainer.heads[i].history, epoch).update(
            heldout_top1=one["top1"], heldout_top5=one["top5"])
    trainer.scored_heldout = len(scored)
    best = max(entry_of(trainer.heads[i].history, e)["heldout_top1"] for e, i in owners)
    log.info("epoch %d held-out: best head top-1 %.2f%% over %d held-out clips", epochs[-1],
             best, len(scored))


def entry_of(history: List[Dict], epoch: int) -> Dict:
    """A head's history entry of ``epoch`` (added for a head that trains nothing)."""
    for entry in history:
        if entry["epoch"] == epoch:
            return entry
    history.append({"epoch": epoch, "train_loss": None})
    return history[-1]


# ----------------------------------------------------------------------------- choosing

def _finite(x) -> bool:
    return x is not None and bool(np.isfinite(x))


def candidates(rows: Sequence[Dict], select: str, key: str) -> List[Tuple[int, Dict]]:
    """(row index, history entry) of the snapshots a choice on ``key`` is made among: every
    scored epoch of every finished head (``best_val``), or each one's last (``last``)."""
    out = []
    for i, row in enumerate(rows):
        scored = [e for e in row["history"] if _finite(e.get(key))]
        if row["status"] == "ok" and scored:
            out += [(i, e) for e in (scored if select == "best_val" else scored[-1:])]
    return out


def best_of(rows: Sequence[Dict], select: str, key: str) -> Optional[Tuple[int, Dict]]:
    """The snapshot with the highest ``key`` (the first of equals, in grid and epoch order)."""
    pairs = candidates(rows, select, key)
    return max(pairs, key=lambda pair: pair[1][key]) if pairs else None


def chosen_snapshots(heads: Sequence, select: str) -> List[Tuple[int, int]]:
    """(epoch, head index) of each head kind's snapshot with the best held-out top-1
    (``heads``: the trainer's), chosen before any validation score exists."""
    rows = [{"status": h.status, "kind": h.kind, "history": h.history} for h in heads]
    out = []
    for kind in dict.fromkeys(r["kind"] for r in rows):
        index = [i for i, r in enumerate(rows) if r["kind"] == kind]
        found = best_of([rows[i] for i in index], select, "heldout_top1")
        if found is not None:
            out.append((found[1]["epoch"], index[found[0]]))
    return out


def heldout_report(rows: List[Dict], select: str) -> Tuple[Dict, Dict]:
    """The ``reported`` head of ``rows`` (one kind's head rows of the record) chosen on the
    held-out clips, and the record's ``selection`` block: both numbers and the gap."""
    found = best_of(rows, select, "heldout_top1")
    if found is None or not _finite(found[1].get("top1")):
        raise RunFailed("--select_on heldout: no head has a held-out and a validation score")
    row, entry = rows[found[0]], found[1]
    reported = {
        "head": row["name"], "top1": entry["top1"], "top5": entry["top5"],
        "epoch": entry["epoch"], "selection": select, "chosen_on": HELDOUT,
        "heldout_top1": entry["heldout_top1"],
        "note": ("head and epoch chosen on the held-out slice of the training manifest; the "
                 "validation split scores that snapshot only, so the number is not selected "
                 "on the split that reports it")}
    return reported, selection_block(rows, select, reported)


def selection_block(rows: List[Dict], select: str, reported: Dict) -> Dict:
    """The record's ``selection``: the held-out choice, the grid's validation maximum
    (None when the run scored the chosen snapshot only) and the gap, in points."""
    top = best_of(rows, select, "top1")
    val_max = None if top is None or not _all_on_val(rows, select) else {
        "head": rows[top[0]]["name"], "epoch": top[1]["epoch"], "top1": top[1]["top1"],
        "top5": top[1]["top5"], "heldout_top1": top[1].get("heldout_top1"),
        "selection": select, "chosen_on": "val"}
    return {"select_on": HELDOUT, "chosen": {k: reported[k] for k in
                                             ("head", "epoch", "top1", "top5", "heldout_top1")},
            "val_max": val_max,
            "gap_top1": None if val_max is None else val_max["top1"] - reported["top1"],
            "note": "val_max: the (head, epoch) a choice on the validation split reports (the "
                    "papers' number); gap_top1: its top-1 minus the held-out choice's"}


def _all_on_val(rows: List[Dict], select: str) -> bool:
    """Whether every snapshot the held-out choice was made among has a validation score."""
    return all(_finite(e.get("top1")) for _, e in candidates(rows, select, "heldout_top1"))


def heldout_cost(clocks: List[Dict[str, Dict[str, float]]], views: int) -> Optional[Dict]:
    """The held-out passes' share of a run's work (every rank's clock state): clip views
    encoded and loop seconds, against every pass of the run (None: no held-out pass)."""
    if not any(HELDOUT in c for c in clocks):
        return None
    samples = {s: sum(c[s]["samples"] for c in clocks if s in c) for c in clocks for s in c}
    seconds = {s: sum(c[s]["seconds"] for c in clocks if s in c) for c in clocks for s in c}
    return {"clip_views_encoded": int(samples[HELDOUT]), "views_per_clip": views,
            "seconds": round(seconds[HELDOUT], 3),
            "encoded_share": round(samples[HELDOUT] / max(sum(samples.values()), 1), 4),
            "time_share": round(seconds[HELDOUT] / max(sum(seconds.values()), 1e-9), 4),
            "note": "the only extra encoder work of --select_on heldout: the held-out clips "
                    "at each evaluation epoch; shares are of all passes (train, val, heldout, "
                    "monitor), summed over ranks"}


def check_flags(cfg) -> None:
    """The held-out flags act only under --select_on heldout, which chooses among trained
    heads on the exact-once validation scores (not --val_only, not --val_sampling published)."""
    given = [n for n in ("heldout_fraction", "heldout_val_max") if n in cfg.sources]
    if cfg.select_on != HELDOUT:
        require(not given, f"--{given[0] if given else ''} is read only with --select_on heldout")
        return
    require(not cfg.val_only, "--select_on heldout chooses among heads it trains: not with "
            "--val_only")
    require(cfg.val_sampling == "exact", "--select_on heldout reports the chosen snapshot's "
            "exact-once validation score: not with --val_sampling published")
