"""Files <-> :class:`Volume` (array in display order + affine + source metadata) <-> napari layers.

Rooms: :mod:`.volume` (the Volume and the world convention), :mod:`.nifti` (NIfTI read/write), :mod:`.layers`
(layer placement, kinds, the npe2 reader and writer hooks), :mod:`.atomic` (the one atomic writer).
``from napari_sff import io`` and ``io.read_nifti(...)`` is the public way in; the names below are that surface.
"""

from napari_sff.io.atomic import (
    atomic_directory,
    atomic_write,
    atomic_write_text,
    current_umask,
    refuse_outputs,
)
from napari_sff.io.dicom.read import read_dicom, read_series, read_volume
from napari_sff.io.dicom.series import (
    DicomError,
    SeriesInfo,
    describe_series,
    is_dicom_path,
    list_series,
    select_series,
)
from napari_sff.io.dicom.write import (
    DicomWriteError,
    check_dicom_output,
    layer_dicom_kind,
    write_dicom_series,
    write_layer_dicom,
)
from napari_sff.io.layers import (
    LABEL_NAME_SUFFIXES,
    LAYER_KIND_KEY,
    LAYER_SCALE_KEY,
    NIFTI_INTENT_LABEL,
    SFF_COLORMAP,
    SFF_LAYER_PERCENT,
    SFF_NAME_PATTERN,
    guess_kind,
    layer_data,
    layer_fraction,
    layer_placement,
    layer_value_scale,
    napari_get_dicom_reader,
    napari_get_reader,
    read_dicom_layers,
    read_layers,
    read_paths,
    sff_as_fraction,
    sff_unit_scale,
    to_layer_percent,
    volume_from_layer,
    write_layer,
)
from napari_sff.io.nifti import (
    ALLOW_OVERWRITE_ENV,
    NIFTI_SUFFIXES,
    NiftiError,
    is_nifti_path,
    nifti_stem,
    read_nifti,
    write_nifti,
)
from napari_sff.io.volume import DISPLAY_AXCODES, RAS_TO_WORLD, Volume, is_lazy, ras_affine

__all__ = [
    "ALLOW_OVERWRITE_ENV", "DISPLAY_AXCODES", "LABEL_NAME_SUFFIXES", "LAYER_KIND_KEY", "NIFTI_INTENT_LABEL", "NIFTI_SUFFIXES",
    "RAS_TO_WORLD", "SFF_COLORMAP", "SFF_NAME_PATTERN", "NiftiError", "Volume", "atomic_directory", "atomic_write",
    "atomic_write_text", "current_umask", "refuse_outputs", "is_lazy", "guess_kind", "is_nifti_path", "layer_data", "layer_placement",
    "napari_get_reader", "nifti_stem", "ras_affine", "read_layers", "read_nifti", "read_paths", "sff_as_fraction", "sff_unit_scale",
    "volume_from_layer", "write_layer", "write_nifti",
    "LAYER_SCALE_KEY", "SFF_LAYER_PERCENT", "layer_fraction", "layer_value_scale", "to_layer_percent",
    "DicomWriteError", "check_dicom_output", "layer_dicom_kind", "write_dicom_series", "write_layer_dicom",
    "DicomError", "SeriesInfo", "describe_series", "is_dicom_path", "list_series", "napari_get_dicom_reader",
    "read_dicom", "read_dicom_layers", "read_series", "read_volume", "select_series",
]
