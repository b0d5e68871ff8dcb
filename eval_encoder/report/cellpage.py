"""What the page of a leaderboard cell of several seeds shows: the runs of its latest
configuration that differ only by ``config.seed`` (each linking to its run's page), their mean
(the cell's number), and per-class accuracy and confusions summed over the seeds
(:func:`eval_encoder.report.runpage.predictions_view`). A cell of one run links straight to
that run's page and has none.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any, Dict, List, Optional, Sequence

from eval_encoder import stats
from eval_encoder.report.classnames import record_labeller
from eval_encoder.report.names import ROW_KEYS
from eval_encoder.report.runpage import predictions_view


def cell_page_name(line: Dict[str, Any], kind: Optional[str] = None) -> str:
    """``cells/<dataset>/<method>-<hash>.html``: the hash of the cell's row keys, dataset and
    head kind, so cells of one method that differ in frames, protocol or kind stay apart."""
    key = "|".join(str(line[k]) for k in (*ROW_KEYS, "dataset")) + f"|{kind}"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(line["method"])).strip("-.") or "cell"
    return f"cells/{line['dataset']}/{slug}-{digest}.html"


def seed_lines(runs: Sequence[Dict[str, Any]], pages: Dict[str, str]) -> List[Dict[str, Any]]:
    """A line per seed run: seed, run id, created, top-1 and its page (None: none)."""
    return [{"seed": stats.seed_of(r), "run_id": r.get("run_id"), "created": r.get("created"),
             "top1": (r.get("reported") or {}).get("top1"), "page": pages.get(r["_path"])}
            for r in sorted(runs, key=lambda r: str(stats.seed_of(r)))]


def cell_context(line: Dict[str, Any], runs: Sequence[Dict[str, Any]], pages: Dict[str, str],
                 kind: Optional[str] = None, top: int = 20) -> Dict[str, Any]:
    """Everything the cell template shows."""
    seeds = seed_lines(runs, pages)
    return {"row": {k: line[k] for k in ROW_KEYS}, "dataset": line["dataset"], "kind": kind,
            "page": cell_page_name(line, kind), "seeds": seeds,
            "mean": sum(s["top1"] for s in seeds) / len(seeds),
            "predictions": predictions_view(runs, top), "label": record_labeller(runs[0])}
