"""Records by how their head was chosen (``leaderboard --selection``, ``compare --selection``).

A ``--select_on heldout`` run carries two numbers: the validation score of the (head, epoch)
chosen on held-out training clips (its ``reported``), and the grid's validation maximum (what
choosing on the validation split reports, as the papers do: ``reported.val_max``, with its own
per-clip predictions, ``predictions_val_max``). A run chosen on the validation split carries
the second only. ``heldout`` tables the first (runs chosen on val are left out and counted in
a note); ``val`` the second (a heldout run without the val maximum, made with
``--heldout_val_max off``, is left out); None: each record's reported number.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

SELECTIONS = ("heldout", "val")


def chosen_on(record: Dict[str, Any]) -> str:
    """``heldout`` or ``val``: what a record's reported head was chosen on."""
    return "heldout" if (record.get("reported") or {}).get("chosen_on") == "heldout" else "val"


def selection_view(record: Dict[str, Any], selection: Optional[str]
                   ) -> Optional[Dict[str, Any]]:
    """The record as ``selection`` tables it (None: it cannot give that number)."""
    if selection is None or record.get("status") != "complete":
        return record
    own = chosen_on(record)
    if selection == own:
        return record
    if selection == "heldout":
        return None
    val_max = record["reported"].get("val_max")
    if not val_max:
        return None
    view = dict(record, reported=dict(val_max))
    for key in ("predictions", "metrics"):  # the val-max head's own, when written
        view[key] = record.get(f"{key}_val_max")
    maxima = _by_kind_max(record)
    if maxima:
        view["reported_by_kind"] = maxima
    else:
        view.pop("reported_by_kind", None)
    return view


def _by_kind_max(record: Dict[str, Any]) -> Optional[Dict[str, Dict]]:
    """Each kind's val maximum, where every kind has one."""
    by_kind = record.get("reported_by_kind") or {}
    maxima = {k: v.get("val_max") for k, v in by_kind.items()}
    return maxima if by_kind and all(maxima.values()) else None


def select_records(records: Sequence[Dict[str, Any]], selection: Optional[str]
                   ) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The records' views under ``selection`` and a note on those it leaves out."""
    views = [(r, selection_view(r, selection)) for r in records]
    kept = [v for _, v in views if v is not None]
    left = [r for r, v in views if v is None]
    if not left:
        return kept, []
    why = ("chosen on the validation split: no held-out number" if selection == "heldout" else
           "chosen on held-out clips without the grid's val maximum (--heldout_val_max off)")
    return kept, [f"--selection {selection}: {len(left)} run(s) left out, {why}"]
