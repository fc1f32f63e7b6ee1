"""Pelvis at the level of the hip joints: gluteal and hip muscles, femoral heads in their acetabula, ilium,
sacrum and pubis, bladder, rectum, uterus or prostate, bowel loops and the femoral vessels.

Why: a T2w -> SFF model must tell apart, in the pelvis, urine (bright, no fat), mixed iliac and sacral marrow
(intermediate, half fat), yellow femoral-head marrow (bright, nearly all fat) and thick gluteal muscle under
thick fat. Issue #11 measured the shipped U-Net's largest errors on independent pelvic phantoms (bladder read
+0.30 too fatty, pelvic marrow -0.31 too lean) while the simulator had no pelvis.

Layout from textbook cross-sectional anatomy of an axial slice through the acetabular roof and femoral heads
(e.g. Moeller & Reif, Pocket Atlas of Sectional Anatomy, vol. 2; Netter, Atlas of Human Anatomy, pelvis plates):
the pelvic cavity is midline (bladder in front, rectum behind, uterus or prostate between); the femoral heads sit
laterally in cups of the acetabulum, whose bone continues upwards into the ilium (towards the sacroiliac joints)
and downwards-forwards into the pubic rami that meet at the symphysis; the obturator internus lines the inner
pelvic wall; the iliopsoas runs in front of the hip joint with the femoral vessels in front of and medial to it;
sartorius, rectus femoris and tensor fasciae latae are anterolateral; gluteus medius / minimus lateral and the
gluteus maximus posterior. Sizes are plausible adult values (femoral head diameter about 42-54 mm; inter-head
distance about 170-200 mm), i.e. guesses within anatomical ranges, not measurements. Tissue rows are the table's:
mixed iliac / sacral / pubic marrow uses ``marrow_vertebral``, the femoral head and trochanter ``marrow_long_bone``
(yellow marrow), uterus and prostate the ``bowel`` row (soft tissue of intermediate T2, approx.), the bladder wall
``muscle`` without a label (smooth muscle, no fat).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from napari_sff.simulate.geometry import (
    _CAVITY_TISSUES,
    _SOFT_TISSUES,
    _Blob,
    _ellipsoid_profile,
    _Frame,
    _make_blob,
    _Scene,
)
from napari_sff.simulate.muscles import _add_muscle_seeds, _mirrored
from napari_sff.simulate.tissues import _FLOAT

PELVIS_LABELS = {
    1: "gluteus maximus",
    2: "gluteus medius/minimus",
    3: "iliopsoas",
    4: "anterior hip (sartorius, rectus femoris, TFL)",
    5: "obturator internus",
}
# Voronoi seeds of the muscular ring for the patient's right side (x < 0), mirrored for the left:
# (group, x, y, weight) in units of the ring's semi-axes (y grows towards posterior).
PELVIC_RING = (
    (1, -0.25, 0.9, 0.9),  # gluteus maximus, medial part (beside the gluteal cleft)
    (1, -0.62, 0.68, 0.9),  # gluteus maximus, lateral part
    (2, -0.95, 0.15, 1.0),  # gluteus medius / minimus over the hip joint
    (4, -0.85, -0.5, 1.1),  # tensor fasciae latae, sartorius, rectus femoris
    (3, -0.45, -0.82, 1.05),  # iliopsoas in front of the hip joint
    (5, -0.42, 0.2, 1.25),  # obturator internus along the inner pelvic wall
)


@dataclass
class _Pelvis:
    """Landmarks shared by the painters (mm; x towards the patient's left, y towards posterior, z superior)."""

    ring: _Blob  # outer boundary of the muscles
    cavity: _Blob  # the true pelvis: fat around the pelvic organs
    fat_mm: float
    scale: float  # < 1 where the body was shrunk to fit a small field of view; other sizes follow it
    head_x: float  # |x| of the femoral head centres
    head_y: float
    head_r: float
    head_z: float  # slice position of the femoral heads' centres


def _paint_outline_and_muscles(scene: _Scene, group_fat: dict[int, float]) -> _Pelvis:
    """Skin and subcutaneous fat (thickest over the buttocks), the pelvic cavity, the muscles split by Voronoi."""
    rng, z = scene.rng, scene.grid.z
    fat_mm, ring_a = rng.uniform(8.0, 45.0), rng.uniform(125.0, 165.0)
    scale = min(1.0, 0.46 * scene.grid.fov / (ring_a + 1.3 * fat_mm))  # a small field: a smaller person
    fat_mm, ring_a = fat_mm * scale, ring_a * scale
    ring_b = min(rng.uniform(85.0, 115.0) * scale, 0.8 * ring_a)
    ring = _make_blob(rng, z, (0.0, 0.0), (ring_a, ring_b), wobble=0.05)
    outer = ring.grown(fat_mm * rng.uniform(1.0, 1.3), fat_mm * rng.uniform(0.8, 1.2)).rewobbled(rng, z, 0.03)
    outer = replace(outer, cy=outer.cy + _FLOAT(0.15 * fat_mm))  # more fat behind (buttocks) than in front
    scene.paint_layers(outer, rng.uniform(1.5, 2.5), "subcutaneous_fat")

    cavity = _make_blob(
        rng, z, (0.0, -0.08 * ring_b), (rng.uniform(0.3, 0.38) * ring_a, rng.uniform(0.5, 0.62) * ring_b),
        wobble=0.04,
    )
    scene.paint_blob(cavity, "visceral_fat")  # first, so that the Voronoi split only sees the muscular ring
    seeds = _add_muscle_seeds(scene, _Frame.of(ring), _mirrored(PELVIC_RING), group_fat)
    scene.paint_muscles(ring, seeds, septum_mm=rng.uniform(0.8, 2.0), bend_mm=rng.uniform(8.0, 15.0))
    head_r = rng.uniform(21.0, 27.0) * scale
    return _Pelvis(
        ring, cavity, fat_mm, scale,
        head_x=float(np.clip(rng.uniform(0.55, 0.65) * ring_a, 0.6 * ring_a - 10.0, ring_a - 1.6 * head_r)),
        head_y=-rng.uniform(0.0, 0.15) * ring_b,
        head_r=head_r,
        head_z=float(rng.uniform(-20.0, 20.0)),
    )


def _paint_bones(scene: _Scene, pelvis: _Pelvis) -> None:
    """Per side: acetabulum, joint fluid, femoral head, neck and greater trochanter, ilium above, pubic ramus
    below; then the sacrum / coccyx behind the cavity and the symphysis in front."""
    rng, z, s = scene.rng, scene.grid.z, pelvis.scale
    r, head_z = pelvis.head_r, pelvis.head_z
    cavity_back = float(np.mean(pelvis.cavity.cy + pelvis.cavity.b))
    cavity_front = float(np.mean(pelvis.cavity.cy - pelvis.cavity.b))
    for side in (-1.0, 1.0):
        hx, hy = side * pelvis.head_x, pelvis.head_y
        # Acetabulum: a cup of mixed marrow medial to the head, reaching a little above it.
        cup = _make_blob(rng, z, (hx - side * 0.35 * r, hy), (1.3 * r, 1.2 * r), wobble=0.04, drift_mm=1.0,
                         profile=_ellipsoid_profile(z, head_z + 0.25 * r, 1.5 * r))
        scene.paint_bone(cup, rng.uniform(2.0, 3.5), "marrow_vertebral")
        # Ilium: from the acetabular roof back towards the sacroiliac joint, in the upper slices.
        ix, iy = side * 0.35 * pelvis.head_x, cavity_back - 5.0
        length = 0.5 * math.hypot(hx - ix, hy - iy)
        ilium = _make_blob(
            rng, z, ((hx + ix) / 2, (hy + iy) / 2), (length, rng.uniform(8.0, 14.0) * s),
            angle=math.atan2(iy - hy, ix - hx), wobble=0.03, drift_mm=1.5,
            profile=np.clip((z - head_z - 0.4 * r) / 15.0, 0.0, 1.0).astype(_FLOAT),
        )
        scene.paint_bone(ilium, rng.uniform(1.5, 3.0), "marrow_vertebral")
        # Superior pubic ramus: from the acetabulum forwards and medially, in the lower slices.
        px, py = side * rng.uniform(8.0, 14.0) * s, cavity_front + rng.uniform(-4.0, 6.0) * s
        length = 0.5 * math.hypot(hx - px, hy - py)
        ramus = _make_blob(
            rng, z, ((hx + px) / 2, (hy + py) / 2), (length, rng.uniform(7.0, 11.0) * s),
            angle=math.atan2(py - hy, px - hx), wobble=0.03, drift_mm=1.5,
            profile=np.clip((head_z - 0.3 * r - z) / 12.0, 0.0, 1.0).astype(_FLOAT),
        )
        scene.paint_bone(ramus, rng.uniform(1.5, 2.5), "marrow_vertebral")
        head = _make_blob(rng, z, (hx, hy), (r, r), wobble=0.01, drift_mm=0.5, radius_drift=0.01,
                          profile=_ellipsoid_profile(z, head_z, r))
        scene.paint_blob(head.grown(rng.uniform(0.8, 1.8)), "fluid", only=("cortical_bone", "marrow_vertebral"))
        scene.paint_bone(head, rng.uniform(1.0, 2.0), "marrow_long_bone")
        # Femoral neck and greater trochanter, laterally and below the head.
        neck = _make_blob(rng, z, (hx + side * 1.0 * r, hy + 0.1 * r), (1.1 * r, 0.6 * r), angle=0.0,
                          wobble=0.03, profile=np.clip((head_z - z) / (0.6 * r), 0.0, 1.0).astype(_FLOAT)
                          * _ellipsoid_profile(z, head_z - 1.2 * r, 1.6 * r))
        scene.paint_bone(neck, rng.uniform(1.5, 3.0), "marrow_long_bone")
        trochanter_r = rng.uniform(16.0, 22.0) * s
        trochanter = _make_blob(rng, z, (hx + side * (1.7 * r), hy + 0.2 * r), (trochanter_r, 0.9 * trochanter_r),
                                wobble=0.05, profile=_ellipsoid_profile(z, head_z - rng.uniform(25.0, 40.0), 35.0))
        scene.paint_bone(trochanter, rng.uniform(1.5, 3.0), "marrow_long_bone")
    # Sacrum (upper slices, wide) tapering into the coccyx (lower slices), just behind the cavity.
    taper = np.clip(0.35 + (z - head_z) / 50.0, 0.0, 1.3).astype(_FLOAT)
    sacrum = _make_blob(rng, z, (0.0, cavity_back + rng.uniform(8.0, 14.0) * s),
                        (rng.uniform(35.0, 50.0) * s, rng.uniform(10.0, 15.0) * s), wobble=0.04, profile=taper)
    scene.paint_bone(sacrum, rng.uniform(1.5, 2.5), "marrow_vertebral")
    # Pubic symphysis: both pubic bodies side by side with the fibrocartilage disc between them.
    low = np.clip((head_z - 0.8 * r - z) / 10.0, 0.0, 1.0).astype(_FLOAT)
    for side in (-1.0, 1.0):
        body = _make_blob(rng, z, (side * rng.uniform(9.0, 12.0) * s, cavity_front - 4.0 * s),
                          (rng.uniform(7.0, 10.0) * s, rng.uniform(10.0, 14.0) * s), wobble=0.03, profile=low)
        scene.paint_bone(body, rng.uniform(1.5, 2.5), "marrow_vertebral")


def _paint_organs(scene: _Scene, pelvis: _Pelvis) -> dict:
    """Bladder (filled anywhere from nearly empty to full), rectum, uterus or prostate, bowel loops above."""
    rng, z, s = scene.rng, scene.grid.z, pelvis.scale
    cav = _Frame.of(pelvis.cavity)
    # Bladder: urine in a thin smooth-muscle wall (unlabelled muscle, no fat) in the front of the cavity,
    # from nearly empty to filling most of the true pelvis (kept inside it: the urine replaces only the wall).
    fill = rng.uniform(0.2, 1.0)
    room = min(float(np.mean(pelvis.cavity.a)), float(np.mean(pelvis.cavity.b)))
    bladder_r = (0.3 + 0.45 * fill) * room
    bladder = _make_blob(rng, z, cav.place(0.0, -0.3), (bladder_r, 0.8 * bladder_r), wobble=0.06,
                         profile=_ellipsoid_profile(z, pelvis.head_z + rng.uniform(-10.0, 25.0), 1.2 * bladder_r))
    scene.paint_blob(bladder.grown(rng.uniform(2.0, 4.0) * s), "muscle", only=_CAVITY_TISSUES)
    scene.paint_blob(bladder, "fluid", only=("muscle",))
    # Rectum in front of the sacrum: a wall with air, fluid or stool inside.
    rectum_r = rng.uniform(12.0, 22.0) * s
    rectum = _make_blob(rng, z, cav.place(0.0, 0.62), (rectum_r, 0.8 * rectum_r), wobble=0.1, drift_mm=4.0)
    scene.paint_blob(rectum, "bowel", only=_CAVITY_TISSUES)
    contents = ("fluid", "air", "bowel")[rng.choice(3, p=[0.25, 0.35, 0.4])]
    scene.paint_blob(rectum.scaled(rng.uniform(0.4, 0.7)), contents, only=("bowel",))
    # Uterus (upper slices) or prostate (lower slices) between bladder and rectum.
    female = bool(rng.random() < 0.5)
    if female:
        organ = _make_blob(rng, z, cav.place(0.0, 0.15), (rng.uniform(25.0, 40.0) * s, rng.uniform(15.0, 25.0) * s),
                           angle=rng.uniform(-0.3, 0.3), wobble=0.05,
                           profile=np.clip((z - pelvis.head_z + 10.0) / 15.0, 0.0, 1.0).astype(_FLOAT))
    else:
        organ = _make_blob(rng, z, cav.place(0.0, -0.05), (rng.uniform(16.0, 24.0) * s, rng.uniform(14.0, 20.0) * s),
                           wobble=0.04, profile=_ellipsoid_profile(z, pelvis.head_z - rng.uniform(20.0, 35.0), 20.0))
    scene.paint_blob(organ, "bowel", only=("visceral_fat",))
    # Small bowel and sigmoid loops in the upper slices, where the bladder leaves room.
    for _ in range(int(rng.integers(2, 7))):
        r = rng.uniform(8.0, 16.0) * s
        loop = _make_blob(rng, z, cav.place(*rng.uniform(-0.6, 0.6, 2)), (r, r * rng.uniform(0.6, 1.0)),
                          angle=rng.uniform(0, math.pi), drift_mm=8.0, wobble=0.08,
                          profile=np.clip((z - pelvis.head_z - rng.uniform(0.0, 30.0)) / 15.0, 0.0, 1.0)
                          .astype(_FLOAT))
        scene.paint_blob(loop, "bowel", only=("visceral_fat",))
        filling = ("fluid", "air", "bowel")[rng.choice(3, p=[0.3, 0.2, 0.5])]
        scene.paint_blob(loop.scaled(rng.uniform(0.4, 0.7)), filling, only=("bowel",))
    return {"bladder_fill": round(fill, 3), "female": female}


def _paint_vessels_and_edema(scene: _Scene, pelvis: _Pelvis) -> None:
    """Femoral / external iliac artery and vein in front of the hip, medial to the iliopsoas; sometimes edema
    in a muscle (e.g. a strain or myositis)."""
    rng = scene.rng
    ring = _Frame.of(pelvis.ring)
    for side in (-1.0, 1.0):
        scene.paint_vessel(ring.place(side * 0.32, -0.78), rng.uniform(3.5, 5.0) * pelvis.scale, artery=True)
        scene.paint_vessel(ring.place(side * 0.24, -0.72), rng.uniform(5.0, 7.5) * pelvis.scale, artery=False)
    if rng.random() < 0.2:
        scene.paint_patches(ring, spread=0.9, count=int(rng.integers(1, 3)), radius_mm=(8.0, 25.0),
                            tissue="edema", only=("muscle",), muscle_id=None)
    if rng.random() < 0.15:  # a fluid collection (e.g. a bursa or seroma) in soft tissue
        scene.paint_patches(ring, spread=0.95, count=1, radius_mm=(5.0, 20.0), tissue="fluid",
                            only=_SOFT_TISSUES)


def _build_pelvis(scene: _Scene, group_fat: dict[int, float]) -> dict:
    """Hip-joint level cross-section, painted from the outline inwards; returns params."""
    pelvis = _paint_outline_and_muscles(scene, group_fat)
    _paint_vessels_and_edema(scene, pelvis)
    _paint_bones(scene, pelvis)
    organs = _paint_organs(scene, pelvis)
    return {"subcutaneous_fat_mm": round(pelvis.fat_mm, 2), "femoral_head_radius_mm": round(pelvis.head_r, 2),
            **organs}

