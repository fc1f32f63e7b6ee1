"""A phantom case (T2w TSE magnitude, PD fat fraction, labels) and a folder of them on disk."""

from __future__ import annotations

import contextlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.phantoms import tse
from training.phantoms.anatomy import ANATOMIES, draw_anatomy
from training.phantoms.slices import label_names_of, render_slice
from training.phantoms.tissues import SIGNAL_PD_THRESHOLD, TISSUE_IDS, TISSUES

MANIFEST = "phantoms.json"
GENERATOR = "training.phantoms"


@dataclass
class PhantomCase:
    """Display-order arrays (slice, row, column), their spacing (mm), label names and every drawn number.

    ``tissues`` holds the tissue class of each pixel (:data:`TISSUE_CLASS_NAMES`: 0 = air, ``EDGE`` where the
    pixel's fine pixels are not all one tissue) so that errors can be broken down by tissue."""

    t2w: np.ndarray
    sff: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    label_names: dict[int, str]
    params: dict
    tissues: np.ndarray


#: Tissue class map values: :data:`TISSUE_IDS` (air = 0, the background) and one more for mixed pixels.
EDGE = len(TISSUE_IDS)
TISSUE_CLASS_NAMES: dict[int, str] = {**{index: name for name, index in TISSUE_IDS.items() if index},
                                      EDGE: "edge (mixed tissues)"}


def _blocks(image: np.ndarray) -> np.ndarray:
    """(2n, 2m) -> (4, n, m): the four fine pixels of each output pixel."""
    n, m = image.shape[0] // 2, image.shape[1] // 2
    return image.reshape(n, 2, m, 2).transpose(1, 3, 0, 2).reshape(4, n, m)


def _mode_of_blocks(labels: np.ndarray) -> np.ndarray:
    """Label of each output pixel: the most frequent of its four fine pixels (the first of a tie)."""
    blocks = _blocks(labels)
    counts = (blocks[:, None] == blocks[None, :]).sum(axis=1)
    return np.take_along_axis(blocks, counts.argmax(axis=0)[None], 0)[0]


def _tissue_classes(tissue: np.ndarray) -> np.ndarray:
    """Tissue class of each output pixel: the tissue of its four fine pixels, or ``EDGE`` if they differ."""
    blocks = _blocks(tissue)
    uniform = (blocks == blocks[:1]).all(0)
    return np.where(uniform, blocks[0], EDGE)


def make_case(seed: int | np.random.SeedSequence, *, size: int = 256, n_slices: int = 12,
              anatomy: str | None = None) -> PhantomCase:
    """Draw and render one case; the same seed gives the same arrays."""
    if size < 16 or size % 2:
        raise ValueError(f"--size must be an even number >= 16 (got {size})")
    if n_slices < 1:
        raise ValueError(f"--slices must be >= 1 (got {n_slices})")
    rng = np.random.default_rng(seed)
    anatomy = anatomy or str(rng.choice(ANATOMIES))
    params = draw_anatomy(rng, anatomy)
    protocol = tse.draw_protocol(rng)
    tissues = tse.draw_tissues(rng, protocol["field_t"])
    names = label_names_of(params)
    label_ids = {name: index for index, name in names.items()}

    fine = 2 * size
    fine_mm = params["fov_mm"] / fine
    coords = (np.arange(fine) + 0.5 - size) * fine_mm
    y, x = np.meshgrid(coords, coords, indexing="ij")
    water_table, fat_table, _ = tse.echo_tables(protocol, tissues)
    water_table = water_table.reshape(-1, protocol["etl"])
    field_rng = np.random.default_rng(protocol["bias_seed"])
    bias = tse.smooth_field((fine, fine), field_rng, protocol["bias_coils"], protocol["bias_strength"])
    b1_bin = np.rint(tse.b1_map((fine, fine), 1.0, protocol["b1_tilt_deg"]) * (tse.B1_BINS - 1)).astype(np.int32)

    order = list(TISSUES)
    pd_of = np.array([tissues[n]["pd"] for n in order], np.float32)
    ff_of = np.array([tissues[n]["fat_fraction"] for n in order], np.float32)
    scale_of = np.array([tissues[n]["tse_scale"] for n in order], np.float32)
    pd_adipose = tissues["adipose"]["pd"]
    images, sff, labels, muscle, classes = [], [], [], [], []
    for k in range(n_slices):
        scene = render_slice(params, x, y, (k + 0.5) / n_slices, label_ids)
        tissue = scene.tissue.astype(np.int32)
        explicit = np.isfinite(scene.fat_fraction)
        ff = np.where(explicit, scene.fat_fraction, ff_of[tissue])
        pd = np.where(explicit, (1 - ff) * pd_of[tissue] + ff * pd_adipose, pd_of[tissue])
        fat_pd, total_pd = _blocks(pd * ff).sum(0), _blocks(pd).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(total_pd / 4 >= SIGNAL_PD_THRESHOLD, fat_pd / total_pd, 0.0)
        sff.append(fraction.astype(np.float32))
        labels.append(_mode_of_blocks(scene.labels))
        muscle.append(_blocks(tissue == TISSUE_IDS["muscle"]).all(0))
        classes.append(_tissue_classes(tissue))
        signal = pd * scale_of[tissue]
        index = tissue * tse.B1_BINS + b1_bin
        args = (signal * (1 - ff), signal * ff, index, bias, b1_bin)
        if protocol["phase_encode_axis"] == "columns":
            args = tuple(a.T for a in args)
        image = tse.acquire_slice(args[0], args[1], args[2], args[3], water_table, fat_table, args[4], protocol)
        images.append(image.T if protocol["phase_encode_axis"] == "columns" else image)
    clean = np.stack(images).astype(np.float32)
    muscle = np.stack(muscle)
    reference = float(np.abs(clean[muscle]).mean()) if muscle.any() else float(np.abs(clean).mean())
    sigma = reference / protocol["snr"]
    noise_rng = np.random.default_rng(protocol["bias_seed"] + 1)
    noisy = np.abs(clean + sigma * (noise_rng.standard_normal(clean.shape, np.float32)
                                    + 1j * noise_rng.standard_normal(clean.shape, np.float32)))
    top = float(np.percentile(noisy, 99.9)) or 1.0
    stored = np.clip(np.rint(noisy * (protocol["stored_max"] / top)), 0, np.iinfo(np.int16).max).astype(np.int16)
    spacing = (params["slice_mm"] * (1 + params["gap_fraction"]), params["fov_mm"] / size, params["fov_mm"] / size)
    params = {**params, "protocol": protocol, "tissues": tissues, "noise_sd_stored": sigma * protocol["stored_max"] / top}
    return PhantomCase(stored, np.stack(sff), np.stack(labels).astype(np.int16), spacing, names, params,
                       np.stack(classes).astype(np.int16))


def case_seed(seed: int, index: int) -> np.random.SeedSequence:
    """Case ``index`` of run ``seed``: independent of how many cases the run makes."""
    return np.random.SeedSequence([seed, index])


def _timed_case(seed: int, index: int, size: int, n_slices: int) -> tuple[PhantomCase, float]:
    started = time.perf_counter()
    case = make_case(case_seed(seed, index), size=size, n_slices=n_slices)
    return case, time.perf_counter() - started


def write_cases(out_dir: str | os.PathLike, n_cases: int, *, seed: int = 0, size: int = 256, n_slices: int = 12,
                overwrite: bool = False, workers: int = 1) -> Path:
    """Write ``<case>_t2w/_sff/_labels.nii.gz`` + ``<case>_labels.json`` per case and ``phantoms.json``.

    ``workers`` > 1 renders cases in that many processes (the same arrays: each case has its own seed).

    The folder is assembled beside ``out_dir`` and published at once (:func:`napari_sff.io.atomic_directory`): a
    crash leaves no half-written folder. An existing folder is replaced only with ``overwrite`` and only if it
    is a phantom folder (holds ``phantoms.json``); an empty one is simply filled.
    """
    from napari_sff import io
    from napari_sff.io.label_names import write_label_names

    out_dir = Path(out_dir)
    if n_cases < 1:
        raise ValueError(f"--cases must be >= 1 (got {n_cases})")
    replace = False
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"{out_dir} is a file; give a folder for the phantoms")
        if any(out_dir.iterdir()):
            if not (out_dir / MANIFEST).exists():
                raise ValueError(f"{out_dir} holds other files; choose an empty or new folder")
            if not overwrite:
                raise ValueError(f"{out_dir} already holds phantoms; choose another folder or pass --overwrite")
        replace = True
    entries = []
    indices = range(n_cases)
    pool_context = ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext()
    with io.atomic_directory(out_dir, overwrite=replace) as tmp, pool_context as pool:
        rendered = (pool.map(_timed_case, [seed] * n_cases, indices, [size] * n_cases, [n_slices] * n_cases)
                    if pool else (_timed_case(seed, index, size, n_slices) for index in indices))
        for index, (case, seconds) in zip(indices, rendered, strict=True):
            case_id = f"ph{index:04d}_{case.params['anatomy']}"
            files = {}
            for suffix, array in (("t2w", case.t2w), ("sff", case.sff), ("labels", case.labels),
                                  ("tissues", case.tissues)):
                path = tmp / f"{case_id}_{suffix}.nii.gz"
                io.write_nifti(io.Volume.from_array(array, case.spacing), path)
                files[suffix] = path.name
            names = {str(k): v for k, v in case.label_names.items()}
            files["label_names"] = write_label_names(tmp / f"{case_id}_labels.json", case.label_names).name
            files["tissue_names"] = write_label_names(tmp / f"{case_id}_tissues.json", TISSUE_CLASS_NAMES).name
            entries.append({"case": case_id, "seed": [seed, index], "files": files, "spacing": list(case.spacing),
                            "shape": list(case.t2w.shape), "label_names": names, "render_seconds": round(seconds, 3),
                            "params": case.params})
        manifest = {"generator": GENERATOR, "seed": seed, "size": size, "slices": n_slices, "cases": entries}
        io.atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1))
    return out_dir / MANIFEST
