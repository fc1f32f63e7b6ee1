"""The agreement plots (ROI means vs the reference, Bland-Altman), for the ROI widget and the report's last page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sff import stats


def draw_agreement(
    scatter: Any, agreement: Any, rows: Sequence[stats.RoiRow], reference: str | None, *,
    names: Mapping[str, str] | None = None, text_color: str = "black", fontsize: float = 7,
) -> None:
    """(1) predicted vs reference ROI means with the identity line; (2) Bland-Altman per predicted source.

    The legend sits above the scatter axes, outside the data, so its markers never read as one more ROI.
    Shared by the ROI widget and the report.
    """
    names = names or {}
    for ax in (scatter, agreement):
        ax.clear()
    means: dict[str, dict[int, float]] = {}
    for row in rows:
        means.setdefault(row.source, {})[row.label] = 100.0 * row.mean
    predicted = [source for source in means if source != reference] if reference in means else []
    message = ("no reference map: choose one to compare" if reference is None
               else "select a predicted map" if not predicted else "")
    span: list[float] = []
    for k, source in enumerate(predicted):
        colour = f"C{k}"
        labels = [label for label, v in means[source].items()
                  if np.isfinite(v) and np.isfinite(means[reference].get(label, np.nan))]
        if not labels:
            continue
        ref = np.array([means[reference][label] for label in labels])
        pred = np.array([means[source][label] for label in labels])
        span += [ref.min(), ref.max(), pred.min(), pred.max()]
        scatter.scatter(ref, pred, s=14, color=colour, label=names.get(source, source.split(" [")[0]))
        agreement.scatter((ref + pred) / 2, pred - ref, s=14, color=colour)
        ba = stats.bland_altman(pred, ref)
        for value, style in ((ba["bias"], "-"), (ba["loa_low"], "--"), (ba["loa_high"], "--")):
            if np.isfinite(value):
                agreement.axhline(value, color=colour, linestyle=style, linewidth=0.8)
    if span:
        low, high = agreement.get_ylim()  # near-identical maps: keep a readable +-1 pp axis, no offset text
        if high - low < 2.0:
            agreement.set_ylim((low + high) / 2 - 1.0, (low + high) / 2 + 1.0)
        lo, hi = min(span), max(span)
        pad = max(1.0, 0.05 * (hi - lo))
        scatter.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color=text_color, linestyle=":", linewidth=0.8)
        count = len(scatter.collections)
        scatter.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncols=max(1, count), borderaxespad=0.0,
                       fontsize=fontsize - 1, frameon=False, labelcolor=text_color, handletextpad=0.2,
                       columnspacing=1.0)
    elif not message:
        message = "no ROI has values in both maps"
    if message:
        for ax in (scatter, agreement):
            ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color=text_color,
                    fontsize=fontsize, wrap=True)
    ref_name = names.get(reference, reference.split(" [")[0]) if reference else "reference"
    scatter.set(xlabel=f"{ref_name} mean [%]", ylabel="predicted mean [%]")
    agreement.set(xlabel="mean of the two [%]", ylabel="predicted - reference [pp]")


@dataclass(frozen=True)
class AgreementPicture:
    """What the ROI widget's plots show, gathered on the GUI thread; :func:`render_agreement` draws it in a worker
    (an Agg draw of the two plots took 50-160 ms here: on the GUI thread that froze the viewer at each update)."""

    rows: tuple[stats.RoiRow, ...]
    reference: str | None
    names: Mapping[str, str]
    background: str
    text_color: str
    width_px: int
    height_px: int
    dpi: float = 100.0


def render_agreement(picture: AgreementPicture) -> tuple[Any, np.ndarray]:
    """:func:`draw_agreement` on a new off-screen (Agg) figure of the picture's size and colours, drawn: the
    figure and its pixels (height x width x 4, RGBA uint8). No Qt: call it from any one thread at a time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(picture.width_px / picture.dpi, picture.height_px / picture.dpi), dpi=picture.dpi,
                    layout="constrained", facecolor=picture.background)
    canvas = FigureCanvasAgg(figure)
    scatter, agreement = figure.subplots(1, 2)
    draw_agreement(scatter, agreement, picture.rows, picture.reference, names=picture.names,
                   text_color=picture.text_color)
    for ax in (scatter, agreement):
        ax.set_facecolor(picture.background)
        ax.tick_params(colors=picture.text_color, labelsize=6)
        ax.xaxis.label.set(color=picture.text_color, fontsize=7)
        ax.yaxis.label.set(color=picture.text_color, fontsize=7)
        for spine in ax.spines.values():
            spine.set_color(picture.text_color)
    canvas.draw()
    return figure, np.asarray(canvas.buffer_rgba()).copy()
