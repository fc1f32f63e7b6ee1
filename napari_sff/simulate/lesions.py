"""Anatomy of the randomized domain: fatty atrophy patterns, edema / fluid collections anywhere in muscle and
signal voids added to any anatomy, and the ``random`` anatomy (random muscles and blobs of random tissues in a
skin and fat envelope).

Why: the models must not learn the thigh/calf/abdomen layouts; pathology and structures at unexpected places
make the local T2w contrast, calibrated against subcutaneous fat, the only reliable cue. Every draw comes from
``randomization.RANGES``.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import scipy.ndimage

from napari_sff.simulate.geometry import _Frame, _make_blob, _Scene, _smooth_field
from napari_sff.simulate.muscles import _add_muscle_seeds
from napari_sff.simulate.randomization import RANDOM_STRUCTURE_TISSUES, RANGES, draw
from napari_sff.simulate.tissues import _FLOAT


def _fatty_twins(scene: _Scene, rng: np.random.Generator, fat_fraction: float) -> tuple[np.ndarray, list[int]]:
    """Lookup muscle id -> a same-group muscle of high fat fraction for about half of the muscles (at least
    one): replacing ids through it keeps the labels and changes only the composition."""
    n = len(scene.muscle_group)
    affected = [m for m in range(1, n) if rng.random() < 0.5] or [int(rng.integers(1, n))]
    twin_of = np.arange(n + len(affected), dtype=np.uint8)
    for muscle in affected:
        twin_of[muscle] = scene.add_muscle(scene.muscle_group[muscle], max(fat_fraction, scene.muscle_fat[muscle]))
    return twin_of, affected


def add_atrophy(scene: _Scene, rng: np.random.Generator, no_atrophy: float | None = None) -> dict:
    """Fatty replacement: graded per muscle, or patchy / peripheral / moth-eaten within affected muscles.

    ``no_atrophy`` (a muscle prior's): the chance of no pattern, the others alike; None: the table's draw."""
    if no_atrophy is None:
        pattern = draw(rng, "atrophy_pattern")
    else:
        patterns = [p for p in RANGES["atrophy_pattern"].choices if p != "none"]
        pattern = "none" if rng.random() < no_atrophy else patterns[int(rng.integers(len(patterns)))]
    params: dict = {"atrophy_pattern": pattern}
    if pattern == "none" or len(scene.muscle_group) < 2:
        return params
    fat = draw(rng, "atrophy_fat_fraction")
    params["atrophy_fat_fraction"] = round(fat, 4)
    if pattern == "graded":
        grades = {}
        for muscle in range(1, len(scene.muscle_group)):
            grade = float(rng.uniform(0.0, 1.0))
            scene.muscle_fat[muscle] += grade * max(fat - scene.muscle_fat[muscle], 0.0)
            grades[muscle] = round(grade, 3)
        params["atrophy_grades"] = list(grades.values())
        return params
    twin_of, affected = _fatty_twins(scene, rng, fat)
    params["atrophy_muscles"] = len(affected)
    grid = scene.grid
    if pattern == "peripheral":
        depth = draw(rng, "atrophy_rim_mm")
        params["atrophy_rim_mm"] = round(depth, 2)
        half = max(1, int(round(depth / float(grid.x[1] - grid.x[0]))))
        outside = (scene.muscle == 0).astype(_FLOAT)
        replace = scipy.ndimage.uniform_filter(outside, size=(1, 2 * half + 1, 2 * half + 1)) > 1e-3
    else:
        name = "atrophy_patch_mm" if pattern == "patchy" else "atrophy_moth_mm"
        correlation = draw(rng, name)
        coverage = draw(rng, "atrophy_coverage")
        params[name], params["atrophy_coverage"] = round(correlation, 2), round(coverage, 3)
        field = _smooth_field(rng, (grid.z, grid.y, grid.x), (3 * correlation, correlation, correlation))
        replace = field > _FLOAT(NormalDist().inv_cdf(1.0 - coverage))
    replace &= scene.muscle > 0
    scene.muscle[replace] = twin_of[scene.muscle[replace]]
    return params


def add_lesions(scene: _Scene, rng: np.random.Generator, fit_fov: float) -> dict:
    """Edema and fluid collections anywhere in muscle, and signal voids anywhere in the body; ``scene.rng``
    becomes ``rng`` (the randomized domain's own stream)."""
    scene.rng = rng
    centre = _Frame.at((np.zeros_like(scene.grid.z), np.zeros_like(scene.grid.z)))
    spread = 0.45 * fit_fov
    params: dict = {}
    for kind, tissue, only, muscle_id in (
        ("edema", "edema", ("muscle",), None),
        ("fluid", "fluid", ("muscle", "intermuscular_fat", "edema"), 0),
        ("void", "air", None, 0),
    ):
        radii = [round(draw(rng, f"{kind}_radius_mm"), 2) for _ in range(draw(rng, f"{kind}_count"))]
        for radius in radii:
            scene.paint_patches(centre, spread=spread, count=1, radius_mm=(radius, radius), tissue=tissue,
                                only=only, muscle_id=muscle_id)
        params[f"{kind}_radii_mm"] = radii
    return params


def random_label_names(rng: np.random.Generator) -> dict[int, str]:
    """Label groups of the ``random`` anatomy: ``muscle 1`` .. ``muscle K``, K drawn from the table."""
    return {group: f"muscle {group}" for group in range(1, draw(rng, "random_muscles") + 1)}


def build_random(scene: _Scene, group_fat: dict[int, float]) -> dict:
    """Skin and subcutaneous fat around a muscle compartment split into random muscles, with blobs of random
    tissues inside (bones with a cortex). Sizes are fitted to the field of view."""
    rng, z, fov = scene.rng, scene.grid.z, scene.grid.fov
    a = min(draw(rng, "random_envelope_mm"), 0.45 * fov)
    b = a * rng.uniform(0.55, 1.0)
    fat_mm = min(draw(rng, "random_fat_mm"), 0.3 * b)
    angle = rng.uniform(-math.pi, math.pi)
    compartment = _make_blob(rng, z, tuple(rng.uniform(-0.05, 0.05, 2) * fov), (a - fat_mm, b - fat_mm),
                             angle=angle, wobble=0.12, drift_mm=4.0, radius_drift=0.08)
    outer = compartment.grown(*(fat_mm * rng.uniform(0.8, 1.25, 2))).rewobbled(rng, z, 0.2 * fat_mm / a)
    scene.paint_layers(outer, rng.uniform(1.2, 2.5), "subcutaneous_fat")
    frame = _Frame.of(compartment, angle)
    layout = []
    for group in sorted(group_fat):
        r, phi = 0.8 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        layout.append((group, r * math.cos(phi), r * math.sin(phi), rng.uniform(0.8, 1.4)))
    seeds = _add_muscle_seeds(scene, frame, layout, group_fat)
    scene.paint_muscles(compartment, seeds, septum_mm=rng.uniform(0.6, 2.0), bend_mm=rng.uniform(0.1, 0.25) * a)

    inside = ("muscle", "intermuscular_fat", *RANDOM_STRUCTURE_TISSUES)
    structures = []
    for _ in range(draw(rng, "random_structures")):
        tissue = RANDOM_STRUCTURE_TISSUES[int(rng.integers(len(RANDOM_STRUCTURE_TISSUES)))]
        radius = min(draw(rng, "random_structure_mm"), 0.45 * (b - fat_mm))
        r, phi = 0.7 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        blob = _make_blob(rng, z, frame.place(r * math.cos(phi), r * math.sin(phi)),
                          (radius, radius * rng.uniform(0.5, 1.0)), angle=rng.uniform(0, math.pi),
                          wobble=0.1, drift_mm=3.0)
        if tissue == "marrow_long_bone":
            scene.paint_bone(blob, rng.uniform(1.0, 0.3 * radius + 1.0), tissue, only=inside)
        elif tissue == "edema":
            scene.paint_blob(blob, tissue, only=("muscle",), muscle_id=None)
        else:
            scene.paint_blob(blob, tissue, only=inside)
        structures.append({"tissue": tissue, "radius_mm": round(radius, 2)})
    return {"subcutaneous_fat_mm": round(fat_mm, 2), "envelope_mm": [round(a, 1), round(b, 1)],
            "structures": structures}

