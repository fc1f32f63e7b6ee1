"""The DICOM writer: SFF maps out as a derived series in the source study, checked by independent readers.

Source series come from tests/dicom_factory.py (pydicom, scanner-style geometry). The Volume a reader would make
of them is built here with nibabel's orientation tools; what the writer wrote is read back with SimpleITK
(GDCM), dcm2niix -> nibabel, highdicom and pydicom, and compared voxel by voxel in world space.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import PATIENT_ID, PATIENT_NAME, Study, oblique_orientation, write_series

from napari_sff import io
from napari_sff.io.dicom.write import DicomWriteError, write_dicom_series

LPS = np.diag([-1.0, -1.0, 1.0])
SECRETS = ("Doe", "Jane", "Secret", "SECRET", "4711", PATIENT_NAME, PATIENT_ID)
DCM2NIIX = shutil.which("dcm2niix") or str(Path(sys.executable).with_name("dcm2niix"))
SHAPE = (6, 10, 12)  # slices, rows, columns as acquired


def source_series(folder: Path, orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), *, pixel_spacing=(1.25, 0.8),
                  slice_spacing=3.5, origin=(-60.0, -40.0, 25.0)) -> tuple[io.Volume, list[Path]]:
    """A T2w series on disk and the display-order Volume (+ source["dicom"]) a DICOM reader makes of it."""
    rng = np.random.default_rng(0)
    t2w = rng.integers(50, 900, size=SHAPE).astype(np.float64)
    paths = write_series(folder, t2w, pixel_spacing=pixel_spacing, slice_spacing=slice_spacing,
                         orientation=orientation, origin=origin, study=Study(), series_number=5)
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row, col)
    lps = np.eye(4)  # acquired (slice, row, column) index -> LPS
    lps[:3, :3] = np.column_stack([normal * slice_spacing, col * pixel_spacing[0], row * pixel_spacing[1]])
    lps[:3, 3] = origin
    acquired = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # -> RAS
    transform = nib.orientations.ornt_transform(nib.orientations.io_orientation(acquired),
                                                nib.orientations.axcodes2ornt(("S", "P", "L")))
    array = nib.orientations.apply_orientation(t2w, transform)
    affine = acquired @ nib.orientations.inv_ornt_aff(transform, t2w.shape)
    # instances in display slice order: by each slice's index along the display axis its normal runs on
    datasets = [pydicom.dcmread(p) for p in paths]
    display = [np.linalg.inv(affine) @ [*(LPS @ np.asarray(ds.ImagePositionPatient, float)), 1.0] for ds in datasets]
    slice_axis = int(np.argmax(np.abs(np.linalg.inv(affine[:3, :3]) @ (LPS @ normal))))
    order = np.argsort([d[slice_axis] for d in display])
    template = datasets[order[0]].copy()
    del template.PixelData
    source = {"path": str(folder), "dicom": {
        "series_uid": template.SeriesInstanceUID, "study_uid": template.StudyInstanceUID,
        "frame_of_reference_uid": template.FrameOfReferenceUID, "series_number": 5,
        "series_description": template.SeriesDescription, "image_type": list(template.ImageType),
        "modality": "MR", "template": template,
        "instances": [(datasets[i].SOPClassUID, datasets[i].SOPInstanceUID) for i in order]}}
    return io.Volume(np.ascontiguousarray(array), affine, source), paths


def known_sff(shape) -> np.ndarray:
    """Distinct fat fractions per voxel in [0, 1] (a misplaced voxel changes the value)."""
    n = int(np.prod(shape))
    return ((np.arange(n) * 7919 % n) / (n - 1)).reshape(shape).astype(np.float32)


def display_index(volume: io.Volume, lps_points: np.ndarray) -> np.ndarray:
    """Display voxel indices of LPS points (N, 3) by the volume's own affine (the ground truth geometry)."""
    ras = lps_points @ LPS.T
    inverse = np.linalg.inv(volume.affine)
    return ras @ inverse[:3, :3].T + inverse[:3, 3]


def assert_on_voxels(volume: io.Volume, sff: np.ndarray, values: np.ndarray, lps_of_index, tolerance: float):
    """Every voxel of a read-back image lands on a voxel centre of ``volume`` and holds its SFF in percent."""
    indices = np.stack(np.meshgrid(*[np.arange(n) for n in values.shape], indexing="ij"), -1).reshape(-1, 3)
    found = display_index(volume, lps_of_index(indices))
    np.testing.assert_allclose(found, np.round(found), atol=1e-3)  # on voxel centres, not between them
    hit = np.round(found).astype(int)
    assert np.all(hit >= 0) and np.all(hit < np.asarray(volume.array.shape))
    assert len({tuple(h) for h in hit}) == sff.size  # every voxel once
    np.testing.assert_allclose(values.reshape(-1), 100.0 * sff[tuple(hit.T)], atol=tolerance)


def check_with_simpleitk(folder: Path, volume: io.Volume, sff: np.ndarray) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    values = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))  # -> (x, y, z) = ITK index order
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    linear = direction * np.asarray(image.GetSpacing())
    assert_on_voxels(volume, sff, values, lambda ijk: ijk @ linear.T + np.asarray(image.GetOrigin()),
                     tolerance=0.05 + 1e-6)
    return image


def check_with_dcm2niix(folder: Path, out: Path, volume: io.Volume, sff: np.ndarray, tolerance: float) -> None:
    out.mkdir()
    subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", "-f", "map", "-o", str(out), str(folder)],
                   check=True, capture_output=True)
    image = nib.load(out / "map.nii")
    values = np.asanyarray(image.dataobj).astype(np.float64)  # scl_slope applied: percent
    while values.ndim > 3:
        values = values[..., 0]
    affine = image.affine
    assert_on_voxels(volume, sff, values,
                     lambda ijk: (ijk @ affine[:3, :3].T + affine[:3, 3]) @ LPS.T, tolerance=tolerance)


def read_tags(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.iterdir())]


@pytest.fixture
def axial(tmp_path):
    volume, paths = source_series(tmp_path / "study" / "t2w")
    return volume, paths, tmp_path


def test_axial_round_trip_lands_on_the_same_voxels(axial):
    volume, _, tmp_path = axial
    sff = known_sff(volume.array.shape)
    out = write_dicom_series(volume.like(sff), tmp_path / "sff", model="unet", weights="/w/best.safetensors")
    assert out == tmp_path / "sff"
    check_with_simpleitk(out, volume, sff)
    check_with_dcm2niix(out, tmp_path / "nii", volume, sff, tolerance=0.05 + 1e-4)


def test_tags_join_the_source_study_as_a_new_derived_series(axial):
    volume, paths, tmp_path = axial
    out = write_dicom_series(volume.like(known_sff(volume.array.shape)), tmp_path / "sff", model="ddpm",
                             weights="/somewhere/ddpm_ema.safetensors")
    written, source = read_tags(out), [pydicom.dcmread(p) for p in paths]
    assert sorted(p.name for p in out.iterdir()) == [f"IM_{k:04d}.dcm" for k in range(1, SHAPE[0] + 1)]
    src = source[0]
    assert {ds.StudyInstanceUID for ds in written} == {src.StudyInstanceUID}
    assert {ds.FrameOfReferenceUID for ds in written} == {src.FrameOfReferenceUID}
    assert {str(ds.PatientName) for ds in written} == {PATIENT_NAME}  # patient module copied
    assert {ds.PatientID for ds in written} == {PATIENT_ID} and written[0].AccessionNumber == src.AccessionNumber
    series = {ds.SeriesInstanceUID for ds in written}
    assert len(series) == 1 and series.isdisjoint({ds.SeriesInstanceUID for ds in source})
    sops = [ds.SOPInstanceUID for ds in written]
    assert len(set(sops)) == len(sops) and set(sops).isdisjoint({ds.SOPInstanceUID for ds in source})
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in written)
    assert {ds.SOPClassUID for ds in written} == {pydicom.uid.MRImageStorage}
    assert all(list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"] for ds in written)
    description = written[0].SeriesDescription
    assert description == "napari-sff DDPM SFF [ddpm_ema.safetensors] (research use)" and len(description) <= 64
    assert "Research use only" in written[0].DerivationDescription and "DDPM" in written[0].DerivationDescription
    assert written[0].SeriesNumber == 2005  # source series 5 + 2000 for the DDPM
    assert float(written[0].RescaleSlope) == 0.1 and float(written[0].RescaleIntercept) == 0
    unit = written[0].RealWorldValueMappingSequence[0].MeasurementUnitsCodeSequence[0]
    assert (unit.CodeValue, unit.CodingSchemeDesignator) == ("%", "UCUM")
    assert written[0].ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    # each slice references the source instance at the very same position and orientation
    by_uid = {ds.SOPInstanceUID: ds for ds in source}
    for ds in written:
        ref = by_uid[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_allclose(np.asarray(ds.ImagePositionPatient, float), ref.ImagePositionPatient, atol=1e-4)
        np.testing.assert_allclose(np.asarray(ds.ImageOrientationPatient, float), ref.ImageOrientationPatient,
                                   atol=1e-6)
        np.testing.assert_allclose(np.asarray(ds.PixelSpacing, float), ref.PixelSpacing, atol=1e-6)


@pytest.mark.parametrize("orientation", [oblique_orientation(14.0, -9.0), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)],
                         ids=["oblique", "sagittal"])
def test_oblique_and_sagittal_maps_keep_the_source_plane(tmp_path, orientation):
    volume, paths, = source_series(tmp_path / "t2w", orientation)
    sff = known_sff(volume.array.shape)
    out = write_dicom_series(volume.like(sff), tmp_path / "sff", model="U-Net")
    check_with_simpleitk(out, volume, sff)
    check_with_dcm2niix(out, tmp_path / "nii", volume, sff, tolerance=0.05 + 1e-4)
    written = read_tags(out)
    for ds in written:
        np.testing.assert_allclose(np.asarray(ds.ImageOrientationPatient, float), orientation, atol=1e-6)
        assert (ds.Rows, ds.Columns) == SHAPE[1:]
    source_positions = {tuple(np.round(pydicom.dcmread(p).ImagePositionPatient, 3)) for p in paths}
    assert {tuple(np.round(np.asarray(ds.ImagePositionPatient, float), 3)) for ds in written} == source_positions


def test_parametric_map_option(axial):
    import highdicom as hd

    volume, _, tmp_path = axial
    sff = known_sff(volume.array.shape)
    out = write_dicom_series(volume.like(sff), tmp_path / "pm", model="unet", storage="parametric-map")
    (path,) = out.iterdir()
    pm = pydicom.dcmread(path)
    assert pm.SOPClassUID == pydicom.uid.ParametricMapStorage and pm.ContentQualification == "RESEARCH"
    source = volume.source["dicom"]
    assert pm.StudyInstanceUID == source["study_uid"] and pm.FrameOfReferenceUID == source["frame_of_reference_uid"]
    assert pm.SeriesInstanceUID != source["series_uid"] and pm.ImageType[0] == "DERIVED"
    assert pm.SeriesDescription == "napari-sff U-Net SFF (research use)"
    read = hd.imread(path).get_volume()  # highdicom's own geometry reader
    values = read.array.astype(np.float64)
    assert_on_voxels(volume, sff, values,
                     lambda ijk: ijk @ read.affine[:3, :3].T + read.affine[:3, 3], tolerance=1e-4)
    check_with_dcm2niix(out, tmp_path / "nii", volume, sff, tolerance=1e-4)


def test_sd_map_and_2d_layers(axial):
    volume, _, tmp_path = axial
    sd = known_sff(volume.array.shape) * 0.2
    out = write_dicom_series(volume.like(sd), tmp_path / "sd", kind="sd", model="ddpm")
    check_with_simpleitk(out, volume, sd)
    ds = read_tags(out)[0]
    assert ds.SeriesDescription == "napari-sff DDPM SFF SD (research use)" and ds.SeriesNumber == 3005
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "FAT_FRACTION_SD"]


def test_refusals_name_the_problem(axial):
    volume, paths, tmp_path = axial
    sff = volume.like(known_sff(volume.array.shape))
    messages = []

    def refused(match, *args, **kwargs):
        with pytest.raises(DicomWriteError, match=match) as caught:
            write_dicom_series(*args, **kwargs)
        messages.append(str(caught.value))

    refused("no DICOM source study", io.Volume.from_array(sff.array, (3.5, 1.25, 0.8)), tmp_path / "x")
    refused("outside it", sff, paths[0].parent)  # the source folder itself
    refused("outside it", sff, paths[0].parent / "sff")  # inside it
    refused("outside it", sff, tmp_path / "study", overwrite=True)  # would replace the folder holding it
    out = write_dicom_series(sff, tmp_path / "sff")
    refused("exists; choose a new folder", sff, out)
    first = {ds.SOPInstanceUID for ds in read_tags(out)}
    write_dicom_series(sff, out, overwrite=True)  # a previous export may be replaced
    assert first.isdisjoint({ds.SOPInstanceUID for ds in read_tags(out)})
    (out / "notes.txt").write_text("mine")
    refused("did not write", sff, out, overwrite=True)
    assert (out / "notes.txt").exists()
    refused("64", sff, tmp_path / "y", description="x" * 65)
    refused("one 3D map", io.Volume(np.zeros((2, *sff.array.shape), np.float32), sff.affine, sff.source),
            tmp_path / "z")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
    assert all("\n" not in m and not any(s in m for s in SECRETS) for m in messages)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_new_study_is_anonymous(tmp_path):
    sff = known_sff((4, 8, 9))
    volume = io.Volume.from_array(sff, (3.0, 1.0, 1.5), origin=(10.0, -20.0, 5.0))
    out = write_dicom_series(volume, tmp_path / "sff", new_study=True, model="unet")
    check_with_simpleitk(out, volume, sff)
    written = read_tags(out)
    assert {str(ds.PatientName) for ds in written} == {"Anonymous^"}
    assert len({ds.StudyInstanceUID for ds in written}) == 1 and len({ds.FrameOfReferenceUID for ds in written}) == 1
    assert "SourceImageSequence" not in written[0]
    nifti = io.read_nifti(io.write_nifti(volume, tmp_path / "sff.nii.gz"))  # a folder beside its NIfTI is fine
    write_dicom_series(nifti.like(nifti.array), tmp_path / "sff_dicom", new_study=True)
    with pytest.raises(DicomWriteError, match="did not write"):  # but never replace the folder holding it
        write_dicom_series(nifti.like(nifti.array), tmp_path, new_study=True, overwrite=True)
    assert (tmp_path / "sff.nii.gz").exists()


def test_layer_writer_takes_model_and_weights_from_metadata(axial):
    volume, _, tmp_path = axial
    sff = volume.like(known_sff(volume.array.shape))
    meta = {"name": "SFF U-Net [t2w]", "metadata": {"nifti": sff.source, "napari_sff": {
        "model": "unet", "weights": "shipped"}}, **io.layer_placement(sff)}
    out = io.write_layer_dicom(sff.array, meta, tmp_path / "sff")
    assert read_tags(out)[0].SeriesDescription == "napari-sff U-Net SFF [shipped] (research use)"
    meta["name"] = "|error| U-Net [t2w]"
    with pytest.raises(DicomWriteError, match="not a fat fraction"):
        io.write_layer_dicom(sff.array, meta, tmp_path / "err")
    assert io.layer_dicom_kind("SFF SD DDPM [t2w]") == "sd" and io.layer_dicom_kind("SFF DDPM - U-Net [t2w]") is None
    assert io.layer_dicom_kind("x", {"napari_sff": {"kind": "std"}}) == "sd"  # the Predict widget's kinds
    assert io.layer_dicom_kind("SFF x", {"napari_sff": {"kind": "error"}}) is None
    assert io.layer_dicom_kind("7 fat", {io.LAYER_KIND_KEY: "image"}) is None  # a Dixon fat signal series


def test_save_button_writes_the_selected_map(make_napari_viewer, axial, qtbot):
    from napari.utils.notifications import notification_manager

    from napari_sff.widgets.predict import PredictWidget

    volume, _, tmp_path = axial
    viewer = make_napari_viewer()
    viewer.add_image(volume.array, name="t2w", metadata={"nifti": volume.source}, **io.layer_placement(volume))
    widget = PredictWidget(viewer)
    assert widget[-1] is widget.save_dicom_button  # the last control of the widget
    sff = volume.like(known_sff(volume.array.shape))
    layer = viewer.add_image(100 * sff.array, name="SFF U-Net [t2w]", **io.layer_placement(sff), metadata={
        "nifti": sff.source, "napari_sff": {"model": "unet", "weights": "/w/tiny.safetensors"},
        io.LAYER_SCALE_KEY: io.SFF_LAYER_PERCENT})  # as the Predict widget makes it: percent
    viewer.layers.selection.active = layer
    start = len(notification_manager.records)
    out = widget.save_dicom(tmp_path / "sff")
    check_with_simpleitk(out, volume, sff.array)  # percent layer -> the fractions it holds -> percent x 10
    assert read_tags(out)[0].SeriesDescription == "napari-sff U-Net SFF [tiny.safetensors] (research use)"
    viewer.layers.selection.active = viewer.layers["t2w"]
    assert widget.save_dicom(tmp_path / "t2w") is None and not (tmp_path / "t2w").exists()
    messages = [str(n.message) for n in notification_manager.records[start:]]
    assert any("saved 'SFF U-Net [t2w]'" in m for m in messages)
    assert any("'t2w' is not a fat fraction or SD map" in m for m in messages)
    assert not any(s in m for m in messages for s in SECRETS)
    # The button writes in a worker (seconds for a large series) and says so when done; errors too.
    viewer.layers.selection.active = layer
    start = len(notification_manager.records)
    widget.save_dicom(tmp_path / "sff_button", background=True)
    qtbot.waitUntil(lambda: len(notification_manager.records) > start, timeout=60_000)
    check_with_simpleitk(tmp_path / "sff_button", volume, sff.array)
    viewer.layers.selection.active = viewer.layers["t2w"]
    widget.save_dicom(tmp_path / "t2w_button", background=True)
    qtbot.waitUntil(lambda: len(notification_manager.records) > start + 1, timeout=60_000)
    later = [str(n.message) for n in notification_manager.records[start:]]
    assert "saved 'SFF U-Net [t2w]'" in later[0] and "'t2w' is not a fat fraction or SD map" in later[1]
    assert not (tmp_path / "t2w_button").exists()


def test_the_plugins_reader_reads_the_map_back_in_place(tmp_path):
    from napari_sff.io.dicom.read import read_volume

    study, folder = Study(), tmp_path / "study"
    rng = np.random.default_rng(3)
    write_series(folder, rng.integers(50, 900, SHAPE).astype(float), orientation=oblique_orientation(12.0, 20.0),
                 pixel_spacing=(1.1, 0.9), slice_spacing=4.0, study=study, series_number=5)
    write_series(folder, rng.integers(50, 900, SHAPE).astype(float), orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
                 study=study, series_number=6, description="t2_tse_sag", prefix="b", seed=1)
    (folder / "notes.txt").write_text("not DICOM")
    t2w = read_volume(folder, series=5)
    sff = known_sff(t2w.array.shape)
    out = write_dicom_series(t2w.like(sff), tmp_path / "sff", model="unet")
    back = read_volume(out)
    np.testing.assert_allclose(back.affine, t2w.affine, atol=1e-4)
    np.testing.assert_allclose(back.array, 100.0 * sff, atol=0.05 + 1e-4)  # percent, 0.1 % steps
    for key in ("study_uid", "frame_of_reference_uid"):
        assert back.source["dicom"][key] == t2w.source["dicom"][key]
    assert back.source["dicom"]["series_uid"] != t2w.source["dicom"]["series_uid"]
    check_with_simpleitk(out, t2w, sff)
    ((data, meta, layer_type),) = io.read_dicom_layers(out)  # opened in napari: an SFF layer in percent
    assert layer_type == "image" and meta["metadata"][io.LAYER_KIND_KEY] == "sff"
    np.testing.assert_allclose(np.asarray(data), 100.0 * sff, atol=0.05 + 1e-4)
    assert meta["contrast_limits"] == (0.0, 100.0) and meta["metadata"][io.LAYER_SCALE_KEY] == 100.0
    with pytest.raises(DicomWriteError, match="outside it"):
        write_dicom_series(t2w.like(sff), folder / "sff")


def test_enhanced_source_keeps_its_plane(tmp_path):
    from dicom_factory import write_enhanced

    from napari_sff.io.dicom.read import read_volume

    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    paths = write_series(tmp_path / "t2w", np.full(SHAPE, 300.0), orientation=sagittal)
    enhanced = write_enhanced(paths, tmp_path / "enhanced" / "t2w.dcm")
    volume = read_volume(enhanced)
    sff = known_sff(volume.array.shape)
    out = write_dicom_series(volume.like(sff), tmp_path / "sff")
    written = read_tags(out)
    assert len(written) == SHAPE[0]
    for ds in written:
        np.testing.assert_allclose(np.asarray(ds.ImageOrientationPatient, float), sagittal, atol=1e-6)
    assert written[0].ReferencedSeriesSequence[0].SeriesInstanceUID == pydicom.dcmread(enhanced).SeriesInstanceUID
    check_with_simpleitk(out, volume, sff)
