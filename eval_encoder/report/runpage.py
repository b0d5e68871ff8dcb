"""What a run's page shows, from its record and per-clip predictions file: the row it fills,
its reported head, per-class accuracy and confusions (:mod:`eval_encoder.report.classes`), the
head grid (final top-1 over lr x wd, a grid per head kind; held-out top-1 where val scored
too few snapshots), every head's training curves (validation and held-out top-1), how its head
was chosen (``--select_on heldout``: the held-out choice, the grid's val maximum, the gap, the
refit), and its protocol, config and compute blocks; a run of several head kinds shows each
kind's per-class tables. Class labels show their names where the
dataset's ``classes.csv`` gives them (:mod:`eval_encoder.report.classnames`).
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from eval_encoder import stats
from eval_encoder.report import classes
from eval_encoder.report.classnames import record_labeller
from eval_encoder.report.kinds import kind_view, record_kinds
from eval_encoder.report.records import row_labels

log = logging.getLogger(__name__)


def page_name(record: Dict[str, Any]) -> str:
    """The page's path inside the site: ``runs/<dataset>/<run_id>.html``."""
    run_id = str(record.get("run_id") or "run").replace("/", "_")
    return f"runs/{record['dataset']['name']}/{run_id}.html"


def final_top1(head: Dict[str, Any], key: str = "top1") -> Optional[float]:
    """A head's top-1 after its last epoch: its history's last entry (``last_top1`` when the
    record holds no history, ``top1`` for heads scored with --val_only); ``key``
    ``heldout_top1``: its held-out top-1 there (history only)."""
    history = head.get("history") or []
    if history:
        value = history[-1].get(key)
    else:
        value = head.get("last_top1", head.get("top1")) if key == "top1" else None
    return float(value) if isinstance(value, (int, float)) else None


def grid_score(heads: List[Dict[str, Any]]) -> str:
    """What a grid shows: ``top1`` (validation), or ``heldout_top1`` where fewer heads have
    a final validation score than a held-out one (``--select_on heldout
    --heldout_val_max off`` scores the chosen snapshot only on val)."""
    val = sum(final_top1(h) is not None for h in heads)
    heldout = sum(final_top1(h, "heldout_top1") is not None for h in heads)
    return "heldout_top1" if heldout > val else "top1"


def _head_kind(record: Dict[str, Any], head: Dict[str, Any]) -> str:
    return str(head.get("kind") or record_kinds(record)[0])


def reported_heads(record: Dict[str, Any]) -> List[str]:
    """The names of the heads the record reports (one per kind)."""
    by_kind = record.get("reported_by_kind") or {}
    names = [r.get("head") for r in by_kind.values()] or [(record.get("reported") or {}).get("head")]
    return [n for n in names if n]


def head_grid(record: Dict[str, Any], kind: str) -> Optional[Dict[str, Any]]:
    """Final top-1 of ``kind``'s heads over lr (columns) x weight decay (rows), on val or
    where val has too few (:func:`grid_score`) on the held-out clips (``score``); None when no
    head of the kind has both (kNN heads have neither). Two heads in one cell: the best."""
    heads = [h for h in record.get("heads") or [] if _head_kind(record, h) == kind
             and h.get("lr") is not None and h.get("weight_decay") is not None]
    if not heads:
        return None
    lrs = sorted({float(h["lr"]) for h in heads})
    wds = sorted({float(h["weight_decay"]) for h in heads})
    values = [[math.nan] * len(lrs) for _ in wds]
    reported, names, score = None, set(reported_heads(record)), grid_score(heads)
    for head in heads:
        x, y = lrs.index(float(head["lr"])), wds.index(float(head["weight_decay"]))
        value = final_top1(head, score)
        if value is not None and not value <= values[y][x]:
            values[y][x] = value
        reported = (x, y) if head.get("name") in names else reported
    return {"kind": kind, "lrs": lrs, "wds": wds, "values": values, "reported": reported,
            "score": "heldout" if score == "heldout_top1" else "val"}


def grids(record: Dict[str, Any]) -> List[Dict[str, Any]]:
    kinds = dict.fromkeys(_head_kind(record, h) for h in record.get("heads") or [])
    return [g for g in (head_grid(record, k) for k in kinds) if g is not None]


def curves(record: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each head with a history: its epochs, training loss, top-1 on val and on the held-out
    clips (None where not scored), and whether reported."""
    names = set(reported_heads(record))
    out = []
    for head in record.get("heads") or []:
        history = head.get("history") or []
        if history:
            out.append({"name": head.get("name"), "reported": head.get("name") in names,
                        "epochs": [h.get("epoch") for h in history],
                        "train_loss": [h.get("train_loss") for h in history],
                        "top1": [h.get("top1") for h in history],
                        "heldout_top1": [h.get("heldout_top1") for h in history]})
    return out


def flat(block: Any, prefix: str = "") -> List[Tuple[str, str]]:
    """A nested mapping as (dotted key, value) lines, lists as JSON."""
    if not isinstance(block, dict):
        return [(prefix or "value", json.dumps(block))] if block is not None else []
    lines: List[Tuple[str, str]] = []
    for key, value in block.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            lines += flat(value, name)
        else:
            lines.append((name, value if isinstance(value, str) else json.dumps(value)))
    return lines


NO_PREDICTIONS = {"classes": [], "confusions": [], "clips": 0}


def predictions_view(records: Sequence[Dict[str, Any]], top: int) -> Dict[str, Any]:
    """Per-class accuracy and confusions of one run, or of the seeds of a cell summed over
    them (:func:`classes.pooled_per_class`); or the reason there are none."""
    try:
        arrays = [classes.load(r) for r in records]
    except (stats.StatsError, OSError, ValueError) as exc:
        return {"missing": str(exc), **NO_PREDICTIONS}
    both = classes.pooled(arrays)
    return {"missing": None, "classes": classes.pooled_per_class(arrays),
            "confusions": classes.confusions(both, top), "clips": int(len(both["label"]))}


def kind_predictions(record: Dict[str, Any], top: int) -> Dict[str, Dict[str, Any]]:
    """{kind: :func:`predictions_view`} of each later head kind's reported head, for a
    complete run of several kinds whose record names their predictions files."""
    if record.get("status") != "complete":
        return {}
    views = {k: kind_view(record, k) for k in record_kinds(record)[1:]}
    return {k: predictions_view([v], top) for k, v in views.items()
            if v is not None and v.get("predictions")}


def selection_block(record: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """How a ``--select_on heldout`` run's head was chosen: the held-out choice, the grid's
    validation maximum (None: ``--heldout_val_max off``), their gap, the refit (None: no
    ``--refit``) and each kind's; None for a record that says nothing of it."""
    reported = record.get("reported") or {}
    block = record.get("selection") or {}
    if not block and reported.get("chosen_on") != "heldout":
        return None
    chosen = block.get("chosen") or {k: reported.get(k) for k in
                                     ("head", "epoch", "top1", "top5", "heldout_top1")}
    return {"select_on": block.get("select_on", reported.get("chosen_on")), "chosen": chosen,
            "val_max": block.get("val_max", reported.get("val_max")),
            "gap": block.get("gap_top1", reported.get("gap_top1")),
            "refit": flat(reported.get("refit")),
            "refit_top1": block.get("refit_top1", reported.get("top1")),
            "snapshot_top1": (reported.get("grid_snapshot") or {}).get("top1"),
            "kinds": {k: r for k, r in (record.get("reported_by_kind") or {}).items()
                      if r.get("chosen_on") == "heldout"}}


def run_context(record: Dict[str, Any], top: int = 20, original: Optional[Dict[str, Any]] = None
                ) -> Dict[str, Any]:
    """Everything the run template shows but the figures' file names; ``record`` as the
    report's ``--selection`` shows it, ``original`` as written (its selection block)."""
    kinds_shown = kind_predictions(record, top)
    return {"record": record, "row": row_labels(record), "page": page_name(record),
            "reported": record.get("reported") or {},
            "reported_by_kind": record.get("reported_by_kind") or {},
            "selection": selection_block(original or record),
            "shown_val_max": original is not None and original.get("reported") != record.get(
                "reported"),
            "grids": grids(record), "curves": curves(record),
            "predictions": predictions_view([record], top) if record["status"] == "complete"
            else {"missing": "a failed run", **NO_PREDICTIONS},
            "kind_predictions": kinds_shown,
            "first_kind_title": f" ({record_kinds(record)[0]} heads)" if kinds_shown else "",
            "label": record_labeller(record),
            "protocol": flat(record.get("protocol") or {}),
            "compute": flat(record.get("compute") or {}),
            "config": json.dumps(record.get("config") or {}, indent=1, sort_keys=True)}
