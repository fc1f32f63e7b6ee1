"""Abdomen at the upper lumbar level: wall, back muscles, bowel, liver and spleen, kidneys, psoas, spine."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from napari_sff.simulate.geometry import (
    _CAVITY_TISSUES,
    _Blob,
    _ellipsoid_profile,
    _Frame,
    _make_blob,
    _Scene,
)
from napari_sff.simulate.muscles import _add_muscle_seeds, _mirrored
from napari_sff.simulate.tissues import _FLOAT, LIVER_STEATOSIS, LIVER_STEATOSIS_PROBABILITY, TISSUES

ABDOMEN_LABELS = {
    1: "rectus abdominis",
    2: "lateral abdominal wall",
    3: "psoas",
    4: "quadratus lumborum",
    5: "paraspinal",
}
# Voronoi seeds of the muscular shell for the patient's right side (x < 0), mirrored for the left:
# (group, x, y, weight) in units of the shell's semi-axes.
ABDOMINAL_WALL = (
    (1, -0.25, -0.97, 1.0),  # rectus abdominis
    (2, -0.8, -0.55, 1.0),  # external / internal oblique, transversus
    (2, -0.99, 0.05, 1.0),  # obliques, flank
    (2, -0.75, 0.65, 1.0),  # posterolateral wall (latissimus)
    (5, -0.2, 0.98, 1.0),  # back, continuous with the erector spinae
)


@dataclass
class _Trunk:
    """Key landmarks of one abdomen, shared by the organ painters (mm; y grows towards posterior)."""

    wall: _Blob  # outer boundary of the muscular shell
    cavity: _Blob  # inner boundary: peritoneal + retroperitoneal space
    fat_mm: float
    vertebra_a: float  # vertebral body semi-axes and centre row
    vertebra_b: float
    vertebra_y: float
    canal_r: float
    canal_y: float
    back_inner: float  # front of the back muscles' shell

    @property
    def cav(self) -> _Frame:
        return _Frame.of(self.cavity)


def _paint_trunk_wall(scene: _Scene, group_fat: dict[int, float]) -> _Trunk:
    """Skin, subcutaneous fat, the muscular shell split into wall muscles, and the fat-filled cavity."""
    rng, z = scene.rng, scene.grid.z
    fat_mm = rng.uniform(8.0, 45.0)
    wall_a = min(rng.uniform(120.0, 165.0), 0.46 * scene.grid.fov - 1.2 * fat_mm)
    wall_b = min(rng.uniform(88.0, 115.0), 0.8 * wall_a)
    wall = _make_blob(rng, z, (0.0, 0.0), (wall_a, wall_b), wobble=0.04)
    outer = wall.grown(fat_mm * rng.uniform(0.8, 1.2), fat_mm * rng.uniform(0.7, 1.1)).rewobbled(rng, z, 0.02)
    outer = replace(outer, cy=outer.cy - _FLOAT(0.15 * fat_mm))  # more fat in front than behind
    scene.paint_layers(outer, rng.uniform(1.5, 2.5), "subcutaneous_fat")

    wall_thickness = rng.uniform(9.0, 16.0)
    cavity = wall.shrunk(wall_thickness)
    scene.paint_blob(cavity, "visceral_fat")  # first, so that the Voronoi split only sees the thin shell
    seeds = _add_muscle_seeds(scene, _Frame.of(wall), _mirrored(ABDOMINAL_WALL), group_fat)
    scene.paint_muscles(wall, seeds, septum_mm=rng.uniform(0.8, 2.0), bend_mm=rng.uniform(8.0, 15.0))

    vertebra_a, vertebra_b = rng.uniform(20.0, 25.0), rng.uniform(15.0, 19.0)
    vertebra_y = wall_b - rng.uniform(55.0, 70.0)
    canal_r = rng.uniform(7.0, 9.5)
    return _Trunk(
        wall,
        cavity,
        fat_mm,
        vertebra_a,
        vertebra_b,
        vertebra_y,
        canal_r,
        canal_y=vertebra_y + vertebra_b + canal_r + 1.0,
        back_inner=wall_b - wall_thickness,
    )


def _paint_back_muscles(scene: _Scene, trunk: _Trunk, group_fat: dict[int, float]) -> None:
    """Erector spinae behind the spine and quadratus lumborum beside it, each in a thin fat sheath."""
    rng, z = scene.rng, scene.grid.z
    for side in (-1.0, 1.0):
        rx, ry = rng.uniform(24.0, 34.0), max(10.0, (trunk.back_inner - trunk.canal_y + 12.0) / 2)
        erector = _make_blob(
            rng, z, (side * (0.85 * rx + 4.0), trunk.back_inner - ry + 4.0), (rx, ry), angle=side * 0.15
        )
        quadratus_centre = (
            side * (trunk.vertebra_a + rng.uniform(35.0, 50.0)),
            trunk.vertebra_y + rng.uniform(12.0, 22.0),
        )
        quadratus = _make_blob(
            rng, z, quadratus_centre, (rng.uniform(16.0, 24.0), rng.uniform(8.0, 13.0)), angle=-side * 0.5
        )
        for blob, group in ((erector, 5), (quadratus, 4)):
            muscle_id = scene.add_muscle(group, group_fat[group] * rng.uniform(0.9, 1.1))
            scene.paint_blob(blob.grown(1.5), "intermuscular_fat", only=("visceral_fat",))
            scene.paint_blob(
                blob, "muscle", muscle_id=muscle_id, only=("visceral_fat", "intermuscular_fat", "muscle")
            )


def _paint_bowel(scene: _Scene, trunk: _Trunk) -> None:
    """Bowel loops on a jittered lattice over the front of the cavity, meandering from slice to slice.

    The leaner the patient, the tighter they pack (less visceral fat in the gaps).
    """
    rng, z = scene.rng, scene.grid.z
    spacing = rng.uniform(0.22, 0.3)
    packing = float(np.clip(1.15 - trunk.fat_mm / 90.0 + rng.uniform(-0.15, 0.15), 0.5, 1.1))
    lattice = np.arange(-1.0, 1.0 + spacing, spacing)
    for gx in lattice:
        for gy in lattice:
            lx, ly = gx + rng.uniform(-0.3, 0.3) * spacing, gy + rng.uniform(-0.3, 0.3) * spacing
            if lx**2 + ly**2 > 0.8 or ly > 0.35:
                continue
            radius = 0.5 * spacing * packing * rng.uniform(0.8, 1.2) * float(np.mean(trunk.cavity.b))
            loop = _make_blob(
                rng,
                z,
                trunk.cav.place(lx, ly),
                (radius, radius * rng.uniform(0.6, 1.0)),
                angle=rng.uniform(0, math.pi),
                drift_mm=10.0,
                wobble=0.08,
            )
            scene.paint_blob(loop, "bowel", only=_CAVITY_TISSUES)
            contents = ("fluid", "air", "bowel")[rng.choice(3, p=[0.3, 0.2, 0.5])]
            scene.paint_blob(loop.scaled(rng.uniform(0.5, 0.75)), contents, only=("bowel",))


def _paint_liver_and_spleen(scene: _Scene, trunk: _Trunk) -> float:
    """Liver (patient's right, growing towards superior) with vessels and maybe a gallbladder or cyst; the
    spleen (left, posterior). Returns the liver's fat fraction (steatosis in some cases)."""
    rng, z = scene.rng, scene.grid.z
    cav = trunk.cav
    steatosis = rng.random() < LIVER_STEATOSIS_PROBABILITY
    liver_fat = float(rng.uniform(*(LIVER_STEATOSIS if steatosis else TISSUES["liver"].fat_fraction)))
    liver_profile = np.clip(rng.uniform(0.6, 0.85) + rng.uniform(0.1, 0.25) * z / 50.0, 0.15, 1.1)
    liver = _make_blob(rng, z, cav.place(-0.42, -0.1), (0.55, 0.75), profile=liver_profile, wobble=0.05)
    liver = replace(liver, a=liver.a * trunk.cavity.a, b=liver.b * trunk.cavity.b)
    scene.paint_blob(liver, "liver", only=_CAVITY_TISSUES)
    lobe_profile = np.clip(0.5 + (z - rng.uniform(-40.0, 20.0)) / 60.0, 0.0, 1.0)  # left lobe, higher up
    left_lobe = _make_blob(rng, z, cav.place(0.12, -0.55), (0.35, 0.3), profile=lobe_profile)
    left_lobe = replace(left_lobe, a=left_lobe.a * trunk.wall.a, b=left_lobe.b * trunk.wall.b)
    scene.paint_blob(left_lobe, "liver", only=_CAVITY_TISSUES)
    liver_frame = _Frame.of(liver)
    for _ in range(int(rng.integers(2, 6))):
        centre = liver_frame.place(*rng.uniform(-0.5, 0.5, 2))
        scene.paint_vessel(centre, rng.uniform(2.5, 6.0), artery=False, only=("liver",))
    if rng.random() < 0.35:  # gallbladder under the liver
        scene.paint_patches(
            _Frame.at(cav.place(-0.3, -0.45)),
            spread=1.0,
            count=1,
            radius_mm=(10.0, 18.0),
            tissue="fluid",
            only=("liver", "visceral_fat", "bowel"),
        )
    if rng.random() < 0.2:  # hepatic cyst
        scene.paint_patches(
            liver_frame, spread=0.5, count=1, radius_mm=(5.0, 20.0), tissue="fluid", only=("liver",)
        )

    spleen_profile = np.clip(rng.uniform(0.4, 0.9) + rng.uniform(0.2, 0.4) * z / 50.0, 0.0, 1.0)
    spleen = _make_blob(
        rng, z, cav.place(0.7, 0.4), (0.2, 0.38), angle=-0.5, profile=spleen_profile, wobble=0.06
    )
    spleen = replace(spleen, a=spleen.a * trunk.wall.a, b=spleen.b * trunk.wall.b)
    scene.paint_blob(spleen, "spleen", only=_CAVITY_TISSUES)
    return liver_fat


def _paint_kidneys_and_vessels(scene: _Scene, trunk: _Trunk) -> None:
    """Kidneys (ellipsoids along z, the right one lower) with renal sinus fat and sometimes a cyst; aorta and
    inferior vena cava in front of the spine."""
    rng, z = scene.rng, scene.grid.z
    z_left = rng.uniform(-30.0, 30.0)
    for side, z_centre in ((-1.0, z_left - rng.uniform(10.0, 25.0)), (1.0, z_left)):
        profile = _ellipsoid_profile(z, z_centre, rng.uniform(45.0, 60.0))
        centre = (
            side * (trunk.vertebra_a + rng.uniform(35.0, 50.0)),
            trunk.vertebra_y + rng.uniform(-12.0, 2.0),
        )
        kidney = _make_blob(
            rng,
            z,
            centre,
            (rng.uniform(25.0, 32.0), rng.uniform(17.0, 23.0)),
            angle=-side * rng.uniform(0.3, 0.7),
            profile=profile,
            wobble=0.03,
        )
        scene.paint_blob(kidney, "kidney", only=_CAVITY_TISSUES + ("liver", "spleen", "intermuscular_fat"))
        sinus = replace(kidney.scaled(0.4), cx=kidney.cx - side * 0.35 * kidney.a)  # hilum faces the spine
        scene.paint_blob(sinus, "visceral_fat", only=("kidney",))
        if rng.random() < 0.2:
            scene.paint_patches(
                _Frame.of(kidney),
                spread=0.6,
                count=1,
                radius_mm=(5.0, 15.0),
                tissue="fluid",
                only=("kidney", "visceral_fat"),
            )
    front = trunk.vertebra_y - trunk.vertebra_b
    scene.paint_vessel((rng.uniform(5.0, 15.0), front - 14.0), rng.uniform(8.0, 12.0), artery=True)  # aorta
    scene.paint_vessel((-rng.uniform(20.0, 30.0), front - 10.0), rng.uniform(8.0, 11.0), artery=False)  # IVC


def _paint_psoas(scene: _Scene, trunk: _Trunk, group_fat: dict[int, float]) -> None:
    """Psoas muscles alongside the vertebral body, growing towards inferior."""
    rng, z = scene.rng, scene.grid.z
    profile = np.clip(1.0 - rng.uniform(0.15, 0.35) * z / 50.0, 0.3, 1.6)
    for side in (-1.0, 1.0):
        r = rng.uniform(10.0, 17.0)
        centre = (side * (trunk.vertebra_a + 0.8 * r), trunk.vertebra_y - 0.1 * trunk.vertebra_b)
        psoas = _make_blob(rng, z, centre, (r, r * 1.2), angle=side * 0.3, profile=profile)
        muscle_id = scene.add_muscle(3, group_fat[3] * rng.uniform(0.9, 1.1))
        scene.paint_blob(psoas.grown(1.5), "intermuscular_fat", only=("visceral_fat",))
        scene.paint_blob(psoas, "muscle", muscle_id=muscle_id)


def _paint_spine(scene: _Scene, trunk: _Trunk) -> None:
    """Vertebral body (or a disc, depending on the slice), canal with CSF, posterior arch, spinous process."""
    rng, z = scene.rng, scene.grid.z
    vertebra = _make_blob(
        rng,
        z,
        (0.0, trunk.vertebra_y),
        (trunk.vertebra_a, trunk.vertebra_b),
        wobble=0.02,
        drift_mm=1.0,
        radius_drift=0.02,
    )
    level_height, disc_height = rng.uniform(26.0, 32.0), rng.uniform(7.0, 11.0)
    is_disc = (z - rng.uniform(0.0, level_height)) % (level_height + disc_height) < disc_height
    scene.paint_bone(vertebra, rng.uniform(1.0, 2.0), "marrow_vertebral", slices=~is_disc)
    scene.paint_blob(vertebra, "intervertebral_disc", slices=is_disc)
    canal_r, canal_y = trunk.canal_r, trunk.canal_y
    arch = _make_blob(rng, z, (0.0, canal_y + 2.0), (canal_r + 6.0, canal_r + 5.0), wobble=0.03, drift_mm=1.0)
    scene.paint_bone(arch, 1.5, "marrow_vertebral")
    spinous_half = max(5.0, (trunk.back_inner - 4.0 - canal_y - canal_r) / 2)
    spinous = _make_blob(
        rng, z, (0.0, canal_y + canal_r + spinous_half), (4.5, spinous_half), wobble=0.02, drift_mm=1.0
    )
    scene.paint_bone(spinous, 1.2, "marrow_vertebral")
    canal = _make_blob(rng, z, (0.0, canal_y), (canal_r * 1.2, canal_r), wobble=0.02, drift_mm=1.0)
    scene.paint_blob(canal, "fluid")


def _build_abdomen(scene: _Scene, group_fat: dict[int, float]) -> tuple[dict, float]:
    """Upper-lumbar cross-section, painted back to front; returns params and the liver's fat fraction."""
    rng = scene.rng
    trunk = _paint_trunk_wall(scene, group_fat)
    _paint_back_muscles(scene, trunk, group_fat)
    _paint_bowel(scene, trunk)
    liver_fat = _paint_liver_and_spleen(scene, trunk)
    _paint_kidneys_and_vessels(scene, trunk)
    _paint_psoas(scene, trunk, group_fat)
    if rng.random() < 0.15:  # edema inside muscle, before the bones go on top
        scene.paint_patches(
            _Frame.of(trunk.wall),
            spread=0.9,
            count=int(rng.integers(1, 3)),
            radius_mm=(8.0, 20.0),
            tissue="edema",
            only=("muscle",),
            muscle_id=None,
        )
    _paint_spine(scene, trunk)
    params = {
        "subcutaneous_fat_mm": round(trunk.fat_mm, 2),
        "liver_fat_fraction": round(liver_fat, 4),
        "steatosis": liver_fat > TISSUES["liver"].fat_fraction[1],
    }
    return params, liver_fat
