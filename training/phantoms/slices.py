"""One slice of a phantom, rendered: tissue class, label and fat fraction per pixel at slab position ``t`` in
[0, 1] from the numbers :mod:`.anatomy` drew (:func:`render_slice`), and the label names of a case
(:func:`label_names_of`). Apart from the drawing because it is deterministic geometry: no random numbers here,
so one drawn case renders at any ``t`` and on any grid without disturbing the order of the draws.

Every position, size and angle moves linearly through the slab, muscles swell and taper along it. Muscles are
named superellipses; inside the fascia each point belongs to the muscle whose boundary is nearest (negative
distance wins), thin fat septa lie where two muscles nearly tie, and what no muscle reaches is intermuscular
fat. Angles are anatomical: 0 anterior, 90 lateral, 180 posterior, 270 medial. x grows with the column
(towards the patient's left), y with the row (towards posterior), both in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.phantoms import shapes
from training.phantoms.tissues import TISSUE_IDS


def _at(pair, t: float) -> float:
    return pair[0] + (pair[1] - pair[0]) * t


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
