"""NIfTI reading/writing, orientation and layer placement (no Qt needed)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_sff import io

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
REAL_FILES = [
    "anatomical.nii",
    "example4d.nii.gz",
    "example_nifti2.nii.gz",
    "standard.nii.gz",
    "reoriented_anat_moved.nii",
    "functional.nii",
]


def world_of(placement: dict, index: np.ndarray) -> np.ndarray:
    """napari's data -> world map for scale, rotate, translate (no shear)."""
    rotate = placement.get("rotate", np.eye(len(placement["scale"])))
    return rotate @ (np.asarray(placement["scale"]) * index) + np.asarray(placement["translate"])


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_files_round_trip(tmp_path, name):
    source = NIBABEL_DATA / name
    volume = io.read_nifti(source)
    out = io.write_nifti(volume, tmp_path / "copy.nii.gz")
    original, copy = nib.load(source), nib.load(out)
    assert copy.shape == original.shape
    np.testing.assert_allclose(copy.affine, original.affine)
    np.testing.assert_array_equal(np.asanyarray(copy.dataobj), np.asanyarray(original.dataobj))
    assert type(copy) is type(original)  # NIfTI-2 stays NIfTI-2
    again = io.read_nifti(out)
    np.testing.assert_array_equal(again.array, volume.array)
    np.testing.assert_allclose(again.affine, volume.affine)


def test_4d_time_axis_first():
    volume = io.read_nifti(NIBABEL_DATA / "example4d.nii.gz")
    file_shape = nib.load(NIBABEL_DATA / "example4d.nii.gz").shape
    assert volume.array.ndim == 4
    assert volume.array.shape[0] == file_shape[3]
    placement = io.layer_placement(volume)
    assert len(placement["scale"]) == 4 and placement["scale"][0] == 1.0


def random_oblique_affine(rng: np.random.Generator) -> np.ndarray:
    """A flipped, permuted, slightly rotated affine with anisotropic voxels."""
    permutation = np.eye(3)[rng.permutation(3)] * rng.choice([-1, 1], size=3)
    angle = np.deg2rad(8)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = tilt @ permutation @ np.diag([0.9, 1.3, 4.5])
    affine[:3, 3] = rng.uniform(-100, 100, size=3)
    return affine


@pytest.mark.parametrize("seed", range(4))
def test_layer_places_every_voxel_at_its_scanner_position(tmp_path, seed):
    rng = np.random.default_rng(seed)
    affine = random_oblique_affine(rng)
    data = rng.integers(0, 1000, size=(5, 6, 7)).astype(np.int16)
    path = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    volume = io.read_nifti(path)
    placement = io.layer_placement(volume)
    for display_index in [np.zeros(3), np.array(volume.array.shape) - 1, np.array([1, 2, 3])]:
        display_index = np.minimum(display_index, np.array(volume.array.shape) - 1)
        ras = volume.affine @ np.append(display_index, 1)
        file_index = np.rint(np.linalg.inv(affine) @ ras)[:3].astype(int)
        assert volume.array[tuple(display_index.astype(int))] == data[tuple(file_index)]
        np.testing.assert_allclose(world_of(placement, display_index), io.RAS_TO_WORLD @ ras[:3], atol=1e-6)


def test_display_order_is_radiological(tmp_path):
    """Axis 0 runs inferior->superior, rows anterior->posterior, columns patient right->left."""
    data = np.zeros((4, 5, 6), dtype=np.float32)  # stored as RAS: x=L->R, y=P->A, z=I->S
    path = tmp_path / "ras.nii"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0])), path)
    volume = io.read_nifti(path)
    assert volume.array.shape == (6, 5, 4)
    assert volume.spacing == (3.0, 2.0, 1.0)
    assert nib.aff2axcodes(volume.affine) == io.DISPLAY_AXCODES


def test_big_endian_and_scaled_data(tmp_path):
    """Written byte by byte, as a scanner would: big-endian int16 with scl_slope/scl_inter."""
    raw = np.arange(24, dtype=">i2").reshape(2, 3, 4)
    header = nib.Nifti1Header(endianness=">")
    header.set_data_shape(raw.shape)
    header.set_data_dtype(">i2")
    header.set_slope_inter(2.0, 10.0)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    path = tmp_path / "scaled_be.nii"
    with open(path, "wb") as stream:
        header.write_to(stream)
        stream.write(raw.tobytes(order="F"))
    assert nib.load(path).header.endianness == ">"
    volume = io.read_nifti(path)
    assert volume.array.dtype.isnative
    np.testing.assert_allclose(np.sort(volume.array.ravel()), raw.astype(float).ravel() * 2 + 10)


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 1), (2, 1), (3, 2, 1, 1, 1)])
def test_tiny_images(tmp_path, shape):
    path = tmp_path / "tiny.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, dtype=np.float32), np.eye(4)), path)
    volume = io.read_nifti(path)
    assert volume.array.ndim == 3 and volume.array.size == int(np.prod(shape))
    out = io.write_nifti(volume, tmp_path / "tiny_copy.nii.gz")
    assert nib.load(out).shape == shape


def test_unreadable_file_gives_one_line_error(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not a nifti file")
    with pytest.raises(io.NiftiError, match="broken.nii.gz") as info:
        io.read_nifti(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(io.NiftiError, match="no such file"):
        io.read_nifti(tmp_path / "missing.nii")


# -- files that converters write in the wild ------------------------------------------------------------------

RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


@pytest.mark.parametrize("dtype", [RGB24, np.dtype([*RGB24.descr, ("A", "u1")])], ids=["RGB24", "RGBA32"])
def test_colour_nifti_is_a_one_line_error(tmp_path, dtype):
    data = np.zeros((4, 5, 3), dtype)
    data["R"] = 200
    path = tmp_path / "colour.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    assert nib.load(path).get_data_dtype().names[:3] == ("R", "G", "B")  # nibabel itself reads it fine
    kind = "RGBA" if len(dtype.names) == 4 else "RGB"
    with pytest.raises(io.NiftiError, match=f"colour.nii.gz is an {kind} image; napari-sff needs a grayscale") as info:
        io.read_nifti(path)
    assert "\n" not in str(info.value) and "convert it to one channel first" in str(info.value)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_voxels_are_read_as_magnitude_with_a_warning(tmp_path, dtype):
    real = np.arange(60, dtype=float).reshape(3, 4, 5)
    data = (real * np.exp(1j * np.linspace(0, 2 * np.pi, 60)).reshape(3, 4, 5)).astype(dtype)  # |z| = real
    path = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 4.0, 1.0])), path)
    plain = tmp_path / "magnitude.nii.gz"
    nib.save(nib.Nifti1Image(real.astype(np.float32), np.diag([2.0, 2.0, 4.0, 1.0])), plain)
    with pytest.warns(UserWarning, match=r"complex.nii.gz has complex voxels; using their magnitude \|z\|"):
        volume = io.read_nifti(path)
    assert not np.iscomplexobj(volume.array)
    assert volume.array.dtype == (np.float32 if dtype == np.complex64 else np.float64)
    np.testing.assert_allclose(volume.array, io.read_nifti(plain).array, rtol=1e-5, atol=1e-4)


def nifti_with_sform(path: Path, affine: np.ndarray, shape=(4, 5, 3)) -> Path:
    """A file whose sform is ``affine`` as given (nibabel refuses to build an image from a singular one)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header.set_sform(affine, code=1)
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    nib.save(nib.Nifti1Image(data, None, header=header), path)
    return path


def test_zero_slice_axis_is_read_as_1_mm_perpendicular_with_a_warning(tmp_path):
    # A zero third column: what a converter writes with pixdim[3] = 0 (or a missing slice spacing).
    singular = np.array([[-0.9, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 0, 30], [0, 0, 0, 1.0]])
    path = nifti_with_sform(tmp_path / "flat.nii.gz", singular)
    with pytest.warns(UserWarning, match="flat.nii.gz: voxel axis 2 has zero length in the affine.*assuming 1 mm"):
        volume = io.read_nifti(path)
    assert sorted(volume.spacing) == pytest.approx([0.9, 0.9, 1.0])
    # Known answer: +z is right-handed from (-x, +y), so slice k sits at z = 30 - k mm.
    expected = singular.copy()
    expected[2, 2] = -1.0
    assert np.allclose(volume.source["affine"], expected)
    data = np.asanyarray(nib.load(path).dataobj)
    for k in range(3):  # every file slice lands at its assumed position
        ras = expected @ np.array([1, 2, k, 1.0])
        display_index = np.rint(np.linalg.inv(volume.affine) @ ras)[:3].astype(int)
        assert volume.array[tuple(display_index)] == data[1, 2, k]
    # What is written from it has a usable affine (nibabel cannot even build an image from the file's own).
    out = io.write_nifti(volume.like(volume.array * 2), tmp_path / "out.nii.gz")
    np.testing.assert_allclose(nib.load(out).affine, expected, atol=1e-6)


def test_pixdim_0_under_a_qform_is_read_as_1_mm(tmp_path, caplog):
    # nibabel repairs this one itself on load, and logs what it assumed; the volume gets 1 mm along the axis.
    header = nib.Nifti1Header()
    header.set_data_shape((4, 5, 3))
    header.set_data_dtype(np.float32)
    header.set_qform(np.diag([0.8, 0.8, 3.0, 1.0]), code=1)
    header["pixdim"][3] = 0.0
    path = tmp_path / "qform.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 3), np.float32), None, header=header), path)
    volume = io.read_nifti(path)
    assert "setting 0 dims to 1" in caplog.text
    assert volume.spacing == pytest.approx((1.0, 0.8, 0.8))


def test_parallel_voxel_axes_are_a_one_line_error(tmp_path):
    parallel = np.array([[1.0, 2.0, 0, 0], [0, 0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])  # axes 0 and 1 along x
    path = nifti_with_sform(tmp_path / "parallel.nii.gz", parallel)
    with pytest.raises(io.NiftiError, match="parallel.nii.gz: the affine .* is singular") as info:
        io.read_nifti(path)
    assert "\n" not in str(info.value)


def test_writer_refuses_input_and_existing_files(tmp_path):
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), path)
    volume = io.read_nifti(path)
    with pytest.raises(io.NiftiError, match="input"):
        io.write_nifti(volume, path, overwrite=True)
    with pytest.raises(io.NiftiError, match="input"):  # a prediction derived from it is protected the same way
        io.write_nifti(volume.like(volume.array * 0.5), path, overwrite=True)
    other = tmp_path / "other.nii.gz"
    io.write_nifti(volume, other)
    with pytest.raises(io.NiftiError, match="exists"):
        io.write_nifti(volume, other)
    with pytest.raises(io.NiftiError, match="must end in"):
        io.write_nifti(volume, tmp_path / "x.png")


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"previous content")

    def exploding_save(image, filename):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", exploding_save)
    with pytest.raises(OSError):
        io.write_nifti(io.Volume.from_array(np.zeros((2, 2, 2)), (1, 1, 1)), target, overwrite=True)
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_derived_volume_is_saved_with_source_geometry(tmp_path):
    source = NIBABEL_DATA / "reoriented_anat_moved.nii"
    volume = io.read_nifti(source)
    prediction = volume.like(np.random.default_rng(0).random(volume.array.shape).astype(np.float32))
    out = io.write_nifti(prediction, tmp_path / "pred_sff.nii.gz")
    saved = nib.load(out)
    np.testing.assert_allclose(saved.affine, nib.load(source).affine)
    assert saved.get_data_dtype().newbyteorder("=") == np.float32
    np.testing.assert_array_equal(io.read_nifti(out).array, prediction.array)


def test_layer_kinds_from_name_and_intent(tmp_path):
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[1:3, 1:3, 1:3] = 2
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "thigh_labels.nii.gz")
    intent = nib.Nifti1Image(labels, np.eye(4))
    intent.header.set_intent("label")
    nib.save(intent, tmp_path / "segmentation.nii.gz")
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 42.0, np.float32), np.eye(4)), tmp_path / "dixon_sff.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), tmp_path / "t2w.nii.gz")

    assert io.read_layers(tmp_path / "thigh_labels.nii.gz")[0][2] == "labels"
    assert io.read_layers(tmp_path / "segmentation.nii.gz")[0][2] == "labels"
    data, meta, kind = io.read_layers(tmp_path / "dixon_sff.nii.gz")[0]
    assert kind == "image" and meta["colormap"] == io.SFF_COLORMAP and meta["contrast_limits"] == (0.0, 100.0)
    np.testing.assert_array_equal(data, 42.0)  # stored in percent, shown in percent: untouched
    assert meta["metadata"][io.LAYER_SCALE_KEY] == 100.0
    np.testing.assert_allclose(io.layer_fraction(data, meta["metadata"]), 0.42, rtol=1e-6)
    _, meta, kind = io.read_layers(tmp_path / "t2w.nii.gz")[0]
    assert kind == "image" and meta["colormap"] == "gray"


def test_layer_writer_restores_units_and_builds_affine_without_metadata(tmp_path):
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 42.0, np.float32), np.diag([2, 2, 2, 1.0])),
             tmp_path / "dixon_sff.nii.gz")
    data, meta, _ = io.read_layers(tmp_path / "dixon_sff.nii.gz")[0]
    [written] = io.write_layer(str(tmp_path / "copy_sff.nii.gz"), data, meta)
    np.testing.assert_array_equal(np.asanyarray(nib.load(written).dataobj), 42.0)  # a percent file: percent

    # a fraction file: the layer holds 100 x its values (percent), and saving writes the fractions back
    fractions = np.array([0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 0.42, 0.07], np.float32).reshape(2, 2, 2)
    nib.save(nib.Nifti1Image(fractions, np.eye(4)), tmp_path / "gt_sff.nii.gz")
    data, meta, _ = io.read_layers(tmp_path / "gt_sff.nii.gz")[0]
    # (the layer is in display order: compare the values, sorted)
    np.testing.assert_allclose(np.sort(data, axis=None), 100 * np.sort(fractions, axis=None).astype(np.float64),
                               rtol=1e-6)
    assert data.dtype == np.float32 and meta["contrast_limits"] == (0.0, 100.0)
    [written] = io.write_layer(str(tmp_path / "gt_copy_sff.nii.gz"), data, meta)
    saved = np.asanyarray(nib.load(written).dataobj)
    np.testing.assert_array_equal(saved.reshape(-1)[:6], fractions.reshape(-1)[:6])  # eighths: exact
    np.testing.assert_allclose(saved, fractions, rtol=1e-6)  # others within float32 rounding
    # per mille: layer = file / 10, saved back x 10
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 420, np.int16), np.eye(4)), tmp_path / "pm_sff.nii.gz")
    data, meta, _ = io.read_layers(tmp_path / "pm_sff.nii.gz")[0]
    np.testing.assert_allclose(data, 42.0)
    [written] = io.write_layer(str(tmp_path / "pm_copy_sff.nii.gz"), data, meta)
    np.testing.assert_allclose(np.asanyarray(nib.load(written).dataobj), 420.0)
    # a layer marked as percent but made elsewhere (no file units): written as fractions
    made = {"name": "made_sff", "metadata": {io.LAYER_SCALE_KEY: io.SFF_LAYER_PERCENT}}
    [written] = io.write_layer(str(tmp_path / "made_sff.nii.gz"), np.full((2, 2, 2), 50.0, np.float32), made)
    np.testing.assert_array_equal(np.asanyarray(nib.load(written).dataobj), 0.5)

    drawn_meta = {"name": "drawn", "scale": (3.0, 0.5, 0.7), "translate": (10.0, -4.0, 2.0), "metadata": {}}
    [path] = io.write_layer(str(tmp_path / "drawn"), np.ones((2, 3, 4), np.uint8), drawn_meta)
    assert path.endswith(".nii.gz")
    volume = io.read_nifti(path)
    placement = io.layer_placement(volume)
    np.testing.assert_allclose(placement["scale"], drawn_meta["scale"])
    np.testing.assert_allclose(placement["translate"], drawn_meta["translate"])


def test_layer_writer_protects_the_input(tmp_path):
    path = tmp_path / "t2w.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3), np.float32), np.eye(4)), path)
    data, meta, _ = io.read_layers(path)[0]
    with pytest.raises(io.NiftiError, match="input"), pytest.warns(UserWarning, match="input"):
        io.write_layer(str(path), data, meta)


def test_reader_hook_accepts_only_nifti():
    assert io.napari_get_reader("scan.nii.gz") is io.read_paths
    assert io.napari_get_reader(["a.nii", "b.NII.GZ"]) is io.read_paths
    assert io.napari_get_reader("image.tif") is None
    assert io.napari_get_reader(["a.nii", "b.tif"]) is None
