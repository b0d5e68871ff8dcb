"""Records by probe head kind: a run of several kinds (``--probe_head ov linear knn``) reports a
head per kind (``reported_by_kind``), and tables and comparisons put like with like.

A record's view for kind K is the record with K's reported head as its ``reported``, K first
among its kinds, and K's own per-clip predictions and metrics (a later kind's are in its
``reported_by_kind`` entry; records made before they were written have none). Records of
one kind (every record made before several kinds could share a run) are of their
``probe_head.kind`` (``ov`` when the record predates head kinds).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from eval_encoder.protocol import BEHAVIOURS

DEFAULT_KIND = "ov"  # the kind of records made before head kinds


def _config_kinds(record: Dict[str, Any]) -> List[str]:
    value = (record.get("config") or {}).get("probe_head") or DEFAULT_KIND
    return [value] if isinstance(value, str) else list(value)


def record_kinds(record: Dict[str, Any]) -> List[str]:
    """The head kinds a record reports, first kind first."""
    by_kind = record.get("reported_by_kind")
    if by_kind:
        return list(by_kind)
    head = record.get("probe_head") or {}
    return [head["kind"]] if head.get("kind") else _config_kinds(record)


def kind_view(record: Dict[str, Any], kind: str) -> Optional[Dict[str, Any]]:
    """The record as a run of ``kind`` alone would show it (None: the record has no such
    kind, or no finite head of it)."""
    kinds = record_kinds(record)
    if kind not in kinds:
        return None
    if kind == kinds[0] or record.get("status") != "complete":
        return record
    by_kind = record["reported_by_kind"]
    reported = by_kind[kind]
    if reported.get("top1") is None:
        return None
    view = dict(record, reported=reported, reported_by_kind={kind: reported, **by_kind})
    for key in ("predictions", "metrics"):  # the kind's own, where the run wrote them
        view[key] = reported.get(key)
    return view


def kinds_of_records(records: Sequence[Dict[str, Any]]) -> List[str]:
    """Every kind the records report, in the order first met."""
    return list(dict.fromkeys(k for r in records for k in record_kinds(r)))


def records_by_kind(records: Sequence[Dict[str, Any]], kind: Optional[str] = None
                    ) -> Dict[Optional[str], List[Dict[str, Any]]]:
    """{kind: its records' views}: ``kind``'s only when given; else one entry per kind the
    records hold, under None when they hold one kind only (a table as before)."""
    kinds = [kind] if kind else kinds_of_records(records)
    if not kind and len(kinds) <= 1:
        return {None: list(records)}
    return {k: [v for v in (kind_view(r, k) for r in records) if v is not None] for k in kinds}


def published_kind(protocol: str) -> Optional[str]:
    """The head kind a protocol's published code probes with (its reported numbers')."""
    row = next((r for r in BEHAVIOURS if r.option == "probe_head"), None)
    return row.value(protocol) if row is not None else None
