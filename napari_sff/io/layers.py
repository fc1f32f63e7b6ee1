"""napari layers <-> :class:`~napari_sff.io.volume.Volume`: placement from the affine, layer kinds, the npe2
reader and writer hooks (plain LayerData tuples: no napari import needed).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_sff.io.nifti import (
    ALLOW_OVERWRITE_ENV,
    NiftiError,
    is_nifti_path,
    nifti_stem,
    read_nifti,
    write_nifti,
)
from napari_sff.io.volume import RAS_TO_WORLD, Volume, is_lazy, ras_affine

LABEL_NAME_SUFFIXES = ("_labels", "_label", "_seg", "_mask", "_muscle", "_muscles")
SFF_NAME_PATTERN = re.compile(r"sff|fat", re.IGNORECASE)
SFF_COLORMAP = "inferno"
NIFTI_INTENT_LABEL = 1002
#: ``metadata`` key naming a layer's kind ("image", "labels", "sff"): the widgets draw labels as outlines and
#: give fat-fraction maps a colour bar (napari's layer data cannot carry either).
LAYER_KIND_KEY = "layer_kind"
#: Labels over a fat-fraction overlay: translucent enough not to tint the map where outlines are not drawn.
LABELS_OPACITY = 0.5
#: Fat-fraction layers (SFF maps and their SD, |error| and difference maps) hold PERCENT: napari labels the
#: colour bar, the contrast limits and the status-bar value in a layer's own units and cannot relabel them.
#: Only the layer representation is in percent; files, stats, inference and the CLI keep fractions in [0, 1].
SFF_LAYER_PERCENT = 100.0
#: ``metadata`` key of a layer's value scale: layer value = fat fraction × this (``SFF_LAYER_PERCENT`` on the
#: fat-fraction layers napari-sff makes; absent: fractions). The one marker every reader of layer values
#: checks (:func:`layer_fraction`), set by every producer (:func:`layer_data`, the widgets).
LAYER_SCALE_KEY = "sff_layer_scale"


def layer_placement(volume: Volume) -> dict[str, Any]:
    """``scale``, ``translate`` and ``rotate`` that put the display-order array at its world position."""
    world_linear = RAS_TO_WORLD @ volume.affine[:3, :3]
    spacing = np.linalg.norm(world_linear, axis=0)
    rotation = world_linear / spacing
    origin = RAS_TO_WORLD @ volume.affine[:3, 3]
    extra = volume.array.ndim - 3
    placement: dict[str, Any] = {
        "scale": tuple([1.0] * extra + spacing.tolist()),
        "translate": tuple([0.0] * extra + origin.tolist()),
    }
    if not np.allclose(rotation, np.eye(3), atol=1e-6):
        full = np.eye(volume.array.ndim)
        full[extra:, extra:] = rotation
        placement["rotate"] = full
    return placement


def layer_data(volume: Volume, name: str, kind: str = "image", **kwargs: Any) -> tuple:
    """A napari LayerData tuple for ``volume``; ``kind`` is "image", "labels" or "sff".

    An "sff" volume holds fractions times ``volume.source["sff_unit_scale"]`` (the file's own unit; 1 when
    absent); its layer holds percent (:data:`SFF_LAYER_PERCENT`, a lazy array stays lazy) and is marked so.
    """
    array = volume.array
    metadata: dict[str, Any] = {"nifti": volume.source, LAYER_KIND_KEY: kind}
    meta: dict[str, Any] = {"name": name, "metadata": metadata, **layer_placement(volume)}
    layer_type = "image"
    if kind == "labels":
        layer_type = "labels"
        meta.update(opacity=LABELS_OPACITY)
    elif kind == "sff":
        array = _rescaled(array, float(volume.source.get("sff_unit_scale") or 1.0), SFF_LAYER_PERCENT)
        metadata[LAYER_SCALE_KEY] = SFF_LAYER_PERCENT
        meta.update(colormap=SFF_COLORMAP, contrast_limits=(0.0, SFF_LAYER_PERCENT), blending="additive")
    else:
        meta.update(colormap="gray")
    meta.update(kwargs)
    return (array, meta, layer_type)


def layer_value_scale(metadata: Mapping[str, Any] | None) -> float:
    """Layer value per unit of fat fraction: :data:`SFF_LAYER_PERCENT` on a percent layer, else 1."""
    return float((metadata or {}).get(LAYER_SCALE_KEY) or 1.0)


def layer_fraction(data: Any, metadata: Mapping[str, Any] | None, *, defer: bool = False) -> Any:
    """A layer's values as fat fractions: ``data`` divided by its :func:`layer_value_scale`.

    A lazy (dask) array stays lazy; ``defer=True`` wraps a numpy array in dask too, so the division happens
    where the values are read (a widget's worker), not on the GUI thread. Unscaled data comes back as it is.
    """
    scale = layer_value_scale(metadata)
    if scale != 1.0 and defer and not is_lazy(data):
        import dask.array as da

        data = da.from_array(np.asarray(data), chunks=-1, name=False)  # name=False: no hashing of the data
    return _rescaled(data, scale, 1.0)


def to_layer_percent(fractions: Any) -> Any:
    """Fat fractions -> the values of a percent layer (what :func:`layer_fraction` undoes)."""
    return _rescaled(fractions, 1.0, SFF_LAYER_PERCENT)


def _rescaled(array: Any, unit: float, target: float) -> Any:
    """``array`` in ``unit`` per fraction brought to ``target`` per fraction: unchanged when they agree, else
    float (float32 unless already float64), lazily for a dask array. Divides when shrinking: /100 is exact
    more often than ×0.01."""
    if unit == target:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    return array / (unit / target) if unit > target else array * (target / unit)


def sff_as_fraction(array: np.ndarray) -> np.ndarray:
    """A fat-fraction map stored in fractions, percent or per mille (:func:`sff_unit_scale`) as float32 fractions:
    what commands that read maps from files compute on."""
    values = np.asarray(array, np.float32)
    return _rescaled(values, sff_unit_scale(values), 1.0)


def guess_kind(name: str, volume: Volume) -> str:
    """"labels" for integer label images (by name suffix or NIfTI intent), "sff" for fat maps, else "image"."""
    integer = np.issubdtype(volume.array.dtype, np.integer)
    header = volume.source.get("header")
    intent = int(header["intent_code"]) if header is not None else 0
    if integer and (name.lower().endswith(LABEL_NAME_SUFFIXES) or intent == NIFTI_INTENT_LABEL):
        return "labels"
    if SFF_NAME_PATTERN.search(name):
        return "sff"
    return "image"


def sff_unit_scale(array: np.ndarray) -> float:
    """Factor that brings a fat-fraction map to [0, 1]: 1 (fraction), 100 (percent) or 1000 (per mille)."""
    finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
    if finite.size == 0:
        return 1.0
    high = float(np.percentile(finite, 99.9))
    if high <= 1.5:
        return 1.0
    return 100.0 if high <= 150 else 1000.0


def read_layers(path: str | os.PathLike) -> list[tuple]:
    """LayerData for one NIfTI file: an Image, a Labels layer, or an SFF map shown in percent."""
    volume = read_nifti(path)
    name = nifti_stem(path)
    kind = guess_kind(name, volume)
    if kind == "sff":
        _note_sff_units(volume, sff_unit_scale(volume.array))
    return [layer_data(volume, name, kind)]


def _note_sff_units(volume: Volume, scale: float) -> None:
    """Keep the file's unit (fraction, percent, per mille) so the writer restores it (:func:`write_layer`)."""
    if scale != 1.0:
        volume.source["sff_unit_scale"] = scale


def napari_get_reader(path: str | list[str]):
    """npe2 reader hook: accept .nii/.nii.gz (or a list of them)."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths or not all(is_nifti_path(p) for p in paths):
        return None
    return read_paths


def napari_get_dicom_reader(path: str | list[str]):
    """npe2 reader hook: accept a DICOM folder, DICOMDIR or DICOM file (by its "DICM" marker, any name)."""
    from napari_sff.io.dicom.series import is_dicom_path

    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths or any(is_nifti_path(p) for p in paths) or not all(is_dicom_path(p) for p in paths):
        return None
    return read_dicom_paths


def read_dicom_paths(path: str | list[str]) -> list[tuple]:
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    return [layer for p in paths for layer in read_dicom_layers(p)]


def read_dicom_layers(path: str | os.PathLike) -> list[tuple]:
    """LayerData for every series under a DICOM folder / DICOMDIR / file, named "<number> <description>".

    Large studies are read lazily (see ``dicom.read.LAZY_READ_BYTES``). A series that is not one consistent
    volume is left out with a one-line warning naming it: napari swallows reader exceptions but shows warnings.
    """
    from napari_sff.io.dicom.read import read_series
    from napari_sff.io.dicom.series import DicomError, list_series

    try:
        infos = list_series(path)
    except DicomError as exc:
        warnings.warn(str(exc), UserWarning, stacklevel=2)
        raise
    layers = []
    for info in infos:
        try:
            volume = read_series(info, source_path=path, lazy=None)
        except DicomError as exc:
            warnings.warn(str(exc), UserWarning, stacklevel=2)
            continue
        kind = dicom_kind(info.label, volume)
        if kind == "sff":
            _note_sff_units(volume, sff_unit_scale(_sample_slice(volume.array)))
        layers.append(layer_data(volume, info.label, kind))
    if not layers:
        raise DicomError(f"none of the {len(infos)} series under {path} is one consistent volume (see warnings)")
    return layers


def dicom_kind(name: str, volume: Volume) -> str:
    """As :func:`guess_kind`, but a Dixon *fat signal* series (named fat, values far above 100) stays an image:
    only fractions or percentages become SFF maps, so the Dixon fat and water images keep their signal."""
    kind = guess_kind(name, volume)
    if kind == "sff" and sff_unit_scale(_sample_slice(volume.array)) > 100:
        return "image"
    return kind


def _sample_slice(array: Any) -> np.ndarray:
    """The whole array, or for a lazy one its middle slice (enough to tell fractions from signal)."""
    if isinstance(array, np.ndarray):
        return array
    return np.asarray(array[array.shape[0] // 2])


def read_paths(path: str | list[str]) -> list[tuple]:
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    return [layer for p in paths for layer in read_layers(p)]


def volume_from_layer(data: Any, meta: dict[str, Any]) -> Volume:
    """Rebuild a :class:`Volume` from a layer's data and attributes (napari writer ``meta`` or layer state).

    The NIfTI geometry in ``metadata["nifti"]`` wins while the array still has the shape it was read with;
    otherwise (cropped, drawn or computed layers) the affine comes from scale, translate and rotate.
    """
    array = data if is_lazy(data) else np.asarray(data)  # a lazy layer is read where the volume is used
    source = dict((meta.get("metadata") or {}).get("nifti") or {})
    if array.ndim < 3:
        array = array.reshape((1,) * (3 - array.ndim) + array.shape)
    if "display_affine" in source and tuple(source.get("display_shape", ())) == array.shape:
        return Volume(array, np.asarray(source["display_affine"]), source)
    return Volume(array, _affine_from_placement(meta, array.ndim), {})


def _affine_from_placement(meta: dict[str, Any], ndim: int) -> np.ndarray:
    """NIfTI affine from napari scale / translate / rotate of the last three axes."""
    scale = np.asarray(meta.get("scale") if meta.get("scale") is not None else [1.0] * ndim, dtype=float)[-3:]
    translate = np.asarray(
        meta.get("translate") if meta.get("translate") is not None else [0.0] * ndim, dtype=float
    )[-3:]
    rotate = meta.get("rotate")
    rotation = np.eye(3) if rotate is None else np.asarray(rotate, dtype=float)[-3:, -3:]
    if scale.size < 3:
        scale = np.concatenate([[1.0] * (3 - scale.size), scale])
        translate = np.concatenate([[0.0] * (3 - translate.size), translate])
    return ras_affine(rotation @ np.diag(scale), translate)


def write_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Image and Labels layers.

    A percent layer (:data:`LAYER_SCALE_KEY`) is written in its file's own unit (``sff_unit_scale`` of the
    file it was read from: fraction, percent or per mille), a computed map as fractions.
    """
    if not is_nifti_path(path):
        path = f"{path}.nii.gz"
    volume = volume_from_layer(data, meta)
    volume.array = _rescaled(volume.array, layer_value_scale(meta.get("metadata")),
                             float(volume.source.get("sff_unit_scale") or 1.0))
    # napari's save dialog has already confirmed replacing an existing file; the input stays protected.
    # napari swallows writer exceptions, so a refusal is also issued as a warning, which it shows the user.
    try:
        write_nifti(volume, path, overwrite=True, overwrite_input=os.environ.get(ALLOW_OVERWRITE_ENV) == "1")
    except NiftiError as exc:
        warnings.warn(str(exc), UserWarning, stacklevel=2)
        raise
    return [path]
