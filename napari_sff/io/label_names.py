"""Label id -> name from the sidecar files segmentation tools write: JSON, CSV, ITK-SNAP, 3D Slicer.

Formats, chosen by content (not by extension, which the tools share: ``.txt``):

* JSON: ``{"1": "vastus lateralis", ...}`` or a list of ``{"index"|"label"|"value": 1, "name": ...}`` objects.
* CSV / TSV with a header naming an id column (``index``, ``label``, ``id``, ``value``) and a ``name`` column.
* ITK-SNAP label description: ``IDX R G B A VIS MSH "LABEL"`` per line, ``#`` comments.
* 3D Slicer colour table (``.ctbl`` / ``.txt``): ``index name R G B A`` per line, ``#`` comments.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
import os
import shlex
from pathlib import Path

ID_COLUMNS = ("index", "label", "id", "value", "label_id")


class LabelNamesError(ValueError):
    """A label-name sidecar that cannot be parsed; the message names the file and the line."""


def read_label_names(path: str | os.PathLike) -> dict[int, str]:
    """Parse a label-name sidecar into ``{id: name}``; background (0) is dropped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LabelNamesError(f"{path}: cannot read label names ({exc.strerror or exc})") from exc
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        names = _from_json(path, stripped)
    else:
        first = next((line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
        names = _from_csv(path, text) if ("," in first or "\t" in first) and not first[:1].isdigit() else \
            _from_columns(path, text)
    names.pop(0, None)
    if not names:
        raise LabelNamesError(f"{path}: no label names found; use JSON, CSV (index,name), ITK-SNAP or Slicer format")
    return names


def write_label_names(path: str | os.PathLike, names: dict[int, str]) -> Path:
    """Write ``{id: name}`` as the JSON sidecar :func:`read_label_names` reads (``{"1": "name", ...}``), atomically."""
    from napari_sff.io.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps({str(k): v for k, v in names.items()}, indent=1))
    return path


def _from_json(path: Path, text: str) -> dict[int, str]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelNamesError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if isinstance(data, dict):
        try:
            return {int(key): str(value) for key, value in data.items()}
        except ValueError:
            raise LabelNamesError(f"{path}: JSON keys must be label ids (integers)") from None
    names = {}
    for entry in data:
        key = next((k for k in ID_COLUMNS if k in entry), None)
        if key is None or "name" not in entry:
            raise LabelNamesError(f"{path}: each JSON entry needs an id ({'/'.join(ID_COLUMNS)}) and a name")
        names[int(entry[key])] = str(entry["name"])
    return names


def _from_csv(path: Path, text: str) -> dict[int, str]:
    dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",\t;")
    rows = list(csv.DictReader(_stdio.StringIO(text), dialect=dialect))
    if not rows:
        return {}
    columns = {name.strip().lower(): name for name in rows[0] if name}
    key = next((columns[k] for k in ID_COLUMNS if k in columns), None)
    name = columns.get("name")
    if key is None or name is None:
        raise LabelNamesError(f"{path}: the CSV header needs an id column ({'/'.join(ID_COLUMNS)}) and 'name'")
    try:
        return {int(row[key]): row[name].strip() for row in rows if row[key] not in (None, "")}
    except ValueError as exc:
        raise LabelNamesError(f"{path}: an id is not an integer ({exc})") from None


def _from_columns(path: Path, text: str) -> dict[int, str]:
    """ITK-SNAP (quoted name last, 8 fields) or Slicer (name second) whitespace-separated tables."""
    names = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            fields = shlex.split(line)
            index = int(fields[0])
        except (ValueError, IndexError):
            raise LabelNamesError(f"{path}: line {number} does not start with a label id") from None
        if len(fields) >= 8 and '"' in line:  # ITK-SNAP: IDX R G B A VIS MSH "LABEL"
            names[index] = fields[7]
        elif len(fields) >= 2:  # Slicer: index name R G B A
            names[index] = fields[1]
        else:
            raise LabelNamesError(f"{path}: line {number} has an id but no name")
    return names
