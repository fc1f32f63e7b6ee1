"""An SFF map (or the DDPM's SD map) -> a new DICOM series in the source study that a PACS shows over the T2w.

Why a derived *MR Image* series by default
------------------------------------------
Many PACS viewers and workstations do not render Parametric Maps (and some reject the float pixel data they
carry), but every one of them shows single-frame MR images and fuses two series that share a Frame of Reference.
So by default each slice is an MR Image Storage instance with ImageType ``DERIVED\\SECONDARY\\FAT_FRACTION``
whose integer pixel values are the fat fraction in percent × 10 (``RescaleSlope`` 0.1, ``RescaleIntercept`` 0,
a Real World Value Mapping in UCUM "%"): a viewer shows "37.5" where the map holds 0.375, with 0.05 pp
quantisation. ``storage="parametric-map"`` writes a highdicom Parametric Map (one enhanced multi-frame
instance, float32 values in percent, content qualification RESEARCH) for viewers and pipelines that read them.

Both keep the source's StudyInstanceUID, FrameOfReferenceUID, patient and study modules, get a new
SeriesInstanceUID and SOPInstanceUIDs, reference the source series (ReferencedSeriesSequence, and per slice a
SourceImageSequence where the slice matches a source instance) and carry per-slice geometry computed from
:attr:`Volume.affine` (RAS -> LPS). Slices are written in the source acquisition's own plane (the display-order
array is transposed back losslessly), so a sagittal or oblique T2w gets a sagittal or oblique map, slice for
slice. Files are called ``IM_0001.dcm`` ...: nothing of the patient goes into a file name or a message.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_sff.io.atomic import atomic_directory
from napari_sff.io.volume import Volume

#: RAS+ <-> DICOM patient LPS+.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
KINDS = ("sff", "sd")
STORAGES = ("mr", "parametric-map")
#: Stored integer = value in percent / RESCALE_SLOPE (percent × 10).
RESCALE_SLOPE = 0.1
FILE_PATTERN = re.compile(r"IM_\d{4,}\.dcm")
DESCRIPTION_LIMIT = 64  # LO
#: SeriesNumber = source SeriesNumber + offset, so U-Net, DDPM and SD maps sort after the source and apart.
SERIES_OFFSETS = {("sff", "U-Net"): 1000, ("sff", "DDPM"): 2000, ("sd", "DDPM"): 3000}
RESEARCH_NOTE = "Research use only, not for diagnosis."

_PATIENT_STUDY_KEYWORDS = (
    # SOP common / patient / clinical trial subject
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "OtherPatientIDsSequence", "PatientComments",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    "PatientSpeciesDescription", "PatientSpeciesCodeSequence", "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ClinicalTrialSiteID", "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID", "ClinicalTrialTimePointID",
    # general study / patient study
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "ProcedureCodeSequence", "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy", "PatientAge", "PatientSize", "PatientWeight",
    # frame of reference and what places the images on the patient
    "FrameOfReferenceUID", "PositionReferenceIndicator", "PatientPosition", "BodyPartExamined", "Laterality",
    "AnatomicalOrientationType",
    # how the source was acquired (the map is derived pixel by pixel from it)
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "MagneticFieldStrength",
    "ImagedNucleus", "SliceThickness",
)
#: Type 2 attributes of the patient and study modules: present (maybe empty) in every instance.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


class DicomWriteError(ValueError):
    """A map that cannot be written as DICOM (no source study, bad folder, bad values); says what to do."""


def write_dicom_series(
    volume: Volume,
    folder: str | os.PathLike,
    *,
    kind: Literal["sff", "sd"] = "sff",
    model: str | None = None,
    weights: str | os.PathLike | None = None,
    description: str | None = None,
    series_number: int | None = None,
    storage: Literal["mr", "parametric-map"] = "mr",
    new_study: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``volume`` (a fat fraction map in [0, 1], or its SD) as a new DICOM series in ``folder``.

    ``volume.source["dicom"]`` (set by the DICOM reader, kept by :meth:`Volume.like`) names the study to attach
    to; a volume without it (from NIfTI, say) is refused unless ``new_study``, which writes a new study of an
    "Anonymous" patient with new Study and Frame of Reference UIDs (for research exports only). ``kind`` is
    "sff" or "sd"; ``model`` ("U-Net", "DDPM", "unet" ...) and ``weights`` (a path: only its file name is
    written) go into the SeriesDescription (at most 64 characters) and DerivationDescription. ``series_number``
    defaults to the source's SeriesNumber + 1000 (U-Net), + 2000 (DDPM SFF), + 3000 (SD). ``storage`` is "mr"
    (derived MR images, default) or "parametric-map". ``folder`` must not exist (or, with ``overwrite``, hold
    only a previous export) and must lie outside the DICOM folder the map was read from. Returns ``folder``.
    """
    if kind not in KINDS:
        raise DicomWriteError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if storage not in STORAGES:
        raise DicomWriteError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
    folder = Path(folder)
    array = np.asarray(volume.array)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise DicomWriteError(f"a DICOM series holds one 3D map; this one is {array.ndim}D (save one volume)")
    if np.iscomplexobj(array) or array.dtype.names is not None or array.dtype == bool:
        raise DicomWriteError(f"map voxels are {array.dtype}; expected real fat fractions in [0, 1]")
    check_dicom_output(volume, folder, new_study=new_study, overwrite=overwrite)
    source = dict(volume.source.get("dicom") or {})

    dixon = "dixon" in volume.source  # measured from Dixon fat and water (napari_sff.dixon), not predicted
    model_label = _model_label(model) or ("Dixon" if dixon else None)
    weights_name = Path(weights).name if weights else None
    description = _series_description(description, kind, model_label, weights_name)
    template = _template(source, new_study)
    if series_number is None:
        offset = SERIES_OFFSETS.get((kind, model_label or ""), 3000 if kind == "sd" else 1000)
        base = template.get("SeriesNumber") if not new_study else None
        series_number = offset + (int(base) if base not in (None, "") else 0)
    geometry = _SliceGeometry(np.asarray(volume.affine, float), array.shape, template if source else None)
    slices = geometry.reorder(array)
    percent = np.nan_to_num(slices.astype(np.float64) * 100.0, nan=0.0, posinf=0.0, neginf=0.0)
    derivation = _derivation_text(kind, model_label, weights_name, source, dixon)
    references = _references(source, geometry)
    series_uid = _new_uid()

    with atomic_directory(folder, overwrite=overwrite) as tmp:
        if storage == "mr":
            _write_mr_images(tmp, percent, geometry, template, references, series_uid=series_uid,
                             series_number=series_number, description=description, derivation=derivation,
                             kind=kind)
        else:
            _write_parametric_map(tmp, percent, geometry, template, references, series_uid=series_uid,
                                  series_number=series_number, description=description, derivation=derivation,
                                  kind=kind)
    return folder


def check_dicom_output(
    volume: Volume, folder: str | os.PathLike, *, new_study: bool = False, overwrite: bool = False
) -> None:
    """Raise :class:`DicomWriteError` now if :func:`write_dicom_series` would refuse ``volume`` or ``folder``.

    For callers that should refuse before a long prediction (the CLI checks the output before a DDPM run).
    ``volume`` may be the T2w itself: its ``source`` is what the map will carry.
    """
    if not volume.source.get("dicom") and not new_study:
        raise DicomWriteError(
            "the map has no DICOM source study to attach to (it was not predicted from a DICOM series); "
            "predict from the DICOM series, or pass new_study=True (--new-study) for a new anonymous study")
    _check_folder(Path(folder), volume.source, overwrite)


def layer_dicom_kind(name: str, metadata: dict[str, Any] | None = None) -> str | None:
    """"sff" or "sd" for a layer holding a fat fraction map or its SD, None for anything else (|error|, ...)."""
    info = (metadata or {}).get("napari_sff") or {}
    # metadata["napari_sff"]["kind"] of the Predict widget's layers, and napari_sff.dixon.DIXON_SFF_KIND
    known = {"sff": "sff", "sd": "sd", "std": "sd", "dixon_sff": "sff"}
    if info.get("kind") is not None:
        return known.get(info["kind"])  # |error|, difference, anatomy cells ...: None
    from napari_sff.io.layers import LAYER_KIND_KEY

    read_as = (metadata or {}).get(LAYER_KIND_KEY)  # what the file readers made of a file
    if read_as is not None:
        return "sff" if read_as == "sff" else None  # a T2w or a Dixon fat *signal* image is not a map
    if name.startswith("|error|") or " - " in name.split(" [")[0]:
        return None
    if re.match(r"SFF SD\b", name) or re.search(r"(^|[_ ])(sd|std)([_ ]|$)", name, re.IGNORECASE):
        return "sd"
    if re.search(r"sff|fat", name, re.IGNORECASE):
        return "sff"
    return None


def write_layer_dicom(
    data: Any, meta: dict[str, Any], folder: str | os.PathLike, **kwargs: Any
) -> Path:
    """Write an SFF / SD layer (its data and a dict with ``name``, ``metadata``, ``scale`` ...) as DICOM.

    The plain function behind the Predict widget's "Save as DICOM…": the model, weights and kind come from the
    layer's ``metadata["napari_sff"]`` and name; keyword arguments go to :func:`write_dicom_series`. A percent
    layer (napari-sff's fat-fraction layers) is brought back to fractions first (:func:`io.layer_fraction`).
    """
    from napari_sff.io.layers import layer_fraction, volume_from_layer

    name = str(meta.get("name") or "")
    metadata = meta.get("metadata") or {}
    kind = kwargs.pop("kind", None) or layer_dicom_kind(name, metadata)
    if kind is None:
        raise DicomWriteError(f"layer '{name}' is not a fat fraction or SD map; select an SFF layer to save")
    volume = volume_from_layer(layer_fraction(data, metadata), meta)
    if not volume.source.get("dicom"):  # a reshaped layer loses its geometry, but not its study
        dicom = (metadata.get("nifti") or {}).get("dicom")
        if dicom:
            volume.source = {**volume.source, "dicom": dicom}
    info = metadata.get("napari_sff") or {}
    kwargs.setdefault("model", info.get("model"))
    kwargs.setdefault("weights", info.get("weights"))  # a path, or "shipped"
    return write_dicom_series(volume, folder, kind=kind, **kwargs)


# ------------------------------------------------------------------------------------------------ checks
def _input_folders(source: dict[str, Any]) -> list[Path]:
    """Folders the volume (or the image it came from) was read from: a map is never written into one."""
    dicom = source.get("dicom") or {}
    if not dicom:  # a NIfTI input is a file: a new folder beside it harms nothing
        return []
    candidates = [source.get("path"), source.get("derived_from"), dicom.get("path"), dicom.get("folder")]
    files = dicom.get("files") or ()
    candidates += list(files[:1]) if isinstance(files, Sequence) and not isinstance(files, str) else []
    folders = []
    for candidate in candidates:
        if not candidate:
            continue
        path = Path(candidate).resolve()
        folders.append(path if path.is_dir() else path.parent)
    return folders


def _check_folder(folder: Path, source: dict[str, Any], overwrite: bool) -> None:
    """Never into (or over) the input's folder; an existing folder only with ``overwrite`` and if ours."""
    target = folder.resolve()
    for inputs in _input_folders(source):
        if target == inputs or inputs in target.parents or target in inputs.parents:
            raise DicomWriteError(
                f"{folder} is, holds or lies inside the DICOM folder the map was read from; "
                "choose an output folder outside it (the map would be read back as part of the study)")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise DicomWriteError(f"{folder} exists and is not a folder; choose a new folder name")
    if not overwrite:
        raise DicomWriteError(f"{folder} exists; choose a new folder or pass overwrite=True (--overwrite)")
    strays = [p for p in folder.iterdir() if not (p.is_file() and FILE_PATTERN.fullmatch(p.name))]
    if strays:
        raise DicomWriteError(
            f"{folder} holds files that napari-sff did not write; overwrite replaces only a previous export, "
            "so choose a new folder")


def _model_label(model: str | None) -> str | None:
    if not model:
        return None
    from napari_sff.inference import ARCH_LABELS

    return ARCH_LABELS.get(str(model).lower(), str(model))


def _series_description(text: str | None, kind: str, model: str | None, weights: str | None) -> str:
    """"napari-sff U-Net SFF [weights] (research use)", the weights name shortened to fit 64 characters."""
    if text is not None:
        if len(text) > DESCRIPTION_LIMIT:
            raise DicomWriteError(f"series description has {len(text)} characters; DICOM allows {DESCRIPTION_LIMIT}")
        return text
    what = "SFF SD" if kind == "sd" else "SFF"
    head = " ".join(p for p in ("napari-sff", model, what) if p)
    tail = " (research use)"
    if weights:
        room = DESCRIPTION_LIMIT - len(head) - len(tail) - 3
        stem = weights if len(weights) <= room else weights[: max(0, room - 1)] + "~"
        if room > 4:
            return f"{head} [{stem}]{tail}"
    return head + tail


def _derivation_text(kind: str, model: str | None, weights: str | None, source: dict[str, Any],
                     dixon: bool = False) -> str:
    from napari_sff import __version__

    if dixon:
        number = source.get("series_number")
        of = f" (fat series {number})" if number not in (None, "") else ""
        return (f"Signal fat fraction (SFF) in percent, F / (F + W) of Dixon fat and water images{of}, by "
                f"napari-sff {__version__}. {RESEARCH_NOTE}")
    what = "standard deviation of the signal fat fraction over DDPM samples" if kind == "sd" else (
        "signal fat fraction (SFF)")
    number = source.get("series_number")
    origin = f"T2-weighted series {number}" if number not in (None, "") else "a T2-weighted series"
    if not source:
        origin = "a T2-weighted image without DICOM source"
    text = (f"{what[0].upper()}{what[1:]} in percent, predicted from {origin} by napari-sff {__version__}"
            f", model {model or 'unknown'}, weights {weights or 'unknown'}. {RESEARCH_NOTE}")
    return text[:1024]  # ST


def _new_uid() -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=None))  # 2.25.<UUID>: unique without a registered root


def _template(source: dict[str, Any], new_study: bool):
    """The source instance whose patient, study and frame of reference the map joins (or a new anonymous one)."""
    from pydicom import Dataset

    template = source.get("template")
    if template is not None:
        return template
    if source:
        raise DicomWriteError("the map's DICOM source lacks its template instance; re-open the DICOM series")
    assert new_study
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Anonymous^"  # a one-component PN, caret-terminated
    ds.PatientID = "anonymous"
    ds.PatientIdentityRemoved = "YES"
    ds.StudyInstanceUID = _new_uid()
    ds.FrameOfReferenceUID = _new_uid()
    ds.StudyDescription = "napari-sff research export"
    ds.StudyID = "napari-sff"
    ds.PositionReferenceIndicator = ""
    now = _dt.datetime.now()
    ds.StudyDate, ds.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    return ds


# ---------------------------------------------------------------------------------------------- geometry
class _SliceGeometry:
    """Display-order (S, P, L) array <-> slices in the source acquisition's plane, with LPS positions.

    The DICOM reader reorients a series losslessly, so each display axis is parallel to one of the source's
    row, column and slice directions. Writing in that plane (rows and columns pointing as in the source, slices
    in display order) makes slice ``k`` of the map cover exactly the source instance ``k`` (the reader lists
    instances in display slice order). Without a usable source orientation the map is written as axial slices
    along display axis 0.
    """

    def __init__(self, affine: np.ndarray, shape: tuple[int, int, int], template: Any = None):
        lps = RAS_TO_LPS @ affine[:3, :3]
        origin = RAS_TO_LPS @ affine[:3, 3]
        spacing = np.linalg.norm(lps, axis=0)
        if np.any(spacing <= 0) or abs(np.linalg.det(lps)) < 1e-9 * np.prod(spacing):
            raise DicomWriteError("the map's affine is singular (a zero-length axis); it cannot be placed in DICOM")
        units = lps / spacing
        order, flips = (0, 1, 2), (False, False, False)
        iop = _orientation(template) if template is not None else None
        if iop is not None:
            found = _source_axes(units, np.asarray(iop[:3]), np.asarray(iop[3:]))
            if found is not None:
                order, flips = found
        self.order, self.flips = order, flips
        columns = lps[:, list(order)].copy()
        for axis, flip in enumerate(flips):
            if flip:
                origin = origin + (shape[order[axis]] - 1) * columns[:, axis]
                columns[:, axis] = -columns[:, axis]
        self.shape = tuple(shape[a] for a in order)
        self.origin, self.columns = origin, columns
        self.spacing = np.linalg.norm(columns, axis=0)  # slice, row, column
        self.row_direction = columns[:, 2] / self.spacing[2]  # along a row: increasing column index
        self.column_direction = columns[:, 1] / self.spacing[1]
        normal = np.cross(self.row_direction, self.column_direction)
        self.slice_step = float(columns[:, 0] @ normal)  # signed spacing between slices along the normal
        self.normal = normal

    def reorder(self, array: np.ndarray) -> np.ndarray:
        """The display-order array as (slice, row, column) in the written plane."""
        out = np.transpose(array, self.order)
        for axis, flip in enumerate(self.flips):
            if flip:
                out = np.flip(out, axis)
        return np.ascontiguousarray(out)

    def position(self, k: int) -> np.ndarray:
        """ImagePositionPatient (LPS mm) of the first transmitted pixel of slice ``k``."""
        return self.origin + k * self.columns[:, 0]

    @property
    def orientation(self) -> list[float]:
        return [*self.row_direction.tolist(), *self.column_direction.tolist()]

    @property
    def pixel_spacing(self) -> list[float]:
        return [float(self.spacing[1]), float(self.spacing[2])]  # [between rows, between columns]

    def source_slice_order(self, template: Any) -> int | None:
        """+1 if the template (first source instance) sits at slice 0, -1 if at the last slice, else None."""
        ipp = _floats(getattr(template, "ImagePositionPatient", None), 3) if template is not None else None
        if ipp is None:
            return None
        tolerance = 0.05 * float(min(self.spacing))
        if np.linalg.norm(np.asarray(ipp) - self.position(0)) < tolerance:
            return 1
        if np.linalg.norm(np.asarray(ipp) - self.position(self.shape[0] - 1)) < tolerance:
            return -1
        return None


def _orientation(template: Any) -> list[float] | None:
    """ImageOrientationPatient of a single-frame image, or of an enhanced one's (shared, else first) frame."""
    found = _floats(template.get("ImageOrientationPatient"), 6)
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if found is not None:
            break
        try:
            found = _floats(template[group][0].PlaneOrientationSequence[0].ImageOrientationPatient, 6)
        except (KeyError, AttributeError, IndexError):
            continue
    return found


def _floats(value: Any, count: int) -> list[float] | None:
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == count and np.all(np.isfinite(values)) else None


def _source_axes(units: np.ndarray, row: np.ndarray, column: np.ndarray) -> tuple[tuple, tuple] | None:
    """Display axes (slice, row, column) and flips that reproduce the source's row and column directions."""
    directions = {"row": row / np.linalg.norm(row), "column": column / np.linalg.norm(column)}
    picks = {}
    for key, direction in directions.items():
        dots = units.T @ direction
        axis = int(np.argmax(np.abs(dots)))
        if abs(dots[axis]) < 0.999:  # resampled, not reoriented: keep display order
            return None
        picks[key] = (axis, bool(dots[axis] < 0))
    if picks["row"][0] == picks["column"][0]:
        return None
    slice_axis = ({0, 1, 2} - {picks["row"][0], picks["column"][0]}).pop()
    return (slice_axis, picks["column"][0], picks["row"][0]), (False, picks["column"][1], picks["row"][1])


# -------------------------------------------------------------------------------------------- references
def _references(source: dict[str, Any], geometry: _SliceGeometry) -> dict[str, Any]:
    """The source series and, where the slices match one for one, the source instance of each slice."""
    if not source:
        return {"series": None, "per_slice": None}
    instances = [tuple(map(str, pair)) for pair in (source.get("instances") or [])]
    per_slice = None
    order = geometry.source_slice_order(source.get("template"))
    if len(instances) == geometry.shape[0] and order is not None:
        per_slice = instances if order == 1 else instances[::-1]
    return {"series": source.get("series_uid") or source["template"].get("SeriesInstanceUID"),
            "instances": instances, "per_slice": per_slice}


def _referenced_series(references: dict[str, Any]):
    from pydicom import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.SeriesInstanceUID = references["series"]
    refs = []
    for sop_class, sop_instance in references["instances"]:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = sop_class, sop_instance
        refs.append(ref)
    item.ReferencedInstanceSequence = DicomSequence(refs)
    return DicomSequence([item])


def _source_image(sop_class: str, sop_instance: str):
    from pydicom import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator = "121322", "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    return item


# ---------------------------------------------------------------------------------------------- writers
def _window(kind: str) -> tuple[float, float]:
    return (12.5, 25.0) if kind == "sd" else (50.0, 100.0)  # percent: SD 0-25 pp, SFF 0-100 %


def _equipment(ds: Any) -> None:
    from napari_sff import __version__

    ds.Manufacturer = "napari-sff"
    ds.ManufacturerModelName = "napari-sff"
    ds.SoftwareVersions = __version__


def _copy_patient_study(ds: Any, template: Any) -> None:
    for keyword in _PATIENT_STUDY_KEYWORDS:
        if keyword in template:
            ds[keyword] = template[keyword]
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")


def _rwvm_item(kind: str, stored_range: tuple[float, float], slope: float):
    """Real World Value Mapping (stored value -> percent, UCUM "%"): the unit a viewer can show."""
    from pydicom import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    item = Dataset()
    item.LUTLabel = "SFF_SD" if kind == "sd" else "SFF"
    item.LUTExplanation = "fat fraction SD, percentage points" if kind == "sd" else "signal fat fraction, percent"
    item.RealWorldValueFirstValueMapped, item.RealWorldValueLastValueMapped = (int(v) for v in stored_range)
    item.RealWorldValueSlope, item.RealWorldValueIntercept = slope, 0.0
    unit = Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "%", "UCUM", "percent"
    item.MeasurementUnitsCodeSequence = DicomSequence([unit])
    return DicomSequence([item])


def _write_mr_images(folder: Path, percent: np.ndarray, geometry: _SliceGeometry, template: Any,
                     references: dict[str, Any], *, series_uid: str, series_number: int, description: str,
                     derivation: str, kind: str) -> None:
    """One MR Image Storage file per slice: stored integers = percent × 10, RescaleSlope 0.1."""
    from pydicom import Dataset
    from pydicom.dataset import FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    stored = np.rint(percent / RESCALE_SLOPE)
    signed = bool(stored.min() < 0)
    info = np.iinfo(np.int16 if signed else np.uint16)
    stored = np.clip(stored, info.min, info.max).astype(np.int16 if signed else np.uint16)
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    center, width = _window(kind)
    thickness = template.get("SliceThickness")
    for k in range(stored.shape[0]):
        ds = Dataset()
        _copy_patient_study(ds, template)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = _new_uid()
        ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.SeriesDate, ds.SeriesTime = date, time
        _equipment(ds)
        ds.ImageType = ["DERIVED", "SECONDARY", "FAT_FRACTION_SD" if kind == "sd" else "FAT_FRACTION"]
        ds.InstanceNumber = k + 1
        ds.ContentDate, ds.ContentTime = date, time
        ds.PatientOrientation = ""
        ds.DerivationDescription = derivation
        ds.ImageComments = RESEARCH_NOTE
        ds.BurnedInAnnotation = "NO"
        ds.RecognizableVisualFeatures = "NO"
        ds.LossyImageCompression = "00"
        ds.ScanningSequence = template.get("ScanningSequence") or "RM"
        ds.SequenceVariant = template.get("SequenceVariant") or "NONE"
        for keyword in ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength"):
            if keyword not in ds:
                setattr(ds, keyword, "")
        # geometry
        ds.ImagePositionPatient = [round(float(v), 6) for v in geometry.position(k)]
        ds.ImageOrientationPatient = [round(float(v), 8) + 0.0 for v in geometry.orientation]  # no -0.0
        ds.PixelSpacing = [round(v, 6) for v in geometry.pixel_spacing]
        ds.SliceThickness = thickness if thickness not in (None, "") else round(abs(geometry.slice_step), 6)
        ds.SpacingBetweenSlices = round(abs(geometry.slice_step), 6)
        ds.SliceLocation = round(float(geometry.position(k) @ geometry.normal), 6)
        # pixels: integers in percent × 10 -> percent by the modality LUT
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = int(signed)
        ds.RescaleIntercept, ds.RescaleSlope = 0, RESCALE_SLOPE
        ds.RescaleType = "PCT"  # DICOM defined term: percentage
        ds.WindowCenter, ds.WindowWidth = center, width
        ds.WindowCenterWidthExplanation = "SFF SD 0-25 pp" if kind == "sd" else "SFF 0-100 %"
        ds.RealWorldValueMappingSequence = _rwvm_item(kind, (int(info.min) if signed else 0, int(info.max)),
                                                      RESCALE_SLOPE)
        ds.PixelData = stored[k].tobytes()
        # references to the source
        if references["series"]:
            ds.ReferencedSeriesSequence = _referenced_series(references)
            if references["per_slice"]:
                ds.SourceImageSequence = DicomSequence([_source_image(*references["per_slice"][k])])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(folder / f"IM_{k + 1:04d}.dcm", enforce_file_format=True)


def _write_parametric_map(folder: Path, percent: np.ndarray, geometry: _SliceGeometry, template: Any,
                          references: dict[str, Any], *, series_uid: str, series_number: int, description: str,
                          derivation: str, kind: str) -> None:
    """One highdicom Parametric Map instance: float32 percent, one frame per slice, content RESEARCH."""
    import highdicom as hd
    from pydicom import Dataset
    from pydicom.sr.coding import Code

    from napari_sff import __version__

    source = Dataset()
    for element in template:
        if element.keyword != "PixelData":
            source.add(element)
    if "SOPInstanceUID" not in source:  # a new study: nothing to reference, but highdicom wants a source
        source.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        source.SOPInstanceUID = _new_uid()
        source.SeriesInstanceUID = _new_uid()
        source.Modality = "MR"
    for keyword in _TYPE2:
        if keyword not in source:
            setattr(source, keyword, "")
    # highdicom checks the map's grid against its source's: give this private copy the map's own grid
    source.Rows, source.Columns = (int(n) for n in percent.shape[1:])
    source.PixelSpacing = geometry.pixel_spacing
    source.ImageOrientationPatient = geometry.orientation
    source.ImagePositionPatient = geometry.position(0).tolist()
    source.SliceThickness = float(abs(geometry.slice_step))
    values = percent.astype(np.float32)
    label = "SFF_SD" if kind == "sd" else "SFF"
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=label, lut_explanation="fat fraction SD, percentage points" if kind == "sd" else
        "signal fat fraction, percent", unit=Code("%", "UCUM", "percent"),
        value_range=(float(values.min()), float(max(values.max(), values.min() + 1e-3))), slope=1.0, intercept=0.0)
    center, width = _window(kind)
    coords = hd.PixelMeasuresSequence(
        pixel_spacing=geometry.pixel_spacing, slice_thickness=float(abs(geometry.slice_step)),
        spacing_between_slices=float(abs(geometry.slice_step)))
    orientation = hd.PlaneOrientationSequence(coordinate_system="PATIENT", image_orientation=geometry.orientation)
    positions = [hd.PlanePositionSequence(coordinate_system="PATIENT", image_position=geometry.position(k).tolist())
                 for k in range(values.shape[0])]
    pm = hd.pm.ParametricMap(
        source_images=[source], pixel_array=values, series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=_new_uid(), instance_number=1, manufacturer="napari-sff",
        manufacturer_model_name="napari-sff", software_versions=__version__, device_serial_number="none",
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=center, window_width=width)],
        content_description=derivation[:64], content_label=label, pixel_measures=coords,
        plane_orientation=orientation, plane_positions=positions,
        content_qualification=hd.ContentQualificationValues.RESEARCH)
    pm.SeriesDescription = description
    pm.DerivationDescription = derivation
    pm.ImageComments = RESEARCH_NOTE
    if references["series"]:
        pm.ReferencedSeriesSequence = _referenced_series(references)
    pm.save_as(folder / "IM_0001.dcm", enforce_file_format=True)
