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
    top-1 (on val, or on the held-out clips as its title says), NaN where no head; the
    reported head's cell outlined."""
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
        ax.set_title(grid_title(grid))
        fig.colorbar(image, cax=fig.add_axes((1 - 0.7 / width, 0.6 / height, 0.12 / width,
                                              1 - 0.95 / height)))
        return _save(fig, path)


def grid_title(grid: Dict[str, Any]) -> str:
    """The heat map's title: what its values are."""
    if grid.get("score") == "heldout":
        return f"{grid['kind']} heads: final held-out top-1 (%), no val score"
    return f"{grid['kind']} heads: final top-1 (%)"


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


CURVE_PANELS = (("train_loss", "training loss"), ("top1", "validation top-1 (%)"),
                ("heldout_top1", "held-out top-1 (%)"))


def curves_svg(curves: List[Dict[str, Any]], path: Path) -> Path:
    """Training loss, validation top-1 and (where the heads have one) held-out top-1 per
    epoch, a line per head; the reported head in red and thick, with its name in the legend."""
    Figure, Canvas = _figure_class()
    panels = [p for p in CURVE_PANELS if p[0] != "heldout_top1"
              or any(v is not None for c in curves for v in c.get(p[0]) or [])]
    with _svg_style():
        fig = Figure(figsize=(4.0 * len(panels), 2.8))
        Canvas(fig)
        axes = fig.subplots(1, len(panels), sharex=True, gridspec_kw={
            "left": 0.07 * 2 / len(panels), "right": 0.98, "bottom": 0.16, "top": 0.9,
            "wspace": 0.2})
        for curve in sorted(curves, key=lambda c: c["reported"]):  # the reported one on top
            for ax, (key, _) in zip(axes, panels):
                _curve(ax, curve, key)
        for ax, (_, title) in zip(axes, panels):
            _style_panel(ax, title)
        _legend(axes[1:])
        return _save(fig, path)


def _legend(axes) -> None:
    """The reported head's name, in the right-most top-1 panel that draws it."""
    for ax in reversed(list(axes)):
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, fontsize=7, frameon=False, loc="lower right")
            return


def _style_panel(ax, title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(color="0.92")


def _curve(ax, curve: Dict[str, Any], key: str) -> None:
    points = [(e, v) for e, v in zip(curve["epochs"], curve.get(key) or []) if v is not None]
    if not points:
        return
    x, y = zip(*points)
    if curve["reported"]:
        ax.plot(x, y, color=REPORTED_COLOUR, lw=2.2, marker="o", ms=3, zorder=3,
                label=f"reported: {curve['name']}" if key != "train_loss" else None)
    else:  # a single point (a snapshot scored alone) needs its marker to show
        ax.plot(x, y, color="0.55", lw=0.8, alpha=0.7, zorder=1,
                marker="o" if len(points) == 1 else None, ms=2.5)
