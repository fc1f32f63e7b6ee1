"""Dixon fat and water images -> signal fat fraction (SFF), and finding the fat and water series of a Dixon study.

Parts: :mod:`.fraction` (SFF = F / (F + W) with its noise floor, the same-grid check, :func:`dixon_volume` and its
summary line; :class:`DixonError`), :mod:`.vendors` (the Dixon roles and the one table of what scanners write into
ImageType and SeriesDescription), :mod:`.pairing` (a series' role from its headers or name, pairing fat with water,
and :func:`read_pair`, the inputs of ``napari-sff dixon``).
"""

from napari_sff.dixon.fraction import (
    DEFAULT_FLOOR_PERCENTILE,
    DEFAULT_NOISE_FLOOR,
    DIXON_SFF_KIND,
    GEOMETRY_TOLERANCE_VOXELS,
    DixonError,
    FatFraction,
    check_same_grid,
    compute_fat_fraction,
    dixon_volume,
    fat_fraction,
    summary,
)
from napari_sff.dixon.pairing import (
    DixonPair,
    dicom_info,
    dixon_role,
    is_measured_sff,
    pair_dixon,
    read_pair,
    role_from_description,
    role_from_image_type,
)
from napari_sff.dixon.vendors import (
    DESCRIPTION_TOKENS,
    DIXON_HINTS,
    FAT,
    FAT_FRACTION,
    IMAGE_TYPE_TOKENS,
    IN_PHASE,
    OPPOSED_PHASE,
    SUPPRESSION_TOKENS,
    WATER,
)

__all__ = [
    "DEFAULT_FLOOR_PERCENTILE", "DEFAULT_NOISE_FLOOR", "DESCRIPTION_TOKENS", "DIXON_HINTS", "DIXON_SFF_KIND", "FAT",
    "FAT_FRACTION", "GEOMETRY_TOLERANCE_VOXELS", "IMAGE_TYPE_TOKENS", "IN_PHASE", "OPPOSED_PHASE",
    "SUPPRESSION_TOKENS", "WATER", "DixonError", "DixonPair", "FatFraction", "check_same_grid",
    "compute_fat_fraction", "dicom_info", "dixon_role", "dixon_volume", "fat_fraction", "is_measured_sff",
    "pair_dixon", "read_pair", "role_from_description", "role_from_image_type", "summary",
]
