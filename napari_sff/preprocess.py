"""The one T2w intensity normalisation, shared by training and inference (numpy only, no torch).

T2w magnitude images carry arbitrary scanner scaling, so each 2D slice is rescaled by a robust reference
intensity measured inside the body:

1. ``ref = percentile(slice, 99)`` over the whole slice (a high percentile, not the max, ignores hot pixels).
2. Body mask = pixels above ``BODY_FRACTION`` (10 %) of ``ref``. Air is Rician noise at a few % of tissue
   signal; even dark T2w tissue (muscle, ~20-30 % of fat) sits above 10 %. The mask makes the next step
   independent of how much of the field of view is air.
3. Divide by the 99th percentile inside the mask (bright fat/fluid -> ~1) and clip to [0, ``CLIP_MAX``] = [0, 1.5]:
   headroom for the brightest fluid, a hard bound on outliers for the network.

Everything is per slice and scales linearly, so the result is invariant to a global scale factor and, to
within rounding error, to integer quantisation. Empty or constant slices, and slices whose 99th percentile is
0 (signal in under 1 % of the pixels), map to zeros; NaN/inf pixels are treated as 0.

A physics-informed alternative, ``method="fat"`` (:func:`fat_reference`): divide by the intensity of the
subcutaneous fat, found automatically as the bright part of the band just inside the body outline. Fat is
nearly pure fat in every person, so its T2w intensity fixes the case's scale whatever the echo time and the
fluid content; the 99th percentile instead lands on fluid or edema when they are present. Fat maps to
``FAT_LEVEL`` (0.5) and the result is clipped to ``FAT_CLIP_MAX`` (2.0: fluid at a long echo time is up to
~3x brighter than fat). Slices without a usable band fall back to the 99th-percentile rule.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "BODY_FRACTION",
    "CLIP_MAX",
    "NORMALISATION_NAME",
    "REFERENCE_PERCENTILE",
    "MAX_LABEL_VALUES",
    "NORMALISATIONS",
    "body_mask",
    "fat_reference",
    "input_kind_warning",
    "normalisation_method",
    "normalise_t2w",
    "reference_level",
]

BODY_FRACTION = 0.10
REFERENCE_PERCENTILE = 99.0
CLIP_MAX = 1.5
#: Recorded in checkpoint metadata; change it whenever the maths above changes.
NORMALISATION_NAME = "t2w-slice-p99-body10-clip1.5-v1"


def _as_slices(slices: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """(..., H, W) -> (N, H*W) float64 with NaN/inf replaced by 0, plus the original shape."""
    arr = np.asarray(slices)
    if arr.ndim < 2:
        raise ValueError(f"expected an array of shape (..., H, W), got shape {arr.shape}")
    flat = np.nan_to_num(
        arr.astype(np.float64, copy=False).reshape(math.prod(arr.shape[:-2]), arr.shape[-2] * arr.shape[-1]),
        nan=0.0,
        posinf=0.0,
        neginf=0.0,
    )
    return flat, arr.shape


def _thresholds(flat: np.ndarray) -> np.ndarray:
    """Per-slice body threshold; NaN for slices with no usable signal (empty or constant)."""
    if flat.shape[1] == 0:
        return np.full(flat.shape[0], np.nan)
    ref = np.percentile(flat, REFERENCE_PERCENTILE, axis=1)
    usable = (ref > 0) & (flat.max(axis=1) > flat.min(axis=1))
    return np.where(usable, BODY_FRACTION * ref, np.nan)


def body_mask(slices: np.ndarray) -> np.ndarray:
    """Boolean body mask of the same shape: pixels above 10 % of their slice's 99th percentile.

    A plain threshold (no morphology) so it is cheap and identical wherever it is used; empty or constant
    slices give an all-False mask.
    """
    flat, shape = _as_slices(slices)
    thr = _thresholds(flat)
    with np.errstate(invalid="ignore"):
        mask = flat > thr[:, None]  # comparisons with NaN are False
    return mask.reshape(shape)


def normalise_t2w(slices: np.ndarray, method: str = "p99") -> np.ndarray:
    """Normalise T2w slices (..., H, W) of any scaling/dtype to float32, per 2D slice.

    ``method="p99"`` (the shipped models' input): divide by the 99th percentile inside the body, clip to
    [0, 1.5]. ``method="fat"``: subcutaneous fat -> ``FAT_LEVEL``, clip to [0, 2]. See the module docstring for
    the rules and why; output has the input's shape.
    """
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; choose one of {', '.join(NORMALISATIONS)}")
    flat, shape = _as_slices(slices)
    thr = _thresholds(flat)
    out = np.zeros_like(flat)
    for i in np.flatnonzero(np.isfinite(thr)):
        row = flat[i]
        fat = fat_reference(row.reshape(shape[-2:]), thr[i]) if method == "fat" else None
        if fat is not None:
            scale, level, clip = fat, FAT_LEVEL, FAT_CLIP_MAX
        else:  # the percentile rule (also where the fat reference finds no outer band)
            scale, level, clip = np.percentile(row[row > thr[i]], REFERENCE_PERCENTILE), 1.0, CLIP_MAX
        if scale > 0:
            out[i] = np.clip(row * (level / scale), 0.0, clip)
    return out.reshape(shape).astype(np.float32)


#: Fat intensity after ``method="fat"``, and its clip: fluid at a long echo time is up to ~3x brighter than fat.
FAT_LEVEL = 0.5
FAT_CLIP_MAX = 2.0
#: The outer band of the body searched for subcutaneous fat, as a fraction of the body's inscribed radius, and
#: the share of the band's pixels that must be there for the reference to count.
FAT_BAND = (0.02, 0.15)
FAT_PERCENTILE = 75.0
_MIN_BAND_PIXELS = 50

#: Method name -> the name recorded in checkpoint metadata (change it whenever that method's maths changes).
NORMALISATIONS = {"p99": NORMALISATION_NAME, "fat": "t2w-slice-subcutaneous-fat-p75-band-v1"}


def normalisation_method(recorded: str | None) -> str:
    """The method (a key of ``NORMALISATIONS``) whose name a checkpoint recorded as its ``input_normalisation``.

    None (checkpoints made before the name was recorded, all trained on the percentile rule) means "p99"; a name
    this version does not know raises ValueError: the weights expect an input the code cannot make.
    """
    if recorded is None:
        return "p99"
    for method, name in NORMALISATIONS.items():
        if recorded == name:
            return method
    raise ValueError(f"the weights were trained on input normalisation {recorded!r}, which this napari-sff does "
                     f"not know ({', '.join(NORMALISATIONS.values())}); update napari-sff or use other weights")


def reference_level(method: str) -> float:
    """Where ``method`` puts the slice's reference tissue: bright fat/fluid at 1 (p99), subcutaneous fat at 0.5."""
    return FAT_LEVEL if method == "fat" else 1.0


def fat_reference(image: np.ndarray, threshold: float) -> float | None:
    """T2w intensity of the subcutaneous fat in one slice, or None when the body has no usable outer band.

    The body is the largest connected region above ``threshold`` with its holes filled; the band runs from
    2 % to 15 % of the body's largest inscribed radius in from the outline (skin excluded). Subcutaneous fat is
    the brightest tissue there in limbs and trunk alike, and muscle reaching into the band of a lean person is
    darker, so the band's 75th percentile reads the fat.
    """
    from scipy import ndimage

    mask = image > threshold
    labelled, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(labelled.ravel())[1:]
    body = ndimage.binary_fill_holes(labelled == 1 + int(np.argmax(sizes)))
    # Padded with body: where the field of view cuts the body, the image edge is no outline (no fat there).
    depth = ndimage.distance_transform_edt(np.pad(body, 1, constant_values=True))[1:-1, 1:-1] * body
    radius = float(depth.max())
    band = body & (depth > max(1.5, FAT_BAND[0] * radius)) & (depth <= max(3.0, FAT_BAND[1] * radius))
    values = image[band & mask]
    if values.size < _MIN_BAND_PIXELS:
        return None
    reference = float(np.percentile(values, FAT_PERCENTILE))
    return reference if reference > 0 else None


#: At most this many distinct integer values make an image look like a segmentation (T2w: thousands).
MAX_LABEL_VALUES = 128
#: The input check looks at an evenly strided subsample of at most this many voxels (fast on big series).
_KIND_SAMPLE = 2_000_000


#: Segmentations are piecewise constant: at least this share of neighbouring non-zero voxels hold the same value.
MIN_EQUAL_NEIGHBOURS = 0.8


def _piecewise_constant(array: np.ndarray) -> bool:
    """Whether neighbouring non-zero voxels along the last axis mostly agree (labels) or mostly differ (an image,
    even one a scanner or simulator stored with only ~100 grey levels)."""
    if array.ndim < 1 or array.shape[-1] < 2:
        return True
    step = max(1, math.ceil(array.size / _KIND_SAMPLE))
    rows = array.reshape(-1, array.shape[-1])[::step]
    left, right = rows[:, :-1], rows[:, 1:]
    both = (left != 0) & (right != 0)
    if not both.any():
        return True
    return float(np.mean(left[both] == right[both])) >= MIN_EQUAL_NEIGHBOURS


def input_kind_warning(array: np.ndarray) -> str | None:
    """Why ``array`` does not look like a T2w magnitude image, or None when it does.

    A model fed a label image or a fat-fraction map still writes an "SFF" map; this catches the two mix-ups a
    user makes in a viewer full of layers: integer values with few distinct levels (a segmentation) and values
    all within [0, 1] (a fat fraction map). Scanner T2w images are non-negative with thousands of levels.
    """
    from napari_sff.io.volume import is_lazy

    if is_lazy(array) and np.ndim(array) >= 3:
        n = array.shape[0]  # a lazy series: three slices tell labels and fractions from a T2w, and read fast
        array = np.asarray(array[sorted({0, n // 2, n - 1})])
    flat = np.asarray(array).reshape(-1)
    if flat.size > _KIND_SAMPLE:
        flat = flat[:: math.ceil(flat.size / _KIND_SAMPLE)]
    if flat.dtype == bool:
        return "this looks like a segmentation (a binary mask), not a T2w image"
    if np.iscomplexobj(flat) or flat.dtype.fields is not None:
        return None  # complex and RGB voxels are refused elsewhere, with their own message
    finite = flat[np.isfinite(flat)] if np.issubdtype(flat.dtype, np.floating) else flat
    if finite.size == 0 or float(finite.max()) == float(finite.min()):
        return None
    integer = np.issubdtype(finite.dtype, np.integer) or bool(np.all(finite == np.round(finite)))
    if integer:
        levels = np.unique(finite)
        if levels.size <= MAX_LABEL_VALUES and _piecewise_constant(np.asarray(array)):
            return f"this looks like a segmentation ({levels.size} distinct integer values), not a T2w image"
    if float(finite.min()) >= 0.0 and float(finite.max()) <= 1.0:
        return "this looks like a fat fraction map (all values within [0, 1]), not a T2w image"
    return None
