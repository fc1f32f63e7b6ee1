"""Finding the fat and water series of a Dixon study from their headers or names, and reading the chosen pair.

A role (fat, water, in-phase, opposed-phase, fat fraction) comes from ImageType, then SeriesDescription, then the
layer / file name; :data:`~napari_sff.dixon.vendors.IMAGE_TYPE_TOKENS` and
:data:`~napari_sff.dixon.vendors.DESCRIPTION_TOKENS` are the one table of what vendors write; see there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sff.dixon.fraction import DIXON_SFF_KIND, DixonError
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
from napari_sff.io.volume import Volume


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
