"""Dixon fat and water images -> signal fat fraction (SFF): the map, its noise floor and the grid check.

SFF = F / (F + W) on the input grid, as a two-point magnitude Dixon measures it (not corrected for T1, T2* or the
multi-peak fat spectrum: that would be the PDFF). The widget "Fat fraction from Dixon" and ``napari-sff dixon`` both
call :func:`dixon_volume`; neither resamples: fat and water must share one grid, anything else is refused.

Noise floor
-----------
Where F + W is only noise (air, lung, cortical bone, outside the body) F / (F + W) is a ratio of two noise values and
scatters over the whole range 0..1; such voxels are set to 0, as the simulator does (``SIGNAL_PD_THRESHOLD``). The floor
is relative by default: ``noise_floor`` times the ``floor_percentile``-th percentile of F + W over the voxels with any
signal. The 99th percentile sits in the brightest tissue of the field of view (fat, or fluid on the water image), and,
unlike the maximum, it does not move with one bright vessel or artefact voxel. Tissue is kept unless its F + W is below
a tenth of the brightest tissue's. Air holds the sum of two Rayleigh-distributed magnitudes (mean ~2.5 sigma, SD
~0.9 sigma): on the simulated thigh with magnitude noise (as in tests/test_dixon.py) the default floor took 84 % of the
air voxels at SNR 25, 99.6 % at SNR 40 and all of them at SNR 60 and 100 (SNR = mean tissue F + W over sigma), and no
tissue voxel. At low SNR raise the floor, or pass ``floor_percentile=None`` to give ``noise_floor`` in the
images' own signal units instead (e.g. from a background ROI).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_sff.io.volume import Volume

#: Default noise floor: a fraction of the ``DEFAULT_FLOOR_PERCENTILE``-th percentile of F + W (see module doc).
DEFAULT_NOISE_FLOOR = 0.1
DEFAULT_FLOOR_PERCENTILE = 99.0
#: Two grids are one grid when every voxel centre lies within this fraction of the smallest voxel size.
GEOMETRY_TOLERANCE_VOXELS = 0.01
#: ``metadata["napari_sff"]["kind"]`` of a measured (Dixon) SFF layer: the Predict and ROI widgets take it as
#: ground truth; ``source["dixon"]`` marks the same on a :class:`Volume`.
DIXON_SFF_KIND = "dixon_sff"
#: Percentiles are estimated on at most this many voxels (an evenly strided subsample) to stay fast on big series.
_PERCENTILE_SAMPLE = 4_000_000


class DixonError(ValueError):
    """Fat and water images that cannot be combined; the message says what to do."""


# ---------------------------------------------------------------------------------------------------------------
# Fat fraction
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FatFraction:
    """The SFF map with what the noise floor did: ``threshold`` in signal units, ``floor_fraction`` of voxels."""

    sff: np.ndarray
    threshold: float
    floor_fraction: float


def compute_fat_fraction(
    fat: np.ndarray, water: np.ndarray, *, noise_floor: float = DEFAULT_NOISE_FLOOR,
    floor_percentile: float | None = DEFAULT_FLOOR_PERCENTILE,
) -> FatFraction:
    """:func:`fat_fraction` with the noise-floor threshold and the fraction of voxels it zeroed."""
    fat = np.asarray(fat)
    water = np.asarray(water)
    if fat.shape != water.shape:
        raise DixonError(f"fat image has shape {fat.shape}, water image {water.shape}: "
                         "they must share one grid; resample one onto the other first")
    for name, array in (("fat", fat), ("water", water)):
        if np.iscomplexobj(array) or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise DixonError(f"{name} image has voxels of type {array.dtype}; give magnitude images (real numbers)")
    if not noise_floor >= 0 or not np.isfinite(noise_floor):
        raise DixonError(f"noise floor must be a finite number >= 0, got {noise_floor}")
    if floor_percentile is not None and not 0 < floor_percentile <= 100:
        raise DixonError(f"floor percentile must lie in (0, 100], got {floor_percentile}")
    dtype = np.float64 if np.float64 in (fat.dtype, water.dtype) else np.float32
    f = _magnitude(fat, dtype)
    w = _magnitude(water, dtype)
    total = f + w
    if floor_percentile is None:
        threshold = float(noise_floor)
    else:
        signal = total.ravel()
        signal = signal[:: max(1, signal.size // _PERCENTILE_SAMPLE)]
        signal = signal[signal > 0]
        threshold = float(noise_floor) * float(np.percentile(signal, floor_percentile)) if signal.size else 0.0
    keep = total > threshold  # F + W == 0 is always in the floor, whatever the threshold
    keep &= np.isfinite(total)  # a sum that overflowed
    total[~keep] = np.inf  # F / inf = 0 (F is finite): cheaper than a masked division
    sff = np.divide(f, total).astype(np.float32, copy=False)
    floor_fraction = 1.0 - float(np.count_nonzero(keep)) / keep.size if keep.size else 0.0
    return FatFraction(sff, threshold, floor_fraction)


def fat_fraction(
    fat: np.ndarray, water: np.ndarray, *, noise_floor: float = DEFAULT_NOISE_FLOOR,
    floor_percentile: float | None = DEFAULT_FLOOR_PERCENTILE,
) -> np.ndarray:
    """SFF = F / (F + W) voxel by voxel: float32, finite, in [0, 1]; 0 where F + W lies in the noise floor.

    Magnitude Dixon images are never negative; negative values (overshoot of a resampling kernel, a real-valued
    reconstruction) are taken as 0 signal and NaN or infinite values (outside a resampled field of view) as no
    signal, so F < 0 gives SFF 0 and W < 0 with F > 0 gives 1; a NaN in either image gives 0. The floor is
    ``noise_floor`` times the ``floor_percentile``-th percentile of F + W (``floor_percentile=None``: ``noise_floor``
    in signal units); voxels with F + W at or below it are 0 (see the module docstring for why 0.1 of P99).
    """
    return compute_fat_fraction(fat, water, noise_floor=noise_floor, floor_percentile=floor_percentile).sff


def _magnitude(array: np.ndarray, dtype: type) -> np.ndarray:
    """Finite, non-negative signal: NaN/inf -> 0, negative -> 0 (magnitude images have no negative signal)."""
    values = np.array(array, dtype=dtype)  # a copy: the caller's image is never changed
    if np.issubdtype(np.asarray(array).dtype, np.unsignedinteger) or np.asarray(array).dtype == bool:
        return values
    bad = ~(values > 0)  # negative, zero and NaN
    bad |= np.isinf(values)
    values[bad] = 0
    return values


# ---------------------------------------------------------------------------------------------------------------
# Volumes: geometry check and the SFF volume
# ---------------------------------------------------------------------------------------------------------------
def check_same_grid(fat: Volume, water: Volume) -> None:
    """Raise :class:`DixonError` (one line) unless fat and water place every voxel at the same world position.

    Tolerance: :data:`GEOMETRY_TOLERANCE_VOXELS` of the smallest voxel size at the farthest voxel (for affine maps the
    largest distance between two grids' voxel centres is found at a corner of the grid).
    """
    fat_shape, water_shape = fat.array.shape, water.array.shape
    described = (f"fat is {_grid_text(fat)}, water is {_grid_text(water)}")
    advice = "resample one onto the other first (same matrix, spacing and position)"
    if fat_shape != water_shape:
        raise DixonError(f"fat and water images are on different grids: {described}; {advice}")
    shape = np.asarray(fat_shape[-3:], dtype=float)
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)])
    offsets = np.linalg.norm((corners @ (np.asarray(fat.affine) - np.asarray(water.affine)).T)[:, :3], axis=1)
    tolerance = GEOMETRY_TOLERANCE_VOXELS * min(min(fat.spacing), min(water.spacing))
    if not np.isfinite(offsets).all() or offsets.max() > tolerance:
        raise DixonError(f"fat and water images are on different grids: {described}, voxels up to "
                         f"{float(np.nanmax(offsets)):.3g} mm apart; {advice}")


def _grid_text(volume: Volume) -> str:
    shape = " × ".join(str(n) for n in volume.array.shape)
    spacing = " × ".join(f"{s:.3g}" for s in volume.spacing)
    return f"{shape} voxels of {spacing} mm"


def dixon_volume(
    fat: Volume, water: Volume, *, noise_floor: float = DEFAULT_NOISE_FLOOR,
    floor_percentile: float | None = DEFAULT_FLOOR_PERCENTILE,
) -> Volume:
    """The SFF map of a fat and a water volume on the fat volume's grid and file geometry (``fat.like``).

    Refuses (:class:`DixonError`) fat and water on different grids: nothing is resampled behind the user's back.
    ``source["dixon"]`` records the noise floor, its threshold and the fraction of voxels it set to 0, and marks the
    volume as a measured SFF map.
    """
    check_same_grid(fat, water)
    result = compute_fat_fraction(fat.array, water.array, noise_floor=noise_floor, floor_percentile=floor_percentile)
    volume = fat.like(result.sff)
    volume.source["dixon"] = {
        "kind": DIXON_SFF_KIND, "noise_floor": float(noise_floor), "floor_percentile": floor_percentile,
        "threshold": result.threshold, "floor_fraction": result.floor_fraction,
        "fat": _series_label(fat), "water": _series_label(water),
    }
    return volume


def summary(volume: Volume) -> str:
    """One line about a :func:`dixon_volume` result: grid and how much of it the noise floor took."""
    info = volume.source.get("dixon", {})
    spacing = " × ".join(f"{s:.3g}" for s in volume.spacing)
    shape = " × ".join(str(n) for n in volume.array.shape)
    floor = info.get("floor_fraction")
    floor_text = ""
    if floor is not None:
        floor_text = f", {100 * floor:.1f} % of voxels in the noise floor (F + W <= {info['threshold']:.4g})"
    return f"SFF = F / (F + W) on {shape} voxels of {spacing} mm{floor_text}"


def _series_label(volume: Volume) -> str | None:
    """SeriesNumber / SeriesDescription or the file name: never patient data."""
    info = volume.source.get("dicom") or {}
    if info:
        number, description = info.get("series_number"), info.get("series_description")
        return " ".join(str(part) for part in (number, description) if part not in (None, "")) or None
    path = volume.source.get("path") or volume.source.get("derived_from")
    return Path(path).name if path else None

