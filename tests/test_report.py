"""The compact ROI table and the reading report, as plain functions (no Qt).

Means below are computed by hand from a handful of voxels; the PDF is read back with an independent stdlib reader
(tests/pdf_reader.py), not with matplotlib.
"""

from __future__ import annotations

import csv
from datetime import datetime

import numpy as np
import pytest
from matplotlib.figure import Figure
from pdf_reader import pdf_pages, pdf_texts

from napari_sff import report, stats

# Label 1: 2 voxels, label 2: 3 voxels; 500 mm^3 voxels, so 0.5 mL each.
LABELS = np.array([1, 1, 2, 2, 2, 0])
GT = np.array([0.10, 0.30, 0.20, 0.20, 0.50, 0.9], np.float32)  # means 0.20, 0.30
UNET = np.array([0.20, 0.20, 0.50, 0.50, 0.50, 0.9], np.float32)  # means 0.20, 0.50
DDPM = np.array([np.nan, 0.40, 0.10, 0.10, 0.10, 0.9], np.float32)  # means 0.40 (one voxel left), 0.10
NAMES = {1: "quadriceps", 2: "sartorius/gracilis"}
SHORT = {"dixon_sff": "GT", "SFF U-Net [t2w]": "U-Net", "SFF DDPM [t2w]": "DDPM"}


def rows(reference: str | None = "dixon_sff"):
    # The reference is listed last: the compact table still puts it first.
    values = {"SFF U-Net [t2w]": UNET, "SFF DDPM [t2w]": DDPM, "dixon_sff": GT}
    return stats.roi_table(values, LABELS, [500.0], reference=reference, label_names=NAMES)


def test_compact_table_pivots_rows_into_one_line_per_roi():
    table = stats.compact_table(rows(), reference="dixon_sff", short_names=SHORT)
    assert table.header == ["ROI", "mL", "GT %", "U-Net %", "DDPM %", "Δ U-Net pp", "Δ DDPM pp"]
    assert table.labels == [1, 2]
    assert table.formatted() == [
        ["quadriceps", "1.00", "20.0", "20.0", "40.0", "0.0", "20.0"],
        ["sartorius/gracilis", "1.50", "30.0", "50.0", "10.0", "20.0", "-20.0"],
    ]
    (name, volume, gt, unet, ddpm, d_unet, d_ddpm) = table.values[0]
    assert volume == pytest.approx(1.0) and gt == pytest.approx(0.2) and ddpm == pytest.approx(0.4)
    assert d_ddpm == pytest.approx(0.2)  # each map's mean over its own finite voxels

    # Without a reference: means only, sources in their order, no Δ columns.
    plain = stats.compact_table(rows(None), short_names=SHORT)
    assert plain.header == ["ROI", "mL", "U-Net %", "DDPM %", "GT %"]
    assert plain.formatted()[1] == ["sartorius/gracilis", "1.50", "50.0", "10.0", "30.0"]

    # A map without a row for an ROI shows the missing mark; the volume is then the next map's.
    partial = [row for row in rows() if not (row.label == 2 and row.source in ("dixon_sff", "SFF U-Net [t2w]"))]
    assert stats.compact_table(partial, reference="dixon_sff", short_names=SHORT).formatted()[1] == \
        ["sartorius/gracilis", "1.50", "—", "—", "10.0", "—", "-20.0"]
    assert stats.compact_table([], reference="dixon_sff").values == []


def test_short_map_names():
    sources = ["dixon_sff", "SFF U-Net [a]", "SFF U-Net [b]", "SFF DDPM [a]", "SFF DDPM - U-Net [a]"]
    models = {"SFF U-Net [a]": "unet", "SFF U-Net [b]": "unet", "SFF DDPM [a]": "ddpm"}
    assert report.short_map_names(sources, "dixon_sff", models) == {
        "dixon_sff": "GT", "SFF U-Net [a]": "U-Net", "SFF U-Net [b]": "U-Net 2", "SFF DDPM [a]": "DDPM",
        "SFF DDPM - U-Net [a]": "SFF DDPM - U-Net"}
    # A prediction chosen as the reference keeps its model's name.
    assert report.short_map_names(["SFF U-Net [a]"], "SFF U-Net [a]", models) == {"SFF U-Net [a]": "U-Net"}


def content(**changes):
    screenshot = np.zeros((60, 80, 3), np.uint8)
    screenshot[..., 0] = np.arange(80, dtype=np.uint8)[None, :] * 3
    maps = {"SFF U-Net [t2w]": {"model": "unet", "weights": "/models/unet-v2.safetensors", "device": "cuda:0"},
            "SFF DDPM [t2w]": {"model": "ddpm", "weights": "shipped", "device": "cpu"}}
    values = dict(rows=rows(), screenshot=screenshot, reference="dixon_sff", short_names=SHORT,
                  overlay="SFF U-Net [t2w]", colormap="inferno", contrast_limits=(0.0, 0.5), maps=maps,
                  view="slice 3 of 6 along axis 0", scope="whole volume", created=datetime(2030, 1, 2, 3, 4))
    return values | changes


def test_pdf_report_has_the_table_provenance_and_research_line(tmp_path):
    path = tmp_path / "report.pdf"
    assert report.write_report(path, **content()) == [path]
    assert pdf_pages(path) == 2
    texts = pdf_texts(path)
    everything = "\n".join(texts)
    for cell in ("quadriceps", "sartorius/gracilis", "GT %", "Δ DDPM pp", "20.0", "40.0", "-20.0", "1.50"):
        assert cell in texts
    for needle in ("model unet, weights unet-v2.safetensors, device cuda:0", "model ddpm, weights shipped",
                   "GT = dixon_sff (reference)", "Report created 2030-01-02 03:04", "SFF overlay: SFF U-Net [t2w]",
                   "slice 3 of 6 along axis 0", "Statistics: whole volume", "page 2 of 2"):
        assert needle in everything
    assert texts.count("Research tool, not for diagnosis.") == 1  # the header; the footers carry it too
    assert sum("Research tool, not for diagnosis." in text for text in texts) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["report.pdf"]  # no temporary file left behind


def test_colour_bar_shows_the_overlay_colours_and_limits_in_percent():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    colours = np.array([[0, 0, 1, 1], [1, 0, 0, 1]], float)  # napari-style RGBA lookup: blue -> red
    page = report.Report(**content(colormap=colours, contrast_limits=(0.1, 0.6))).figures()[0]
    (bar,) = [ax for ax in page.axes if ax.get_ylabel() == "SFF [%]"]
    assert bar.get_ylim() == pytest.approx((10.0, 60.0))
    assert [tick.get_text() for tick in bar.get_yticklabels()][:2] == ["10", "20"]
    canvas = FigureCanvasAgg(page)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3]
    box = bar.get_window_extent(canvas.get_renderer())
    x, rows_total = int(box.x0 + box.width / 2), pixels.shape[0]
    np.testing.assert_array_equal(pixels[rows_total - int(box.y0 + 4), x], (0, 0, 255))  # bottom: blue
    np.testing.assert_array_equal(pixels[rows_total - int(box.y1 - 4), x], (255, 0, 0))  # top: red


def test_many_rois_continue_on_more_pages(tmp_path):
    labels = np.arange(1, 41)
    values = {"a_sff": labels / 100.0}
    many = stats.roi_table(values, labels, [1.0], label_names={k: f"muscle {k:02d}" for k in labels})
    path = report.write_report(tmp_path / "many.pdf", rows=many, reference="a_sff")[0]
    assert pdf_pages(path) == 3  # page 1 holds what fits under the slice; 40 rows need one more page
    texts = pdf_texts(path)
    assert [t for t in texts if t.startswith("muscle ")] == [f"muscle {k:02d}" for k in labels]  # each once


def test_png_report_writes_the_image_and_the_full_table_as_csv(tmp_path):
    import matplotlib.image

    written = report.write_report(tmp_path / "report.png", **content())
    assert written == [tmp_path / "report.png", tmp_path / "report.csv"]
    image = matplotlib.image.imread(tmp_path / "report.png")
    assert image.shape[1] == round(8.27 * 150)  # A4 wide at 150 dpi
    with open(tmp_path / "report.csv", newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == stats.table_header()
    assert table[1][:3] == ["1", "quadriceps", "SFF U-Net [t2w]"] and len(table) == 1 + 6


def test_bad_inputs_give_one_clear_line(tmp_path):
    with pytest.raises(report.ReportError, match="a .pdf or a .png file, not 'report.docx'"):
        report.write_report(tmp_path / "report.docx", **content())
    with pytest.raises(report.ReportError, match=r"\(H, W, 3\|4\) uint8"):
        report.write_report(tmp_path / "r.pdf", **content(screenshot=np.zeros((4, 4))))
    (tmp_path / "r.csv").write_text("keep")
    with pytest.raises(FileExistsError, match="r.csv exists"):
        report.write_report(tmp_path / "r.png", overwrite=False, **content())
    assert not (tmp_path / "r.png").exists() and (tmp_path / "r.csv").read_text() == "keep"


def test_scatter_legend_sits_above_the_axes_clear_of_the_points():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = Figure(figsize=(5, 2.6), layout="constrained")
    FigureCanvasAgg(figure)
    scatter, agreement = figure.subplots(1, 2)
    # Above the axes, not inside them where its markers would read as one more ROI.
    report.draw_agreement(scatter, agreement, rows(), "dixon_sff", names=SHORT)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    box = scatter.get_legend().get_window_extent(renderer)
    assert box.y0 >= scatter.get_window_extent(renderer).y1 - 1
    points = np.vstack([c.get_offset_transform().transform(c.get_offsets()) for c in scatter.collections])
    assert len(points) == 4 and not any(box.contains(x, y) for x, y in points)
    assert [t.get_text() for t in scatter.get_legend().get_texts()] == ["U-Net", "DDPM"]
    assert scatter.get_xlabel() == "GT mean [%]"
