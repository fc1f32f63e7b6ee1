"""The cohort ROI table: cases from a pattern, maps on other grids, hand-computed means, agreement summary."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from napari_sff import io, stats
from napari_sff.cohort import table
from napari_sff.io.label_names import LabelNamesError, read_label_names


def _labels() -> np.ndarray:
    labels = np.zeros((2, 4, 4), np.int16)
    labels[:, :2, :2] = 1
    labels[:, 2:, 2:] = 2
    return labels


def _write_case(root, case: str, gt: np.ndarray, unet: np.ndarray, *, coarse_gt: bool = False) -> None:
    spacing = (3.0, 1.0, 1.0)
    io.write_nifti(io.Volume.from_array(_labels(), spacing), root / "seg" / f"{case}_muscle.nii.gz")
    if coarse_gt:  # the Dixon reference on a 2x coarser in-plane grid over the same box
        gt = gt[:, ::2, ::2]
        io.write_nifti(io.Volume.from_array(gt * 100, (3.0, 2.0, 2.0), origin=(0.0, 0.5, 0.5)),
                       root / "dixon" / f"{case}_sff.nii.gz")
    else:
        io.write_nifti(io.Volume.from_array(gt * 100, spacing), root / "dixon" / f"{case}_sff.nii.gz")
    io.write_nifti(io.Volume.from_array(unet, spacing), root / "pred" / f"{case}_t2w_sff.nii.gz")


def _maps(root) -> dict[str, str]:
    return {"gt": str(root / "dixon" / "{case}_sff.nii.gz"), "unet": str(root / "pred" / "{case}_t2w_sff.nii.gz")}


def test_rows_per_case_roi_and_map_with_hand_computed_means(tmp_path):
    gt_a = np.where(_labels() == 1, 0.10, 0.30).astype(np.float32)
    unet_a = gt_a + 0.02
    unet_a[0, 0, 0] = 0.50  # one voxel off in ROI 1: its mean moves by (0.50 - 0.12) / 8
    gt_b = np.full((2, 4, 4), 0.20, np.float32)
    unet_b = np.full((2, 4, 4), 0.15, np.float32)
    _write_case(tmp_path, "s01", gt_a, unet_a)
    _write_case(tmp_path, "s02", gt_b, unet_b)
    result = table.cohort_rows(str(tmp_path / "seg" / "*_muscle.nii.gz"), _maps(tmp_path), reference="gt",
                               label_names={1: "vastus", 2: "gracilis"})
    assert not result.failed
    got = {(case, row.name, row.source): row.mean for case, row in result.rows}
    assert len(got) == 8
    assert got[("s01", "vastus", "gt")] == pytest.approx(0.10, abs=1e-6)
    assert got[("s01", "vastus", "unet")] == pytest.approx(0.12 + 0.38 / 8, abs=1e-6)
    assert got[("s01", "gracilis", "unet")] == pytest.approx(0.32, abs=1e-6)
    assert got[("s02", "gracilis", "unet")] == pytest.approx(0.15, abs=1e-6)
    volume = {row.name: row.volume_ml for _, row in result.rows if row.source == "gt"}
    assert volume["vastus"] == pytest.approx(2 * 4 * 3.0 / 1000)  # 8 voxels of 3 mm^3
    out = table.write_cohort_csv(result, tmp_path / "table.csv")
    with open(out, newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0][0] == "case" and lines[0][1:] == stats.table_header(True)
    assert [line[0] for line in lines[1:]] == ["s01"] * 4 + ["s02"] * 4


def test_reference_on_another_grid_is_resampled_by_world_coordinates(tmp_path):
    gt = np.where(_labels() == 1, 0.10, 0.40).astype(np.float32)  # constant on 2x2 blocks: exact when coarsened
    _write_case(tmp_path, "s01", gt, gt, coarse_gt=True)
    result = table.cohort_rows(str(tmp_path / "seg" / "*_muscle.nii.gz"), _maps(tmp_path), reference="gt")
    assert not result.failed
    means = {(row.label, row.source): row.mean for _, row in result.rows}
    # By hand: fine voxel centres 0..3 sit at coarse coordinates -0.25, 0.25, 0.75, 1.25 (clamped at the edge), so
    # ROI 1's four in-plane voxels get bilinear values 0.1, 0.175, 0.175 and 0.23125 of the 0.1 / 0.4 blocks.
    assert means[(1, "gt")] == pytest.approx((0.1 + 0.175 + 0.175 + 0.23125) / 4, abs=1e-5)
    assert means[(1, "unet")] == pytest.approx(0.10, abs=1e-6)  # on the labels' grid: not resampled


def test_a_case_with_a_missing_or_misplaced_map_is_reported_and_skipped(tmp_path):
    gt = np.full((2, 4, 4), 0.2, np.float32)
    _write_case(tmp_path, "s01", gt, gt)
    _write_case(tmp_path, "s02", gt, gt)
    (tmp_path / "pred" / "s02_t2w_sff.nii.gz").unlink()
    io.write_nifti(io.Volume.from_array(gt, (3.0, 1.0, 1.0), origin=(0.0, 40.0, 0.0)),
                   tmp_path / "pred" / "s03_t2w_sff.nii.gz")
    io.write_nifti(io.Volume.from_array(_labels(), (3.0, 1.0, 1.0)), tmp_path / "seg" / "s03_muscle.nii.gz")
    io.write_nifti(io.Volume.from_array(gt, (3.0, 1.0, 1.0)), tmp_path / "dixon" / "s03_sff.nii.gz")
    result = table.cohort_rows(str(tmp_path / "seg" / "*_muscle.nii.gz"), _maps(tmp_path), reference="gt")
    assert {case for case, _ in result.rows} == {"s01"}
    reasons = dict(result.failed)
    assert "does not exist" in reasons["s02"]
    assert "does not cover the same region" in reasons["s03"]


def test_patterns_are_checked():
    with pytest.raises(ValueError, match="exactly one"):
        table.match_cases("seg/*/*_muscle.nii.gz")
    with pytest.raises(ValueError, match="NAME=PATTERN"):
        table.parse_map_option("gt=dixon/sff.nii.gz")
    assert table.parse_map_option("gt=D/{case}_sff.nii.gz") == ("gt", "D/{case}_sff.nii.gz")


def test_agreement_summary_against_hand_computed_bias_icc_and_r(tmp_path):
    rows = []
    gt_means = [0.10, 0.20, 0.30, 0.40]
    offsets = [0.01, 0.03, 0.02, 0.02]
    for case, (g, d) in enumerate(zip(gt_means, offsets, strict=True)):
        for source, mean in (("gt", g), ("unet", g + d)):
            rows.append((f"s{case}", stats.RoiRow(1, "vastus", source, 10, 1.0, mean, mean, 0.0, 0.0, mean, mean,
                                                  None, None)))
    summary = table.agreement_summary(table.CohortRows(rows=rows), "gt")
    overall = next(entry for entry in summary if entry["roi"] == "all ROIs")
    diffs = np.array(offsets) * 100
    assert overall["n"] == 4
    assert overall["bias_pp"] == pytest.approx(diffs.mean())
    assert overall["loa_high_pp"] == pytest.approx(diffs.mean() + 1.96 * diffs.std(ddof=1))
    assert overall["pearson_r"] == pytest.approx(np.corrcoef(np.array(gt_means) + offsets, gt_means)[0, 1])
    assert 0.9 < overall["icc_a1"] < 1.0  # a small bias against a 30 pp spread: high but below 1
    out = table.write_summary_csv(summary, tmp_path / "summary.csv")
    assert out.read_text().splitlines()[0] == ",".join(table.SUMMARY_COLUMNS)
    figure = table.bland_altman_figure(table.CohortRows(rows=rows), "gt", tmp_path / "ba.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_icc_known_answer_shrout_fleiss_1979():
    # Shrout & Fleiss (1979), Table 2: six targets rated by four judges; ICC(2,1) = 0.29.
    ratings = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    assert stats.icc_absolute_agreement(ratings) == pytest.approx(0.29, abs=0.005)
    assert math.isnan(stats.icc_absolute_agreement([[1, 2]]))


@pytest.mark.parametrize("name, text", [
    ("names.json", json.dumps({"0": "background", "1": "vastus lateralis", "2": "gracilis"})),
    ("names.json", json.dumps([{"index": 1, "name": "vastus lateralis"}, {"label": 2, "name": "gracilis"}])),
    ("names.csv", "index,name\n1,vastus lateralis\n2,gracilis\n"),
    ("names.tsv", "label\tname\n1\tvastus lateralis\n2\tgracilis\n"),
    ("itksnap.txt", '# ITK-SNAP Label Description File\n    0     0    0    0        0  0  0    "Clear Label"\n'
                    '    1   255    0    0        1  1  1    "vastus lateralis"\n'
                    '    2     0  255    0        1  1  1    "gracilis"\n'),
    ("slicer.ctbl", "# Color table file\n# 3 values\n0 Background 0 0 0 0\n1 vastus_lateralis 230 128 77 255\n"
                    "2 gracilis 128 174 128 255\n"),
])
def test_label_name_sidecars(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    names = read_label_names(path)
    assert names[2] == "gracilis" and names[1].replace("_", " ") == "vastus lateralis" and 0 not in names


def test_written_sidecar_is_the_json_the_reader_reads(tmp_path):
    from napari_sff.io.label_names import write_label_names

    path = write_label_names(tmp_path / "names.json", {1: "vastus lateralis", 12: "edge (mixed tissues)"})
    assert json.loads(path.read_text()) == {"1": "vastus lateralis", "12": "edge (mixed tissues)"}
    assert read_label_names(path) == {1: "vastus lateralis", 12: "edge (mixed tissues)"}


def test_unreadable_sidecar_is_one_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("vastus 1\n")
    with pytest.raises(LabelNamesError, match="line 1 does not start with a label id"):
        read_label_names(path)


def test_roi_stats_command_writes_table_summary_and_figure(tmp_path, capsys):
    from napari_sff import cli

    gt = np.where(_labels() == 1, 0.10, 0.30).astype(np.float32)
    for case, offset in (("s01", 0.01), ("s02", 0.03), ("s03", 0.02)):
        _write_case(tmp_path, case, gt + offset / 3, gt + offset)
    (tmp_path / "names.json").write_text(json.dumps({"1": "vastus", "2": "gracilis"}))
    maps = _maps(tmp_path)
    argv = ["roi-stats", "--labels", str(tmp_path / "seg" / "*_muscle.nii.gz"), "--map", f"gt={maps['gt']}",
            "--map", f"unet={maps['unet']}", "--reference", "gt", "--label-names", str(tmp_path / "names.json"),
            "-o", str(tmp_path / "out" / "table.csv")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "12 rows from 3 case(s)" in printed and "unet vs gt over 6 ROIs: bias" in printed
    with open(tmp_path / "out" / "table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["case"] for row in rows} == {"s01", "s02", "s03"}
    assert {row["name"] for row in rows} == {"vastus", "gracilis"} and {row["source"] for row in rows} == {"gt", "unet"}
    s02 = next(row for row in rows if row["case"] == "s02" and row["name"] == "vastus" and row["source"] == "unet")
    assert float(s02["mean [%]"]) == pytest.approx(13.0, abs=0.05)  # 0.10 + 0.03, one decimal in percent
    summary = list(csv.DictReader(open(tmp_path / "out" / "table_summary.csv", newline="")))
    overall = next(row for row in summary if row["roi"] == "all ROIs")
    # By hand: unet - gt = offset * 2/3 in every ROI: 0.667, 2.0 and 1.333 pp, twice each.
    assert float(overall["bias_pp"]) == pytest.approx(np.mean([0.01, 0.03, 0.02]) * 2 / 3 * 100, abs=1e-3)
    assert (tmp_path / "out" / "table_bland_altman.png").exists()
    assert cli.main(argv) == 2  # outputs exist: refused without --overwrite
    assert "exists" in capsys.readouterr().err


def test_roi_stats_command_leaves_the_roi_rim_out_on_request(tmp_path, capsys):
    """--exclude-rim 1: of ROI 1 (2 x 2 voxels in the image's corner, on 2 slices) only the corner voxel of
    each slice has no neighbour of another label (the image edge is none), so the map's mean is theirs."""
    from napari_sff import cli

    gt = np.where(_labels() == 1, 0.10, 0.30).astype(np.float32)
    unet = gt + 0.02
    unet[0, 0, 0] = 0.50
    _write_case(tmp_path, "s01", gt, unet)
    maps = _maps(tmp_path)
    argv = ["roi-stats", "--labels", str(tmp_path / "seg" / "*_muscle.nii.gz"), "--map", f"gt={maps['gt']}",
            "--map", f"unet={maps['unet']}", "--reference", "gt", "--exclude-rim", "1",
            "-o", str(tmp_path / "table.csv")]
    assert cli.main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "table.csv", newline="")))
    roi1 = next(row for row in rows if row["label"] == "1" and row["source"] == "unet")
    assert float(roi1["mean [%]"]) == pytest.approx(100 * (0.50 + 0.12) / 2, abs=0.05)
    assert roi1["voxels"] == "2" and roi1["excluded voxels (non-finite or rim)"] == "6"
    assert cli.main([*argv[:-2], "--exclude-rim", "-1", "-o", str(tmp_path / "other.csv")]) == 2
    assert "--exclude-rim -1" in capsys.readouterr().err
