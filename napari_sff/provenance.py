"""What made an SFF map, in a JSON sidecar beside it: model, weights, settings, time and what the model thought of
the scan (the out-of-distribution warning and per-slice feature distances).

A cohort of thousands is checked from these files afterwards (:mod:`napari_sff.cohort.qc` collects them into one
table), and a map found later on disk still says how it was made. Nothing in a sidecar comes from the scan's
header: no input path, no DICOM attribute, so no patient data.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_sff import io

#: The sidecar's format, for readers that outlive this version.
SIDECAR_VERSION = 1


def sidecar_path(output: str | os.PathLike) -> Path:
    """``scan_sff.nii.gz`` -> ``scan_sff.json``; a DICOM series folder ``SFF/`` -> ``SFF.json`` beside it."""
    output = Path(output)
    stem = io.nifti_stem(output.name) if io.is_nifti_path(output) else output.name
    return output.with_name(f"{stem}.json")


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256, hex (cached while the file keeps its modification time: weights are hashed once)."""
    path = Path(path)
    return _sha256(str(path.resolve()), path.stat().st_mtime)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(prediction: Any, *, weights: str | os.PathLike | None, ddim_steps: int, samples: int, seed: int,
             outputs: list[Path]) -> dict:
    """The sidecar's content for one prediction (JSON-able); ``weights`` None means the shipped ones."""
    import napari_sff
    from napari_sff.inference.loading import weights_path

    arch = prediction.arch
    path = weights_path(arch, weights)
    distances, threshold = prediction.feature_distance, prediction.feature_threshold
    info = {
        "format": "napari-sff prediction sidecar", "format_version": SIDECAR_VERSION,
        "generator": f"napari-sff {napari_sff.__version__}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "outputs": [p.name for p in outputs],
        "model": arch, "weights": "shipped" if not weights else path.name,
        "weights_sha256": file_sha256(path) if path.exists() else None,
        "device": prediction.device, "slice_axis": prediction.slice_axis, "slices": len(prediction.slice_indices),
        "seconds": round(float(prediction.seconds), 3), "ms_per_slice": round(float(prediction.ms_per_slice), 2),
        "mirrored": bool(prediction.mirrored), "precision": prediction.precision,
        "model_spacing_mm": None if prediction.model_spacing is None else [float(v) for v in prediction.model_spacing],
        "out_of_distribution": prediction.out_of_distribution,
        "feature_distance": None if distances is None else {
            "threshold": threshold, "median": float(np.median(distances)), "max": float(np.max(distances)),
            "share_beyond_threshold": None if threshold is None else float(np.mean(distances > threshold)),
            "per_slice": [round(float(d), 4) for d in distances]},
    }
    if arch == "ddpm":
        info.update(ddim_steps=ddim_steps, samples=samples, seed=seed)
    return info


def write_sidecar(output: str | os.PathLike, info: dict) -> Path:
    """Write ``info`` beside ``output`` atomically (it describes the map just written there, so it replaces an
    older sidecar of that map)."""
    return io.atomic_write_text(sidecar_path(output), json.dumps(info, indent=1) + "\n")


def read_sidecar(output: str | os.PathLike) -> dict | None:
    """The sidecar of ``output``, or None when there is none (or it cannot be read)."""
    try:
        return json.loads(sidecar_path(output).read_text())
    except (OSError, ValueError):
        return None
