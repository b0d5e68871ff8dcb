"""HTML from Jinja2 templates (``eval_encoder/report/templates/``, package data): the
environment, writing a page, and a board as the rows of an HTML table.

A board's HTML table shows the cell texts of :func:`eval_encoder.report.render.display_rows`
(the markdown table's, intervals included) with each cell's number as ``data-v`` for sorting,
a ``<tbody class="grp">`` per measured row with its reported and delta lines (so sorting keeps
them together) and a ``<tbody class="block">`` per frame block title. Measured cells link to
their run's page, or to their cell's page where they hold several seeds.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from eval_encoder.report.board import Board
from eval_encoder.report.names import ROW_KEYS
from eval_encoder.report.render import display_rows, header_of

TEMPLATES = Path(__file__).resolve().parent / "templates"
SUB_ROW = "↳"  # display_rows' mark of a reported or delta line under its measured line


def environment():
    """The report's Jinja2 environment: templates from the package, HTML autoescaped."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["num"] = number
    return env


def number(value: Any, digits: int = 1, signed: bool = False) -> str:
    """A number as the report prints it; empty for None and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{float(value):{'+' if signed else ''}.{digits}f}"


def write_page(env, site: Path, name: str, template: str, **context: Any) -> Path:
    """Render ``template`` to ``site/name``; ``root`` in the template is the way back up."""
    path = site / name
    path.parent.mkdir(parents=True, exist_ok=True)
    root = "../" * name.count("/")
    path.write_text(env.get_template(template).render(root=root, **context), encoding="utf-8")
    return path


def _sort_value(value: Any) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def board_view(board: Board, links: Dict[tuple, str]) -> Dict[str, Any]:
    """The table's header and groups of lines; each line a list of cells {text, v, href},
    a measured cell's href from ``links``: (row keys, dataset) -> page."""
    lines, notes = display_rows(board, "md")
    rows = iter(board.table.to_dict("records"))
    keys = ["gflops"] * board.gflops + ["avg", *board.columns]
    groups: List[Dict[str, Any]] = []
    for cells in lines:
        if cells[0].startswith("\x00"):
            groups.append({"block": cells[0][1:], "lines": []})
            continue
        row = next(rows)
        values = [None] * 4 + [_sort_value(row.get(k)) for k in keys]
        line = [{"text": t, "v": v, "href": _href(row, col, links)}
                for t, v, col in zip(cells, values, [None] * 4 + keys)]
        if not cells[0].startswith(SUB_ROW) or not groups or groups[-1].get("block"):
            groups.append({"block": None, "lines": [], "source": row["source"]})
        groups[-1]["lines"].append(line)
    return {"header": header_of(board), "groups": groups, "notes": notes,
            "failures": board.failures}


def _href(row: Dict[str, Any], col: Optional[str], links: Dict[tuple, str]) -> Optional[str]:
    if row["source"] != "measured" or col is None:
        return None
    return links.get((*[row[k] for k in ROW_KEYS], col))
