"""Anatomy of the phantoms: upper arm, forearm and pelvis (gluteal region at the hip joints), as signed-distance
shapes placed by anatomical polar coordinates, with pathology of their own.

A case is drawn once (:func:`draw_anatomy`: plain numbers, JSON-able) and rendered at any slice position
``t`` in [0, 1] (:func:`render_slice`): every position, size and angle moves linearly through the slab, muscles
swell and taper along it. Muscles are named superellipses; inside the fascia each point belongs to the muscle
whose boundary is nearest (negative distance wins), thin fat septa lie where two muscles nearly tie, and what no
muscle reaches is intermuscular fat. Angles are anatomical: 0 anterior, 90 lateral, 180 posterior, 270 medial.
x grows with the column (towards the patient's left), y with the row (towards posterior), both in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.phantoms import shapes
from training.phantoms.tissues import CASE_CONDITIONS, INFILTRATION_PATTERNS, MUSCLE_FAT_BY_GRADE, TISSUE_IDS

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


def _at(pair, t: float) -> float:
    return pair[0] + (pair[1] - pair[0]) * t


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


@dataclass
class Scene:
    """One slice: tissue class per pixel (:data:`TISSUE_IDS`), label per pixel (0 = none), and fat fraction
    per pixel where it differs from the tissue's drawn value (NaN elsewhere)."""

    tissue: np.ndarray
    labels: np.ndarray
    fat_fraction: np.ndarray


class _Canvas:
    def __init__(self, shape: tuple[int, int]):
        self.tissue = np.full(shape, TISSUE_IDS["air"], np.int16)
        self.labels = np.zeros(shape, np.int16)
        self.fat = np.full(shape, np.nan, np.float32)

    def paint(self, mask: np.ndarray, tissue: str, label: int | None = None, fat=None) -> None:
        self.tissue[mask] = TISSUE_IDS[tissue]
        self.labels[mask] = 0 if label is None else label
        self.fat[mask] = np.nan if fat is None else (fat[mask] if np.ndim(fat) else fat)


def _direction(angle_deg: float, lateral: int) -> np.ndarray:
    theta = np.deg2rad(angle_deg)
    return np.array([lateral * np.sin(theta), -np.cos(theta)])


def _profile(part: dict, t: float) -> float:
    return float(np.clip(1.0 - part["taper"] * (t - part["peak"]) ** 2, 0.25, 1.0))


def _part_distance(x, y, part: dict, t: float, anchor: np.ndarray, scale: float, lateral: int,
                   grow: float = 1.0, reach: float = 20.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Signed distance of a placed part, its centre and its orientation (deg, image frame)."""
    angle = _at(part["angle"], t)
    direction = _direction(angle, lateral)
    centre = anchor + _at(part["radius"], t) * scale * direction
    size = _profile(part, t) * grow
    orientation = float(np.rad2deg(np.arctan2(direction[1], direction[0])))
    axes = (max(part["axes"][0] * scale * size, 0.5), max(part["axes"][1] * scale * size, 0.5))
    return (shapes.superellipse(x, y, tuple(centre), axes, part["exponent"], orientation, reach=reach),
            centre, orientation)


def render_slice(params: dict, x: np.ndarray, y: np.ndarray, t: float,
                 label_ids: dict[str, int]) -> Scene:
    """The slice at slab position ``t`` of the case ``params`` on the grid ``x``, ``y`` (mm, centred)."""
    canvas = _Canvas(x.shape)
    body = params["body"]
    taper = 1.0 + body["taper"] * (t - 0.5)
    if params["anatomy"] == "pelvis":
        axes = (body["axes"][0] * taper, body["axes"][1] * taper)
        outline = shapes.superellipse(x, y, (0, 0), axes, body["exponent"], body["angle"])
        for side in (-1, 1):
            lobe = shapes.superellipse(x, y, (side * 0.45 * axes[0], 0.35 * axes[1]),
                                       (0.55 * axes[0], body["buttocks"] * axes[1] + 0.3 * axes[1]), 2.0)
            outline = shapes.smooth_union(outline, lobe, 15.0)
        centre, radius, lateral = np.zeros(2), float(np.mean(axes)), 1
    else:
        axes = (body["axes"][0] * taper, body["axes"][1] * taper)
        outline = shapes.superellipse(x, y, (0, 0), axes, body["exponent"], body["angle"])
        if body["lobe"] > 0:
            lobe = shapes.superellipse(x, y, (0, -0.35 * axes[1]), (0.6 * axes[0], 0.7 * axes[1]), 2.0)
            outline = shapes.smooth_union(outline, lobe + (0.25 - body["lobe"]) * axes[1], 6.0)
        centre, lateral = np.zeros(2), body["side"]
        radius = float(np.mean(axes)) - body["fat_mm"]
    # subcutaneous fat thicker posteriorly by `fat_posterior`: the fascia lies `fat` mm inside the skin
    fat = body["fat_mm"] * (1.0 + body["fat_posterior"] * np.clip(y / max(axes[1], 1.0), -1, 1))
    inside = outline < 0
    fascia = outline + np.maximum(fat, 1.0)
    canvas.paint(inside, "skin")
    canvas.paint(outline < -params["skin_mm"], "adipose", label_ids.get("subcutaneous fat"))
    compartment = fascia < 0
    canvas.paint(compartment, "adipose")
    blocked = np.zeros(x.shape, bool)

    parts: list[tuple[str, dict, np.ndarray, float, int]] = []  # (label name, part, anchor, scale, lateral)
    vessels: list[tuple[str, dict, np.ndarray, float, int]] = []
    if params["anatomy"] == "pelvis":
        for hip in params["hips"]:
            side = hip["side"]
            anchor = np.array([side * hip["x"] * axes[0], hip["y"] * axes[1]])
            head = _at(hip["head_mm"], t)
            scale = 0.33 * axes[0]
            prefix = "right" if side < 0 else "left"
            head_d = shapes.superellipse(x, y, tuple(anchor), (head, head))
            socket = shapes.superellipse(x, y, tuple(anchor), (head + hip["acetabulum_mm"],) * 2)
            medial = shapes.half_plane(x, y, tuple(anchor + np.array([side * 0.2 * head, 0])), 0 if side < 0 else 180)
            acetabulum = shapes.subtract(shapes.intersect(socket, medial), head_d - hip["joint_fluid_mm"])
            joint = head_d - hip["joint_fluid_mm"] < 0
            canvas.paint(joint, "fluid", label_ids.get(f"{prefix} hip joint fluid"))
            canvas.paint(acetabulum < 0, "cortical_bone")
            canvas.paint(acetabulum < -hip["cortex_mm"], "red_marrow", label_ids.get(f"{prefix} acetabulum marrow"))
            canvas.paint(head_d < 0, "cortical_bone")
            canvas.paint(head_d < -hip["cortex_mm"], "yellow_marrow", label_ids.get(f"{prefix} femoral head marrow"))
            blocked |= (acetabulum < 0) | joint
            parts += [(f"{prefix} {m['name']}", m, anchor, scale, side) for m in hip["muscles"]]
            vessels += [(kind, v, anchor, scale, side) for kind, v in hip["vessels"]]
        sacrum = params["sacrum"]
        sac = shapes.superellipse(x, y, (0, sacrum["y"] * axes[1]), tuple(sacrum["axes"]), 2.4)
        canvas.paint(sac < 0, "cortical_bone")
        canvas.paint(sac < -2.0, "red_marrow", label_ids.get("sacrum marrow"))
        bladder = params["bladder"]
        bl = shapes.superellipse(x, y, (0, bladder["y"] * axes[1]), tuple(bladder["axes"]), 2.0)
        rectum = params["rectum"]
        rect = shapes.superellipse(x, y, (0, 0.5 * (sacrum["y"] * axes[1] - sacrum["axes"][1])
                                          + 0.5 * bladder["y"] * axes[1] * 0.2), (rectum["radius_mm"],) * 2)
        canvas.paint(bl < 0, "bowel")
        canvas.paint(bl < -bladder["wall_mm"], "fluid", label_ids.get("bladder"))
        canvas.paint(rect < 0, "bowel")
        if rectum["gas"]:
            canvas.paint(rect < -rectum["wall_mm"] - 0.4 * rectum["radius_mm"], "air")
        blocked |= (sac < 0) | (bl < 0) | (rect < 0)
    else:
        for bone in params["bones"]:
            c = centre + _at(bone["radius"], t) * radius * _direction(_at(bone["angle"], t), lateral)
            size = bone["size"] * radius
            d = shapes.superellipse(x, y, tuple(c), (size, size * 0.92), 2.0, 30.0, reach=2.0)
            canvas.paint(d < 0, "cortical_bone")
            canvas.paint(d < -bone["cortex_mm"], "yellow_marrow", label_ids.get(f"{bone['name']} marrow"))
            blocked |= d < 0
        parts = [(m["name"], m, centre, radius, lateral) for m in params["muscles"]]
        vessels = [(kind, v, centre, radius, lateral) for kind, v in params["vessels"]]

    # muscles: nearest boundary wins, septa where two nearly tie, intermuscular fat where none reaches
    distances, geometry = [], {}
    nearest = np.full(x.shape, shapes.FAR, x.dtype)
    second = nearest.copy()
    owner = np.full(x.shape, -1, np.int16)
    for index, (name, part, anchor, scale, side) in enumerate(parts):
        d, c, o = _part_distance(x, y, part, t, anchor, scale, side, reach=params["fill_mm"] + 2.0)
        distances.append(d)
        geometry[name] = (c, o, part, scale)
        closer = d < nearest
        second = np.where(closer, nearest, np.minimum(second, d))
        owner[closer] = index
        nearest = np.minimum(nearest, d)
    region = compartment & ~blocked
    if distances:
        muscle = region & (nearest < params["fill_mm"])
        septum = muscle & (second - nearest < params["septum_mm"])
        for index, (name, *_rest) in enumerate(parts):
            mask = muscle & ~septum & (owner == index)
            if mask.any():
                fat_map = _infiltration(params["muscle_fat"][name], x, y, distances[index], geometry[name])
                canvas.paint(mask, "muscle", label_ids[name], fat_map)
        canvas.paint(septum, "septum")
    _paint_lesions(canvas, params, x, y, t, geometry, label_ids, region)
    for kind, part, anchor, scale, side in vessels:
        d, _, _ = _part_distance(x, y, part, t, anchor, scale, side, reach=1.0)
        canvas.paint((d < 0) & inside, kind, label_ids.get(part["name"]) if kind == "nerve" else None)
    return Scene(canvas.tissue, canvas.labels, canvas.fat)


def _infiltration(spec: dict, x, y, distance: np.ndarray, geometry) -> np.ndarray:
    """A muscle's fat-fraction map: its grade's level, shaped by its pattern (streaks along a direction, a rim
    near the boundary, or a few fatty patches)."""
    centre, orientation, part, scale = geometry
    base, amplitude = spec["fat_fraction"], spec["pattern_amplitude"]
    pattern = spec["pattern"]
    if pattern == "streaks":
        theta = np.deg2rad(spec["pattern_angle"])
        u = (x - centre[0]) * np.cos(theta) + (y - centre[1]) * np.sin(theta)
        wave = np.maximum(0.0, np.sin(2 * np.pi * u / spec["pattern_scale_mm"] + spec["pattern_phase"])) ** 3
        field = base * (1 - amplitude) + 2.5 * amplitude * base * wave + 0.5 * amplitude * wave
    elif pattern == "rim":
        field = base + amplitude * np.exp(np.minimum(distance, 0.0) / spec["pattern_scale_mm"])
    elif pattern == "patches":
        field = np.full(x.shape, base)
        theta = np.deg2rad(orientation)
        axes = np.array(part["axes"]) * scale
        for du, dv in spec["patches"]:
            cx = centre[0] + du * axes[0] * np.cos(theta) - dv * axes[1] * np.sin(theta)
            cy = centre[1] + du * axes[0] * np.sin(theta) + dv * axes[1] * np.cos(theta)
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * spec["pattern_scale_mm"] ** 2))
            field = field + 2 * amplitude * blob
    else:
        field = np.full(x.shape, base)
    return np.clip(field, 0.0, 0.95).astype(np.float32)


def _paint_lesions(canvas: _Canvas, params: dict, x, y, t: float, geometry: dict, label_ids: dict[str, int],
                   region: np.ndarray) -> None:
    for number, lesion in enumerate(params["lesions"], start=1):
        host = geometry.get(lesion["host"])
        reach = 1.0 - ((t - lesion["centre_t"]) / (lesion["extent_t"] / 2)) ** 2
        if host is None or reach <= 0:
            continue
        centre, orientation, part, scale = host
        theta = np.deg2rad(orientation)
        axes = np.array(part["axes"]) * scale
        du, dv = lesion["offset"]
        c = (centre[0] + du * axes[0] * np.cos(theta) - dv * axes[1] * np.sin(theta),
             centre[1] + du * axes[0] * np.sin(theta) + dv * axes[1] * np.cos(theta))
        grow = np.sqrt(reach)
        if lesion["kind"] == "edema":
            size = lesion["size"] * axes * grow
            d = shapes.superellipse(x, y, c, (size[0], size[1] * lesion["elongation"]), 2.0, lesion["angle"],
                                    reach=2.0)
            mask = (d < 0) & (canvas.labels == label_ids[lesion["host"]]) & (canvas.tissue == TISSUE_IDS["muscle"])
            canvas.paint(mask, "edema", label_ids[lesion["host"]], np.minimum(canvas.fat, 0.03))
            continue
        size = lesion["size"] * grow
        exponent = 2.0 if lesion["kind"] == "cyst" else 1.7
        d = shapes.superellipse(x, y, c, (size, size * lesion["elongation"]), exponent, lesion["angle"],
                                reach=2.0 * size)
        name = f"{lesion['kind']} {number}"
        if lesion["kind"] == "mass":  # lobulated: a smaller lobe on one side
            lobe = shapes.superellipse(x, y, (c[0] + 0.7 * size, c[1]), (0.55 * size, 0.5 * size), 2.0,
                                       reach=2.0 * size)
            d = shapes.smooth_union(d, lobe, 0.2 * size)
        mask = (d < 0) & region
        canvas.paint(mask, "fluid" if lesion["kind"] == "cyst" else "mass", label_ids.get(name))
        if lesion["necrotic"] and size > 8:
            canvas.paint((d < -0.45 * size) & region, "necrosis", label_ids.get(name))


def label_names_of(params: dict) -> dict[int, str]:
    """Label id -> name of a case: muscles first, then fat, marrow, fluid spaces, nerves and lesions."""
    names: list[str] = []
    if params["anatomy"] == "pelvis":
        for hip in params["hips"]:
            prefix = "right" if hip["side"] < 0 else "left"
            names += [f"{prefix} {m['name']}" for m in hip["muscles"]]
        names.append("subcutaneous fat")
        for hip in params["hips"]:
            prefix = "right" if hip["side"] < 0 else "left"
            names += [f"{prefix} femoral head marrow", f"{prefix} acetabulum marrow", f"{prefix} hip joint fluid"]
        names += ["sacrum marrow", "bladder"]
        names += [v[1]["name"] for hip in params["hips"] for v in hip["vessels"] if v[0] == "nerve"][:1]
    else:
        names += [m["name"] for m in params["muscles"]]
        names.append("subcutaneous fat")
        names += [f"{b['name']} marrow" for b in params["bones"]]
        names += [v[1]["name"] for v in params["vessels"] if v[0] == "nerve"]
    names += [f"{lesion['kind']} {n}" for n, lesion in enumerate(params["lesions"], start=1)
              if lesion["kind"] != "edema"]
    return {index: name for index, name in enumerate(names, start=1)}
