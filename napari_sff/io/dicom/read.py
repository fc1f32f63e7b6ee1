"""One stack from :func:`~.series.list_series` -> display-order :class:`~napari_sff.io.volume.Volume`, in the
same world convention as the NIfTI reader; :func:`read_dicom` and :func:`read_volume` list, pick and read at once.

Each stack is checked (sizes, orientation, pixel spacing, slice spacing, missing or duplicate slices) and any
problem is a one-line :class:`~.series.DicomError` naming the series by number and description, never by patient
data. Geometry comes from highdicom: ``get_series_volume_positions`` orders the slices along the normal and checks
the spacing, ``VolumeGeometry`` gives the LPS affine; enhanced multi-frame files go through
``highdicom.imread(...).get_volume()``. Pixels are read per slice with each slice's own RescaleSlope/Intercept
(pydicom's modality LUT), eagerly or lazily as a dask array (one chunk per slice, for the napari reader: only the
slices on screen are read). LPS -> RAS flips x and y, then :func:`~napari_sff.io.volume.reorient_to_display`
brings the voxels into display order exactly as for NIfTI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_sff.io.dicom.series import (
    _ENHANCED_MARKERS,
    DicomError,
    SeriesInfo,
    _image_type,
    describe_series,
    list_series,
    select_series,
)
from napari_sff.io.volume import Volume, reorient_to_display

#: DICOM patient space (LPS) -> NIfTI world (RAS): flip x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Relative tolerance on slice-spacing regularity (highdicom's default is 1 %); orientation to 1e-4.
SPACING_RTOL = 0.01
ORIENTATION_TOL = 1e-4
#: ``lazy=None`` (the napari reader) reads a single-frame series lazily above this size, so opening a clinical
#: series costs a header scan (0.1 s for 512 x 512 x 200, benchmarks/bench_dicom_read.py) and the slices on
#: screen, not a full read on the GUI thread; the widgets read lazy layers in their workers.
LAZY_READ_BYTES = 64 * 2**20


def read_dicom(
    path: str | os.PathLike, series: str | int | None = None, *, lazy: bool | None = False
) -> list[Volume]:
    """Read every series under ``path`` (or those matching ``series``) into display-order volumes.

    ``lazy`` as in :func:`read_series` (True: dask arrays, each slice's file read when first needed; None: by
    size, as the napari reader does). Raises :class:`DicomError` for the first inconsistent series.
    """
    infos = select_series(list_series(path), series)
    return [read_series(info, source_path=path, lazy=lazy) for info in infos]


def read_volume(path: str | os.PathLike, series: str | int | None = None) -> Volume:
    """One image from a NIfTI file or a DICOM folder / DICOMDIR / file: the one way commands read their input.

    A DICOM input holding several series needs ``series`` (number, UID or description); the error lists them.
    """
    from napari_sff.io.nifti import is_nifti_path, read_nifti

    if is_nifti_path(path):
        if series is not None:
            raise DicomError(f"{path} is a NIfTI file: it has no series to choose; leave out --series")
        return read_nifti(path)
    infos = select_series(list_series(path), series)
    if len(infos) > 1:
        what = "series" if series is None else f"series matching {str(series)!r}"
        raise DicomError(f"{path} holds {len(infos)} {what}; choose one with --series NUMBER, UID or "
                         f"DESCRIPTION: {describe_series(infos)}")
    return read_series(infos[0], source_path=path)


def read_series(
    info: SeriesInfo, *, source_path: str | os.PathLike | None = None, lazy: bool | None = False
) -> Volume:
    """Check and read one stack from :func:`list_series` into a display-order :class:`Volume`.

    ``lazy``: False reads every slice now (numpy), True gives a dask array (one chunk per slice file, read on
    first use), None decides by size (lazy above :data:`LAZY_READ_BYTES`). Enhanced multi-frame files are
    always read at once.
    """
    if info.multiframe:
        array, lps_affine, order = _read_multiframe(info)
    else:
        array, lps_affine, order = _read_single_frames(info, lazy)
    ras = LPS_TO_RAS @ lps_affine
    import nibabel as nib  # here: importing it costs 0.5 s (see napari_sff.io.volume)

    file_ornt = nib.orientations.io_orientation(ras)
    display, display_affine = reorient_to_display(array, ras, file_ornt)
    if isinstance(display, np.ndarray):
        display = np.ascontiguousarray(display)
    # Which display axis the DICOM slice axis became, and whether it runs backwards there.
    columns = display_affine[:3, :3] / np.linalg.norm(display_affine[:3, :3], axis=0)
    alignment = columns.T @ (ras[:3, 0] / np.linalg.norm(ras[:3, 0]))
    slice_axis = int(np.argmax(np.abs(alignment)))
    forward = bool(alignment[slice_axis] > 0)
    ordered = order if forward else order[::-1]
    headers = [info.headers[i] for i in ordered] if not info.multiframe else info.headers
    template = headers[0].copy()
    if "PixelData" in template:
        del template.PixelData
    dicom = {
        "series_uid": info.series_uid,
        "study_uid": str(template.get("StudyInstanceUID") or ""),
        "frame_of_reference_uid": str(template.get("FrameOfReferenceUID") or ""),
        "series_number": info.series_number,
        "series_description": info.series_description,
        "image_type": info.image_type,
        "modality": info.modality,
        "echo_time": info.echo_time,
        "label": info.label,
        "template": template,
        "instances": [(str(h.SOPClassUID), str(h.SOPInstanceUID)) for h in headers
                      if "SOPClassUID" in h and "SOPInstanceUID" in h],
        "files": [info.files[i] for i in ordered] if not info.multiframe else list(info.files),
        "slice_axis": slice_axis,
        "lps_affine": lps_affine,
    }
    source = {
        "path": str(Path(source_path if source_path is not None else info.files[0]).resolve()),
        "format": "dicom",
        "display_affine": display_affine.copy(),
        "display_shape": tuple(display.shape),
        "dicom": dicom,
    }
    return Volume(display, display_affine, source)


def _check_consistent(info: SeriesInfo) -> None:
    """One clear line for what makes a stack not one volume: sizes, orientation, pixel spacing, geometry."""
    headers = info.headers
    sizes = sorted({(int(h.Rows), int(h.Columns)) for h in headers})
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c}" for r, c in sizes)
        raise DicomError(f"{info.name}: mixed image sizes ({listed}) in one series; it is not one volume")
    if any(int(h.get("SamplesPerPixel", 1)) != 1 for h in headers):
        raise DicomError(f"{info.name}: colour images are not supported; use a greyscale MR series")
    if any("MOSAIC" in _image_type(h) for h in headers):
        raise DicomError(f"{info.name}: Siemens mosaic images are not supported; convert them with dcm2niix")
    missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
               if any(k not in h or h.get(k) in (None, "") for h in headers)]
    if missing:
        raise DicomError(f"{info.name}: no {', '.join(missing)} (a projection or a scout without patient "
                         "geometry); it cannot be placed in world space")
    orientations = np.array([[float(v) for v in h.ImageOrientationPatient] for h in headers])
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_TOL:
        raise DicomError(f"{info.name}: slice orientation varies within the series (e.g. a 3-plane localizer); "
                         "it is not one volume")
    spacings = np.array([[float(v) for v in h.PixelSpacing] for h in headers])
    if np.abs(spacings - spacings[0]).max() > 1e-4 * max(1.0, float(spacings[0].max())):
        raise DicomError(f"{info.name}: pixel spacing varies within the series; it is not one volume")


def _slice_geometry(info: SeriesInfo) -> tuple[float, list[int]]:
    """Slice spacing and each header's position in the stack (highdicom), or a DicomError saying why not."""
    from highdicom.spatial import get_series_volume_positions

    headers = info.headers
    if len(headers) == 1:
        header = headers[0]
        thickness = header.get("SpacingBetweenSlices") or header.get("SliceThickness") or 1.0
        return float(thickness), [0]
    spacing, positions = get_series_volume_positions(headers, rtol=SPACING_RTOL, orientation_tol=ORIENTATION_TOL)
    if spacing is None or positions is None:
        raise DicomError(f"{info.name}: {_diagnose_stack(headers)}; it is not one regular volume")
    return float(spacing), list(positions)


def _diagnose_stack(headers: Sequence[Any]) -> str:
    """Why positions are not a regular stack (only for the message; the geometry itself is highdicom's)."""
    orientation = np.array([float(v) for v in headers[0].ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    points = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
    along = np.sort(points @ normal)
    steps = np.diff(along)
    if np.any(steps < 1e-3):
        count = int(np.sum(steps < 1e-3)) + 1
        return (f"{count} images share a slice position (a 4D, multi-acquisition or repeated series); "
                "split it by acquisition first")
    offsets = points - points[np.argsort(points @ normal)[0]]
    in_plane = np.abs(offsets - np.outer(offsets @ normal, normal)).max()
    if in_plane > 1e-2 * max(steps.min(), 1e-3) + 1e-3:
        return "slices are not stacked along their normal (gantry tilt or shifted slices)"
    step = steps.min()
    ratios = steps / step
    if np.allclose(ratios, np.round(ratios), atol=SPACING_RTOL * 2) and ratios.max() > 1.5:
        missing = int(np.sum(np.round(ratios) - 1))
        return f"{missing} slice(s) missing (gaps of {steps.max():.3g} mm in a {step:.3g} mm stack)"
    return f"slice spacing varies from {steps.min():.3g} to {steps.max():.3g} mm"


def _read_single_frames(info: SeriesInfo, lazy: bool | None) -> tuple[Any, np.ndarray, list[int]]:
    """Stack of single-frame images -> (array [slice, row, col], LPS affine, header index per slice)."""
    from highdicom import VolumeGeometry

    _check_consistent(info)
    spacing, positions = _slice_geometry(info)
    order = [positions.index(i) for i in range(len(positions))]
    first = info.headers[order[0]]
    rows, columns = int(first.Rows), int(first.Columns)
    geometry = VolumeGeometry.from_attributes(
        image_position=[float(v) for v in first.ImagePositionPatient],
        image_orientation=[float(v) for v in first.ImageOrientationPatient],
        rows=rows, columns=columns, pixel_spacing=[float(v) for v in first.PixelSpacing],
        spacing_between_slices=spacing, number_of_frames=len(order), coordinate_system="PATIENT",
    )
    dtype = _output_dtype(info.headers)
    files = [info.files[i] for i in order]
    headers = [info.headers[i] for i in order]
    if lazy is None:
        lazy = len(files) * rows * columns * dtype.itemsize > LAZY_READ_BYTES
    if lazy and len(files) > 1:
        import dask
        import dask.array as da

        read = dask.delayed(_read_pixels, pure=False)
        array = da.stack([da.from_delayed(read(f, h, dtype, info.name), shape=(rows, columns), dtype=dtype)
                          for f, h in zip(files, headers, strict=True)])
    else:
        array = np.empty((len(files), rows, columns), dtype=dtype)
        for k, (file, header) in enumerate(zip(files, headers, strict=True)):
            array[k] = _read_pixels(file, header, dtype, info.name)
    return array, np.asarray(geometry.affine, dtype=float), order


def _rescale(header: Any) -> tuple[float, float]:
    slope = header.get("RescaleSlope")
    intercept = header.get("RescaleIntercept")
    return (float(slope) if slope not in (None, "") else 1.0,
            float(intercept) if intercept not in (None, "") else 0.0)


def _output_dtype(headers: Sequence[Any]) -> np.dtype:
    """Stored integer type when no slice rescales its values, float32 otherwise (per-slice slopes differ)."""
    if all(_rescale(h) == (1.0, 0.0) for h in headers):
        first = headers[0]
        bits = int(first.get("BitsAllocated", 16))
        signed = int(first.get("PixelRepresentation", 0)) == 1
        if bits in (8, 16, 32):
            return np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    return np.dtype(np.float32)


def _read_pixels(file: str, header: Any, dtype: np.dtype, name: str) -> np.ndarray:
    """One slice's values with its own rescale (pydicom's modality LUT on the scanned header), as ``dtype``."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, pixel_array

    try:
        try:  # pydicom reads only the elements needed to decode the pixels
            pixels = pixel_array(file)
        except Exception:  # e.g. an old file without preamble: the full reader copes
            pixels = pydicom.dcmread(file, force=True).pixel_array
    except Exception as exc:  # truncated file, missing decoder for a compressed transfer syntax...
        raise DicomError(f"{name}: a slice's pixel data cannot be read ({type(exc).__name__}: {exc})") from exc
    if pixels.shape != (int(header.Rows), int(header.Columns)):
        raise DicomError(f"{name}: a slice holds {pixels.shape} pixels, its header says "
                         f"{int(header.Rows)}x{int(header.Columns)}")
    if np.issubdtype(dtype, np.floating):
        return np.asarray(apply_modality_lut(pixels, header), dtype=dtype)
    return pixels.astype(dtype, copy=False)


def _read_multiframe(info: SeriesInfo) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """An enhanced (or legacy-converted) multi-frame image through highdicom's volume API."""
    import highdicom

    if not all(m in info.headers[0] for m in _ENHANCED_MARKERS):
        raise DicomError(f"{info.name}: multi-frame image without functional groups (no patient geometry); "
                         "it cannot be placed in world space")
    try:
        image = highdicom.imread(info.files[0])
        volume = image.get_volume(dtype=np.float32, apply_real_world_transform=False, rtol=SPACING_RTOL)
    except Exception as exc:  # highdicom says what is wrong (irregular frames, several stacks, ...)
        raise DicomError(f"{info.name}: its frames are not one regular volume ({exc})") from exc
    array = np.asarray(volume.array)
    if array.ndim != 3:
        raise DicomError(f"{info.name}: multi-frame image with {array.ndim - 3} channel axis; not supported")
    # Frames that were not rescaled come back as the integers they were stored as: keep that type.
    stored = _output_dtype([info.headers[0]])
    if np.issubdtype(stored, np.integer) and _integral(array):
        limits = np.iinfo(stored)
        if array.min() >= limits.min and array.max() <= limits.max:
            array = array.astype(stored)
    return array, np.asarray(volume.affine, dtype=float), [0]


def _integral(array: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(array)) and np.array_equal(array, np.round(array)))
