"""What a run's page shows, from its record and per-clip predictions file: the row it fills,
its reported head, per-class accuracy and confusions (:mod:`eval_encoder.report.classes`), the
head grid (final top-1 over lr x wd, a grid per head kind), every head's training curves,
and its protocol, config and compute blocks.
"""
from __future__ import annotations

import json
import logging
import math
from typing import Any, Dict, List, Optional, Tuple

from eval_encoder import stats
from eval_encoder.report import classes
from eval_encoder.report.kinds import record_kinds
from eval_encoder.report.records import row_labels

log = logging.getLogger(__name__)


def page_name(record: Dict[str, Any]) -> str:
    """The page's path inside the site: ``runs/<dataset>/<run_id>.html``."""
    run_id = str(record.get("run_id") or "run").replace("/", "_")
    return f"runs/{record['dataset']['name']}/{run_id}.html"


def final_top1(head: Dict[str, Any]) -> Optional[float]:
    """A head's top-1 after its last epoch: its history's last entry (``last_top1`` when the
    record holds no history, ``top1`` for heads scored with --val_only)."""
    history = head.get("history") or []
    value = history[-1].get("top1") if history else head.get("last_top1", head.get("top1"))
    return float(value) if isinstance(value, (int, float)) else None


def _head_kind(record: Dict[str, Any], head: Dict[str, Any]) -> str:
    return str(head.get("kind") or record_kinds(record)[0])


def reported_heads(record: Dict[str, Any]) -> List[str]:
    """The names of the heads the record reports (one per kind)."""
    by_kind = record.get("reported_by_kind") or {}
    names = [r.get("head") for r in by_kind.values()] or [(record.get("reported") or {}).get("head")]
    return [n for n in names if n]


def head_grid(record: Dict[str, Any], kind: str) -> Optional[Dict[str, Any]]:
    """Final top-1 of ``kind``'s heads over lr (columns) x weight decay (rows); None when no
    head of the kind has both (kNN heads have neither). Two heads in one cell: the best."""
    heads = [h for h in record.get("heads") or [] if _head_kind(record, h) == kind
             and h.get("lr") is not None and h.get("weight_decay") is not None]
    if not heads:
        return None
    lrs = sorted({float(h["lr"]) for h in heads})
    wds = sorted({float(h["weight_decay"]) for h in heads})
    values = [[math.nan] * len(lrs) for _ in wds]
    reported, names = None, set(reported_heads(record))
    for head in heads:
        x, y = lrs.index(float(head["lr"])), wds.index(float(head["weight_decay"]))
        value = final_top1(head)
        if value is not None and not value <= values[y][x]:
            values[y][x] = value
        reported = (x, y) if head.get("name") in names else reported
    return {"kind": kind, "lrs": lrs, "wds": wds, "values": values, "reported": reported}


def grids(record: Dict[str, Any]) -> List[Dict[str, Any]]:
    kinds = dict.fromkeys(_head_kind(record, h) for h in record.get("heads") or [])
    return [g for g in (head_grid(record, k) for k in kinds) if g is not None]


def curves(record: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each head with a history: its epochs, training loss and top-1, and whether reported."""
    names = set(reported_heads(record))
    out = []
    for head in record.get("heads") or []:
        history = head.get("history") or []
        if history:
            out.append({"name": head.get("name"), "reported": head.get("name") in names,
                        "epochs": [h.get("epoch") for h in history],
                        "train_loss": [h.get("train_loss") for h in history],
                        "top1": [h.get("top1") for h in history]})
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


def predictions_view(record: Dict[str, Any], top: int) -> Dict[str, Any]:
    """Per-class accuracy and confusions, or the reason there are none."""
    try:
        arrays = classes.load(record)
    except (stats.StatsError, OSError, ValueError) as exc:
        return {"missing": str(exc), "classes": [], "confusions": [], "clips": 0}
    return {"missing": None, "classes": classes.per_class(arrays),
            "confusions": classes.confusions(arrays, top), "clips": int(len(arrays["label"]))}


def run_context(record: Dict[str, Any], top: int = 20) -> Dict[str, Any]:
    """Everything the run template shows but the figures' file names."""
    return {"record": record, "row": row_labels(record), "page": page_name(record),
            "reported": record.get("reported") or {},
            "reported_by_kind": record.get("reported_by_kind") or {},
            "grids": grids(record), "curves": curves(record),
            "predictions": predictions_view(record, top) if record["status"] == "complete"
            else {"missing": "a failed run", "classes": [], "confusions": [], "clips": 0},
            "protocol": flat(record.get("protocol") or {}),
            "compute": flat(record.get("compute") or {}),
            "config": json.dumps(record.get("config") or {}, indent=1, sort_keys=True)}
