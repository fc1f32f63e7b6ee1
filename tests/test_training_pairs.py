"""Own paired data for training: pairs on other grids, refusals, no cropping, subject splits, a resumable cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sff import io
from napari_sff.simulate import simulate_case
from training import data


def _grid(shape, spacing, origin=(0.0, 0.0, 0.0)) -> io.Volume:
    return io.Volume.from_array(np.zeros(shape, np.float32), spacing, origin)


def _world_ramp(volume: io.Volume) -> np.ndarray:
    """A map that is linear in world coordinates (P and L mm): any linear resampling reproduces it exactly."""
    from napari_sff.roi import volume_to_world

    index = np.indices(volume.array.shape).reshape(3, -1)
    world = (volume_to_world(volume) @ np.vstack([index, np.ones(index.shape[1])]))[:3]
    return (0.05 + 0.001 * world[1] + 0.0005 * world[2]).reshape(volume.array.shape).astype(np.float32)


@pytest.fixture(scope="module")
def thigh():
    return simulate_case("thigh", size=64, n_slices=6, seed=5)


def _spacing(case) -> tuple[float, float, float]:
    return (8.0, *case.spacing[1:])  # thick slices: the slice axis is axis 0, as on real T2w


def test_sff_on_another_grid_lands_where_resampling_by_hand_puts_it(tmp_path, thigh):
    spacing = _spacing(thigh)
    t2w = io.Volume.from_array(thigh.t2w, spacing)
    io.write_nifti(t2w, tmp_path / "c1_t2w.nii.gz")
    # The reference on a 2x coarser in-plane grid over the same box (voxel edges coincide).
    coarse = _grid((6, 32, 32), (8.0, 2 * spacing[1], 2 * spacing[2]),
                   origin=(0.0, 0.5 * spacing[1], 0.5 * spacing[2]))
    coarse.array = _world_ramp(coarse)
    io.write_nifti(coarse, tmp_path / "c1_sff.nii.gz")
    (pair,) = data.find_pairs(tmp_path)
    aligned = data.load_pair(pair)
    expected = _world_ramp(t2w)  # by hand: the same linear function evaluated at the T2w voxel centres
    inner = (slice(None), slice(2, -2), slice(2, -2))  # the edge half-voxel repeats the edge value
    np.testing.assert_allclose(aligned.sff[inner], expected[inner], atol=1e-5)
    assert aligned.coverage == pytest.approx(1.0)


def test_fat_water_pairs_become_sff_and_a_pair_elsewhere_is_refused(tmp_path, thigh):
    spacing = _spacing(thigh)
    io.write_nifti(io.Volume.from_array(thigh.t2w, spacing), tmp_path / "a_t2w.nii.gz")
    signal = 1000.0
    io.write_nifti(io.Volume.from_array(thigh.sff * signal, spacing), tmp_path / "a_fat.nii.gz")
    io.write_nifti(io.Volume.from_array((1 - thigh.sff) * signal, spacing), tmp_path / "a_water.nii.gz")
    io.write_nifti(io.Volume.from_array(thigh.t2w, spacing), tmp_path / "b_t2w.nii.gz")
    io.write_nifti(io.Volume.from_array(thigh.sff, spacing, origin=(0.0, 300.0, 0.0)), tmp_path / "b_sff.nii.gz")
    pairs = {pair.case: pair for pair in data.find_pairs(tmp_path)}
    assert pairs["a"].fat is not None and pairs["a"].sff is None
    aligned = data.load_pair(pairs["a"])
    np.testing.assert_allclose(aligned.sff, thigh.sff, atol=1e-5)  # F / (F + W) with F + W = 1000 everywhere
    with pytest.raises(data.PairError, match=r"case b: the SFF covers only 0 % of the T2w body"):
        data.load_pair(pairs["b"])
    cache = data.build_slice_cache(tmp_path, tmp_path / "cache", size=64, seed=0)
    info = json.loads((cache / data.CACHE_INFO).read_text())
    assert list(info["refused"]) == ["b"] and "covers only 0 %" in info["refused"]["b"]


def test_a_512_matrix_is_resampled_not_cropped(tmp_path):
    image = np.zeros((3, 512, 512), np.float32)
    image[:, 200:312, 200:312] = 100.0
    image[:, :16, :16] = image[:, -16:, -16:] = 900.0  # anatomy at the very corners of the field of view
    sff = np.zeros_like(image)
    sff[:, -16:, -16:] = 0.9
    io.write_nifti(io.Volume.from_array(image, (6.0, 0.7, 0.7)), tmp_path / "big_t2w.nii.gz")
    io.write_nifti(io.Volume.from_array(sff, (6.0, 0.7, 0.7)), tmp_path / "big_sff.nii.gz")
    cache = data.build_slice_cache(tmp_path, tmp_path / "cache", size=256, seed=0, val_fraction=0, test_fraction=0)
    info = json.loads((cache / data.CACHE_INFO).read_text())
    assert info["splits"]["train"]["in_plane_spacing_mm"] == [pytest.approx(1.4), pytest.approx(1.4)]
    raw, truth = data.open_split(cache, "train")
    assert raw[0].shape == (256, 256)
    # The 16-pixel corner blocks are 8 pixels at 1.4 mm: their inner 4 x 4 keep the value (the anti-aliasing
    # blur reaches about one output pixel into them).
    assert raw[0][2:6, 2:6].mean() == pytest.approx(900.0, rel=1e-3)
    assert raw[0][-6:-2, -6:-2].mean() == pytest.approx(900.0, rel=1e-3)
    assert truth[0][-6:-2, -6:-2].mean() == pytest.approx(0.9, rel=1e-3)


def test_cases_of_one_subject_share_a_split(tmp_path, thigh):
    spacing = _spacing(thigh)
    for subject in range(6):
        for visit in (1, 2):
            case = f"sub{subject:02d}_visit{visit}"
            io.write_nifti(io.Volume.from_array(thigh.t2w, spacing), tmp_path / f"{case}_t2w.nii.gz")
            io.write_nifti(io.Volume.from_array(thigh.sff, spacing), tmp_path / f"{case}_sff.nii.gz")
    cache = data.build_slice_cache(tmp_path, tmp_path / "cache", size=64, seed=3,
                                   subject_regex=r"(?P<subject>sub\d+)_visit")
    info = json.loads((cache / data.CACHE_INFO).read_text())
    split_of = {case: split for split, content in info["splits"].items() for case in content["cases"]}
    for subject in range(6):
        assert split_of[f"sub{subject:02d}_visit1"] == split_of[f"sub{subject:02d}_visit2"]
    assert all(info["splits"][split]["subjects"] for split in data.SPLITS)
    with pytest.raises(ValueError, match="does not match case"):
        data.subjects_of(["sub01_visit1", "other"], r"(?P<subject>sub\d+)_")


def test_an_interrupted_build_resumes_and_other_settings_are_refused(tmp_path, thigh):
    spacing = _spacing(thigh)
    folder = tmp_path / "pairs"
    for case in ("c1", "c2", "c3"):
        io.write_nifti(io.Volume.from_array(thigh.t2w, spacing), folder / f"{case}_t2w.nii.gz")
        io.write_nifti(io.Volume.from_array(thigh.sff, spacing), folder / f"{case}_sff.nii.gz")
    built = []
    cache = data.build_slice_cache(folder, tmp_path / "cache", size=64, progress=built.append)
    first = (cache / data.CACHE_INFO).read_text()
    assert sorted(record["case"] for record in built) == ["c1", "c2", "c3"]
    # A kill after case c2 was written but before its record and the index: only c2 is redone.
    (cache / "cases" / "c2.json").unlink()
    (cache / data.CACHE_INFO).unlink()
    built.clear()
    data.build_slice_cache(folder, cache, size=64, progress=built.append)
    assert [record["case"] for record in built] == ["c2"]
    assert (cache / data.CACHE_INFO).read_text() == first
    with pytest.raises(ValueError, match="built with other settings"):
        data.build_slice_cache(folder, cache, size=32)


def test_a_shifted_reference_is_flagged_and_registration_fixes_it(tmp_path, thigh):
    spacing = _spacing(thigh)
    io.write_nifti(io.Volume.from_array(thigh.t2w, spacing), tmp_path / "ok_t2w.nii.gz")
    io.write_nifti(io.Volume.from_array(thigh.sff, spacing), tmp_path / "ok_sff.nii.gz")
    io.write_nifti(io.Volume.from_array(thigh.t2w, spacing), tmp_path / "moved_t2w.nii.gz")
    # The subject moved by 5 pixels between the T2w and the Dixon acquisition: same header, shifted content.
    io.write_nifti(io.Volume.from_array(np.roll(thigh.sff, 5, axis=2), spacing), tmp_path / "moved_sff.nii.gz")
    pairs = {pair.case: pair for pair in data.find_pairs(tmp_path)}
    assert data.load_pair(pairs["ok"]).shift_note is None
    moved = data.load_pair(pairs["moved"])
    assert moved.shift_note is not None and "axis 2" in moved.shift_note
    assert data.flag_misaligned({"ok": 1.2, "moved": moved.alignment}, {"moved": moved.shift_note}) == {
        "moved": moved.shift_note}
    registered = data.load_pair(pairs["moved"], register=True)
    assert registered.shift_note is None
    assert registered.alignment > moved.alignment
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert np.nanmean(np.abs(registered.sff[inner] - thigh.sff[inner])) < 0.5 * np.abs(
        moved.sff[inner] - thigh.sff[inner]).mean()
