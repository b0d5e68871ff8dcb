"""A board as text: GitHub markdown, a booktabs LaTeX ``tabular`` and CSV, with the
footnotes and the table of failed runs (``python -m eval_encoder leaderboard --format``)."""
from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from eval_encoder.protocol import UNSTATED, following
from eval_encoder.report.board import Board
from eval_encoder.report.names import ASYMMETRY, DISPLAY_NAMES, LeaderboardError

FORMATS = ("md", "csv", "tex")

EXACT_MARK = "ᵉ"  # after an interval made by Clopper-Pearson rather than the bootstrap


def _num(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    if signed:
        return f"{value:+.1f}".replace("-0.0", "+0.0")
    return f"{value:.1f}"


def display_rows(board: Board, style: str) -> Tuple[List[List[str]], List[str]]:
    """Cell texts, a list per line (block headers as ``["\\x00<title>"]``), and footnotes.

    ``style`` is "md" or "tex": only the markers of sub-rows differ.
    """
    said = board.published.reported_label
    sub = {"md": (f"↳ {said}", "↳ Δ", "–"),
           "tex": (rf"\quad {said}", r"\quad $\Delta$", "--")}[style]
    table, pair_on = board.table, board.published.pair_on
    mine = table[(table.source == "measured") & (table.protocol == board.published.reproduced_by)]
    measured = {_key(r, pair_on): (r["arch"], r["res"]) for r in mine.to_dict("records")}
    lines, notes, block = [], {}, None
    for row in table.to_dict("records"):
        if board.published.frame_blocks and row["frames"] != block:
            block = row["frames"]
            lines.append([f"\x00{block} Frames"])
        lines.append(_line(row, board, measured.get(_key(row, pair_on)), sub, notes))
    return lines, list(notes.values()) + board.notes


def _key(row: Dict[str, Any], pair_on) -> tuple:
    return tuple(row[k] for k in pair_on)


def _line(row: Dict[str, Any], board: Board, paired: Optional[Tuple[str, str]],
          sub: Tuple[str, str, str], notes: Dict[str, str]) -> List[str]:
    """One table line; ``paired`` is the (arch, res) of the measured line of the same row;
    ``sub``: the labels of the paper and delta sub-rows, and the dash of an unknown value."""
    source, failed = row["source"], set(filter(None, row["failed"].split(",")))
    label = {"measured": row["method"], "reported": sub[0] if paired else row["method"],
             "delta": sub[1]}[source]
    arch, res = (row["arch"], row["res"]) if source != "delta" else ("", "")
    protocol = row["protocol"] if source != "delta" else ""
    if source == "reported" and paired and (arch, res) == paired:
        arch, res = "", ""  # same as the measured line above it
    if protocol.endswith("*"):
        starred = "/".join(f"{p}*" for p in following(board.published.name))
        notes["protocol*"] = (f"{starred}: a protocol with some of its options set on their "
                              "own (see the record's protocol.departures)")
    if protocol == UNSTATED:
        notes["unstated"] = ("unstated: a record written before the protocol switch existed "
                             "(its head and pixels follow neither protocol exactly)")
    avg = _text(row, "avg", source)
    if source == "measured" and not row["complete"]:
        avg = f"partial ({row['n_done']}/{row['n_datasets']})"
        notes["partial"] = (f"partial (n/{row['n_datasets']}): AVG is given only for rows with "
                            "every benchmark dataset")
    if source == "reported" and row["avg_flag"]:
        avg += " †"
        mean = Decimal(repr(row["avg_mean"])).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        notes[f"flag{row['frames']}{row['method']}"] = (
            f"† {row['frames']} frames, {row['method']}: reported AVG {row['avg']:.1f} but its "
            f"cells average {row['avg_mean']:.4f} ({mean} at one decimal); the gap of "
            f"{abs(row['avg'] - row['avg_mean']):.2f} is within the 0.10 that rounding of the "
            "cells can explain." if abs(row["avg"] - row["avg_mean"]) <= 0.1 + 1e-9 else
            f"† {row['frames']} frames, {row['method']}: reported AVG {row['avg']:.1f} but its "
            f"cells average {row['avg_mean']:.4f}: more than cell rounding can explain.")
    cells = []
    for col in board.columns:
        if source == "measured" and col in failed:
            cells.append("fail")
            notes["fail"] = "fail: the latest run of that dataset failed (see its record's error)"
        elif source == "measured" and col in set(filter(None, str(row.get("mixed") or "").split(","))):
            cells.append(_text(row, col, source) + " *")
            notes["mixed"] = ("*: complete runs of more than one configuration exist for this cell; "
                              "the latest is shown (compare config_hash in runs/)")
        else:
            cells.append(_text(row, col, source))
    compute = [gflops_text(row.get("gflops"), sub[2]) if source != "delta" else ""]
    return [label, arch, res, protocol, *(compute if board.gflops else []), avg, *cells]


def _text(row: Dict[str, Any], col: str, source: str) -> str:
    """A cell's text: deltas signed; a measured value with its interval and seeds, when the
    table holds them (``52.3 ±1.1``, ``12.0 +0.9/-0.8``, ``52.3 ±1.1 (sd 0.4, 3 seeds)``)."""
    text = _num(row.get(col), signed=source == "delta")
    if source != "measured" or not text:
        return text
    return text + _interval_text(row, col) + _seeds_text(row, col)


def _interval_text(row: Dict[str, Any], col: str) -> str:
    lo, hi, value = row.get(f"{col}_lo"), row.get(f"{col}_hi"), row.get(col)
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    up, down = hi - value, value - lo
    mark = EXACT_MARK if row.get(f"{col}_ci") == "exact" else ""
    if abs(up - down) <= ASYMMETRY * max(up, down):
        return f" ±{(up + down) / 2:.1f}{mark}"
    return f" +{up:.1f}/-{down:.1f}{mark}"


def _seeds_text(row: Dict[str, Any], col: str) -> str:
    seeds, sd = row.get(f"{col}_seeds"), row.get(f"{col}_sd")
    if seeds is None or pd.isna(seeds) or seeds < 2:
        return ""
    return f" (sd {sd:.1f}, {int(seeds)} seeds)" if f"{col}_lo" in row else f" ({int(seeds)} seeds)"


def header_of(board: Board) -> List[str]:
    """The column titles of :func:`display_rows`' lines."""
    return ["Method", "Arch.", "Res.", "Protocol", *(["GFLOPs/clip"] if board.gflops else []),
            "AVG", *[DISPLAY_NAMES.get(c, c) for c in board.columns]]


def gflops_text(value: Any, dash: str = "–") -> str:
    """GFLOPs with three significant figures or so (``1.83``, ``41.2``, ``1234``); ``dash``
    when unknown."""
    if value is None or pd.isna(value):
        return dash
    value = float(value)
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def failures_markdown(board: Board) -> List[str]:
    """The "Failed runs" table below the board (empty when nothing failed)."""
    if not board.failures:
        return []
    out = ["", f"Failed runs ({len(board.failures)}; the latest attempt of each cell):", "",
           "| Method | Frames | Dataset | Error | Record |", "|:--|:-:|:--|:--|:--|"]
    for f in board.failures:
        error = f["error"].replace("|", "\\|")
        out.append(f"| {f['method']} | {f['frames']} | {f['dataset']} | {error} | {f['record']} |")
    return out


def to_markdown(board: Board) -> str:
    """GitHub markdown: one table, a bold line per frame block, footnotes below."""
    lines, notes = display_rows(board, "md")
    header = header_of(board)
    out = ["| " + " | ".join(header) + " |",
           "|:--|" + "|".join([":-:"] * (len(header) - 1)) + "|"]
    for cells in lines:
        if cells[0].startswith("\x00"):
            cells = [f"**{cells[0][1:]}**"] + [""] * (len(header) - 1)
        out.append("| " + " | ".join(cells) + " |")
    out += [""] + [f"- {n}" for n in notes] if notes else []
    out += failures_markdown(board)
    return "\n".join(out) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
                "†": r"$^\dagger$", "±": r"$\pm$", EXACT_MARK: r"$^{e}$"}


def _tex(text: str) -> str:
    if text.startswith(r"\quad"):
        return text
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(board: Board) -> str:
    """A booktabs ``tabular``: a centred line per frame block, footnotes as a small paragraph."""
    lines, notes = display_rows(board, "tex")
    header = header_of(board)
    ncol = len(header)
    out = [r"\begin{tabular}{l" + "c" * (ncol - 1) + "}", r"\toprule",
           " & ".join(_tex(h) for h in header) + r" \\"]
    for cells in lines:
        if cells[0].startswith("\x00"):
            out += [r"\midrule", rf"\multicolumn{{{ncol}}}{{c}}{{\textit{{{cells[0][1:]}}}}} \\",
                    r"\midrule"]
        else:
            out.append(" & ".join(_tex(c) for c in cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    notes = notes + [f"failed: {f['method']}, {f['frames']} frames, {f['dataset']}: {f['error']}"
                     for f in board.failures]
    if notes:
        out.append(r"\par\footnotesize " + r" \\ ".join(_tex(n) for n in notes))
    return "\n".join(out) + "\n"


def to_csv(board: Board) -> str:
    """The long table as CSV: every number unformatted (rounded to 4 decimals), flags as columns
    (``gflops`` only with ``--gflops``)."""
    table = board.table.copy() if board.gflops else board.table.drop(columns=["gflops"])
    numeric = ["avg", *board.columns, "avg_mean",
               *[f"{c}_{s}" for c in ["avg", *board.columns] for s in board.stat_suffixes
                 if s != "ci"]]
    table[numeric] = table[numeric].astype(float).round(4)
    return table.to_csv(index=False, lineterminator="\n")


# a title line above each of several tables, by format
TITLES = {"md": "### {title} ({protocols})\n\n", "csv": "# {title} ({protocols})\n",
          "tex": "% {title} ({protocols})\n"}


def render_tables(boards: List[Board], fmt: str) -> str:
    """One board as :func:`render` gives it; several one after the other, each under a title
    line, a blank line between them."""
    if len(boards) == 1:
        return render(boards[0], fmt)
    if fmt not in FORMATS:
        raise LeaderboardError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return "\n".join(TITLES[fmt].format(title=b.published.title + head_text(b),
                                        protocols=", ".join(following(b.published.name)))
                     + render(b, fmt) for b in boards)


def head_text(board: Board) -> str:
    """`` - linear heads`` in the title of a table of one kind among several."""
    return f" - {board.head_kind} heads" if board.head_kind else ""


def render(board: Board, fmt: str) -> str:
    """The board in ``fmt`` (md, csv or tex)."""
    if fmt not in FORMATS:
        raise LeaderboardError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return {"md": to_markdown, "csv": to_csv, "tex": to_latex}[fmt](board)
