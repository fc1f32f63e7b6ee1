"""Simulated cases as napari sample data and as NIfTI files on disk (``napari-sff simulate``)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from napari_sff import io
from napari_sff.io.label_names import write_label_names
from napari_sff.simulate import SimulatedCase, simulate_case, simulate_cases
from napari_sff.simulate.tissues import DEFAULT_MUSCLE_PRIOR, MIXED_TISSUE, TISSUE_IDS

#: Names of the values of ``<case>_tissues.nii.gz`` (``--tissues``): the simulator's tissue ids (air = 0 is the
#: background) and its mixed value, where no tissue fills 3 of a voxel's 4 sub-voxels.
TISSUE_CLASS_NAMES: dict[int, str] = {**{index: name for name, index in TISSUE_IDS.items()
                                         if index and name != "fat_protons"}, MIXED_TISSUE: "edge (mixed tissues)"}

SAMPLE_SEED = 7
SAMPLE_SIZE = 256
SAMPLE_SLICES = 24
MANIFEST_NAME = "manifest.json"


def case_volumes(case: SimulatedCase) -> dict[str, io.Volume]:
    """The co-registered volumes of a case, keyed by their file suffix (``tissues`` when the case has them)."""
    volumes = {
        "t2w": io.Volume.from_array(case.t2w, case.spacing),
        "sff": io.Volume.from_array(case.sff, case.spacing),
        "labels": io.Volume.from_array(case.labels, case.spacing),
    }
    if case.tissues is not None:
        volumes["tissues"] = io.Volume.from_array(case.tissues, case.spacing)
    return volumes


def case_layers(case: SimulatedCase, prefix: str) -> list[tuple]:
    """LayerData for napari: T2w (gray), ground-truth SFF (fat colormap, hidden) and muscle labels."""
    volumes = case_volumes(case)
    names = {0: "background", **case.label_names}
    features = {"index": list(names), "name": list(names.values())}
    return [
        io.layer_data(volumes["t2w"], f"{prefix}_t2w", "image"),
        io.layer_data(volumes["sff"], f"{prefix}_sff", "sff", visible=False),
        io.layer_data(volumes["labels"], f"{prefix}_labels", "labels", features=features),
    ]


def _sample(anatomy: str) -> list[tuple]:
    case = simulate_case(anatomy, size=SAMPLE_SIZE, n_slices=SAMPLE_SLICES, seed=SAMPLE_SEED)
    return case_layers(case, f"synthetic_{anatomy}")


def synthetic_thigh() -> list[tuple]:
    return _sample("thigh")


def synthetic_calf() -> list[tuple]:
    return _sample("calf")


def synthetic_abdomen() -> list[tuple]:
    return _sample("abdomen")


def synthetic_pelvis() -> list[tuple]:
    return _sample("pelvis")


def write_cases(
    out_dir: str | os.PathLike, n_cases: int, *, seed: int = 0, size: int = 256, n_slices: int = 24,
    overwrite: bool = False, domain: str = "default", tissues: bool = False,
    muscle_prior: str = DEFAULT_MUSCLE_PRIOR, anatomies: Sequence[str] | None = None,
) -> Path:
    """Write ``<case>_t2w/_sff/_labels.nii.gz`` per case and a JSON manifest of case parameters.

    ``tissues`` adds ``<case>_tissues.nii.gz`` and ``<case>_tissues.json`` (:data:`TISSUE_CLASS_NAMES`), which
    ``python -m training.evaluate --tissues`` breaks errors down by. Returns the manifest path. Existing files
    are never replaced unless ``overwrite``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.exists() and not overwrite:
        raise FileExistsError(f"{manifest_path} exists; choose an empty folder or pass --overwrite")
    entries = []
    for index, case in enumerate(simulate_cases(n_cases, seed=seed, size=size, n_slices=n_slices,
                                                domain=domain, return_tissues=tissues,
                                                muscle_prior=muscle_prior, anatomies=anatomies)):
        case_id = f"case{index:04d}_{case.params.get('anatomy', 'case')}"
        files = {}
        for suffix, volume in case_volumes(case).items():
            path = out_dir / f"{case_id}_{suffix}.nii.gz"
            io.write_nifti(volume, path, overwrite=overwrite)
            files[suffix] = path.name
        if tissues:
            files["tissue_names"] = write_label_names(out_dir / f"{case_id}_tissues.json", TISSUE_CLASS_NAMES).name
        entries.append({
            "case": case_id, "files": files, "spacing": list(case.spacing),
            "label_names": {str(k): v for k, v in case.label_names.items()}, "params": case.params,
        })
    manifest = {"generator": "napari_sff.simulate", "seed": seed, "size": size, "slices": n_slices,
                "cases": entries, **({"domain": domain} if domain != "default" else {}),
                **({"muscle_prior": muscle_prior} if muscle_prior != DEFAULT_MUSCLE_PRIOR else {}),
                **({"anatomies": list(anatomies)} if anatomies is not None else {})}
    io.atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    return manifest_path
