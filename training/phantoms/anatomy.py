"""Anatomy of the phantoms, drawn: upper arm, forearm and pelvis (gluteal region at the hip joints), with
pathology of their own. Every random number of a case's shapes is drawn here, once, as plain JSON-able numbers
(:func:`draw_anatomy`, written to ``phantoms.json``); :mod:`.slices` turns them into pixels. Apart so that what a
case *is* can be read, and its draws kept in order, without the geometry that paints it.

Shapes are placed by anatomical polar coordinates around an anchor (the limb's centre, or a hip joint): angles
are anatomical, 0 anterior, 90 lateral, 180 posterior, 270 medial. What moves through the slab is drawn as a
pair [value at t=0, value at t=1] (``t`` in [0, 1] across the slab); muscles also get a belly profile (``peak``,
``taper``) by which they swell and taper along it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.phantoms.tissues import CASE_CONDITIONS, INFILTRATION_PATTERNS, MUSCLE_FAT_BY_GRADE

ANATOMIES = ("upper_arm", "forearm", "pelvis")
#: Field of view (mm, square) by anatomy (guess: typical small/large FOV for these regions).
FOV_MM = {"upper_arm": (150.0, 200.0), "forearm": (120.0, 160.0), "pelvis": (380.0, 460.0)}
#: Slice thickness (mm) by anatomy (guess: clinical axial T2w TSE).
SLICE_MM = {"upper_arm": (3.0, 5.0), "forearm": (3.0, 4.5), "pelvis": (4.0, 6.0)}


@dataclass(frozen=True)
class Part:
    """A muscle (or vessel / nerve) placed around an anchor: polar angle (deg), distance and half-axes as
    fractions of the anchor's radius; ``presence`` is the probability that a case has it."""

    name: str
    angle: tuple[float, float]
    radius: tuple[float, float]
    axes: tuple[float, float]
    presence: float = 1.0


UPPER_ARM = (
    Part("biceps brachii", (-15, 15), (0.58, 0.7), (0.3, 0.45)),
    Part("brachialis", (-25, 25), (0.3, 0.4), (0.17, 0.45), 0.9),
    Part("coracobrachialis", (295, 320), (0.5, 0.6), (0.14, 0.18), 0.5),
    Part("triceps long head", (190, 215), (0.58, 0.68), (0.28, 0.36)),
    Part("triceps lateral head", (125, 150), (0.58, 0.68), (0.26, 0.34)),
    Part("triceps medial head", (165, 195), (0.3, 0.38), (0.16, 0.38), 0.7),
    Part("deltoid", (60, 115), (0.8, 0.88), (0.16, 0.55), 0.35),
)
FOREARM = (
    Part("flexor digitorum superficialis", (-20, 15), (0.55, 0.65), (0.22, 0.35)),
    Part("flexor digitorum profundus", (280, 320), (0.4, 0.5), (0.22, 0.32)),
    Part("flexor carpi ulnaris", (235, 260), (0.7, 0.8), (0.18, 0.22)),
    Part("flexor carpi radialis", (20, 40), (0.72, 0.8), (0.14, 0.18), 0.9),
    Part("flexor pollicis longus", (30, 60), (0.35, 0.45), (0.15, 0.2), 0.6),
    Part("brachioradialis", (70, 100), (0.78, 0.86), (0.16, 0.24)),
    Part("extensor carpi radialis", (110, 135), (0.72, 0.82), (0.16, 0.22)),
    Part("extensor digitorum", (150, 175), (0.68, 0.78), (0.2, 0.26)),
    Part("extensor carpi ulnaris", (195, 220), (0.7, 0.8), (0.16, 0.2)),
    Part("deep extensors", (160, 195), (0.35, 0.45), (0.14, 0.24), 0.6),
)
PELVIS_SIDE = (
    Part("gluteus maximus", (140, 165), (1.5, 1.8), (0.6, 1.1)),
    Part("gluteus medius", (95, 120), (1.15, 1.4), (0.38, 0.55)),
    Part("iliopsoas", (-30, -5), (1.15, 1.4), (0.4, 0.42)),
    Part("sartorius", (15, 40), (1.55, 1.8), (0.12, 0.2), 0.9),
    Part("tensor fasciae latae", (55, 80), (1.5, 1.75), (0.12, 0.24), 0.8),
    Part("rectus femoris", (5, 25), (1.1, 1.3), (0.14, 0.16), 0.7),
    Part("obturator internus", (240, 265), (1.1, 1.35), (0.2, 0.45)),
)
#: (tissue, part) vessels and nerves: kept out of the muscle competition and painted over it.
ARM_VESSELS = (("artery", Part("brachial artery", (285, 300), (0.5, 0.58), (0.06, 0.06))),
               ("vein", Part("brachial vein", (275, 290), (0.52, 0.6), (0.05, 0.07))),
               ("nerve", Part("median nerve", (295, 310), (0.45, 0.52), (0.05, 0.05))),
               ("vein", Part("cephalic vein", (30, 70), (1.07, 1.12), (0.04, 0.05), 0.8)),
               ("vein", Part("basilic vein", (250, 280), (1.05, 1.1), (0.04, 0.05), 0.6)))
FOREARM_VESSELS = (("artery", Part("radial artery", (40, 60), (0.9, 0.95), (0.05, 0.05))),
                   ("artery", Part("ulnar artery", (290, 310), (0.6, 0.66), (0.05, 0.05))),
                   ("vein", Part("cephalic vein", (60, 100), (1.07, 1.12), (0.05, 0.06), 0.7)))
PELVIS_VESSELS = (("artery", Part("femoral artery", (-15, -5), (1.7, 1.85), (0.08, 0.08))),
                  ("vein", Part("femoral vein", (-35, -22), (1.7, 1.85), (0.09, 0.11))),
                  ("nerve", Part("sciatic nerve", (190, 205), (1.3, 1.4), (0.09, 0.14))))


def _uniform(rng: np.random.Generator, bounds) -> float:
    return float(rng.uniform(*bounds))


def _drifting(rng: np.random.Generator, bounds, drift: float) -> list[float]:
    """[value at t=0, value at t=1]: a draw from ``bounds`` that moves by up to ``drift`` (same units)."""
    value = _uniform(rng, bounds)
    change = float(rng.uniform(-drift, drift))
    return [value - change / 2, value + change / 2]


def _draw_part(rng: np.random.Generator, part: Part) -> dict:
    return {"name": part.name, "angle": _drifting(rng, part.angle, 8.0),
            "radius": _drifting(rng, part.radius, 0.06),
            "axes": [_uniform(rng, (0.9, 1.1)) * part.axes[0], _uniform(rng, (0.9, 1.1)) * part.axes[1]],
            "exponent": _uniform(rng, (1.8, 2.6)),
            # belly profile along the slab: full size at `peak`, tapering by `taper` at distance 1
            "peak": _uniform(rng, (-0.3, 1.3)), "taper": _uniform(rng, (0.0, 0.6))}


def _draw_muscle_fat(rng: np.random.Generator, names: list[str]) -> tuple[str, dict]:
    conditions = list(CASE_CONDITIONS)
    weights = np.array([CASE_CONDITIONS[c][0] for c in conditions])
    condition = conditions[rng.choice(len(conditions), p=weights / weights.sum())]
    grades = CASE_CONDITIONS[condition][1]
    fat = {}
    for name in names:
        grade = list(grades)[rng.choice(len(grades), p=np.array(list(grades.values())))]
        fat[name] = {"grade": grade, "fat_fraction": _uniform(rng, MUSCLE_FAT_BY_GRADE[grade]),
                     "pattern": "uniform" if grade == "normal" else str(rng.choice(INFILTRATION_PATTERNS)),
                     "pattern_amplitude": _uniform(rng, (0.1, 0.35)), "pattern_scale_mm": _uniform(rng, (3, 9)),
                     "pattern_angle": _uniform(rng, (0, 180)), "pattern_phase": _uniform(rng, (0, 2 * np.pi)),
                     "patches": rng.uniform(-0.7, 0.7, size=(3, 2)).round(4).tolist()}
    return condition, fat


def draw_anatomy(rng: np.random.Generator, anatomy: str) -> dict:
    """Every random number of a case's anatomy and pathology (JSON-able)."""
    if anatomy not in ANATOMIES:
        raise ValueError(f"unknown anatomy {anatomy!r}; choose one of {', '.join(ANATOMIES)}")
    params: dict = {"anatomy": anatomy, "fov_mm": _uniform(rng, FOV_MM[anatomy]),
                    "slice_mm": _uniform(rng, SLICE_MM[anatomy]), "gap_fraction": _uniform(rng, (0.0, 0.2))}
    if anatomy == "pelvis":
        half_width = _uniform(rng, (150, 195))
        params["body"] = {"axes": [half_width, half_width * _uniform(rng, (0.6, 0.75))],
                          "exponent": _uniform(rng, (2.2, 3.0)), "buttocks": _uniform(rng, (0.4, 0.6)),
                          "fat_mm": _uniform(rng, (8, 35)), "fat_posterior": _uniform(rng, (0.0, 0.8)),
                          "taper": _uniform(rng, (-0.1, 0.1)), "angle": _uniform(rng, (-4, 4))}
        hips = []
        for side in (-1, 1):
            hips.append({"side": side, "x": _uniform(rng, (0.5, 0.58)), "y": _uniform(rng, (-0.12, 0.05)),
                         "head_mm": _drifting(rng, (21, 26), 4.0), "cortex_mm": _uniform(rng, (1.5, 2.5)),
                         "acetabulum_mm": _uniform(rng, (7, 13)), "joint_fluid_mm": _uniform(rng, (0.5, 2.5)),
                         "muscles": [_draw_part(rng, p) for p in PELVIS_SIDE if rng.random() < p.presence],
                         "vessels": [[kind, _draw_part(rng, p)] for kind, p in PELVIS_VESSELS]})
        params["hips"] = hips
        params["sacrum"] = {"y": _uniform(rng, (0.45, 0.6)), "axes": [_uniform(rng, (25, 40)), _uniform(rng, (12, 20))]}
        params["bladder"] = {"y": _uniform(rng, (-0.45, -0.25)), "axes": [_uniform(rng, (15, 60)), _uniform(rng, (12, 45))],
                             "wall_mm": _uniform(rng, (1.5, 3.5))}
        params["rectum"] = {"radius_mm": _uniform(rng, (10, 20)), "wall_mm": _uniform(rng, (2, 4)),
                            "gas": bool(rng.random() < 0.4)}
        names = [f"{'right' if h['side'] < 0 else 'left'} {m['name']}" for h in hips for m in h["muscles"]]
    else:
        big = anatomy == "upper_arm"
        side = int(rng.choice([-1, 1]))
        a = _uniform(rng, (40, 58) if big else (32, 44))
        params["body"] = {"axes": [a, a * _uniform(rng, (0.8, 1.0) if big else (0.65, 0.85))], "side": side,
                          "exponent": _uniform(rng, (2.0, 2.6)), "angle": _uniform(rng, (-20, 20)),
                          "lobe": _uniform(rng, (0.0, 0.25)), "fat_mm": _uniform(rng, (2, 14) if big else (2, 8)),
                          "fat_posterior": _uniform(rng, (-0.3, 0.8)), "taper": _uniform(rng, (-0.2, 0.05))}
        if big:
            params["bones"] = [{"name": "humerus", "angle": _drifting(rng, (250, 290), 10),
                                "radius": _drifting(rng, (0.02, 0.15), 0.05), "size": _uniform(rng, (0.22, 0.28)),
                                "cortex_mm": _uniform(rng, (2.5, 4.0))}]
        else:
            params["bones"] = [{"name": "radius", "angle": _drifting(rng, (80, 105), 10),
                                "radius": _drifting(rng, (0.42, 0.52), 0.05), "size": _uniform(rng, (0.17, 0.22)),
                                "cortex_mm": _uniform(rng, (2.0, 3.0))},
                               {"name": "ulna", "angle": _drifting(rng, (235, 260), 10),
                                "radius": _drifting(rng, (0.42, 0.52), 0.05), "size": _uniform(rng, (0.16, 0.21)),
                                "cortex_mm": _uniform(rng, (2.0, 3.0))}]
        layout, vessels = (UPPER_ARM, ARM_VESSELS) if big else (FOREARM, FOREARM_VESSELS)
        params["muscles"] = [_draw_part(rng, p) for p in layout if rng.random() < p.presence]
        params["vessels"] = [[kind, _draw_part(rng, p)] for kind, p in vessels if rng.random() < p.presence]
        names = [m["name"] for m in params["muscles"]]
    params["fill_mm"] = _uniform(rng, (6.0, 14.0) if anatomy == "pelvis" else (3.0, 8.0))
    params["septum_mm"] = _uniform(rng, (0.6, 1.6))
    params["skin_mm"] = _uniform(rng, (1.0, 2.0))
    params["condition"], params["muscle_fat"] = _draw_muscle_fat(rng, names)
    params["lesions"] = _draw_lesions(rng, names, anatomy)
    return params


def _draw_lesions(rng: np.random.Generator, names: list[str], anatomy: str) -> list[dict]:
    """Edema inside muscles, cysts, and a tumour-like mass (with a necrotic core when large)."""
    scale = 2.0 if anatomy == "pelvis" else 1.0
    lesions = []
    for kind, probability, size in (("edema", 0.3, (0.3, 0.8)), ("cyst", 0.35, (3, 12)), ("mass", 0.2, (7, 18))):
        count = int(rng.integers(1, 3)) if rng.random() < probability else 0
        for _ in range(count):
            lesions.append({"kind": kind, "host": str(rng.choice(names)),
                            "offset": rng.uniform(-0.5, 0.5, size=2).round(4).tolist(),
                            "size": _uniform(rng, size) * (1.0 if kind == "edema" else scale),
                            "elongation": _uniform(rng, (0.6, 1.0)), "angle": _uniform(rng, (0, 180)),
                            "centre_t": _uniform(rng, (0.1, 0.9)), "extent_t": _uniform(rng, (0.3, 1.0)),
                            "necrotic": bool(kind == "mass" and rng.random() < 0.5)})
            if kind == "mass":
                break
    return lesions
