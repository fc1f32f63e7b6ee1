"""Limbs (thigh, calf): layouts of bones, vessels and muscle groups, painted into the scene."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from napari_sff.simulate.geometry import _SOFT_TISSUES, N_HARMONICS, _Frame, _make_blob, _Scene, _wander
from napari_sff.simulate.muscles import _add_muscle_seeds
from napari_sff.simulate.tissues import _FLOAT


@dataclass(frozen=True)
class _Bone:
    x: float  # frame units (compartment radii), medial / posterior positive
    y: float
    radius_mm: tuple[float, float]
    cortex_mm: tuple[float, float]
    triangularity: float = 0.0  # extra 3rd-harmonic wobble (tibia)


@dataclass(frozen=True)
class _Vessel:
    x: float  # deep vessels: frame units; superficial: direction, placed mid-way through subcutaneous fat
    y: float
    radius_mm: tuple[float, float]
    artery: bool
    superficial: bool = False


@dataclass(frozen=True)
class _LimbLayout:
    """Nominal cross-section of one limb at mid-level, written for a right limb (medial = +x)."""

    label_names: dict[int, str]
    muscles: tuple[tuple[int, float, float, float], ...]  # (group, x, y, Voronoi weight)
    bones: tuple[_Bone, ...]
    vessels: tuple[_Vessel, ...]
    compartment_mm: tuple[float, float]  # muscle compartment radius range (healthy)
    subcutaneous_mm: tuple[float, float]
    girth_drift: float  # relative radius change over 50 mm of slab (direction drawn per case)
    # Fat pads (x, y, radius in frame units) where a bone lies right under the skin.
    bare_bone: tuple[tuple[float, float, float], ...] = ()


THIGH = _LimbLayout(
    label_names={1: "quadriceps", 2: "hamstrings", 3: "adductors", 4: "sartorius/gracilis"},
    muscles=(
        (1, 0.0, -0.78, 1.25),  # rectus femoris
        (1, -0.62, -0.2, 0.95),  # vastus lateralis
        (1, 0.42, -0.5, 1.05),  # vastus medialis
        (1, -0.1, -0.38, 1.15),  # vastus intermedius
        (2, -0.4, 0.62, 1.05),  # biceps femoris
        (2, 0.15, 0.7, 1.0),  # semitendinosus / semimembranosus
        (3, 0.45, 0.25, 0.95),  # adductor magnus
        (3, 0.5, -0.05, 1.15),  # adductor longus / brevis
        (4, 0.72, -0.45, 1.6),  # sartorius
        (4, 0.88, 0.25, 1.7),  # gracilis
    ),
    bones=(_Bone(-0.05, 0.0, (12.0, 15.0), (4.0, 7.0)),),  # femur
    vessels=(
        _Vessel(0.55, -0.22, (3.0, 4.5), artery=True),  # superficial femoral artery
        _Vessel(0.6, -0.1, (4.0, 6.0), artery=False),  # femoral vein
        _Vessel(0.12, 0.18, (2.5, 3.5), artery=True),  # profunda femoris
        _Vessel(0.95, -0.3, (2.0, 3.0), artery=False, superficial=True),  # great saphenous vein
    ),
    compartment_mm=(50.0, 68.0),
    subcutaneous_mm=(4.0, 30.0),
    girth_drift=0.06,
)

CALF = _LimbLayout(
    label_names={1: "gastrocnemius", 2: "soleus", 3: "tibialis anterior", 4: "peroneal", 5: "deep posterior"},
    muscles=(
        (1, 0.3, 0.72, 1.0),  # gastrocnemius, medial head
        (1, -0.3, 0.7, 1.1),  # gastrocnemius, lateral head
        (2, 0.0, 0.32, 0.85),  # soleus
        (3, -0.12, -0.6, 1.0),  # tibialis anterior (with the toe extensors)
        (4, -0.78, -0.12, 1.05),  # peroneus longus / brevis
        (5, 0.1, -0.05, 1.15),  # tibialis posterior and long flexors
    ),
    bones=(
        _Bone(0.35, -0.5, (11.0, 14.0), (3.0, 5.0), triangularity=0.12),  # tibia
        _Bone(-0.5, 0.02, (5.0, 7.0), (1.5, 2.5)),  # fibula
    ),
    vessels=(
        _Vessel(-0.05, -0.35, (1.5, 2.2), artery=True),  # anterior tibial
        _Vessel(0.25, 0.1, (2.0, 2.8), artery=False),  # posterior tibial
        _Vessel(-0.3, 0.08, (1.8, 2.5), artery=False),  # peroneal
        _Vessel(0.8, -0.5, (1.5, 2.5), artery=False, superficial=True),  # great saphenous vein
        _Vessel(0.0, 1.0, (1.5, 2.2), artery=False, superficial=True),  # small saphenous vein
    ),
    compartment_mm=(40.0, 52.0),
    subcutaneous_mm=(3.0, 22.0),
    girth_drift=0.05,
    bare_bone=((0.62, -0.72, 0.3),),  # the tibia's medial face
)

LIMB_LAYOUTS = {"thigh": THIGH, "calf": CALF}


def _paint_limb(
    scene: _Scene,
    layout: _LimbLayout,
    centre_x: float,
    mirror: float,
    radius: float,
    fat_mm: float,
    group_fat: dict[int, float],
) -> None:
    """One limb: skin, subcutaneous fat, muscles with septa, focal lesions, vessels, bones."""
    rng, z = scene.rng, scene.grid.z
    angle = rng.uniform(-0.25, 0.25)
    compartment = _make_blob(
        rng,
        z,
        (centre_x, rng.uniform(-5, 5)),
        (radius, radius * rng.uniform(0.85, 1.05)),
        angle=angle,
        profile=1 + _wander(rng, z, layout.girth_drift),
        wobble=0.05,
    )
    # Subcutaneous fat: the same outline grown by the fat thickness, off-centre and re-wobbled so it varies.
    outer = compartment.grown(*(fat_mm * rng.uniform(0.8, 1.25, 2))).rewobbled(rng, z, 0.2 * fat_mm / radius)
    offset = 0.2 * fat_mm * rng.uniform(-1, 1, 2)
    outer = replace(outer, cx=outer.cx + _FLOAT(offset[0]), cy=outer.cy + _FLOAT(offset[1]))
    scene.paint_layers(outer, rng.uniform(1.2, 2.5), "subcutaneous_fat")

    frame = _Frame.of(compartment, angle, mirror)
    seeds = _add_muscle_seeds(scene, frame, layout.muscles, group_fat)
    scene.paint_muscles(
        compartment, seeds, septum_mm=rng.uniform(0.6, 1.8), bend_mm=rng.uniform(0.1, 0.2) * radius
    )
    for x, y, r in layout.bare_bone:
        pad = _make_blob(rng, z, frame.place(x, y), (r * radius, r * radius * 1.2), angle=angle, wobble=0.05)
        scene.paint_blob(pad, "subcutaneous_fat", only=("muscle", "intermuscular_fat"))

    if rng.random() < 0.3:  # edema: bright on T2w, no fat, still counted as muscle
        count = int(rng.integers(1, 4))
        scene.paint_patches(
            frame,
            spread=0.75,
            count=count,
            radius_mm=(8.0, 25.0),
            tissue="edema",
            only=("muscle",),
            muscle_id=None,
        )
    if rng.random() < 0.2:  # cyst / fluid collection
        scene.paint_patches(
            frame, spread=0.85, count=1, radius_mm=(4.0, 15.0), tissue="fluid", only=_SOFT_TISSUES
        )

    for vessel in layout.vessels:
        if vessel.superficial:
            reach = (1 + 0.5 * fat_mm / radius) / math.hypot(vessel.x, vessel.y)
            centre = frame.place(vessel.x * reach, vessel.y * reach)
        else:
            centre = frame.place(vessel.x, vessel.y)
        scene.paint_vessel(centre, rng.uniform(*vessel.radius_mm), vessel.artery)

    for bone in layout.bones:
        r = rng.uniform(*bone.radius_mm)
        blob = _make_blob(
            rng,
            z,
            frame.place(bone.x, bone.y),
            (r, r * rng.uniform(0.85, 1.0)),
            angle=rng.uniform(0, math.pi),
            wobble=0.03,
            radius_drift=0.02,
            drift_mm=1.5,
        )
        triangle = np.zeros(N_HARMONICS, _FLOAT)
        triangle[1] = bone.triangularity  # harmonic k = 3
        blob = replace(blob, wobble=blob.wobble + triangle)
        scene.paint_bone(blob, rng.uniform(*bone.cortex_mm), "marrow_long_bone")


def _build_limbs(
    scene: _Scene, anatomy: str, n_limbs: int, condition: str, group_fat: dict[int, float]
) -> dict:
    """One or two limbs side by side, shrunk where needed so that they fit the field of view."""
    rng = scene.rng
    layout = LIMB_LAYOUTS[anatomy]
    radius = rng.uniform(*layout.compartment_mm) * (0.85 if condition != "healthy" else 1.0)
    fat_mm, gap = rng.uniform(*layout.subcutaneous_mm), rng.uniform(3.0, 20.0)
    width = n_limbs * 2 * (radius + 1.25 * fat_mm) + (n_limbs - 1) * 2 * gap
    fit = min(1.0, 0.92 * scene.grid.fov / width)
    radius, fat_mm, gap = radius * fit, fat_mm * fit, gap * fit
    if n_limbs == 2:
        half_gap = gap + radius + 1.25 * fat_mm
        sides = [(-half_gap, 1.0), (half_gap, -1.0)]  # patient's right limb on the image left
    else:
        sides = [(0.0, 1.0 if rng.random() < 0.5 else -1.0)]
    for centre_x, mirror in sides:
        _paint_limb(scene, layout, centre_x, mirror, radius * rng.uniform(0.95, 1.05), fat_mm, group_fat)
    side = "both" if n_limbs == 2 else ("right" if sides[0][1] > 0 else "left")
    return {"n_limbs": n_limbs, "side": side, "subcutaneous_fat_mm": round(fat_mm, 2)}
