"""Dixon fat + water -> SFF: known answers, the noise floor, geometry checks, vendor pairing, CLI and widget."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_sff import cli, dixon, io
from napari_sff.dixon import DixonError, compute_fat_fraction, dixon_volume, fat_fraction, pair_dixon


# ------------------------------------------------------------------------------------------------ known answers
def test_three_parts_fat_one_part_water_is_three_quarters():
    sff = fat_fraction(np.full((2, 3, 4), 3.0), np.full((2, 3, 4), 1.0))
    assert sff.dtype == np.float32
    np.testing.assert_array_equal(sff, np.float32(0.75))


def test_integer_scanner_images_give_float32_fractions():
    sff = fat_fraction(np.array([[3, 300]], np.uint16), np.array([[1, 700]], np.uint16), noise_floor=0.0)
    assert sff.dtype == np.float32
    np.testing.assert_array_equal(sff, np.array([[0.75, 0.3]], np.float32))


def test_no_signal_is_zero_even_without_a_floor():
    sff = fat_fraction(np.zeros((2, 2)), np.zeros((2, 2)), noise_floor=0.0)
    np.testing.assert_array_equal(sff, 0.0)
    assert np.isfinite(sff).all()


def test_exact_fractions_on_a_hand_built_array():
    fat = np.array([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 9.0], [5.0, 1.0]]])
    water = np.array([[[3.0, 2.0], [1.0, 0.0]], [[4.0, 1.0], [15.0, 7.0]]])
    expected = np.array([[[0.25, 0.5], [0.75, 1.0]], [[0.0, 0.9], [0.25, 0.125]]], np.float32)
    np.testing.assert_array_equal(fat_fraction(fat, water, noise_floor=0.0), expected)


def test_relative_noise_floor_zeroes_voxels_at_or_below_a_tenth_of_p99():
    # F + W = 100, 100, 5, 10: the 99th percentile is 100, the default floor 0.1 of it = 10.
    fat, water = np.array([90.0, 25.0, 2.0, 10.0]), np.array([10.0, 75.0, 3.0, 0.0])
    result = compute_fat_fraction(fat, water)
    np.testing.assert_allclose(result.threshold, 10.0)
    np.testing.assert_array_equal(result.sff, np.array([0.9, 0.25, 0.0, 0.0], np.float32))
    assert result.floor_fraction == 0.5
    # a lower floor (4) keeps both faint voxels: 2 / 5 and 10 / 10
    np.testing.assert_array_equal(fat_fraction(fat, water, noise_floor=0.04),
                                  np.array([0.9, 0.25, 0.4, 1.0], np.float32))


def test_absolute_noise_floor_is_in_signal_units():
    fat, water = np.array([2.0, 10.0, 60.0]), np.array([3.0, 0.0, 40.0])
    np.testing.assert_array_equal(fat_fraction(fat, water, noise_floor=5.0, floor_percentile=None),
                                  np.array([0.0, 1.0, 0.6], np.float32))


def test_nan_inf_and_negative_inputs_give_the_documented_values():
    # NaN / inf: no signal; negative: 0 signal (magnitude images cannot be negative).
    fat = np.array([np.nan, -2.0, 4.0, np.inf, 1.0, np.nan])
    water = np.array([1.0, 2.0, -1.0, 1.0, np.nan, np.nan])
    sff = fat_fraction(fat, water, noise_floor=0.0)
    np.testing.assert_array_equal(sff, np.array([0.0, 0.0, 1.0, 0.0, 1.0, 0.0], np.float32))


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(DixonError, match="shape"):
        fat_fraction(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(DixonError, match="magnitude"):
        fat_fraction(np.zeros(3, complex), np.zeros(3))
    with pytest.raises(DixonError, match="noise floor"):
        fat_fraction(np.zeros(3), np.zeros(3), noise_floor=-1)


def _smooth_field(shape, seed=0):
    """A smooth positive receive-coil-like field: 1000 x (1 +- 0.3), slowly varying over the volume."""
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, 3)
    return 1000.0 * (1 + 0.3 * np.sin(2 * axes[1] + phase[0]) * np.cos(1.5 * axes[2] + phase[1])
                     + 0.05 * np.sin(axes[0] + phase[2]))


def test_simulated_dixon_pair_round_trips_the_phantom_sff():
    from napari_sff.simulate import simulate_case

    case = simulate_case("thigh", size=48, n_slices=4, seed=1)
    signal = _smooth_field(case.sff.shape)
    sff = case.sff.astype(np.float64)
    fat, water = (sff * signal).astype(np.float32), ((1 - sff) * signal).astype(np.float32)
    # Noise free with S >= 650 everywhere: nothing is in the floor (0.1 x P99 <= 130) and F / (F + W) = SFF up to
    # float32 rounding (two casts, a sum and a division: a few ulps of 1, i.e. < 1e-6).
    result = compute_fat_fraction(fat, water)
    assert result.floor_fraction == 0.0
    np.testing.assert_allclose(result.sff, case.sff, atol=1e-6, rtol=0)
    assert 0.05 < float(case.sff.mean()) < 0.95  # the phantom has fat and lean tissue, so the test sees both


def test_magnitude_noise_in_air_falls_below_the_default_floor():
    from napari_sff.simulate import simulate_case

    case = simulate_case("thigh", size=48, n_slices=4, seed=1)
    rng = np.random.default_rng(5)
    body = case.sff > 0.01
    signal = _smooth_field(case.sff.shape) * body
    sigma = 10.0  # SNR 100 of the bright tissue
    noisy = [np.abs(part * signal + rng.normal(0, sigma, body.shape) + 1j * rng.normal(0, sigma, body.shape))
             for part in (case.sff, 1 - case.sff)]
    sff = fat_fraction(*noisy)
    # Air: F + W ~ 2.5 sigma = 25, far below the floor 0.1 x P99 ~ 130: (almost) all of it is 0.
    assert np.mean(sff[~body] == 0) > 0.999
    # Body: error propagation gives an SD of at most sigma / S = 0.01 per voxel, so a median |error| of ~0.0067
    # plus the Rician bias of faint fat (< 0.006 for SFF >= 0.01): 0.01 bounds it.
    assert np.median(np.abs(sff[body] - case.sff[body])) < 0.01


# ------------------------------------------------------------------------------------------------- geometry
def test_same_grid_gives_an_sff_volume_with_the_fat_geometry(tmp_path):
    affine = np.array([[-1.5, 0, 0, 10.0], [0, 1.5, 0, -20.0], [0, 0, 5.0, 30.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.full((6, 5, 3), 3, np.int16), affine), tmp_path / "fat.nii.gz")
    nib.save(nib.Nifti1Image(np.full((6, 5, 3), 1, np.int16), affine), tmp_path / "water.nii.gz")
    fat, water = io.read_nifti(tmp_path / "fat.nii.gz"), io.read_nifti(tmp_path / "water.nii.gz")
    water.affine = water.affine + 1e-5  # decimal rounding of DICOM positions: still one grid
    volume = dixon_volume(fat, water)
    np.testing.assert_array_equal(volume.affine, fat.affine)
    np.testing.assert_array_equal(volume.array, np.float32(0.75))
    assert volume.source["derived_from"] == str((tmp_path / "fat.nii.gz").resolve())
    assert volume.source["dixon"]["kind"] == dixon.DIXON_SFF_KIND
    assert dixon.is_measured_sff(volume)


def test_different_matrix_and_spacing_is_refused_naming_both():
    fat = io.Volume.from_array(np.ones((4, 8, 8)), (5.0, 1.0, 1.0))
    water = io.Volume.from_array(np.ones((4, 6, 6)), (5.0, 1.5, 1.5))
    with pytest.raises(DixonError) as error:
        dixon_volume(fat, water)
    message = str(error.value)
    assert "\n" not in message
    assert "fat is 4 × 8 × 8 voxels of 5 × 1 × 1 mm" in message
    assert "water is 4 × 6 × 6 voxels of 5 × 1.5 × 1.5 mm" in message
    assert "resample one onto the other" in message


def test_same_matrix_at_another_position_is_refused():
    fat = io.Volume.from_array(np.ones((4, 8, 8)), (5.0, 1.0, 1.0))
    water = io.Volume.from_array(np.ones((4, 8, 8)), (5.0, 1.0, 1.0), origin=(0.0, 2.0, 0.0))
    with pytest.raises(DixonError, match=r"voxels up to 2 mm apart; resample"):
        dixon_volume(fat, water)


# -------------------------------------------------------------------------------------------------- pairing
def series(number, description, image_type, *, study="1.2.3", frame="1.2.3.9", uid=None):
    """One series' DICOM metadata as the DICOM reader puts it into Volume.source["dicom"]."""
    return {"series_number": number, "series_description": description, "image_type": image_type,
            "series_uid": uid or f"1.2.3.{number}", "study_uid": study, "frame_of_reference_uid": frame}


# Real-world combinations (see the vendor table in napari_sff.dixon.vendors): (series, expected (fat, water) numbers).
VENDOR_STUDIES = {
    "Siemens syngo VIBE Dixon": ([
        series(5, "t1_vibe_dixon_tra_opp", ("ORIGINAL", "PRIMARY", "M", "OUT_PHASE", "NORM", "DIS3D")),
        series(6, "t1_vibe_dixon_tra_in", ("ORIGINAL", "PRIMARY", "M", "IN_PHASE", "NORM", "DIS3D")),
        series(7, "t1_vibe_dixon_tra_F", ("DERIVED", "PRIMARY", "M", "FAT", "NORM", "DIS3D")),
        series(8, "t1_vibe_dixon_tra_W", ("DERIVED", "PRIMARY", "M", "WATER", "NORM", "DIS3D")),
        series(2, "t2_tse_fs_tra", ("ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D")),
    ], [(7, 8)]),
    "Siemens XA (Vida) Dixon": ([
        series(11, "wholebody_t1_vibe_dixon_tra_mbh_dyn_W", "DERIVED\\PRIMARY\\DIXON\\WATER"),
        series(12, "wholebody_t1_vibe_dixon_tra_mbh_dyn_F", "DERIVED\\PRIMARY\\DIXON\\FAT"),
        series(13, "wholebody_t1_vibe_dixon_tra_mbh_dyn_opp", "DERIVED\\PRIMARY\\DIXON\\OPP_PHASE"),
        series(14, "wholebody_t1_vibe_dixon_tra_mbh_dyn_in", "DERIVED\\PRIMARY\\DIXON\\IN_PHASE"),
    ], [(12, 11)]),
    "Siemens, image type without Dixon values (description suffix decides)": ([
        series(21, "t2_tse_dixon_tra_384_3mm_W", ("ORIGINAL", "PRIMARY", "M", "ND")),
        series(22, "t2_tse_dixon_tra_384_3mm_F", ("ORIGINAL", "PRIMARY", "M", "ND")),
    ], [(22, 21)]),
    "GE LAVA-Flex": ([
        series(700, "WATER: Ax LAVA-Flex", ("DERIVED", "PRIMARY", "DIXON", "WATER", "MAGNITUDE")),
        series(701, "FAT: Ax LAVA-Flex", ("DERIVED", "PRIMARY", "DIXON", "FAT", "MAGNITUDE")),
        series(702, "InPhase: Ax LAVA-Flex", ("DERIVED", "PRIMARY", "DIXON", "IN_PHASE")),
        series(703, "OutPhase: Ax LAVA-Flex", ("DERIVED", "PRIMARY", "DIXON", "OUT_PHASE")),
    ], [(701, 700)]),
    "GE without image type (description prefix decides)": ([
        series(4, "WATER: Cor T2 FLEX", None),
        series(5, "FAT: Cor T2 FLEX", None),
        series(6, "InPhase: Cor T2 FLEX", None),
    ], [(5, 4)]),
    "Philips mDIXON classic, one description for every type": ([
        series(601, "mDIXON TSE", ("DERIVED", "PRIMARY", "W", "W", "DERIVED")),
        series(602, "mDIXON TSE", ("DERIVED", "PRIMARY", "F", "F", "DERIVED")),
        series(603, "mDIXON TSE", ("DERIVED", "PRIMARY", "IP", "IP", "DERIVED")),
        series(604, "mDIXON TSE", ("DERIVED", "PRIMARY", "OP", "OP", "DERIVED")),
        series(605, "mDIXON TSE", ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")),
    ], [(602, 601)]),
    "Philips R12 enhanced frame types, mDIXON Quant fat-fraction map left out": ([
        series(901, "mDIXON Quant", ("DERIVED", "PRIMARY", "MIXED", "WATER")),
        series(902, "mDIXON Quant", ("DERIVED", "PRIMARY", "MIXED", "FAT")),
        series(903, "mDIXON Quant", ("DERIVED", "PRIMARY", "FF", "FF", "DERIVED")),
        series(904, "mDIXON Quant", ("DERIVED", "PRIMARY", "MIXED", "OUT_OF_PHASE")),
    ], [(902, 901)]),
    "Philips source echoes with site descriptions": ([
        series(301, "sWIP T1 mDIXON water", ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")),
        series(302, "sWIP T1 mDIXON fat", ("ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE")),
    ], [(302, 301)]),
    "two Dixon acquisitions in one study (pre / post contrast) pair by description": ([
        series(5, "t1_vibe_dixon_tra_W", "DERIVED\\PRIMARY\\DIXON\\WATER"),
        series(6, "t1_vibe_dixon_tra_F", "DERIVED\\PRIMARY\\DIXON\\FAT"),
        series(15, "t1_vibe_dixon_tra_post_F", "DERIVED\\PRIMARY\\DIXON\\FAT"),
        series(16, "t1_vibe_dixon_tra_post_W", "DERIVED\\PRIMARY\\DIXON\\WATER"),
    ], [(6, 5), (15, 16)]),
    "fat and water of different studies never pair": ([
        series(5, "t1_vibe_dixon_tra_W", "DERIVED\\PRIMARY\\DIXON\\WATER", study="1.2.3"),
        series(6, "t1_vibe_dixon_tra_F", "DERIVED\\PRIMARY\\DIXON\\FAT", study="1.2.4"),
    ], []),
    "fat and water of different frames of reference never pair": ([
        series(5, "t1_vibe_dixon_tra_W", "DERIVED\\PRIMARY\\DIXON\\WATER", frame="1.9.1"),
        series(6, "t1_vibe_dixon_tra_F", "DERIVED\\PRIMARY\\DIXON\\FAT", frame="1.9.2"),
    ], []),
    "one series with fat and water frames, split by the reader": ([
        series(9, "t1_dixon", ("DERIVED", "PRIMARY", "DIXON", "WATER"), uid="1.2.3.99"),
        series(9, "t1_dixon", ("DERIVED", "PRIMARY", "DIXON", "FAT"), uid="1.2.3.99"),
    ], [(9, 9)]),
    "fat suppression is not a fat image": ([
        series(3, "T1 FAT SAT", ("ORIGINAL", "PRIMARY", "M", "ND")),
        series(4, "t2_tse_tra_water", ("ORIGINAL", "PRIMARY", "M", "ND")),
    ], []),
}


@pytest.mark.parametrize("study", list(VENDOR_STUDIES))
def test_pairing_finds_fat_and_water_of_one_acquisition(study):
    candidates, expected = VENDOR_STUDIES[study]
    pairs = pair_dixon(candidates)
    got = [(p.fat["series_number"], p.water["series_number"]) for p in pairs]
    assert got == expected
    for pair in pairs:
        assert dixon.role_from_image_type(pair.fat["image_type"]) in ("fat", None)


def test_pairing_reads_volumes_and_refuses_different_matrices():
    def volume(shape, info):
        vol = io.Volume.from_array(np.zeros(shape), (3.0, 1.0, 1.0))
        vol.source["dicom"] = info
        return vol

    water = volume((4, 8, 8), series(5, "t1_vibe_dixon_tra_W", "DERIVED\\PRIMARY\\DIXON\\WATER"))
    fat = volume((4, 8, 8), series(6, "t1_vibe_dixon_tra_F", "DERIVED\\PRIMARY\\DIXON\\FAT"))
    small_fat = volume((4, 6, 6), series(7, "t1_vibe_dixon_tra_F", "DERIVED\\PRIMARY\\DIXON\\FAT"))
    pairs = pair_dixon([water, small_fat, fat])
    assert len(pairs) == 1 and pairs[0].fat is fat and pairs[0].water is water
    assert pairs[0].fat_by == "image_type"
    assert pair_dixon([water, small_fat]) == []
    computed = dixon_volume(fat, water)  # a computed SFF map carries the fat's DICOM metadata, yet is no fat image
    assert pair_dixon([computed, water]) == []


def test_layer_names_pair_when_there_is_no_dicom_metadata():
    names = [{"name": n} for n in ("t2w", "leg_fat", "leg_water", "synthetic_thigh_sff", "leg_in")]
    pairs = pair_dixon(names)
    assert [(p.fat["name"], p.water["name"], p.fat_by) for p in pairs] == [("leg_fat", "leg_water", "name")]


# ------------------------------------------------------------------------------------------------------ CLI
@pytest.fixture
def dixon_files(tmp_path):
    affine = np.array([[-1.2, 0, 0, 10.0], [0, 1.2, 0, -20.0], [0, 0, 4.0, 30.0], [0, 0, 0, 1]])
    fat = np.zeros((10, 8, 3), np.int16)
    water = np.zeros((10, 8, 3), np.int16)
    fat[2:8, 2:6] = 300
    water[2:8, 2:6] = 100
    paths = tmp_path / "dixon_F.nii.gz", tmp_path / "dixon_W.nii.gz"
    for path, data in zip(paths, (fat, water), strict=True):
        nib.save(nib.Nifti1Image(data, affine), path)
    return paths


def test_cli_writes_the_sff_on_the_fat_grid(dixon_files, tmp_path, capsys):
    fat_path, water_path = dixon_files
    out = tmp_path / "sff.nii.gz"
    assert cli.main(["dixon", str(fat_path), str(water_path), "-o", str(out)]) == 0
    written, source = nib.load(out), nib.load(fat_path)
    np.testing.assert_array_equal(written.affine, source.affine)
    assert written.get_data_dtype() == np.float32
    data = np.asarray(written.dataobj)
    expected = np.zeros((10, 8, 3), np.float32)
    expected[2:8, 2:6] = 0.75
    np.testing.assert_array_equal(data, expected)
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert "3 × 8 × 10 voxels of 4 × 1.2 × 1.2 mm" in line  # display order S, P, L
    assert "70.0 % of voxels in the noise floor" in line  # 72 of 240 voxels hold signal
    assert str(out) in line


def test_cli_refuses_an_existing_output_and_an_input(dixon_files, tmp_path, capsys):
    fat_path, water_path = dixon_files
    out = tmp_path / "sff.nii.gz"
    out.write_bytes(b"keep me")
    assert cli.main(["dixon", str(fat_path), str(water_path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and err.count("\n") == 1
    assert out.read_bytes() == b"keep me"
    assert cli.main(["dixon", str(fat_path), str(water_path), "-o", str(out), "--overwrite"]) == 0
    assert nib.load(out).shape == (10, 8, 3)
    before = water_path.read_bytes()
    assert cli.main(["dixon", str(fat_path), str(water_path), "-o", str(water_path), "--overwrite"]) == 2
    assert "is an input" in capsys.readouterr().err
    assert water_path.read_bytes() == before


def test_cli_noise_floor_options(dixon_files, tmp_path, capsys):
    fat_path, water_path = dixon_files
    # F + W = 400 in the box: an absolute floor of 500 takes it all, one of 399 none of it
    for floor, expected in (("500", 0.0), ("399", 0.75)):
        out = tmp_path / f"sff_{floor}.nii.gz"
        args = ["dixon", str(fat_path), str(water_path), "-o", str(out), "--noise-floor", floor, "--absolute-floor"]
        assert cli.main(args) == 0
        assert float(np.asarray(nib.load(out).dataobj)[4, 4, 1]) == expected
    assert cli.main(["dixon", str(fat_path), "-o", str(tmp_path / "x.nii.gz")]) == 2
    assert "give the water image too" in capsys.readouterr().err


def test_cli_mismatched_grids_is_one_line(dixon_files, tmp_path, capsys):
    fat_path, _ = dixon_files
    other = tmp_path / "other_W.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((5, 4, 3), np.int16), np.diag([2.4, 2.4, 4.0, 1.0])), other)
    assert cli.main(["dixon", str(fat_path), str(other), "-o", str(tmp_path / "sff.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-sff dixon: error: fat and water images are on different grids")
    assert err.count("\n") == 1 and "resample" in err
    assert not (tmp_path / "sff.nii.gz").exists()


# --------------------------------------------------------------------------------------------------- widget
SCALE, TRANSLATE = (4.0, 1.5, 1.5), (12.0, -30.0, 40.0)


def run_widget(qtbot, widget):
    """Press Run and wait for the worker (the SFF is computed off the GUI thread)."""
    assert widget.run() is not None, "the widget did not start a run"
    # waitSignal(worker.finished) could miss a run that is over before it connects: wait on the state instead
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)


def _dixon_layers(viewer, shape=(4, 16, 16), names=("Series 7", "Series 8"), metadata=True):
    fat = np.zeros(shape, np.float32)
    water = np.zeros(shape, np.float32)
    fat[:, 4:12, 4:12], water[:, 4:12, 4:12] = 300.0, 100.0
    infos = [series(7, "t1_vibe_dixon_tra_F", ("DERIVED", "PRIMARY", "M", "FAT")),
             series(8, "t1_vibe_dixon_tra_W", ("DERIVED", "PRIMARY", "M", "WATER"))]
    layers = []
    for data, name, info in zip((fat, water), names, infos, strict=True):
        meta = {"nifti": {"dicom": info}} if metadata else {}
        layers.append(viewer.add_image(data, name=name, scale=SCALE, translate=TRANSLATE, metadata=meta))
    return layers


def test_widget_adds_a_placed_ground_truth_sff_layer(make_napari_viewer, qtbot, tmp_path):
    from napari_sff.widgets.dixon import DixonWidget, layer_name
    from napari_sff.widgets.predict import PredictWidget
    from napari_sff.widgets.roi_stats import RoiStatsWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.ones((4, 16, 16), np.float32), name="t2w", scale=SCALE, translate=TRANSLATE)
    in_phase = viewer.add_image(np.ones((4, 16, 16), np.float32), name="Series 6", scale=SCALE,
                                translate=TRANSLATE,
                                metadata={"nifti": {"dicom": series(6, "t1_vibe_dixon_tra_in", None)}})
    fat, water = _dixon_layers(viewer)
    _, widget = viewer.window.add_plugin_dock_widget("napari-sff", "Fat fraction from Dixon")
    assert isinstance(widget, DixonWidget)
    assert widget.fat.value is fat and widget.water.value is water  # paired by ImageType, not by name
    assert in_phase not in (widget.fat.value, widget.water.value)
    run_widget(qtbot, widget)
    assert layer_name("Series 7") == "SFF Dixon [Series 7]"
    layer = viewer.layers["SFF Dixon [Series 7]"]
    np.testing.assert_allclose(layer.scale, fat.scale)
    np.testing.assert_allclose(layer.translate, fat.translate)
    np.testing.assert_allclose(layer.affine.affine_matrix, fat.affine.affine_matrix)
    expected = np.zeros((4, 16, 16), np.float32)
    expected[:, 4:12, 4:12] = 0.75
    np.testing.assert_array_equal(layer.data, 100 * expected)  # the layer holds percent
    assert layer.colormap.name == io.SFF_COLORMAP and tuple(layer.contrast_limits) == (0.0, 100.0)
    state = {"metadata": layer.metadata, "scale": layer.scale, "translate": layer.translate, "rotate": layer.rotate}
    [saved] = io.write_layer(str(tmp_path / "dixon_sff.nii.gz"), layer.data, state)  # File > Save: fractions
    np.testing.assert_array_equal(io.read_nifti(saved).array, expected)
    assert layer.colorbar.visible
    assert layer.metadata["napari_sff"]["kind"] == dixon.DIXON_SFF_KIND
    assert viewer.layers.selection.active is layer
    count = len(viewer.layers)
    run_widget(qtbot, widget)  # a re-run updates the layer
    assert len(viewer.layers) == count

    _, predict = viewer.window.add_plugin_dock_widget("napari-sff", "Predict SFF")
    assert isinstance(predict, PredictWidget)
    assert predict.ground_truth.value is layer and predict.image.value is viewer.layers["t2w"]
    _, roi = viewer.window.add_plugin_dock_widget("napari-sff", "ROI statistics")
    assert isinstance(roi, RoiStatsWidget)
    assert roi.reference.value is layer
    assert layer not in [choice for _, choice in widget._choices()]  # never offered as a fat or water input


def test_widget_pairs_by_layer_name_without_dicom(make_napari_viewer):
    from napari_sff.widgets.dixon import DixonWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.ones((4, 16, 16), np.float32), name="knee_in", scale=SCALE, translate=TRANSLATE)
    water, fat = _dixon_layers(viewer, names=("knee_water", "knee_fat"), metadata=False)
    widget = DixonWidget(viewer)
    assert widget.fat.value is fat and widget.water.value is water  # by name, whatever the order


def test_widget_mismatched_layers_notify_and_add_nothing(make_napari_viewer, qtbot):
    from napari.utils.notifications import notification_manager

    from napari_sff.widgets.dixon import DixonWidget

    viewer = make_napari_viewer()
    fat, _ = _dixon_layers(viewer)
    small = viewer.add_image(np.ones((4, 8, 8), np.float32), name="small water", scale=(4.0, 3.0, 3.0))
    widget = DixonWidget(viewer)
    widget.fat.value, widget.water.value = fat, small
    start = len(notification_manager.records)
    count = len(viewer.layers)
    run_widget(qtbot, widget)
    assert len(viewer.layers) == count
    messages = [str(n.message) for n in notification_manager.records[start:]]
    assert any("different grids" in m and "resample one onto the other" in m for m in messages)


# -------------------------------------------------------------------------------------------- CLI on DICOM
@pytest.fixture
def dixon_study(tmp_path):
    """One folder as a Siemens VIBE Dixon visit leaves it: opp, in, F, W series (oblique), a T2w and a stray file."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dicom_factory import Study, oblique_orientation, write_series

    folder = tmp_path / "study"
    study = Study()
    box = np.zeros((3, 8, 10))
    box[:, 2:6, 3:8] = 1.0
    geometry = {"orientation": oblique_orientation(12.0, 5.0), "pixel_spacing": (1.5, 1.25), "slice_spacing": 4.0,
                "study": study}
    for number, suffix, token, value in ((5, "opp", "OUT_PHASE", 200), (6, "in", "IN_PHASE", 400),
                                         (7, "F", "FAT", 300), (8, "W", "WATER", 100)):
        write_series(folder, box * value, series_number=number, description=f"t1_vibe_dixon_tra_{suffix}",
                     image_type=("DERIVED", "PRIMARY", "M", token, "DIS3D", "DIXON"), prefix=f"s{number}_",
                     seed=number, **geometry)
    write_series(folder, box * 1000, series_number=3, description="t2_tse_tra", prefix="t2_", study=study)
    (folder / "notes.txt").write_text("not DICOM")
    return folder


def test_cli_pairs_fat_and_water_in_one_dicom_folder(dixon_study, tmp_path, capsys):
    out = tmp_path / "sff.nii.gz"
    assert cli.main(["dixon", str(dixon_study), "-o", str(out)]) == 0
    fat = io.read_volume(dixon_study, series="7")
    written = io.read_nifti(out)
    np.testing.assert_allclose(written.affine, fat.affine, atol=1e-6)
    np.testing.assert_array_equal(written.array, np.where(fat.array > 0, np.float32(0.75), np.float32(0)))
    assert "in the noise floor" in capsys.readouterr().out


def test_cli_explicit_series_in_one_folder_and_refuses_mixed_grids(dixon_study, tmp_path, capsys):
    out = tmp_path / "sff.nii.gz"
    assert cli.main(["dixon", str(dixon_study), "--fat-series", "7", "--water-series", "8", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.unique(io.read_nifti(out).array), np.array([0.0, 0.75], np.float32))
    # the T2w is on another (axial, 1 x 1 mm) grid than the fat series: a one-line refusal
    other = tmp_path / "other.nii.gz"
    assert cli.main(["dixon", str(dixon_study), "--fat-series", "7", "--water-series", "3", "-o", str(other)]) == 2
    err = capsys.readouterr().err
    assert "different grids" in err and err.count("\n") == 1 and "Doe" not in err and not other.exists()
    assert cli.main(["dixon", str(dixon_study), "--fat-series", "7", "-o", str(other)]) == 2
    assert "give both --fat-series and --water-series" in capsys.readouterr().err


def test_widget_offers_the_fat_and_water_of_a_dicom_study_opened_in_napari(make_napari_viewer, qtbot, dixon_study):
    from napari_sff.widgets.dixon import DixonWidget

    viewer = make_napari_viewer()
    viewer.open(str(dixon_study), plugin="napari-sff")
    names = {layer.name for layer in viewer.layers}
    assert {"7 t1_vibe_dixon_tra_F", "8 t1_vibe_dixon_tra_W", "5 t1_vibe_dixon_tra_opp"} <= names
    widget = DixonWidget(viewer)
    assert widget.fat.value.name == "7 t1_vibe_dixon_tra_F" and widget.water.value.name == "8 t1_vibe_dixon_tra_W"
    run_widget(qtbot, widget)
    layer = viewer.layers["SFF Dixon [7 t1_vibe_dixon_tra_F]"]
    fat = viewer.layers["7 t1_vibe_dixon_tra_F"]
    np.testing.assert_allclose(layer.affine.affine_matrix, fat.affine.affine_matrix)
    np.testing.assert_allclose(layer.rotate, fat.rotate)  # oblique: the residual rotation is kept
    np.testing.assert_array_equal(layer.data, np.where(np.asarray(fat.data) > 0, np.float32(75), 0))  # percent


def test_widget_without_layers_says_what_to_open(make_napari_viewer):
    from napari.utils.notifications import notification_manager

    from napari_sff.widgets.dixon import DixonWidget

    widget = DixonWidget(make_napari_viewer())
    start = len(notification_manager.records)
    assert widget.run() is None
    assert any("choose a fat and a water image layer" in str(n.message)
               for n in notification_manager.records[start:])
