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

This module checks the map and the output folder and names the series; :mod:`.slices` places the slices and
:mod:`.instances` builds and writes the instances.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_sff.io.atomic import atomic_directory
from napari_sff.io.dicom.errors import DicomWriteError
from napari_sff.io.dicom.instances import (
    RESEARCH_NOTE,
    new_uid,
    references_of,
    template_of,
    write_mr_images,
    write_parametric_map,
)
from napari_sff.io.dicom.slices import SliceGeometry
from napari_sff.io.volume import Volume

KINDS = ("sff", "sd")
STORAGES = ("mr", "parametric-map")
FILE_PATTERN = re.compile(r"IM_\d{4,}\.dcm")
DESCRIPTION_LIMIT = 64  # LO
#: SeriesNumber = source SeriesNumber + offset, so U-Net, DDPM and SD maps sort after the source and apart.
SERIES_OFFSETS = {("sff", "U-Net"): 1000, ("sff", "DDPM"): 2000, ("sd", "DDPM"): 3000}


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
    template = template_of(source, new_study)
    if series_number is None:
        offset = SERIES_OFFSETS.get((kind, model_label or ""), 3000 if kind == "sd" else 1000)
        base = template.get("SeriesNumber") if not new_study else None
        series_number = offset + (int(base) if base not in (None, "") else 0)
    geometry = SliceGeometry(np.asarray(volume.affine, float), array.shape, template if source else None)
    slices = geometry.reorder(array)
    percent = np.nan_to_num(slices.astype(np.float64) * 100.0, nan=0.0, posinf=0.0, neginf=0.0)
    derivation = _derivation_text(kind, model_label, weights_name, source, dixon)
    references = references_of(source, geometry)
    series_uid = new_uid()

    with atomic_directory(folder, overwrite=overwrite) as tmp:
        if storage == "mr":
            write_mr_images(tmp, percent, geometry, template, references, series_uid=series_uid,
                             series_number=series_number, description=description, derivation=derivation,
                             kind=kind)
        else:
            write_parametric_map(tmp, percent, geometry, template, references, series_uid=series_uid,
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
