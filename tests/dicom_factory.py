"""Synthetic DICOM MR series for tests and benchmarks: single-frame MR Image Storage files written with pydicom.

Geometry is set up the way a scanner does it, independently of napari-sff: a slice stack along the normal
(row direction x column direction) of ``ImageOrientationPatient`` in LPS millimetres. ``array[k, i, j]`` is pixel
(row i, column j) of the k-th slice from ``origin`` along the normal. Everything a test may want to break (positions,
sizes, orientation, rescale) can be overridden per slice.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

#: Made-up patient identifiers: tests assert they never show up in messages.
PATIENT_NAME = "Doe^Jane^Secret"
PATIENT_ID = "PID-4711-SECRET"


@dataclass
class Study:
    """UIDs shared by every series of one simulated visit."""

    study_uid: str = field(default_factory=generate_uid)
    frame_of_reference_uid: str = field(default_factory=generate_uid)


def oblique_orientation(degrees_about_x: float = 0.0, degrees_about_z: float = 0.0) -> tuple[float, ...]:
    """ImageOrientationPatient of an axial slice tilted about the L-R axis, then rotated about S-I."""
    ax, az = np.radians(degrees_about_x), np.radians(degrees_about_z)
    rot_x = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rot_z = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rotation = rot_z @ rot_x
    row, col = rotation @ [1.0, 0.0, 0.0], rotation @ [0.0, 1.0, 0.0]
    return tuple(float(v) for v in (*row, *col))


def slice_positions(
    n_slices: int, spacing: float, orientation: Sequence[float], origin: Sequence[float]
) -> np.ndarray:
    """ImagePositionPatient of each slice: ``origin`` + k * spacing * normal (LPS mm)."""
    normal = np.cross(orientation[:3], orientation[3:])
    return np.asarray(origin, float) + np.arange(n_slices)[:, None] * spacing * normal


def write_series(
    folder: str | os.PathLike,
    array: np.ndarray,
    *,
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    slice_spacing: float = 3.0,
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin: Sequence[float] = (-100.0, -80.0, -20.0),
    positions: np.ndarray | None = None,
    series_number: int = 3,
    description: str = "t2_tse_tra",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    echo_time: float = 90.0,
    slopes: Sequence[float] | None = None,
    intercepts: Sequence[float] | None = None,
    study: Study | None = None,
    series_uid: str | None = None,
    orientations: Sequence[Sequence[float]] | None = None,
    shuffle_names: bool = True,
    seed: int = 0,
    prefix: str = "",
) -> list[Path]:
    """Write ``array`` (slices, rows, cols) as one MR series; returns the file paths in slice order.

    ``array`` holds real-world values; with ``slopes``/``intercepts`` (per slice) the stored values are
    ``round((value - intercept) / slope)``, so a reader must apply each slice's own rescale to get them back.
    File names are random (``shuffle_names``), so nothing can be read from their order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array)
    n_slices = array.shape[0]
    study = study or Study()
    series_uid = series_uid or generate_uid()
    if positions is None:
        positions = slice_positions(n_slices, slice_spacing, orientation, origin)
    rng = np.random.default_rng(seed)
    names = rng.permutation(10_000 + n_slices * 7)[:n_slices] if shuffle_names else np.arange(n_slices)
    paths = []
    for k in range(n_slices):
        slope = 1.0 if slopes is None else float(slopes[k])
        intercept = 0.0 if intercepts is None else float(intercepts[k])
        stored = np.round((array[k].astype(np.float64) - intercept) / slope)
        if stored.min() < 0 or stored.max() > 65535:
            raise ValueError("stored values must fit in uint16: adjust slope / intercept")
        ds = _mr_dataset(study, series_uid, series_number, description, image_type, echo_time)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(v) for v in positions[k]]
        ds.ImageOrientationPatient = [float(v) for v in (orientations[k] if orientations else orientation)]
        ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
        ds.SliceThickness = float(slice_spacing)
        ds.SliceLocation = float(positions[k][2])
        ds.Rows, ds.Columns = array[k].shape
        if slopes is not None or intercepts is not None:
            ds.RescaleSlope = f"{slope:.6g}"
            ds.RescaleIntercept = f"{intercept:.6g}"
            ds.RescaleType = "US"
        ds.PixelData = stored.astype("<u2").tobytes()
        path = folder / f"{prefix}{int(names[k]):05d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _mr_dataset(
    study: Study, series_uid: str, series_number: int, description: str, image_type: Sequence[str], echo_time: float
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AccessionNumber = "ACC-SECRET-1"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240102"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "101010"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Manufacturer = "napari-sff test factory"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageType = list(image_type)
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.EchoTime = echo_time
    ds.RepetitionTime = 3000.0
    ds.EchoTrainLength = 16
    ds.MagneticFieldStrength = 3.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def write_enhanced(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Convert a single-frame series into one Legacy Converted Enhanced MR file with highdicom."""
    from highdicom.legacy import LegacyConvertedEnhancedMRImage

    datasets = [pydicom.dcmread(p) for p in paths]
    enhanced = LegacyConvertedEnhancedMRImage(
        datasets, series_instance_uid=generate_uid(), series_number=int(datasets[0].SeriesNumber) + 100,
        sop_instance_uid=generate_uid(), instance_number=1,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    enhanced.save_as(out, enforce_file_format=True)
    return out
