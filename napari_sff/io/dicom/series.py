"""Which image stacks a DICOM path holds (a folder walked recursively, a DICOMDIR, or one file of a series),
from headers alone: what the napari reader's probe, ``--series`` and the cohort's folder check need, apart from
the pixel and geometry code of :mod:`.read`.

pydicom scans headers only (``stop_before_pixels``), files that are not DICOM images are skipped, images are
grouped by SeriesInstanceUID and split further where one series holds several image types or echo times (Dixon
W/F/IP/OP, multi-echo). A stack is named by number and description, never by patient data; :class:`DicomError`
is the one error of listing and reading.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
#: Files a folder walk never opens (cheap to skip, never images).
_SKIP_SUFFIXES = (".nii", ".nii.gz", ".json", ".txt", ".csv", ".md", ".png", ".jpg", ".xml", ".zip", ".gz", ".py")
_ENHANCED_MARKERS = ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence")


class DicomError(ValueError):
    """A DICOM input that cannot become a correct volume; the message names the series and what to do."""


@dataclass
class SeriesInfo:
    """One readable stack: a series, or the part of a series with one image type / echo time."""

    series_uid: str
    series_number: int | None
    series_description: str
    modality: str
    image_type: tuple[str, ...]
    echo_time: float | None
    files: list[str] = field(repr=False)
    headers: list[Any] = field(repr=False)  # pydicom Datasets without pixel data, in the order of ``files``
    split_label: str = ""  # what tells this stack apart from the rest of its series ("W", "TE 4.6 ms")
    multiframe: bool = False

    @property
    def label(self) -> str:
        """Layer name: "<SeriesNumber> <SeriesDescription>" (+ image type / echo of a split series)."""
        parts = [str(self.series_number) if self.series_number is not None else "", self.series_description]
        if self.split_label:
            parts.append(f"[{self.split_label}]")
        return " ".join(p for p in parts if p) or self.series_uid

    @property
    def name(self) -> str:
        """How messages refer to the series: number and description (never patient data)."""
        return f"series {self.label}"

    def matches(self, key: str) -> bool:
        """``key`` is this stack's SeriesNumber, SeriesInstanceUID, SeriesDescription or full label."""
        key = str(key).strip()
        return key in {self.series_uid, self.label} or (
            self.series_number is not None and key == str(self.series_number)
        ) or (bool(self.series_description) and key.lower() == self.series_description.lower())


def has_dicom_preamble(path: str | os.PathLike) -> bool:
    """True if ``path`` is a file with the "DICM" marker after the 128-byte preamble (any name or suffix)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_path(path: str | os.PathLike, max_files: int = 200) -> bool:
    """Whether the napari reader should take ``path``: a DICOM file, a DICOMDIR, or a folder holding one.

    A folder is probed for its first DICOM file (at most ``max_files`` files looked at), so the check is
    quick even on a large study; NIfTI files are never taken.
    """
    path = Path(path)
    if path.is_file():
        return not str(path).lower().endswith((".nii", ".nii.gz")) and (
            has_dicom_preamble(path) or path.name.upper() == "DICOMDIR"
        )
    if not path.is_dir():
        return False
    for seen, file in enumerate(_walk(path)):
        if seen >= max_files:
            return False
        if has_dicom_preamble(file):
            return True
    return False


def _walk(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and not name.lower().endswith(_SKIP_SUFFIXES):
                yield Path(root) / name


def _dicomdir_files(path: Path) -> list[Path]:
    """Image files a DICOMDIR references (pydicom's FileSet), resolved relative to its folder."""
    import pydicom
    from pydicom.fileset import FileSet

    try:
        file_set = FileSet(pydicom.dcmread(path))
    except Exception as exc:  # pydicom raises many types for damaged directories
        raise DicomError(f"{path}: not a readable DICOMDIR ({type(exc).__name__}); open its folder instead") from exc
    return [Path(instance.path) for instance in file_set]


def _candidate_files(path: Path) -> tuple[list[Path], str | None]:
    """Files to scan for ``path`` and, for a single file, the series it belongs to."""
    if not path.exists():
        raise DicomError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        return list(_walk(path)), None
    if path.name.upper() == "DICOMDIR":
        return _dicomdir_files(path), None
    header = _read_header(path)
    if header is None:
        raise DicomError(f"{path}: not a DICOM image file")
    if header.get("SeriesInstanceUID") is None:  # a lone image without a series: read just this file
        return [path], None
    # The rest of its series sits beside it; the opened file goes first so it wins over copies of itself.
    siblings = sorted(p for p in path.parent.iterdir() if p.is_file() and p != path and not p.name.startswith("."))
    return [path, *siblings], str(header.SeriesInstanceUID)


def _read_header(path: Path) -> Any | None:
    """The header of a DICOM image file (no pixel data), or None for anything else."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        if not path.name.lower().endswith(DICOM_SUFFIXES):
            return None
        try:  # old files without preamble: only when the name says DICOM
            header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:
            return None
    except Exception:
        return None
    if "Rows" not in header or "Columns" not in header:
        return None  # DICOMDIR, structured reports, presentation states...
    return header


def list_series(path: str | os.PathLike) -> list[SeriesInfo]:
    """Every image stack under ``path`` (folder, DICOMDIR or one file of a series), by series number.

    A series whose images differ in ImageType or EchoTime is split into one stack per combination.
    Raises :class:`DicomError` if no DICOM image is found.
    """
    path = Path(path)
    files, only_series = _candidate_files(path)
    groups: dict[str, list[tuple[Path, Any]]] = {}
    seen: set[str] = set()
    for file in files:
        header = _read_header(file)
        if header is None:
            continue
        instance = str(header.get("SOPInstanceUID") or "")
        if instance:  # the same image twice (a copy, or another transfer syntax of it) counts once
            if instance in seen:
                continue
            seen.add(instance)
        uid = header.get("SeriesInstanceUID")
        uid = str(uid) if uid else f"no-series-uid:{file}"
        if only_series is not None and uid != only_series:
            continue
        groups.setdefault(uid, []).append((file, header))
    if not groups:
        raise DicomError(f"{path}: no DICOM images found (non-DICOM files are skipped)")
    infos = [info for uid, members in groups.items() for info in _split_series(uid, members)]
    return sorted(infos, key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid, s.split_label))


def _image_type(header: Any) -> tuple[str, ...]:
    value = header.get("ImageType")
    if value is None:
        return ()
    return tuple(str(v) for v in (value if isinstance(value, Sequence) and not isinstance(value, str) else [value]))


def _echo_time(header: Any) -> float | None:
    value = header.get("EchoTime")
    if value in (None, ""):
        return None
    return round(float(value), 3)


def _split_series(uid: str, members: list[tuple[Path, Any]]) -> list[SeriesInfo]:
    first = members[0][1]
    number = first.get("SeriesNumber")
    base = {
        "series_uid": uid if not uid.startswith("no-series-uid:") else "",
        "series_number": int(number) if number not in (None, "") else None,
        "series_description": str(first.get("SeriesDescription") or "").strip(),
        "modality": str(first.get("Modality") or ""),
    }
    # Enhanced multi-frame files are stacks of their own (each file is one volume).
    multiframe = [(f, h) for f, h in members if _is_multiframe(h)]
    single = [(f, h) for f, h in members if not _is_multiframe(h)]
    infos = [
        SeriesInfo(**base, image_type=_image_type(h), echo_time=_echo_time(h), files=[str(f)], headers=[h],
                   split_label=f"file {i + 1}" if len(multiframe) > 1 else "", multiframe=True)
        for i, (f, h) in enumerate(multiframe)
    ]
    subgroups: dict[tuple, list[tuple[Path, Any]]] = {}
    for file, header in single:
        subgroups.setdefault((_image_type(header), _echo_time(header)), []).append((file, header))
    keys = list(subgroups)
    for (image_type, echo), group in subgroups.items():
        infos.append(SeriesInfo(
            **base, image_type=image_type, echo_time=echo, files=[str(f) for f, _ in group],
            headers=[h for _, h in group], split_label=_split_label(image_type, echo, keys),
        ))
    return infos


def _is_multiframe(header: Any) -> bool:
    return any(m in header for m in _ENHANCED_MARKERS) or int(header.get("NumberOfFrames") or 1) > 1


def _split_label(image_type: tuple[str, ...], echo: float | None, keys: list[tuple]) -> str:
    """The ImageType values (and echo time) that set this stack apart from the others of its series."""
    if len(keys) < 2:
        return ""
    parts = []
    other_types = [k[0] for k in keys if k[0] != image_type]
    if other_types:  # e.g. WATER for ("DERIVED", "PRIMARY", "DIXON", "WATER") beside the FAT image
        common = set.intersection(*(set(t) for t in other_types))
        parts = [v for v in dict.fromkeys(image_type) if v and v not in common] or ["\\".join(image_type)]
    if len({k[1] for k in keys}) > 1 and echo is not None:
        parts.append(f"TE {echo:g} ms")
    return " ".join(parts)


def select_series(infos: Sequence[SeriesInfo], series: str | int | None) -> list[SeriesInfo]:
    """Stacks matching ``series`` (SeriesNumber, SeriesInstanceUID, SeriesDescription or layer label)."""
    if series is None:
        return list(infos)
    chosen = [info for info in infos if info.matches(str(series))]
    if not chosen:
        raise DicomError(f"no series matches {str(series)!r}; the folder holds: {describe_series(infos)}")
    return chosen


def describe_series(infos: Sequence[SeriesInfo]) -> str:
    """One line listing the stacks by number and description (what a user picks with --series)."""
    return "; ".join(f"{info.label} ({len(info.files) if not info.multiframe else 'multi-frame'}"
                     f"{'' if info.multiframe else ' images'})" for info in infos)
