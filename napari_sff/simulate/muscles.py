"""Muscle composition: per-muscle fat by the case's condition, marbled, and the Voronoi seeds of the muscles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_sff.simulate.geometry import _Frame, _Scene, _wander
from napari_sff.simulate.tissues import CONDITION_PROBABILITY, MUSCLE_FAT_BY_CONDITION


def _draw_muscle_fat(
    rng: np.random.Generator, label_names: dict[int, str], healthy_override: dict[str, tuple[float, float]],
    probability: dict[str, float] = CONDITION_PROBABILITY,
) -> tuple[str, dict[int, float]]:
    """Case condition (drawn with ``probability``) and base fat fraction per muscle group; myopathy may spare
    some groups."""
    conditions = list(probability)
    condition = conditions[rng.choice(len(conditions), p=list(probability.values()))]
    groups = sorted(label_names)
    affected = set(groups)
    if condition == "myopathic":
        n_affected = int(rng.integers(1, len(groups) + 1))
        affected = {int(g) for g in rng.choice(groups, size=n_affected, replace=False)}
    fat = {}
    for group in groups:
        healthy = healthy_override.get(label_names[group], MUSCLE_FAT_BY_CONDITION["healthy"])
        low, high = MUSCLE_FAT_BY_CONDITION[condition] if group in affected else healthy
        fat[group] = float(rng.uniform(max(low, healthy[0]), max(high, healthy[1])))
    return condition, fat


def _mirrored(layout: Sequence[tuple[int, float, float, float]]) -> list[tuple[int, float, float, float]]:
    """A layout written for the patient's right side (x < 0) with its mirror image for the left, row by row."""
    return [(group, sign * x, y, weight) for group, x, y, weight in layout for sign in (1.0, -1.0)]


def _add_muscle_seeds(
    scene: _Scene,
    frame: _Frame,
    layout: Sequence[tuple[int, float, float, float]],
    group_fat: dict[int, float],
) -> list[tuple[np.ndarray, np.ndarray, float, int]]:
    """Jittered Voronoi seeds (x, y, weight, muscle id) for a layout of (group, x, y, weight) rows."""
    rng, z = scene.rng, scene.grid.z
    seeds = []
    for group, x, y, weight in layout:
        sx, sy = frame.place(x + rng.uniform(-0.07, 0.07), y + rng.uniform(-0.07, 0.07))
        muscle_id = scene.add_muscle(group, group_fat[group] * rng.uniform(0.85, 1.15))
        seeds.append(
            (
                sx + _wander(rng, z, 3.0),
                sy + _wander(rng, z, 3.0),
                weight * rng.uniform(0.95, 1.05),
                muscle_id,
            )
        )
    return seeds
