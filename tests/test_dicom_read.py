"""DICOM MR series in: geometry and values checked voxel by voxel in world space against SimpleITK (GDCM) and
dcm2niix, on DICOM files nobody here wrote (pydicom's and nibabel's test data) and on simulated phantoms written
by tests/dicom_factory.py (oblique, shuffled names, per-slice rescale, a second series, stray files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from napari_sff import cli, io

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dicom_factory as factory  # noqa: E402

NICOM_DATA = Path(nib.__file__).parent / "nicom" / "tests" / "data"
SECRETS = (factory.PATIENT_NAME, *factory.PATIENT_NAME.split("^"), factory.PATIENT_ID, "19700101", "ACC-SECRET-1")


# ---------------------------------------------------------------------------------------------------------
# The independent reader: SimpleITK (GDCM) and a world-space lookup into its image
# ---------------------------------------------------------------------------------------------------------
def sitk_series(folder: Path, uid: str = "", recursive: bool = False) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid, False, recursive))
    reader.SetOutputPixelType(sitk.sitkFloat32)
    return reader.Execute()


def sitk_file(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path), sitk.sitkFloat32)


def sitk_values_at(image: sitk.Image, ras: np.ndarray) -> np.ndarray:
    """SimpleITK's voxel values at RAS points (3, N) that must be its voxel centres, each hit exactly once."""
    lps = ras * np.array([[-1.0], [-1.0], [1.0]])
    direction = np.array(image.GetDirection()).reshape(3, 3)
    to_index = np.linalg.inv(direction @ np.diag(image.GetSpacing()))
    index = to_index @ lps - (to_index @ np.array(image.GetOrigin()))[:, None]
    rounded = np.round(index).astype(int)
    assert np.abs(index - rounded).max() < 1e-3  # voxel centres coincide
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    flat = np.ravel_multi_index((rounded[2], rounded[1], rounded[0]), array.shape)
    assert np.unique(flat).size == flat.size == array.size  # one-to-one onto the reference grid
    return array.reshape(-1)[flat]


def voxel_centres(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    index = np.indices(shape[-3:]).reshape(3, -1)
    return affine[:3, :3] @ index + affine[:3, 3:]


def assert_matches_sitk(volume: io.Volume, image: sitk.Image) -> None:
    data = np.asarray(volume.array)
    expected = sitk_values_at(image, voxel_centres(volume.affine, data.shape))
    np.testing.assert_array_equal(data.reshape(-1).astype(np.float32), expected)


def assert_no_patient_data(text: str) -> None:
    assert "\n" not in text
    for secret in SECRETS:
        assert secret not in text


# ---------------------------------------------------------------------------------------------------------
# A simulated visit: oblique T2w with per-slice rescale, an SFF series in percent, stray files
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory) -> SimpleNamespace:
    from napari_sff.simulate import simulate_case

    case = simulate_case("thigh", size=40, n_slices=6, seed=1)
    root = tmp_path_factory.mktemp("study")
    visit = factory.Study()
    geometry = {"pixel_spacing": case.spacing[1:], "slice_spacing": case.spacing[0],
                "orientation": factory.oblique_orientation(12.0, 7.0), "origin": (-90.0, -70.0, 15.0),
                "study": visit}
    slopes, intercepts = np.linspace(1.0, 2.0, 6), np.linspace(-40.0, 0.0, 6)
    t2_paths = factory.write_series(root / "t2", case.t2w, slopes=slopes, intercepts=intercepts, seed=1,
                                    series_number=3, description="t2_tse_tra", **geometry)
    factory.write_series(root / "maps", case.sff * 100, slopes=[0.1] * 6, intercepts=[0.0] * 6, seed=2,
                         series_number=4, description="SFF", image_type=("DERIVED", "PRIMARY", "FF"), **geometry)
    (root / "notes.txt").write_text("not an image\n")
    (root / "t2" / "README").write_bytes(b"stray file without extension")
    (root / "maps" / "junk.dcm").write_bytes(np.random.default_rng(0).bytes(400))
    return SimpleNamespace(root=root, case=case, visit=visit, t2_paths=t2_paths, slopes=slopes,
                           intercepts=intercepts, geometry=geometry)


def test_phantom_series_match_simpleitk_and_the_phantom_voxel_by_voxel(study):
    t2, sff = io.read_dicom(study.root)
    assert [t2.source["dicom"]["label"], sff.source["dicom"]["label"]] == ["3 t2_tse_tra", "4 SFF"]
    assert_matches_sitk(t2, sitk_series(study.root / "t2"))
    assert_matches_sitk(sff, sitk_series(study.root / "maps"))
    assert t2.array.dtype == np.float32  # per-slice rescale gives real values, not stored integers

    # Known answer: every voxel holds the phantom value the factory put at that LPS position (to the rounding
    # of its slice's rescale), found from the factory's own geometry, not from the reader's.
    g = study.geometry
    row, col = np.array(g["orientation"][:3]), np.array(g["orientation"][3:])
    axes = np.stack([np.cross(row, col) * g["slice_spacing"], col * g["pixel_spacing"][0],
                     row * g["pixel_spacing"][1]], axis=1)  # (k, i, j) -> LPS
    lps = voxel_centres(t2.affine, t2.array.shape) * np.array([[-1.0], [-1.0], [1.0]])
    kij = np.round(np.linalg.solve(axes, lps - np.array(g["origin"])[:, None])).astype(int)
    expected = study.case.t2w[kij[0], kij[1], kij[2]]
    tolerance = study.slopes[kij[0]] / 2 + 1e-3
    assert np.all(np.abs(t2.array.reshape(-1) - expected) <= tolerance)
    assert np.abs(sff.array.reshape(-1) - 100 * study.case.sff[kij[0], kij[1], kij[2]]).max() <= 0.05 + 1e-4


def test_source_metadata_keeps_study_references_in_display_slice_order(study):
    volume = io.read_volume(study.root, series="3")
    dicom = volume.source["dicom"]
    assert volume.source["path"] == str(study.root.resolve())
    assert dicom["study_uid"] == study.visit.study_uid
    assert dicom["frame_of_reference_uid"] == study.visit.frame_of_reference_uid
    assert (dicom["series_number"], dicom["series_description"], dicom["modality"]) == (3, "t2_tse_tra", "MR")
    assert dicom["image_type"] == ("ORIGINAL", "PRIMARY", "M", "ND") and dicom["echo_time"] == 90.0
    assert "PixelData" not in dicom["template"] and dicom["template"].PatientID == factory.PATIENT_ID
    # instances[k] is the image shown at display slice k: its position lies in that slice's plane
    assert dicom["slice_axis"] == 0 and len(dicom["instances"]) == volume.array.shape[0]
    by_uid = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in study.t2_paths}
    inverse = np.linalg.inv(volume.affine)
    for k, (sop_class, sop_uid) in enumerate(dicom["instances"]):
        header = by_uid[sop_uid]
        assert sop_class == header.SOPClassUID
        ras = np.array([-1.0, -1.0, 1.0]) * np.array([float(v) for v in header.ImagePositionPatient])
        assert abs((inverse[:3, :3] @ ras + inverse[:3, 3])[0] - k) < 1e-6
    assert dicom["template"].SOPInstanceUID == dicom["instances"][0][1]
    assert_no_patient_data(dicom["label"])


def test_dicom_and_dcm2niix_nifti_of_one_series_overlay_exactly(study, tmp_path):
    """dcm2niix is the reference converter: its NIfTI, read by the NIfTI reader, lands on the same voxels."""
    subprocess.run([shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix"), "-f", "t2",
                    "-z", "y", "-o", str(tmp_path), str(study.root / "t2")], check=True, capture_output=True)
    nifti = io.read_nifti(tmp_path / "t2.nii.gz")
    dicom = io.read_volume(study.root, series="t2_tse_tra")
    np.testing.assert_allclose(nifti.array, dicom.array, rtol=1e-6, atol=1e-4)  # dcm2niix: float32 rescale
    placed, reference = io.layer_placement(dicom), io.layer_placement(nifti)
    for key in ("scale", "translate"):
        np.testing.assert_allclose(placed[key], reference[key], atol=1e-4)
    np.testing.assert_allclose(placed["rotate"], reference["rotate"], atol=1e-6)  # oblique kept


def test_lazy_read_and_one_file_of_the_series_give_the_same_volume(study):
    eager = io.read_volume(study.root, series="3")
    lazy = io.read_dicom(study.root, series="3", lazy=True)[0]
    assert not isinstance(lazy.array, np.ndarray)  # dask: slices are read when needed
    np.testing.assert_array_equal(np.asarray(lazy.array), eager.array)
    one_file = io.read_dicom(study.t2_paths[4])
    assert len(one_file) == 1
    np.testing.assert_array_equal(one_file[0].array, eager.array)
    np.testing.assert_allclose(one_file[0].affine, eager.affine)


def test_sagittal_series_is_reoriented_to_display_order_eagerly_and_lazily(tmp_path):
    """Rows run A -> P, columns S -> I, slices R -> L: every display axis comes from another DICOM axis."""
    values = np.random.default_rng(2).integers(0, 1000, (4, 7, 9)).astype(float)
    factory.write_series(tmp_path, values, orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), pixel_spacing=(1.5, 1.2),
                         slice_spacing=4.0)
    eager = io.read_volume(tmp_path)
    assert eager.array.shape == (7, 9, 4)  # (S, P, L): rows became S, columns P, slices L
    assert_matches_sitk(eager, sitk_series(tmp_path))
    lazy = io.read_dicom(tmp_path, lazy=True)[0]
    np.testing.assert_array_equal(np.asarray(lazy.array), eager.array)
    assert eager.source["dicom"]["slice_axis"] == 2
    positions = {h.SOPInstanceUID: float(h.ImagePositionPatient[0])
                 for h in (pydicom.dcmread(f) for f in tmp_path.iterdir())}
    x_lps = [positions[uid] for _, uid in eager.source["dicom"]["instances"]]
    assert x_lps == sorted(x_lps)  # display slice order along L = increasing LPS x


def test_enhanced_multiframe_reads_like_the_single_frame_series(study, tmp_path):
    enhanced = factory.write_enhanced(study.t2_paths, tmp_path / "enhanced.dcm")
    (multi,) = io.read_dicom(enhanced)
    single = io.read_volume(study.root, series="3")
    assert pydicom.dcmread(enhanced, stop_before_pixels=True).SOPClassUID.name.startswith("Legacy Converted")
    np.testing.assert_allclose(multi.array, single.array, rtol=0, atol=1e-3)
    np.testing.assert_allclose(multi.affine, single.affine, atol=1e-6)
    assert multi.source["dicom"]["study_uid"] == study.visit.study_uid


def test_dixon_and_multi_echo_series_split_by_image_type_and_echo_time(tmp_path):
    rng = np.random.default_rng(5)
    water, fat = rng.integers(500, 3000, (2, 3, 8, 9)).astype(float)
    uid, visit = pydicom.uid.generate_uid(), factory.Study()
    common = {"series_uid": uid, "study": visit, "series_number": 7, "description": "dixon"}
    factory.write_series(tmp_path, water, image_type=("DERIVED", "PRIMARY", "DIXON", "WATER"), prefix="w", **common)
    factory.write_series(tmp_path, fat, image_type=("DERIVED", "PRIMARY", "DIXON", "FAT"), prefix="f", **common)
    infos = io.list_series(tmp_path)
    assert sorted(info.label for info in infos) == ["7 dixon [FAT]", "7 dixon [WATER]"]
    # axial, identity orientation: the display order (S, P, L) is the factory's (slice, row, column)
    volumes = {v.source["dicom"]["label"]: v for v in io.read_dicom(tmp_path)}
    np.testing.assert_array_equal(volumes["7 dixon [WATER]"].array, water)
    np.testing.assert_array_equal(volumes["7 dixon [FAT]"].array, fat)
    # a fat *signal* image keeps its values and opens as an image, not as a fat-fraction map
    kinds = {meta["name"]: meta.get("colormap") for _, meta, _ in io.read_dicom_layers(tmp_path)}
    assert kinds == {"7 dixon [FAT]": "gray", "7 dixon [WATER]": "gray"}

    echoes = tmp_path / "echoes"
    for te, prefix in ((10.0, "a"), (20.0, "b")):
        factory.write_series(echoes, water, echo_time=te, prefix=prefix, series_uid=uid, study=visit)
    assert sorted(info.label for info in io.list_series(echoes)) == ["3 t2_tse_tra [TE 10 ms]",
                                                                     "3 t2_tse_tra [TE 20 ms]"]


def _broken(kind: str, folder: Path) -> None:
    values = np.full((5, 8, 8), 100.0)
    if kind == "missing":
        os.remove(factory.write_series(folder, values)[2])
    elif kind == "spacing":
        positions = np.array([[0, 0, z] for z in (0.0, 3.0, 6.0, 10.0, 13.0)])
        factory.write_series(folder, values, positions=positions)
    elif kind == "sizes":
        uid = pydicom.uid.generate_uid()
        factory.write_series(folder, values[:4], series_uid=uid, prefix="a")
        factory.write_series(folder, np.full((1, 8, 6), 100.0), series_uid=uid, prefix="b",
                             positions=np.array([[-100.0, -80.0, -8.0]]))
    elif kind == "orientation":
        tilted = [factory.oblique_orientation(0.0)] * 4 + [factory.oblique_orientation(20.0)]
        factory.write_series(folder, values, orientations=tilted)


@pytest.mark.parametrize(("kind", "problem"), [
    ("missing", r"1 slice\(s\) missing"), ("spacing", "slice spacing varies from 3 to 4 mm"),
    ("sizes", r"mixed image sizes \(8x6, 8x8\)"), ("orientation", "orientation varies"),
])
def test_inconsistent_series_are_refused_in_one_line_naming_the_series(tmp_path, kind, problem):
    _broken(kind, tmp_path)
    with pytest.raises(io.DicomError, match=problem) as error:
        io.read_dicom(tmp_path)
    assert str(error.value).startswith("series 3 t2_tse_tra: ")
    assert_no_patient_data(str(error.value))


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # emri_small.dcm's UIDs are hashes
def test_real_files_nobody_here_wrote(tmp_path):
    """pydicom's and nibabel's test files: values and geometry as SimpleITK reads them, or a clear refusal."""
    for name in ("MR_small.dcm", "MR_small_bigendian.dcm", "MR2_UNCR.dcm"):
        folder = tmp_path / name  # alone in a folder: pydicom keeps other encodings of one image beside it
        folder.mkdir()
        shutil.copy(get_testdata_file(name), folder / name)
        (volume,) = io.read_dicom(folder / name)
        assert_matches_sitk(volume, sitk_file(folder / name))
    little, big = (io.read_dicom(tmp_path / n / n)[0] for n in ("MR_small.dcm", "MR_small_bigendian.dcm"))
    np.testing.assert_array_equal(little.array, big.array)
    assert "rotate" in io.layer_placement(io.read_dicom(tmp_path / "MR2_UNCR.dcm")[0])  # oblique, kept

    (rescaled,) = io.read_dicom(NICOM_DATA / "decimal_rescale.dcm")  # slope 2, intercept -4096
    assert_matches_sitk(rescaled, sitk_file(NICOM_DATA / "decimal_rescale.dcm"))
    assert rescaled.array.min() == -4096.0

    with pytest.raises(io.DicomError, match="^series 12 CBU_DTI_64D_1A: Siemens mosaic") as error:
        io.read_dicom(NICOM_DATA / "0.dcm")
    header = pydicom.dcmread(NICOM_DATA / "0.dcm", stop_before_pixels=True)
    assert str(header.PatientName) and str(header.PatientName) not in str(error.value)
    with pytest.raises(io.DicomError, match="no patient geometry"):
        io.read_dicom(get_testdata_file("emri_small.dcm"))


def test_dicomdir_lists_every_series_and_reads_the_consistent_ones():
    dicomdir = Path(get_testdata_file("MR_small.dcm")).parent / "dicomdirtests" / "DICOMDIR"
    infos = io.list_series(dicomdir)
    labels = [info.label for info in infos]
    assert {"1 Cervical LAT", "2 T/S/C RF FAST PILOT", "5 SmartScore - Gated 0.5 sec"} <= set(labels)
    ct = infos[labels.index("5 SmartScore - Gated 0.5 sec")]
    assert_matches_sitk(io.read_series(ct), sitk_series(dicomdir.parent, ct.series_uid, recursive=True))
    with pytest.raises(io.DicomError, match="no ImagePositionPatient"):  # a CR radiograph
        io.read_series(infos[labels.index("1 Cervical LAT")])
    with pytest.raises(io.DicomError, match="orientation varies"):  # a 3-plane pilot
        io.read_series(infos[labels.index("2 T/S/C RF FAST PILOT")])


def test_napari_reader_opens_a_study_as_placed_layers(make_napari_viewer, study, tmp_path):
    import napari

    assert io.napari_get_dicom_reader(str(study.root)) is not None
    assert io.napari_get_dicom_reader(str(study.t2_paths[0])) is not None  # no extension: the DICM marker
    assert io.napari_get_dicom_reader(str(study.root / "t2" / "README")) is None
    assert io.napari_get_dicom_reader(str(tmp_path)) is None  # an empty folder
    viewer = make_napari_viewer()
    t2, sff = viewer.open(study.root, plugin="napari-sff")
    assert [t2.name, sff.name] == ["3 t2_tse_tra", "4 SFF"]
    assert isinstance(t2, napari.layers.Image) and t2.colormap.name == "gray"
    assert sff.colormap.name == io.SFF_COLORMAP and tuple(sff.contrast_limits) == (0.0, 100.0)
    # the SFF series is stored in percent (x 10, slope 0.1): its layer holds those percent values as they are
    np.testing.assert_array_equal(np.asarray(sff.data), io.read_volume(study.root, "4").array)
    # placement from the layer's own scale / rotate / translate, checked against SimpleITK in world space
    index = np.indices(t2.data.shape).reshape(3, -1)
    world = np.asarray(t2.rotate) @ (np.asarray(t2.scale)[:, None] * index) + np.asarray(t2.translate)[:, None]
    np.testing.assert_allclose(t2.data_to_world(index[:, -1]), world[:, -1], atol=1e-6)
    expected = sitk_values_at(sitk_series(study.root / "t2"), io.RAS_TO_WORLD.T @ world)
    np.testing.assert_array_equal(np.asarray(t2.data).reshape(-1), expected)

    # a broken series beside a good one: the good one opens, the broken one is a one-line warning
    viewer.layers.clear()
    mixed = tmp_path / "mixed"
    shutil.copytree(study.root / "t2", mixed / "t2")
    _broken("missing", mixed / "broken")
    with pytest.warns(UserWarning, match=r"^series 3 t2_tse_tra: 1 slice\(s\) missing") as record:
        layers = viewer.open(mixed, plugin="napari-sff")
    assert [layer.name for layer in layers] == ["3 t2_tse_tra"]
    for warning in record:
        assert_no_patient_data(str(warning.message))


def test_cli_predict_on_a_dicom_folder_needs_series_when_there_are_several(study, tiny_weights, tmp_path, capsys):
    out = tmp_path / "sff.nii.gz"
    base = ["predict", str(study.root), "-o", str(out), "--weights", str(tiny_weights["unet"]), "--device", "cpu",
            "--quiet"]
    assert cli.main(base) == 2
    error = capsys.readouterr().err.strip()
    assert "choose one with --series" in error and "3 t2_tse_tra (6 images)" in error and "4 SFF" in error
    assert_no_patient_data(error)
    assert cli.main([*base, "--series", "99"]) == 2
    assert "no series matches '99'" in capsys.readouterr().err
    assert not out.exists()

    assert cli.main([*base, "--series", "t2_tse_tra"]) == 0
    written = nib.load(out)
    # the prediction lies on the T2w series' voxels, as SimpleITK places them
    sitk_values_at(sitk_series(study.root / "t2"), voxel_centres(written.affine, written.shape))
    assert written.get_data_dtype() == np.float32


def test_a_large_series_opens_lazily_and_the_widgets_read_it_in_their_workers(make_napari_viewer, study,
                                                                               tiny_weights, monkeypatch, qtbot):
    """Above LAZY_READ_BYTES a series is a dask array: opening reads headers only, Run and the readout read
    what they need off the GUI thread, and the prediction equals the one made from the eager read."""
    import dask.array as da

    from napari_sff.inference import predict_volume
    from napari_sff.io.dicom import read
    from napari_sff.widgets import _layers
    from napari_sff.widgets.predict import PredictWidget

    monkeypatch.setattr(read, "LAZY_READ_BYTES", 1024)  # the 40 x 40 x 6 phantom counts as large
    viewer = make_napari_viewer()
    t2, sff = viewer.open(study.root, plugin="napari-sff")
    assert isinstance(t2.data, da.Array) and isinstance(sff.data, da.Array)
    eager = io.read_volume(study.root, "3")
    np.testing.assert_array_equal(np.asarray(t2.data), eager.array)
    widget = PredictWidget(viewer)
    widget.image.value, widget.ground_truth.value = t2, sff
    widget.unet_weights.value = tiny_weights["unet"]
    widget.device.value = "cpu"
    request = widget.make_request()
    assert isinstance(request.volume.array, da.Array)  # not read on the GUI thread
    centre = t2.data_to_world(np.array(t2.data.shape) // 2)
    assert _layers.value_at(t2, centre) == float(eager.array[tuple(np.array(t2.data.shape) // 2)])
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    predicted = viewer.layers[_layers.output_name("sff", "unet", t2.name)].data  # the layer holds percent
    expected = predict_volume(eager.array, eager.spacing, "unet", weights=tiny_weights["unet"], device="cpu").sff
    np.testing.assert_allclose(predicted, 100 * expected, atol=1e-4)
    assert _layers.output_name("error", "unet", t2.name) in viewer.layers  # the lazy ground truth was read too
