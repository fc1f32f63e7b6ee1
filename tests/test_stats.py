"""Known-answer tests for napari_sff.stats: every statistic is checked against plain numpy on the
masked voxels, so the fast grouped/histogram implementation cannot drift from the definitions."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os

import numpy as np
import pytest

from napari_sff.stats import (
    ID_COLUMNS,
    STAT_COLUMNS,
    RoiRow,
    bland_altman,
    format_rows,
    rasterize_shapes,
    roi_table,
    rows_to_csv,
    table_header,
)
from napari_sff.stats import engine as stats_engine

SPACING = (3.0, 0.8, 1.2)
VOXEL_ML = 3.0 * 0.8 * 1.2 / 1000.0
RTOL = 1e-12


def expected(values: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The definitions, computed the slow obvious way."""
    x = np.asarray(values, dtype=np.float64)[mask]
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"n_voxels": 0, "mean": math.nan}
    p05, p25, p50, p75, p95 = np.percentile(x, [5, 25, 50, 75, 95])
    return {
        "n_voxels": x.size,
        "mean": x.mean(),
        "median": p50,
        "sd": x.std(ddof=1) if x.size > 1 else math.nan,
        "iqr": p75 - p25,
        "p05": p05,
        "p95": p95,
    }


def assert_row(row: RoiRow, exp: dict[str, float]) -> None:
    assert row.n_voxels == exp["n_voxels"]
    assert row.volume_ml == pytest.approx(exp["n_voxels"] * VOXEL_ML, rel=RTOL, abs=0)
    for key, value in exp.items():
        if key != "n_voxels":
            np.testing.assert_allclose(getattr(row, key), value, rtol=RTOL, atol=1e-15, err_msg=key)


def by_key(rows: list[RoiRow]) -> dict[tuple[int, str], RoiRow]:
    return {(r.label, r.source): r for r in rows}


@pytest.fixture
def case() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """3-D labels with compact blocks, a 1-voxel ROI, a large label id and random values."""
    rng = np.random.default_rng(42)
    labels = np.zeros((6, 20, 30), dtype=np.int32)
    labels[:, 2:10, 3:12] = 1
    labels[1:5, 11:19, 5:25] = 2
    labels[3, 1:4, 20:29] = 5  # only on slice 3
    labels[0, 0, 0] = 7  # one voxel
    labels[:, 15:18, 26:29] = 300
    values = {
        "pred": rng.random(labels.shape, dtype=np.float32),
        "ref": rng.random(labels.shape),
    }
    return values, labels


@pytest.mark.parametrize("chunk", [1 << 20, 97])  # one block, and many blocks cutting the runs
def test_roi_table_matches_numpy(case, monkeypatch, chunk):
    monkeypatch.setattr(stats_engine, "_CHUNK", chunk)
    values, labels = case
    rows = roi_table(values, labels, SPACING)
    assert [(r.label, r.source) for r in rows] == [
        (lab, src) for lab in (1, 2, 5, 7, 300) for src in ("pred", "ref")
    ]
    for row in rows:
        assert_row(row, expected(values[row.source], labels == row.label))
        assert row.diff_mean is None and row.mae is None and row.n_excluded == 0


def test_fragmented_labels_use_same_definitions(monkeypatch):
    """Random per-voxel labels take the argsort grouping path instead of the run path."""
    monkeypatch.setattr(stats_engine, "_CHUNK", 1000)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (40, 50)).astype(np.uint8)
    values = rng.normal(0.3, 0.2, labels.shape)
    rows = roi_table({"v": values}, labels, (1.0, 1.0))
    for row in rows:
        exp = expected(values, labels == row.label)
        for key in ("mean", "median", "sd", "iqr", "p05", "p95"):
            np.testing.assert_allclose(getattr(row, key), exp[key], rtol=RTOL)


def test_volume_ml_is_exact_with_anisotropic_spacing():
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    labels[1:3, 1:4, 1:5] = 1  # 2 * 3 * 4 = 24 voxels of 3.0 * 0.8 * 1.2 = 2.88 mm^3
    (row,) = roi_table({"v": np.full(labels.shape, 0.25)}, labels, SPACING)
    assert row.n_voxels == 24
    assert row.volume_ml == pytest.approx(24 * 2.88 / 1000, rel=RTOL)
    assert row.mean == pytest.approx(0.25) and row.sd == pytest.approx(0.0) and row.iqr == 0.0


def test_single_voxel_roi_has_nan_sd_and_collapsed_percentiles(case):
    values, labels = case
    row = by_key(roi_table(values, labels, SPACING))[(7, "ref")]
    v = values["ref"][0, 0, 0]
    assert row.n_voxels == 1 and math.isnan(row.sd)  # ddof=1
    assert row.mean == row.median == row.p05 == row.p95 == pytest.approx(v)
    assert row.iqr == 0.0


@pytest.mark.parametrize(
    "make",
    [
        lambda rng, n: rng.random(n, dtype=np.float32),
        lambda rng, n: np.round(rng.random(n), 2),  # many ties
        lambda rng, n: np.where(rng.random(n) < 0.7, 0.0, rng.random(n)).astype(np.float32),  # skewed
        lambda rng, n: np.full(n, 0.125, np.float32),  # constant
        lambda rng, n: rng.choice(np.float32([0.1, 0.9]), n),  # two values
        lambda rng, n: rng.normal(-2.0, 1e-6, n),  # negative, narrow span
        lambda rng, n: (rng.random(n) * 2 - 1).astype(np.float32) * np.float32(3e38),  # span overflows
        lambda rng, n: rng.random(n).astype(np.float32) * np.float32(1e-40),  # subnormal span
        lambda rng, n: rng.integers(0, 100, n),  # integer map
    ],
)
def test_large_roi_percentiles_are_exact(make):
    """Big ROIs use the histogram selection; it must equal np.percentile for awkward data too."""
    rng = np.random.default_rng(7)
    values = make(rng, 30_000)
    labels = np.ones(values.shape, dtype=np.uint8)
    labels[:5] = 0
    (row,) = roi_table({"v": values}, labels, (1.0,))
    exp = expected(values, labels == 1)
    for key in ("median", "iqr", "p05", "p95"):
        np.testing.assert_allclose(getattr(row, key), exp[key], rtol=RTOL, atol=0, err_msg=key)
    assert row.n_voxels == exp["n_voxels"]


def test_reference_columns(case):
    values, labels = case
    rows = by_key(roi_table(values, labels, SPACING, reference="ref"))
    for lab in (1, 2, 5, 7, 300):
        pred, ref = rows[(lab, "pred")], rows[(lab, "ref")]
        assert ref.diff_mean is None and ref.mae is None
        assert pred.diff_mean == pytest.approx(pred.mean - ref.mean, rel=RTOL, abs=1e-15)
        mask = labels == lab
        mae = np.abs(values["pred"][mask].astype(np.float64) - values["ref"][mask]).mean()
        assert pred.mae == pytest.approx(mae, rel=RTOL)


def test_unknown_reference_is_an_error(case):
    values, labels = case
    with pytest.raises(ValueError, match="reference 'dixon'"):
        roi_table(values, labels, SPACING, reference="dixon")


def test_non_finite_values_are_counted_out(case):
    values, labels = case
    pred, ref = values["pred"].copy(), values["ref"].copy()
    mask2 = labels == 2
    idx = np.flatnonzero(mask2)
    pred.flat[idx[:10]] = np.nan
    pred.flat[idx[10:12]] = np.inf
    ref.flat[idx[5:20]] = np.nan
    pred[labels == 7] = np.nan  # an ROI with nothing left
    rows = by_key(roi_table({"pred": pred, "ref": ref}, labels, SPACING, reference="ref"))

    row = rows[(2, "pred")]
    assert row.n_excluded == 12 and row.n_voxels == mask2.sum() - 12
    assert_row(row, expected(pred, mask2))
    assert rows[(2, "ref")].n_excluded == 15
    both = mask2 & np.isfinite(pred) & np.isfinite(ref)
    assert row.mae == pytest.approx(np.abs(pred[both].astype(np.float64) - ref[both]).mean(), rel=RTOL)
    assert row.diff_mean == pytest.approx(row.mean - rows[(2, "ref")].mean, rel=RTOL)

    empty = rows[(7, "pred")]
    assert empty.n_voxels == 0 and empty.volume_ml == 0.0 and empty.n_excluded == 1
    assert all(math.isnan(getattr(empty, k)) for k in ("mean", "median", "sd", "mae", "diff_mean"))


def test_roi_rim_known_answers():
    """Drawn by hand: a 5 x 6 muscle beside a 3 x 6 one on background; width 1 is the voxels with a 4-neighbour
    of another label (the image edge is none), width 2 adds the next ring inwards."""
    from napari_sff.stats import roi_rim

    labels = np.zeros((9, 10), np.int32)
    labels[1:6, 1:7] = 1
    labels[1:6, 7:10] = 2  # touches the right edge: that side is no boundary
    expected1 = np.zeros_like(labels, bool)
    expected1[1, 1:10] = expected1[5, 1:10] = True  # top and bottom rows of both
    expected1[1:6, 1] = True  # muscle 1's left column (background beside it)
    expected1[1:6, 6] = expected1[1:6, 7] = True  # both sides of the 1|2 boundary
    np.testing.assert_array_equal(roi_rim(labels, 1), expected1)
    expected2 = expected1.copy()
    expected2[2, 2:10] = expected2[4, 2:10] = True
    expected2[2:5, 2] = expected2[2:5, 5] = expected2[2:5, 8] = True
    np.testing.assert_array_equal(roi_rim(labels, 2), expected2)
    assert not roi_rim(labels, 0).any()
    # 3-D: in-plane only; the slice axis (0 here) never makes a boundary
    volume = np.stack([labels, labels, np.zeros_like(labels)])
    np.testing.assert_array_equal(roi_rim(volume, 1, slice_axis=0)[:2], [expected1, expected1])
    np.testing.assert_array_equal(roi_rim(np.moveaxis(volume, 0, 2), 1, slice_axis=2)[..., 1], expected1)
    with pytest.raises(ValueError, match="0 or more"):
        roi_rim(labels, -1)


def test_exclude_rim_counts_the_border_out_like_non_finite_values():
    """roi_table(exclude_rim=1) equals the statistics of the ROI's core computed with numpy, the core being the
    voxels whose in-plane 4-neighbours (axis 0 has the largest spacing) all share their label."""
    rng = np.random.default_rng(3)
    labels = np.zeros((4, 12, 14), np.int32)
    labels[:, 2:9, 2:8] = 1
    labels[:, 2:9, 8:13] = 2
    values = {"map": rng.uniform(0, 1, labels.shape), "ref": rng.uniform(0, 1, labels.shape)}
    same = np.ones(labels.shape, bool)
    for axis in (1, 2):
        for shift in (1, -1):
            neighbour = np.roll(labels, shift, axis=axis)
            edge = [slice(None)] * 3
            edge[axis] = 0 if shift == 1 else -1
            neighbour[tuple(edge)] = labels[tuple(edge)]  # no wrap-around: the image edge is no boundary
            same &= neighbour == labels
    rows = {(r.label, r.source): r for r in roi_table(values, labels, SPACING, reference="ref", exclude_rim=1)}
    for label in (1, 2):
        core = (labels == label) & same
        row = rows[(label, "map")]
        assert row.n_voxels == core.sum() and row.n_excluded == (labels == label).sum() - core.sum()
        assert math.isclose(row.volume_ml, core.sum() * VOXEL_ML, rel_tol=RTOL)
        assert math.isclose(row.mean, values["map"][core].mean(), rel_tol=1e-9)
        assert math.isclose(row.median, np.median(values["map"][core]), rel_tol=1e-9)
        assert math.isclose(row.mae, np.abs(values["map"] - values["ref"])[core].mean(), rel_tol=1e-9)
    full = {(r.label, r.source): r for r in roi_table(values, labels, SPACING)}
    assert full[(1, "map")].n_voxels == (labels == 1).sum() and full[(1, "map")].n_excluded == 0


def test_rim_axis_picks_the_plane_an_roi_was_drawn_in():
    """A shape drawn on one slice along axis 1 (one voxel thick there) is all rim in the acquisition's plane
    (across axis 0, the largest spacing) but keeps its core in the plane it was drawn in."""
    labels = np.zeros((6, 5, 8), np.int32)
    labels[1:5, 2, 1:7] = 1  # 4 x 6 voxels on slice 2 of axis 1
    values = {"map": np.arange(labels.size, dtype=np.float64).reshape(labels.shape)}
    default = roi_table(values, labels, SPACING, exclude_rim=1)[0]
    assert default.n_voxels == 0 and default.n_excluded == 24
    drawn = roi_table(values, labels, SPACING, exclude_rim=1, rim_axis=1)[0]
    core = np.zeros_like(labels, bool)
    core[2:4, 2, 2:6] = True
    assert drawn.n_voxels == core.sum() == 8 and drawn.mean == pytest.approx(values["map"][core].mean())


def test_exclude_rim_keeps_a_row_for_an_roi_that_is_all_rim():
    labels = np.zeros((3, 8, 8), np.int32)
    labels[:, 2:6, 2:6] = 1
    labels[:, 4, 7] = 2  # one voxel wide: all rim
    rows = {r.label: r for r in roi_table({"map": np.ones(labels.shape)}, labels, SPACING, exclude_rim=1)}
    assert rows[2].n_voxels == 0 and rows[2].n_excluded == 3 and math.isnan(rows[2].mean)
    assert rows[1].n_voxels == 3 * 4 and rows[1].mean == 1.0


def test_mismatched_shape_is_a_one_line_error(case):
    values, labels = case
    values = {**values, "pred": values["pred"][:, :, :-1]}
    with pytest.raises(ValueError) as err:
        roi_table(values, labels, SPACING)
    msg = str(err.value)
    assert "(6, 20, 29)" in msg and "(6, 20, 30)" in msg and "resample" in msg and "\n" not in msg


@pytest.mark.parametrize("bad", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, np.nan, 1.0)])
def test_bad_spacing_is_an_error(case, bad):
    values, labels = case
    with pytest.raises(ValueError, match="spacing"):
        roi_table(values, labels, bad)


@pytest.mark.parametrize(("axis", "index"), [(0, 3), (0, -3), (1, 12), (2, 27)])
def test_slice_scope(case, axis, index):
    values, labels = case
    rows = roi_table(values, labels, SPACING, slice_index=index, slice_axis=axis)
    assert len(rows) == 10  # same ROIs as the volume, also those absent from the slice
    lab_slice = np.take(labels, index, axis=axis)
    for row in rows:
        assert_row(row, expected(np.take(values[row.source], index, axis=axis), lab_slice == row.label))


def test_label_absent_from_slice_gets_an_empty_row(case):
    values, labels = case
    rows = by_key(roi_table(values, labels, SPACING, slice_index=0, slice_axis=0))
    absent = rows[(5, "pred")]  # label 5 only lives on slice 3
    assert absent.n_voxels == 0 and absent.volume_ml == 0.0 and math.isnan(absent.mean)
    assert rows[(7, "pred")].n_voxels == 1  # the 1-voxel ROI is on slice 0


def test_slice_index_out_of_range(case):
    values, labels = case
    with pytest.raises(IndexError, match="slice_index 6"):
        roi_table(values, labels, SPACING, slice_index=6)
    with pytest.raises(ValueError, match="slice_axis"):
        roi_table(values, labels, SPACING, slice_index=0, slice_axis=3)


def test_label_names_and_label_dtypes():
    values = {"v": np.arange(12, dtype=np.float64).reshape(3, 4) / 12}
    labels = np.array([[0, -3, -3, 0], [2**40, 2**40, 0, 0], [0, 0, 0, 9]], dtype=np.int64)
    rows = roi_table(values, labels, (1.0, 1.0), label_names={9: "vastus lateralis"})
    assert [(r.label, r.name, r.n_voxels) for r in rows] == [
        (-3, "label -3", 2),
        (9, "vastus lateralis", 1),
        (2**40, f"label {2**40}", 2),
    ]
    assert rows[2].mean == pytest.approx((4 + 5) / 24)
    (mask_row,) = roi_table(values, labels > 100, (1.0, 1.0))  # boolean mask = label 1
    assert mask_row.label == 1 and mask_row.n_voxels == 2
    with pytest.raises(TypeError, match="integer"):
        roi_table(values, labels.astype(float), (1.0, 1.0))
    assert roi_table(values, np.zeros((3, 4), np.uint8), (1.0, 1.0)) == []


# ------------------------------------------------------------------------------ formatting / CSV


@pytest.fixture
def rows(case) -> list[RoiRow]:
    values, labels = case
    return roi_table(values, labels, SPACING, reference="ref", label_names={1: "soleus"})


def test_stat_columns_describe_roirow_fields():
    fields = {f.name for f in dataclasses.fields(RoiRow)}
    assert {k for k, _ in ID_COLUMNS + STAT_COLUMNS} == fields
    assert table_header() == [h for _, h in ID_COLUMNS + STAT_COLUMNS]
    headers = dict(STAT_COLUMNS)
    assert headers["volume_ml"] == "volume [mL]" and headers["mean"] == "mean [%]"
    assert headers["diff_mean"] == "Δ mean vs reference [pp]" and headers["mae"] == "MAE vs reference [pp]"


def fields_in_order() -> list[str]:
    return ["label", "name", "source", *(k for k, _ in STAT_COLUMNS)]


def test_format_rows(rows):
    table = format_rows(rows)
    assert len(table) == len(rows) and all(len(r) == len(table_header()) for r in table)
    first = dict(zip(fields_in_order(), table[0], strict=True))
    row = rows[0]
    assert first["label"] == "1" and first["name"] == "soleus" and first["source"] == "pred"
    assert first["mean"] == f"{100 * row.mean:.1f}" and first["volume_ml"] == f"{row.volume_ml:.2f}"
    assert first["mae"] == f"{100 * row.mae:.1f}"
    ref_row = dict(zip(fields_in_order(), table[1], strict=True))
    assert ref_row["diff_mean"] == "—" and ref_row["mae"] == "—"  # reference has no comparison


def test_csv_content(rows, tmp_path):
    path = rows_to_csv(rows, tmp_path / "sff.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        header, *body = list(csv.reader(fh))
    assert header[:3] == ["label", "name", "source"]
    assert header[3:] == [h for _, h in STAT_COLUMNS]
    assert "mean [%]" in header and "volume [mL]" in header
    assert len(body) == len(rows)
    col = {h: i for i, h in enumerate(header)}
    for line, row in zip(body, rows, strict=True):
        assert line[col["mean [%]"]] == f"{100 * row.mean:.1f}"
        assert line[col["P95 [%]"]] == f"{100 * row.p95:.1f}"
        assert line[col["volume [mL]"]] == f"{row.volume_ml:.2f}"
        assert line[col["voxels"]] == str(row.n_voxels)
        one_decimal = line[col["SD [%]"]]
        assert one_decimal == "" or len(one_decimal.split(".")[1]) == 1
    ref_line = body[1]
    assert ref_line[col["Δ mean vs reference [pp]"]] == ""  # missing -> empty cell
    assert sorted(os.listdir(tmp_path)) == ["sff.csv"]  # no temporary left behind


def test_csv_fractions_mode(rows):
    buf = io.StringIO(newline="")
    assert rows_to_csv(rows, buf, percent=False) is None
    header, first, *_ = list(csv.reader(io.StringIO(buf.getvalue())))
    col = {h: i for i, h in enumerate(header)}
    assert "mean [fraction]" in col and "mean [%]" not in col
    assert float(first[col["mean [fraction]"]]) == rows[0].mean  # full precision


def test_csv_refuses_to_overwrite(rows, tmp_path):
    path = tmp_path / "sff.csv"
    path.write_text("precious\n")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        rows_to_csv(rows, path)
    assert path.read_text() == "precious\n"
    rows_to_csv(rows, path, overwrite=True)
    assert path.read_text().startswith("label,name,source,voxels")
    assert sorted(os.listdir(tmp_path)) == ["sff.csv"]


def test_csv_write_is_atomic(rows, tmp_path, monkeypatch):
    path = tmp_path / "sff.csv"
    path.write_text("old table\n")

    def crash(*args, **kwargs):
        raise OSError("disk unplugged")

    monkeypatch.setattr(os, "replace", crash)  # what the atomic writer publishes with
    with pytest.raises(OSError, match="disk unplugged"):
        rows_to_csv(rows, path, overwrite=True)
    assert path.read_text() == "old table\n"  # never half-written
    assert sorted(os.listdir(tmp_path)) == ["sff.csv"]  # temporary cleaned up


# ------------------------------------------------------------------------------ Bland-Altman


def test_bland_altman_known_answer():
    res = bland_altman([1.0, 2.0, 3.0, 4.0, np.nan], [0.0, 2.0, 2.0, 5.0, 1.0])
    # differences 1, 0, 1, -1: mean 0.25, sample variance 2.75 / 3
    sd = math.sqrt(2.75 / 3)
    assert res["n"] == 4
    assert res["bias"] == pytest.approx(0.25)
    assert res["sd"] == pytest.approx(sd)
    assert res["loa_low"] == pytest.approx(0.25 - 1.96 * sd)
    assert res["loa_high"] == pytest.approx(0.25 + 1.96 * sd)
    with pytest.raises(ValueError, match="paired"):
        bland_altman([1.0, 2.0], [1.0])
    assert math.isnan(bland_altman([1.0], [0.5])["sd"])


# ------------------------------------------------------------------------------ rasterize_shapes


GRID = (5, 12, 14)


def rect(z: float, r0: float, c0: float, r1: float, c1: float) -> np.ndarray:
    return np.array([[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]])


def test_rectangle_covers_exact_pixels_on_its_slice():
    out = rasterize_shapes([rect(2, 2.5, 3.5, 6.4, 8.2)], ["rectangle"], GRID)
    expected_out = np.zeros(GRID, np.int32)
    expected_out[2, 3:7, 4:9] = 1  # pixel centres inside: rows 3..6, cols 4..8
    np.testing.assert_array_equal(out, expected_out)


def test_pixel_centres_on_the_outline_are_included():
    out = rasterize_shapes([rect(1, 2, 3, 5, 7)], ["polygon"], GRID)
    assert out.sum() == 4 * 5 and np.all(out[1, 2:6, 3:8] == 1)


def test_shape_lands_on_rounded_slice_and_other_orientations():
    out = rasterize_shapes([rect(2.6, 1, 1, 3, 3)], ["rectangle"], GRID)
    assert np.flatnonzero(out.any(axis=(1, 2))).tolist() == [3]
    coronal = np.array([[1, 4, 2], [1, 4, 6], [3, 4, 6], [3, 4, 2]], dtype=float)  # axis 1 fixed
    out = rasterize_shapes([coronal], ["rectangle"], GRID)
    assert out[:, 4, :].sum() == 3 * 5 and out.sum() == 3 * 5
    assert not rasterize_shapes([rect(7, 1, 1, 3, 3)], ["rectangle"], GRID).any()  # off the grid


def test_ellipse_area_and_rotation():
    a, b, theta = 30.0, 18.0, np.deg2rad(30)
    center = np.array([50.0, 50.0])
    u = np.array([np.cos(theta), np.sin(theta)]) * a
    v = np.array([-np.sin(theta), np.cos(theta)]) * b
    corners = np.array([center - u - v, center + u - v, center + u + v, center - u + v])
    out = rasterize_shapes([corners], ["ellipse"], (100, 100))
    area = out.sum()
    assert abs(area - math.pi * a * b) / (math.pi * a * b) < 0.02
    rr, cc = np.nonzero(out)
    d = np.stack([rr, cc], axis=1) - center
    radius = (d @ (u / a) / a) ** 2 + (d @ (v / b) / b) ** 2
    assert radius.max() <= 1.0 + 1e-9  # every included pixel centre is inside the true ellipse


def test_ellipse_on_a_3d_slice():
    corners = np.array([[4, 2, 2], [4, 2, 12], [4, 10, 12], [4, 10, 2]], dtype=float)  # a=5, b=4
    out = rasterize_shapes([corners], ["ellipse"], GRID)
    assert out[4].sum() == out.sum()
    assert abs(out.sum() - math.pi * 5 * 4) / (math.pi * 5 * 4) < 0.1


def test_later_shapes_win_and_paths_are_thin_lines():
    shapes = [rect(0, 1, 1, 6, 6), rect(0, 4, 4, 8, 8), np.array([[0, 10, 0], [0, 10, 13]])]
    out = rasterize_shapes(shapes, ["rectangle", "polygon", "path"], GRID)
    assert out[0, 2, 2] == 1 and out[0, 5, 5] == 2 and out[0, 8, 8] == 2
    assert np.array_equal(np.flatnonzero(out[0] == 3), np.arange(10 * 14, 11 * 14))
    out = rasterize_shapes(shapes, ["rectangle", "polygon", "line"], GRID, include_paths=False)
    assert not (out == 3).any() and (out == 2).any()


def test_rasterize_2d_with_data_to_grid():
    square = np.array([[0.5, 0.5], [0.5, 2.5], [2.5, 2.5], [2.5, 0.5]])
    out = rasterize_shapes([square], ["rectangle"], (8, 8), data_to_grid=lambda p: p * 2)
    assert out.dtype == np.int32 and out.sum() == 5 * 5 and out[1:6, 1:6].all()


def test_rasterize_errors():
    with pytest.raises(ValueError, match="unsupported shape type 'star'"):
        rasterize_shapes([rect(0, 1, 1, 3, 3)], ["star"], GRID)
    oblique = np.array([[0, 1, 1], [1, 1, 5], [2, 5, 5]], dtype=float)
    with pytest.raises(ValueError, match="single slice"):
        rasterize_shapes([oblique], ["polygon"], GRID)
    with pytest.raises(ValueError, match="shape types"):
        rasterize_shapes([rect(0, 1, 1, 3, 3)], [], GRID)
