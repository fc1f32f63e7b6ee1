"""NIfTI <-> :class:`Volume`, napari layer placement from the affine, and atomic writes.

Orientation convention (one rule, used everywhere in napari-sff)
-----------------------------------------------------------------
Arrays are held in *display order*: ``[t,] S, P, L`` — axis 0 runs inferior -> superior (the slice slider),
rows run anterior (top of the screen) -> posterior, columns run from the patient's right (left of the screen)
to the patient's left, i.e. the radiological view. The reader reorients every file to this order with
nibabel's orientation tools (a lossless flip/transpose, no resampling); what is left of the file's affine is
an in-plane scale, a translation and, for oblique acquisitions, a small rotation.

napari's world axes are ``(S, P, L)`` in millimetres: world = W · RAS with W the fixed signed permutation
``S = z, P = -y, L = -x``. Each layer gets ``scale`` = voxel spacing, ``translate`` = position of voxel 0 and
``rotate`` = the residual rotation, so two files from the same scanner session overlay exactly. The original
affine, header and orientation transform travel in ``layer.metadata["nifti"]`` so the writer restores the file's
own voxel order, affine and header; layers without them (drawn or computed) get an affine from scale,
translate and rotate.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

NIFTI_SUFFIXES = (".nii.gz", ".nii")
DISPLAY_AXCODES = ("S", "P", "L")
#: RAS+ (NIfTI world) -> napari world (S, P, L).
RAS_TO_WORLD = np.array([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [-1.0, 0.0, 0.0]])
LABEL_NAME_SUFFIXES = ("_labels", "_label", "_seg", "_mask", "_muscle", "_muscles")
SFF_NAME_PATTERN = re.compile(r"sff|fat", re.IGNORECASE)
SFF_COLORMAP = "inferno"
NIFTI_INTENT_LABEL = 1002
#: Set to 1 to let the napari writer replace the very file a layer was read from.
ALLOW_OVERWRITE_ENV = "NAPARI_SFF_ALLOW_OVERWRITE"


class NiftiError(ValueError):
    """A NIfTI file or layer that cannot be read or written; the message says what to do."""


@dataclass
class Volume:
    """An image in display order with the geometry needed to place it in napari and to save it.

    ``affine`` maps display-order voxel indices of the last three axes to RAS+ millimetres (a valid NIfTI
    affine for ``array`` as it is). ``source`` holds what the writer needs to restore the original file layout.
    """

    array: np.ndarray
    affine: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three spatial display axes."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @classmethod
    def from_array(
        cls, array: np.ndarray, spacing: Sequence[float], origin: Sequence[float] = (0.0, 0.0, 0.0)
    ) -> Volume:
        """Wrap a display-order array with an axis-aligned affine (``origin`` in napari world mm)."""
        world_linear = np.diag(np.asarray(spacing, dtype=float))
        return cls(np.asarray(array), _ras_affine(world_linear, np.asarray(origin, dtype=float)))

    def like(self, array: np.ndarray) -> Volume:
        """A derived volume (e.g. a prediction) on the same grid, saved with this volume's file geometry."""
        if array.shape != self.array.shape:
            raise ValueError(f"derived array has shape {array.shape}, expected {self.array.shape}")
        source = {k: v for k, v in self.source.items() if k != "path"}
        if self.source.get("path"):
            source["derived_from"] = self.source["path"]
        source.update(display_affine=self.affine.copy(), display_shape=array.shape)
        return Volume(array, self.affine.copy(), source)


def _ras_affine(world_linear: np.ndarray, world_origin: np.ndarray) -> np.ndarray:
    """NIfTI affine from a display-voxel -> napari-world linear map and origin."""
    affine = np.eye(4)
    affine[:3, :3] = RAS_TO_WORLD.T @ world_linear
    affine[:3, 3] = RAS_TO_WORLD.T @ world_origin
    return affine


def is_nifti_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: str | os.PathLike) -> str:
    """File name without .nii / .nii.gz."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_nifti(path: str | os.PathLike) -> Volume:
    """Read a NIfTI-1/2 file (any endianness, scaled or not, 2D to 4D) into a display-order :class:`Volume`."""
    path = Path(path)
    if not path.exists():
        raise NiftiError(f"{path}: no such file; check the path")
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise NiftiError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise NiftiError(f"{path}: not a NIfTI image (nibabel read it as {type(image).__name__})")
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    file_shape = data.shape
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 4:
        raise NiftiError(f"{path}: {data.ndim}D images are not supported; split it into 3D or 4D files first")
    while data.ndim < 3:
        data = data[..., np.newaxis]

    affine = image.affine
    file_ornt = _file_orientation(affine)
    transform = nib.orientations.ornt_transform(file_ornt, nib.orientations.axcodes2ornt(DISPLAY_AXCODES))
    display = nib.orientations.apply_orientation(data, transform)
    display_affine = affine @ nib.orientations.inv_ornt_aff(transform, data.shape[:3])
    if display.ndim == 4:
        display = np.moveaxis(display, 3, 0)
    source = {
        "path": str(path.resolve()),
        "header": image.header.copy(),
        "affine": affine.copy(),
        "file_orientation": file_ornt,
        "display_affine": display_affine.copy(),
        "file_shape": file_shape,
        "display_shape": display.shape,
        "nifti_version": 2 if isinstance(image, nib.Nifti2Image) else 1,
    }
    return Volume(np.ascontiguousarray(display), display_affine, source)


def _file_orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation of the file's voxel axes; a degenerate affine keeps the stored order."""
    identity = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    try:
        file_ornt = nib.orientations.io_orientation(affine)
    except Exception:
        return identity
    return identity if np.isnan(file_ornt).any() else file_ornt


def write_nifti(
    volume: Volume, path: str | os.PathLike, *, overwrite: bool = False, overwrite_input: bool = False
) -> Path:
    """Write ``volume`` atomically; restore the source file's voxel order, affine and header when known.

    Refuses to replace an existing file unless ``overwrite``, and the file the volume (or the image it was
    derived from) was read from unless ``overwrite_input`` too.
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise NiftiError(f"{path}: output must end in .nii or .nii.gz")
    if path.exists() and not overwrite:
        raise NiftiError(f"{path} exists; choose another name or pass overwrite=True")
    inputs = {volume.source.get("path"), volume.source.get("derived_from")} - {None}
    if path.resolve() in {Path(p) for p in inputs} and not overwrite_input:
        raise NiftiError(
            f"{path} is the input this image came from; save under another name (or set {ALLOW_OVERWRITE_ENV}=1)"
        )
    image = _to_nifti_image(volume)
    _atomic_save(image, path)
    return path


def _to_nifti_image(volume: Volume) -> nib.Nifti1Image:
    data = _storable(np.asarray(volume.array))
    source = volume.source
    restore = "file_orientation" in source and tuple(source.get("display_shape", ())) == data.shape
    if data.ndim == 4:
        data = np.moveaxis(data, 0, 3)
    if not restore:
        return nib.Nifti1Image(data, volume.affine)
    inverse = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(DISPLAY_AXCODES), source["file_orientation"]
    )
    data = nib.orientations.apply_orientation(data, inverse)
    file_shape = tuple(source["file_shape"])
    if int(np.prod(file_shape)) == data.size:
        data = data.reshape(file_shape)
    header = source["header"].copy()
    header.set_data_dtype(data.dtype)
    image_class = nib.Nifti2Image if source.get("nifti_version") == 2 else nib.Nifti1Image
    image = image_class(data, source["affine"], header=header)
    image.header.set_slope_inter(1.0, 0.0)  # values are stored as they are, never rescaled
    return image


def _storable(data: np.ndarray) -> np.ndarray:
    """NIfTI has no bool and nibabel refuses int64 without being told: pick the smallest fitting type."""
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype in (np.int64, np.uint64):
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        for candidate in (np.uint8, np.int16, np.uint16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return data.astype(candidate)
        return data.astype(np.float64)
    if data.dtype == np.float16:
        return data.astype(np.float32)
    return data


def _atomic_save(image: nib.Nifti1Image, path: Path) -> None:
    """Write to a temporary file beside ``path`` and rename it, so a crash never leaves half a file."""
    suffix = ".nii.gz" if str(path).lower().endswith(".nii.gz") else ".nii"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        nib.save(image, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------------------
# napari layers (plain LayerData tuples: no napari import needed)
# --------------------------------------------------------------------------------------------------------------


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
    """A napari LayerData tuple for ``volume``; ``kind`` is "image", "labels" or "sff"."""
    meta: dict[str, Any] = {"name": name, "metadata": {"nifti": volume.source}, **layer_placement(volume)}
    layer_type = "image"
    if kind == "labels":
        layer_type = "labels"
    elif kind == "sff":
        meta.update(colormap=SFF_COLORMAP, contrast_limits=(0.0, 1.0), blending="additive")
    else:
        meta.update(colormap="gray")
    meta.update(kwargs)
    return (volume.array, meta, layer_type)


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
    """LayerData for one NIfTI file: an Image, a Labels layer, or an SFF map converted to fractions."""
    volume = read_nifti(path)
    name = nifti_stem(path)
    kind = guess_kind(name, volume)
    if kind == "sff":
        scale = sff_unit_scale(volume.array)
        if scale != 1.0:
            volume.array = volume.array.astype(np.float32) / np.float32(scale)
            volume.source["sff_unit_scale"] = scale
    return [layer_data(volume, name, kind)]


def napari_get_reader(path: str | list[str]):
    """npe2 reader hook: accept .nii/.nii.gz (or a list of them)."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths or not all(is_nifti_path(p) for p in paths):
        return None
    return read_paths


def read_paths(path: str | list[str]) -> list[tuple]:
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    return [layer for p in paths for layer in read_layers(p)]


def volume_from_layer(data: Any, meta: dict[str, Any]) -> Volume:
    """Rebuild a :class:`Volume` from a layer's data and attributes (napari writer ``meta`` or layer state).

    The NIfTI geometry in ``metadata["nifti"]`` wins while the array still has the shape it was read with;
    otherwise (cropped, drawn or computed layers) the affine comes from scale, translate and rotate.
    """
    array = np.asarray(data)
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
    return _ras_affine(rotation @ np.diag(scale), translate)


def write_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Image and Labels layers."""
    if not is_nifti_path(path):
        path = f"{path}.nii.gz"
    volume = volume_from_layer(data, meta)
    scale = volume.source.get("sff_unit_scale")
    if scale:
        volume.array = volume.array * scale
    # napari's save dialog has already confirmed replacing an existing file; the input stays protected.
    # napari swallows writer exceptions, so a refusal is also issued as a warning, which it shows the user.
    try:
        write_nifti(volume, path, overwrite=True, overwrite_input=os.environ.get(ALLOW_OVERWRITE_ENV) == "1")
    except NiftiError as exc:
        warnings.warn(str(exc), UserWarning, stacklevel=2)
        raise
    return [path]
