"""Plots of a board (need matplotlib, an optional dependency, imported when a plot is made):
a dot plot of every cell beside the paper's numbers, and accuracy against the encoder's
GFLOPs per clip on a log axis, the paper's case for codec input being accuracy per token.
Plot colours are fixed per method (:func:`method_colour`).
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Dict, List, Optional, Tuple

import pandas as pd

from eval_encoder import stats
from eval_encoder.report.board import Board
from eval_encoder.report.names import DISPLAY_NAMES, LeaderboardError

# plot colours: one per method of the paper's table, fixed so that every plot agrees
METHOD_COLOURS: Dict[str, str] = {
    "OneVision Encoder": "#d62728", "OneVision Encoder-Codec": "#ff7f0e",
    "SigLIP2": "#1f77b4", "AIMv2": "#2ca02c", "MetaCLIP2": "#9467bd", "DINOv3": "#8c564b",
}
# any other method: one of these, chosen by a hash of its name (none is in the table above)
OTHER_COLOURS: Tuple[str, ...] = (
    "#17becf", "#bcbd22", "#e377c2", "#7f7f7f", "#393b79", "#637939", "#7b4173", "#e7ba52",
    "#5254a3", "#de9ed6", "#1b9e77", "#222222")
PERCENT_RANGE = (0.0, 100.0)  # every metric the cells show is a percentage


def _figure_class():
    """matplotlib's Figure and Agg canvas (no pyplot state); a clear error when absent."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise LeaderboardError("--plot needs matplotlib, an optional dependency: pip install "
                               "'matplotlib>=3.8', or from the checkout pip install -e "
                               "'.[plot]'") from None
    return Figure, FigureCanvasAgg


def plot_board(board: Board, path: str):
    """Save a dot plot of the board to ``path``: a panel per dataset (AVG first), a row of
    panels per frame block, a line per method; filled dots are measured, rings the paper's
    numbers, a grey bar joins the two. Each column has its own x range (shared across blocks)
    so differences of a point stay visible, and the best value of each panel is bold. Returns
    the matplotlib Figure."""
    Figure, Canvas = _figure_class()
    table = board.table[board.table["source"] != "delta"]
    # a method run under another protocol than the reproduced one is its own line
    table = table.assign(method=_labels(table, board))
    blocks = sorted(table["frames"].unique())
    cols = ["avg", *board.columns]
    methods = {b: list(dict.fromkeys(table.loc[table.frames == b, "method"])) for b in blocks}
    palette = _palette(list(dict.fromkeys(table["method"])))
    heights = [max(len(methods[b]), 1) for b in blocks]
    fig = Figure(figsize=(1.55 * len(cols) + 2.2, 0.34 * sum(heights) + 0.9 * len(blocks) + 0.6))
    Canvas(fig)
    axes = fig.subplots(len(blocks), len(cols), squeeze=False, sharex="col",
                        gridspec_kw={"height_ratios": heights, "wspace": 0.08, "hspace": 0.25})
    for bi, block in enumerate(blocks):
        rows = table[table.frames == block]
        for ci, col in enumerate(cols):
            _panel(axes[bi][ci], rows, methods[block], col, palette, _xlim(table, col))
            axes[bi][ci].set_yticklabels(methods[block] if ci == 0 else [])
            if bi == 0:
                axes[bi][ci].set_title("AVG" if col == "avg" else DISPLAY_NAMES.get(col, col),
                                       fontsize=9, fontweight="bold")
        axes[bi][0].set_ylabel(f"{block} frames" if board.published.frame_blocks else "",
                               fontsize=10, fontweight="bold")
    unit = f"{stats.METRICS[stats.VIEWS[board.metric].metric].title} (%)"
    for ax in axes[-1]:
        ax.set_xlabel(unit, fontsize=7.5, color="0.3")
    _legend(fig, {s: bool((table["source"] == s).any()) for s in ("measured", "reported")}, board)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def _palette(methods: List[str]) -> Dict[str, Any]:
    return {m: method_colour(m) for m in methods}


def method_colour(method: str) -> str:
    """The method's colour in every plot: the paper's methods from a fixed table, any other
    from a hash of its name (so it does not change with which methods a plot holds)."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    digest = hashlib.sha256(method.encode("utf-8")).digest()
    return OTHER_COLOURS[int.from_bytes(digest[:4], "big") % len(OTHER_COLOURS)]


def _xlim(table: pd.DataFrame, col: str) -> Tuple[float, float]:
    held = [c for c in (col, f"{col}_lo", f"{col}_hi") if c in table.columns]
    values = pd.concat([table[c].astype(float) for c in held]).dropna()
    if values.empty:
        return 0.0, 100.0
    low, high = float(values.min()), float(values.max())
    span = max(high - low, 2.0)
    # room on the right for the value labels, but never past 100% (labels near the right
    # edge go to the left of their dot instead)
    return (max(low - 0.12 * span, PERCENT_RANGE[0]),
            min(high + 0.45 * span, PERCENT_RANGE[1]))


def _panel(ax, rows: pd.DataFrame, methods: List[str], col: str, palette: Dict[str, Any],
           xlim: Tuple[float, float]) -> None:
    """One dataset column of one frame block."""
    n = len(methods)
    has_measured = (rows.source == "measured").any()
    label_source = "measured" if has_measured else "reported"
    best = rows.loc[rows.source == label_source, col].astype(float).max()
    for i, method in enumerate(methods):
        y = n - 1 - i
        mine = rows[rows.method == method]
        meas, rep = _value(mine, "measured", col), _value(mine, "reported", col)
        color = palette[method]
        if meas is not None and rep is not None:
            ax.plot([rep, meas], [y, y], color="0.75", lw=3, solid_capstyle="round", zorder=1)
        # clip_on=False: a dot at the 100% edge is drawn whole
        if rep is not None:
            ax.scatter([rep], [y], s=46, facecolors="white", edgecolors=color, linewidths=1.6,
                       zorder=2, clip_on=False)
        if meas is not None:
            _error_bar(ax, mine, col, meas, y, color)
            ax.scatter([meas], [y], s=46, color=color, zorder=3, clip_on=False)
        # the label is the measured value when the method was run, the paper's otherwise
        shown = meas if (mine.source == "measured").any() else rep
        if shown is not None:
            at = max(shown, rep or shown)
            left = at > xlim[1] - 0.25 * (xlim[1] - xlim[0])  # no room on the right
            ax.annotate(f"{shown:.1f}", (min(shown, rep or shown) if left else at, y),
                        xytext=(-6 if left else 6, 0), textcoords="offset points",
                        va="center", ha="right" if left else "left", fontsize=7.5,
                        fontweight="bold" if shown == best else "normal")
        else:
            text = _missing_text(mine, col)
            ax.annotate(text, (max(rep or xlim[0], xlim[0]), y), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=7, style="italic",
                        color="tab:red" if text == "fail" else "0.45")
    _style_axis(ax, n, xlim, highlight=col == "avg")


def _error_bar(ax, rows: pd.DataFrame, col: str, value: float, y: float, color: Any) -> None:
    """The measured value's interval, when the board holds one."""
    lo, hi = _value(rows, "measured", f"{col}_lo"), _value(rows, "measured", f"{col}_hi")
    if lo is not None and hi is not None:
        ax.errorbar([value], [y], xerr=[[value - lo], [hi - value]], fmt="none", ecolor=color,
                    elinewidth=1.3, capsize=2.5, zorder=2)


def _value(rows: pd.DataFrame, source: str, col: str) -> Optional[float]:
    if col not in rows.columns:
        return None
    sel = rows.loc[rows.source == source, col]
    if sel.empty or pd.isna(sel.iloc[0]):
        return None
    return float(sel.iloc[0])


def _missing_text(rows: pd.DataFrame, col: str) -> str:
    meas = rows[rows.source == "measured"]
    if meas.empty:
        return ""
    row = meas.iloc[0]
    if col == "avg":
        return f"partial {row['n_done']}/{row['n_datasets']}"
    return "fail" if col in row["failed"].split(",") else "not run"


def _style_axis(ax, n: int, xlim: Tuple[float, float], highlight: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(*xlim)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks(range(n - 1, -1, -1))
    ax.tick_params(axis="y", length=0, labelsize=8.5)
    # every row shows its numbers (sharex would label only the bottom one)
    ax.tick_params(axis="x", labelsize=7, colors="0.4", labelbottom=True)
    ax.xaxis.set_major_locator(MaxNLocator(3))
    ax.grid(axis="x", color="0.92", lw=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color("0.7")
    if highlight:
        ax.set_facecolor("#fff4e8")


def _legend(fig, present: Dict[str, bool], board: Board) -> None:
    from matplotlib.lines import Line2D

    handles = []
    if present["measured"]:
        handles.append(Line2D([], [], marker="o", ls="", color="0.3", label="measured (this suite)"))
    if present["reported"]:
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white",
                              markeredgecolor="0.3", label="reported (paper)"))
    if board.ci and present["measured"]:
        handles.append(Line2D([], [], marker="|", markersize=9, color="0.3",
                              label=f"{stats.LEVEL:.0%} interval ({board.ci})"))
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
               fontsize=8.5, bbox_to_anchor=(0.5, 1.0))
    title = stats.METRICS[stats.VIEWS[board.metric].metric].title
    fig.suptitle(f"Attentive-probe {title} (%)", fontsize=12, fontweight="bold", y=1.04)


FRAME_MARKERS = ("o", "s", "^", "D", "v", "P")  # frame blocks in ascending order


def plot_compute(board: Board, path: str):
    """Save accuracy against encoder GFLOPs per clip (log x) to ``path``: a panel per column
    (AVG first, then each dataset with a value), a point per measured row (method, frames,
    arch, res, protocol) that has compute, a line joining a method's frame blocks; the
    paper's number of the same row as a ring at the measured row's GFLOPs. Returns the
    matplotlib Figure."""
    Figure, Canvas = _figure_class()
    points = _compute_points(board)
    cols = [c for c in ["avg", *board.columns] if points[c].notna().any()]
    if not cols:
        raise LeaderboardError("--plot_compute: no measured row has both a score and the "
                               "encoder's GFLOPs per clip (records written before compute was "
                               "recorded carry none)")
    ncols = min(3, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig = Figure(figsize=(4.0 * ncols, 3.3 * nrows + 0.6))
    Canvas(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw={"hspace": 0.5, "wspace": 0.3})
    markers = {f: FRAME_MARKERS[i % len(FRAME_MARKERS)]
               for i, f in enumerate(sorted(points["frames"].unique()))}
    unit = f"{stats.METRICS[stats.VIEWS[board.metric].metric].title} (%)"
    for ax, col in zip(axes.flat, cols):
        _compute_panel(ax, points, col, markers)
        ax.set_title("AVG" if col == "avg" else DISPLAY_NAMES.get(col, col), fontsize=10,
                     fontweight="bold")
        ax.set_xlabel("encoder GFLOPs per clip (log scale)", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
    for ax in list(axes.flat)[len(cols):]:
        ax.set_visible(False)
    _compute_legend(fig, points, markers)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def _compute_points(board: Board) -> pd.DataFrame:
    """Measured rows with GFLOPs, each with its paper line's values (``rep_<col>``) where the
    row followed the paper's protocol and the paper has the row."""
    table = board.table
    measured = table[(table.source == "measured") & table["gflops"].notna()].copy()
    measured["label"] = _labels(measured, board)
    cols, pair_on = ["avg", *board.columns], list(board.published.pair_on)
    paper = table[table.source == "reported"][[*dict.fromkeys(["frames", *pair_on]), *cols]]
    paper = paper.assign(protocol=board.published.reproduced_by).rename(
        columns={c: f"rep_{c}" for c in cols})
    return measured.merge(paper, on=[*dict.fromkeys(["frames", *pair_on]), "protocol"],
                          how="left")


def _labels(rows: pd.DataFrame, board: Board) -> List[str]:
    """A line's name: the method (with its arch where the table pairs rows on it), and the
    protocol when it is not the one that reproduces the published code."""
    arch = "arch" in board.published.pair_on
    names = [f"{m} {a}" if arch else m for m, a in zip(rows["method"], rows["arch"])]
    return [n if p == board.published.reproduced_by else f"{n} ({p})"
            for n, p in zip(names, rows["protocol"])]


def _compute_panel(ax, points: pd.DataFrame, col: str, markers: Dict[Any, str]) -> None:
    """One column: each method's rows as a line over GFLOPs, paper rings beside them."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    shown = points[points[col].notna()]
    for label, rows in shown.groupby("label", sort=True):
        rows = rows.sort_values("gflops")
        colour = method_colour(label)
        ax.plot(rows["gflops"], rows[col].astype(float), color=colour, lw=1.2, alpha=0.7,
                zorder=1)
        for row in rows.to_dict("records"):
            ax.scatter([row["gflops"]], [row[col]], marker=markers[row["frames"]], s=44,
                       color=colour, zorder=3, clip_on=False)
            if pd.notna(row.get(f"rep_{col}")):
                ax.scatter([row["gflops"]], [row[f"rep_{col}"]], marker=markers[row["frames"]],
                           s=44, facecolors="white", edgecolors=colour, linewidths=1.4, zorder=2,
                           clip_on=False)
    ax.set_xscale("log")
    # plain numbers at 1, 2 and 5 per decade (the default 4x10^2 labels collide)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    values = pd.concat([shown[col], shown.get(f"rep_{col}", pd.Series(dtype=float))]).astype(float)
    low, high = float(values.min()), float(values.max())
    pad = max(high - low, 2.0) * 0.15
    ax.set_ylim(max(low - pad, PERCENT_RANGE[0]), min(high + pad, PERCENT_RANGE[1]))
    ax.grid(color="0.92", lw=0.8, which="both")
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=7.5)


def _compute_legend(fig, points: pd.DataFrame, markers: Dict[Any, str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", ls="-", color=method_colour(m), label=m)
               for m in sorted(points["label"].unique())]
    handles += [Line2D([], [], marker=mk, ls="", color="0.3", label=f"{f} frames")
                for f, mk in markers.items()]
    if any(c.startswith("rep_") and points[c].notna().any() for c in points.columns):
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white",
                              markeredgecolor="0.3", label="reported (paper)"))
    fig.legend(handles=handles, loc="center left", frameon=False, fontsize=8,
               bbox_to_anchor=(1.0, 0.5))
    fig.suptitle("Attentive-probe accuracy against encoder compute", fontsize=12,
                 fontweight="bold")
