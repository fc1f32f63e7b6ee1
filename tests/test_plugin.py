"""The plugin as napari sees it: manifest, reader, writer and sample data, through a real viewer."""

from __future__ import annotations

import numpy as np
import pytest
from npe2 import PluginManager

from napari_sff import io


def test_manifest_is_valid_and_named_after_the_distribution():
    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("napari-sff")
    assert manifest.name == "napari-sff"
    assert {s.key for s in manifest.contributions.sample_data} == {"thigh", "calf", "abdomen", "pelvis"}


@pytest.mark.parametrize("sample", ["thigh", "abdomen", "pelvis"])
def test_sample_data_opens_in_world_space(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-sff", sample)
    names = [layer.name for layer in layers]
    assert names == [f"synthetic_{sample}_t2w", f"synthetic_{sample}_sff", f"synthetic_{sample}_labels"]
    t2w, sff, labels = layers
    assert t2w.data.shape == sff.data.shape == labels.data.shape
    assert type(labels).__name__ == "Labels"
    assert sff.colormap.name == io.SFF_COLORMAP and tuple(sff.contrast_limits) == (0.0, 100.0)
    from napari_sff.sample_data import SAMPLE_SEED, SAMPLE_SIZE, SAMPLE_SLICES
    from napari_sff.simulate import simulate_case

    case = simulate_case(sample, size=SAMPLE_SIZE, n_slices=SAMPLE_SLICES, seed=SAMPLE_SEED)
    np.testing.assert_allclose(sff.data, 100 * case.sff.astype(np.float64), rtol=1e-6, atol=1e-5)  # percent
    for layer in (sff, labels):  # all three overlay exactly
        np.testing.assert_allclose(layer.scale, t2w.scale)
        np.testing.assert_allclose(layer.translate, t2w.translate)
    assert t2w.scale[0] > t2w.scale[1]  # thick slices along the slider axis
    assert "name" in labels.features.columns


def test_reader_and_writer_through_the_viewer(make_napari_viewer, tmp_path):
    from napari_sff.sample_data import case_volumes
    from napari_sff.simulate import simulate_case

    case = simulate_case("calf", size=48, n_slices=4, seed=3)
    for suffix, volume in case_volumes(case).items():
        io.write_nifti(volume, tmp_path / f"leg_{suffix}.nii.gz")
    viewer = make_napari_viewer()
    t2w = viewer.open(tmp_path / "leg_t2w.nii.gz", plugin="napari-sff")[0]
    labels = viewer.open(tmp_path / "leg_labels.nii.gz", plugin="napari-sff")[0]
    sff = viewer.open(tmp_path / "leg_sff.nii.gz", plugin="napari-sff")[0]
    assert type(labels).__name__ == "Labels" and sff.colormap.name == io.SFF_COLORMAP
    np.testing.assert_allclose(t2w.scale, case.spacing)
    np.testing.assert_array_equal(t2w.data, case.t2w)

    paths = labels.save(str(tmp_path / "labels_copy.nii.gz"), plugin="napari-sff")
    np.testing.assert_array_equal(io.read_nifti(paths[0]).array, case.labels)
    # the SFF file holds fractions, its layer percent (colour bar, contrast limits, status bar); saved: fractions
    np.testing.assert_allclose(sff.data, 100 * case.sff.astype(np.float64), rtol=1e-6, atol=1e-5)
    assert tuple(sff.contrast_limits) == (0.0, 100.0)
    [saved] = sff.save(str(tmp_path / "sff_copy.nii.gz"), plugin="napari-sff")
    np.testing.assert_allclose(io.read_nifti(saved).array, case.sff, rtol=1e-6, atol=1e-7)
    before = (tmp_path / "leg_t2w.nii.gz").read_bytes()
    with pytest.warns(UserWarning, match="input file|input this image"):
        assert t2w.save(str(tmp_path / "leg_t2w.nii.gz"), plugin="napari-sff") == []
    assert (tmp_path / "leg_t2w.nii.gz").read_bytes() == before
