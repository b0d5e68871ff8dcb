"""The HTML report's figures as SVG files (matplotlib, text kept as text: ``svg.fonttype``
``none``, no external references), sharp at any zoom: a run's head grid as a heat map of
final accuracy over lr x wd, its training curves, and a board's accuracy against GFLOPs
(:func:`eval_encoder.report.plots.plot_compute`).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from eval_encoder.report.board import Board
from eval_encoder.report.names import LeaderboardError
from eval_encoder.report.plots import _figure_class, plot_compute

log = logging.getLogger(__name__)

SVG_STYLE = {"svg.fonttype": "none", "svg.hashsalt": "eval_encoder", "font.size": 8}
REPORTED_COLOUR = "#d62728"


@contextmanager
def _svg_style():
    import matplotlib

    with matplotlib.rc_context(SVG_STYLE):
        yield


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})  # fixed margins: no tight bbox
    return path


def compute_svg(board: Board, path: Path) -> Optional[Path]:
    """The board's accuracy against encoder GFLOPs per clip; None when no row has compute."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _svg_style():
        try:
            plot_compute(board, str(path))
        except LeaderboardError as exc:
            log.info("no compute figure: %s", exc)
            return None
    return path


def heatmap_svg(grid: Dict[str, Any], path: Path) -> Path:
    """``grid`` (:func:`eval_encoder.report.runpage.head_grid`): values [wd, lr] of final
    top-1, NaN where no head; the reported head's cell outlined."""
    Figure, Canvas = _figure_class()
    values = np.asarray(grid["values"], dtype=float)
    lrs, wds = grid["lrs"], grid["wds"]
    with _svg_style():
        width, height = 1.9 + 0.75 * len(lrs), 1.1 + 0.45 * len(wds)
        fig = Figure(figsize=(width, height))
        Canvas(fig)
        ax = fig.add_axes((0.9 / width, 0.6 / height, 1 - 1.8 / width, 1 - 0.95 / height))
        image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto",
                          origin="lower")
        _annotate(ax, values)
        _outline(ax, grid.get("reported"))
        ax.set_xticks(range(len(lrs)), [f"{x:g}" for x in lrs])
        ax.set_yticks(range(len(wds)), [f"{x:g}" for x in wds])
        ax.set_xlabel("learning rate")
        ax.set_ylabel("weight decay")
        ax.set_title(f"{grid['kind']} heads: final top-1 (%)")
        fig.colorbar(image, cax=fig.add_axes((1 - 0.7 / width, 0.6 / height, 0.12 / width,
                                              1 - 0.95 / height)))
        return _save(fig, path)


def _annotate(ax, values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    middle = float(finite.mean()) if finite.size else 0.0
    for (y, x), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(x, y, f"{value:.1f}", ha="center", va="center", fontsize=7,
                    color="black" if value > middle else "white")


def _outline(ax, cell) -> None:
    if cell is not None:
        from matplotlib.patches import Rectangle

        x, y = cell
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, lw=2.2,
                               edgecolor=REPORTED_COLOUR))


def curves_svg(curves: List[Dict[str, Any]], path: Path) -> Path:
    """Training loss and validation top-1 per epoch, a line per head; the reported head in
    red and thick, with its name in the legend."""
    Figure, Canvas = _figure_class()
    with _svg_style():
        fig = Figure(figsize=(8.0, 2.8))
        Canvas(fig)
        loss_ax, top1_ax = fig.subplots(1, 2, gridspec_kw={"left": 0.07, "right": 0.98,
                                                           "bottom": 0.16, "top": 0.9,
                                                           "wspace": 0.2})
        for curve in sorted(curves, key=lambda c: c["reported"]):  # the reported one on top
            for ax, key in ((loss_ax, "train_loss"), (top1_ax, "top1")):
                _curve(ax, curve, key)
        loss_ax.set_title("training loss")
        top1_ax.set_title("validation top-1 (%)")
        from matplotlib.ticker import MaxNLocator

        for ax in (loss_ax, top1_ax):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.grid(color="0.92")
        handles, labels = top1_ax.get_legend_handles_labels()
        if handles:
            top1_ax.legend(handles, labels, fontsize=7, frameon=False, loc="lower right")
        return _save(fig, path)


def _curve(ax, curve: Dict[str, Any], key: str) -> None:
    points = [(e, v) for e, v in zip(curve["epochs"], curve[key]) if v is not None]
    if not points:
        return
    x, y = zip(*points)
    if curve["reported"]:
        ax.plot(x, y, color=REPORTED_COLOUR, lw=2.2, marker="o", ms=3, zorder=3,
                label=f"reported: {curve['name']}" if key == "top1" else None)
    else:
        ax.plot(x, y, color="0.55", lw=0.8, alpha=0.7, zorder=1)
