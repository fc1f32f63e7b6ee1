"""Dixon fat and water images -> signal fat fraction (SFF), and finding the fat and water series of a Dixon study.

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

Pairing
-------
:data:`IMAGE_TYPE_TOKENS` and :data:`DESCRIPTION_TOKENS` are the one table of what vendors write; see there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

FAT, WATER, IN_PHASE, OPPOSED_PHASE, FAT_FRACTION = "fat", "water", "in_phase", "opposed_phase", "fat_fraction"

# ---------------------------------------------------------------------------------------------------------------
# The vendor table: what scanners write into ImageType (0008,0008) and SeriesDescription (0008,103E).
#
# ImageType, values 3 and on (value 1 is ORIGINAL/DERIVED, value 2 PRIMARY/SECONDARY), exact tokens:
#   Siemens syngo (VIBE / TSE Dixon)  ORIGINAL\PRIMARY\M\FAT\NORM\DIS2D, ...\M\WATER\..., ...\M\IN_PHASE\...,
#                                     ...\M\OUT_PHASE\...; XA (Vida) DERIVED\PRIMARY\DIXON\WATER, ...\OPP_PHASE;
#                                     older exports ...\M\F / ...\M\W
#   GE (LAVA-Flex, IDEAL, Flex TSE)   DERIVED\PRIMARY\DIXON\WATER[\MAGNITUDE], ...\FAT, ...\IN_PHASE, ...\OUT_PHASE
#   Philips (mDIXON) classic          DERIVED\PRIMARY\W\W\DERIVED, ...\F\F\..., ...\IP\IP\..., ...\OP\OP\...;
#                                     enhanced FrameType pre-R12 W/F/IP/OP, R12+ WATER/FAT/IN_PHASE/OUT_OF_PHASE;
#                                     mDIXON Quant adds FF (fat fraction) and T2_STAR maps
# SeriesDescription:
#   Siemens: protocol name + suffix, "t1_vibe_dixon_tra_F", "..._W", "..._opp", "..._in" (sometimes "_W_1")
#   GE: a prefix with a colon, "WATER: Ax LAVA-Flex", "FAT: ...", "InPhase: ...", "OutPhase: ..."
#   Philips: often one description for all types ("mDIXON TSE"): ImageType decides; sites add "_W"/"_F"/"water"/"fat"
# In-phase, opposed-phase and fat-fraction series are recognised so that they are never taken for fat or water.
# ---------------------------------------------------------------------------------------------------------------
IMAGE_TYPE_TOKENS: dict[str, frozenset[str]] = {
    FAT: frozenset({"FAT", "F"}),
    WATER: frozenset({"WATER", "W"}),
    IN_PHASE: frozenset({"IN_PHASE", "IP", "INPHASE"}),
    OPPOSED_PHASE: frozenset({"OUT_PHASE", "OPP_PHASE", "OUT_OF_PHASE", "OPPOSED_PHASE", "OP", "OPP", "OUTPHASE"}),
    FAT_FRACTION: frozenset({"FF", "FAT_FRACTION", "FATFRACTION", "PDFF", "SFF"}),
}
#: SeriesDescription / layer-name tokens (split on anything not a letter or digit, upper case, trailing numbers
#: dropped). W and F count only as the last token ("..._W"); GE's "WATER:" prefix counts as the first.
DESCRIPTION_TOKENS: dict[str, frozenset[str]] = {
    FAT: frozenset({"FAT", "F"}),
    WATER: frozenset({"WATER", "W"}),
    IN_PHASE: frozenset({"IN", "INPHASE", "IP"}),
    OPPOSED_PHASE: frozenset({"OPP", "OP", "OUT", "OUTPHASE", "OPPPHASE", "OPPOSED"}),
    FAT_FRACTION: frozenset({"FF", "PDFF", "SFF", "FRACTION", "FATFRACTION"}),
}
#: Words that make "fat" mean fat suppression, never a fat image.
SUPPRESSION_TOKENS = frozenset({"SAT", "FATSAT", "FS", "SUPPRESSED", "SUPPRESSION", "SPAIR", "SPIR", "STIR", "FSAT"})
#: Words that say a description belongs to a Dixon acquisition (loose matching of FAT/WATER anywhere needs one).
DIXON_HINTS = frozenset({"DIXON", "MDIXON", "FLEX", "IDEAL", "LAVA", "QDIXON"})


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


# ---------------------------------------------------------------------------------------------------------------
# Pairing fat and water series
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DixonPair:
    """A fat and a water candidate of one Dixon acquisition, and what recognised each (``image_type`` etc.)."""

    fat: Any
    water: Any
    fat_by: str
    water_by: str


def dicom_info(candidate: Any) -> dict[str, Any]:
    """The DICOM series metadata of a :class:`Volume`, a napari layer or a mapping ({} when there is none).

    Volumes carry it in ``source["dicom"]``; layers in ``metadata["dicom"]`` or ``metadata["nifti"]["dicom"]`` (the
    volume source a reader put there); a mapping is either such metadata or holds it under "dicom".
    """
    if isinstance(candidate, Volume):
        return dict(candidate.source.get("dicom") or {})
    metadata = getattr(candidate, "metadata", None)
    if isinstance(metadata, Mapping):
        info = metadata.get("dicom") or (metadata.get("nifti") or {}).get("dicom")
        return dict(info or {})
    if isinstance(candidate, Mapping):
        return dict(candidate.get("dicom") or candidate)
    return {}


def is_measured_sff(candidate: Any) -> bool:
    """A fat-fraction map computed from Dixon images (a layer or a :class:`Volume`), i.e. ground truth."""
    if isinstance(candidate, Volume):
        return "dixon" in candidate.source
    metadata = getattr(candidate, "metadata", None)
    if not isinstance(metadata, Mapping):
        return False
    return (metadata.get("napari_sff") or {}).get("kind") == DIXON_SFF_KIND


def _candidate_name(candidate: Any) -> str | None:
    name = getattr(candidate, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(candidate, Volume) and candidate.source.get("path"):
        from napari_sff.io.nifti import nifti_stem

        return nifti_stem(candidate.source["path"])
    if isinstance(candidate, Mapping) and isinstance(candidate.get("name"), str):
        return candidate["name"]
    return None


def _image_type_tokens(image_type: Any) -> list[str]:
    if image_type is None:
        return []
    values = image_type.split("\\") if isinstance(image_type, str) else list(image_type)
    return [str(v).strip().upper() for v in values[2:] if str(v).strip()]


def role_from_image_type(image_type: Any) -> str | None:
    """fat / water / in_phase / opposed_phase / fat_fraction from ImageType values 3 and on; None if not Dixon.

    A series that names two roles (e.g. FAT and WATER) is ambiguous and gets None.
    """
    roles = {role for token in _image_type_tokens(image_type)
             for role, tokens in IMAGE_TYPE_TOKENS.items() if token in tokens}
    return roles.pop() if len(roles) == 1 else None


def _words(text: str) -> list[str]:
    words = [w.upper() for w in re.split(r"[^A-Za-z0-9]+", text) if w]
    while words and words[-1].isdigit():  # "..._W_1", "name (5)"
        words.pop()
    while words and words[0].isdigit():   # "5: WATER: ..."
        words.pop(0)
    return words


def role_from_description(text: str | None, *, loose: bool = False) -> str | None:
    """The Dixon role a SeriesDescription (or a layer name) names, by :data:`DESCRIPTION_TOKENS`; None if none.

    Strict (descriptions): the last word ("t1_vibe_dixon_tra_W") or a GE prefix ("WATER: Ax LAVA-Flex"), or FAT /
    WATER anywhere in a description with a Dixon word (:data:`DIXON_HINTS`). ``loose`` (names a user gave layers):
    FAT / WATER anywhere. Never "fat" next to a suppression word (fat sat, FS, SPAIR): that is not a fat image.
    """
    if not text:
        return None
    words = _words(text)
    if not words or SUPPRESSION_TOKENS & set(words):
        return None
    prefix = re.match(r"\s*(?:\d+\s*[:\-]\s*)?(WATER|FAT|IN\s*_?PHASE|OUT\s*_?PHASE|OPP\s*_?PHASE)\s*:", text,
                      re.IGNORECASE)
    if prefix:
        word = re.sub(r"[\s_]", "", prefix.group(1)).upper()
        return {"WATER": WATER, "FAT": FAT, "INPHASE": IN_PHASE}.get(word, OPPOSED_PHASE)
    joined = "_".join(words)
    if re.search(r"(^|_)(IN_PHASE|OUT_PHASE|OPP_PHASE|OPPOSED_PHASE|OUT_OF_PHASE)($|_)", joined):
        return IN_PHASE if "IN_PHASE" in joined else OPPOSED_PHASE
    if re.search(r"(^|_)FAT_FRACTION($|_)", joined):
        return FAT_FRACTION
    last = words[-1]
    for role in (IN_PHASE, OPPOSED_PHASE, FAT_FRACTION, FAT, WATER):
        if last in DESCRIPTION_TOKENS[role]:
            return role
    if loose or DIXON_HINTS & set(words):
        found = {role for role in (FAT, WATER, FAT_FRACTION) for w in words
                 if w in DESCRIPTION_TOKENS[role] and len(w) > 1}
        if FAT_FRACTION in found:
            return FAT_FRACTION
        if len(found) == 1:
            return found.pop()
    return None


def dixon_role(candidate: Any) -> tuple[str | None, str]:
    """(role, what said so): ImageType first, then SeriesDescription, then the layer / file name."""
    if is_measured_sff(candidate):
        return None, "computed"
    info = dicom_info(candidate)
    role = role_from_image_type(info.get("image_type"))
    if role:
        return role, "image_type"
    role = role_from_description(info.get("series_description"))
    if role:
        return role, "series_description"
    if not (info.get("image_type") or info.get("series_description")):  # no DICOM: the name a user gave
        role = role_from_description(_candidate_name(candidate), loose=True)
        if role:
            return role, "name"
    return None, ""


def _same_or_unknown(a: Any, b: Any) -> bool:
    return a in (None, "") or b in (None, "") or a == b


def _shape(candidate: Any) -> tuple | None:
    if isinstance(candidate, Volume):
        return tuple(candidate.array.shape)
    data = getattr(candidate, "data", None)
    return tuple(data.shape) if hasattr(data, "shape") else None


def _stem(info: dict, name: str | None) -> str:
    """The description without its fat/water word: Siemens "t1_vibe_dixon_tra_F" and "_W" share one stem."""
    words = _words(info.get("series_description") or name or "")
    role_words = DESCRIPTION_TOKENS[FAT] | DESCRIPTION_TOKENS[WATER]
    if words and words[-1] in role_words:
        words = words[:-1]
    elif words and words[0] in role_words:
        words = words[1:]
    return "_".join(words)


def _series_number(info: dict) -> float:
    try:
        return float(info.get("series_number"))
    except (TypeError, ValueError):
        return float("nan")


def pair_dixon(candidates: Sequence[Any], *, role: Callable[[Any], tuple[str | None, str]] = dixon_role
               ) -> list[DixonPair]:
    """Fat and water series of the same Dixon acquisitions among ``candidates`` (volumes, layers or metadata).

    Each candidate's role comes from ImageType, then SeriesDescription, then its name (:func:`dixon_role`);
    in-phase, opposed-phase and fat-fraction series are left out. A fat and a water candidate may pair when their
    StudyInstanceUID and FrameOfReferenceUID agree (or are unknown) and their array shapes agree (or are unknown).
    Among several possible partners the one with the same description stem, then the nearest SeriesNumber, wins;
    each candidate is used once. Pairs come in the order of their fat candidates.
    """
    roles = [role(c) for c in candidates]
    infos = [dicom_info(c) for c in candidates]
    fats = [i for i, (r, _) in enumerate(roles) if r == FAT]
    waters = [i for i, (r, _) in enumerate(roles) if r == WATER]
    options = []
    for f in fats:
        for w in waters:
            a, b = infos[f], infos[w]
            if not (_same_or_unknown(a.get("study_uid"), b.get("study_uid"))
                    and _same_or_unknown(a.get("frame_of_reference_uid"), b.get("frame_of_reference_uid"))):
                continue
            shape_f, shape_w = _shape(candidates[f]), _shape(candidates[w])
            if shape_f is not None and shape_w is not None and shape_f != shape_w:
                continue
            same_stem = _stem(a, _candidate_name(candidates[f])) == _stem(b, _candidate_name(candidates[w]))
            distance = abs(_series_number(a) - _series_number(b))
            options.append((not same_stem, distance if np.isfinite(distance) else np.inf, abs(f - w), f, w))
    used: set[int] = set()
    chosen = []
    for *_, f, w in sorted(options):
        if f not in used and w not in used:
            used.update((f, w))
            chosen.append((f, w))
    return [DixonPair(candidates[f], candidates[w], roles[f][1], roles[w][1]) for f, w in sorted(chosen)]


# ---------------------------------------------------------------------------------------------------------------
# Reading the inputs of ``napari-sff dixon``
# ---------------------------------------------------------------------------------------------------------------
def read_pair(
    fat: str | os.PathLike, water: str | os.PathLike | None = None, *, fat_series: str | None = None,
    water_series: str | None = None,
) -> tuple[Volume, Volume]:
    """Fat and water volumes from two inputs, or from one DICOM folder that holds both (paired by :func:`pair_dixon`
    on the series headers, so only the two chosen series are read).

    In the one-folder form ``fat_series`` and ``water_series`` pick the series explicitly instead. Each input is
    read by ``io.read_volume`` (a NIfTI file or a DICOM series), as every command reads its images.
    """
    from napari_sff import io

    if water is not None:
        return io.read_volume(fat, series=fat_series), io.read_volume(water, series=water_series)
    if fat_series is not None and water_series is not None:
        return io.read_volume(fat, series=fat_series), io.read_volume(fat, series=water_series)
    if fat_series is not None or water_series is not None:
        raise DixonError(f"{fat}: with one folder give both --fat-series and --water-series, or neither "
                         "(then they are found by ImageType / SeriesDescription)")
    if io.is_nifti_path(fat):
        raise DixonError(f"{fat} is one NIfTI image; give the water image too (napari-sff dixon FAT WATER -o OUT)")
    infos = io.list_series(fat)
    candidates = [_header_candidate(info) for info in infos]
    pairs = pair_dixon(candidates)
    if len(pairs) != 1:
        found = io.describe_series(infos)
        what = "no fat and water series of one Dixon acquisition" if not pairs else f"{len(pairs)} Dixon fat/water pairs"
        raise DixonError(f"{fat}: found {what} among: {found}; pick them with --fat-series and --water-series")
    return (io.read_series(pairs[0].fat["info"], source_path=fat),
            io.read_series(pairs[0].water["info"], source_path=fat))


def _header_candidate(info: Any) -> dict[str, Any]:
    """What :func:`pair_dixon` needs of a listed DICOM series, from its first header (no pixels read)."""
    header = info.headers[0] if info.headers else {}
    return {"series_number": info.series_number, "series_description": info.series_description,
            "image_type": info.image_type, "series_uid": info.series_uid,
            "study_uid": str(header.get("StudyInstanceUID") or ""),
            "frame_of_reference_uid": str(header.get("FrameOfReferenceUID") or ""), "info": info}
