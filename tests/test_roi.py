"""Grid planning and resampling by world coordinates (napari_sff.roi), on plain matrices: known answers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sff import io, roi


def grid(spacing, origin) -> np.ndarray:
    """Axis-aligned voxel -> world matrix (voxel centres at origin + index * spacing)."""
    matrix = np.diag([*map(float, spacing), 1.0])
    matrix[:3, 3] = origin
    return matrix


FINE = grid((2.0, 1.0, 1.0), (0.0, 0.0, 0.0))
FINE_SHAPE = (4, 8, 8)  # box: -1..7 x -0.5..7.5 x -0.5..7.5 mm
COARSE = grid((4.0, 2.0, 2.0), (1.0, 0.5, 0.5))  # same box with half the voxels per axis
COARSE_SHAPE = (2, 4, 4)


def centres(to_world: np.ndarray, shape) -> np.ndarray:
    index = np.indices(shape).reshape(3, -1)
    return (to_world[:3, :3] @ index + to_world[:3, 3:]).reshape(3, *shape)


def ramp(world: np.ndarray) -> np.ndarray:
    s, p, left = world
    return (0.01 * s + 0.02 * p + 0.03 * left).astype(np.float32)


def test_same_grid_is_used_as_it_is():
    how, matrix, reason = roi.plan(FINE, FINE_SHAPE, FINE.copy(), FINE_SHAPE)
    assert (how, matrix, reason) == ("same", None, "")
    array = np.arange(np.prod(FINE_SHAPE)).reshape(FINE_SHAPE)
    np.testing.assert_array_equal(roi.onto_grid(array, FINE, FINE, FINE_SHAPE), array)


def test_coarser_grid_over_the_same_box_is_resampled_by_world_position():
    how, to_coarse, _ = roi.plan(COARSE, COARSE_SHAPE, FINE, FINE_SHAPE)
    assert how == "resample"
    # fine voxel (1, 3, 5) sits at world (2, 3, 5) = coarse voxel ((2-1)/4, (3-0.5)/2, (5-0.5)/2)
    np.testing.assert_allclose(to_coarse @ [1, 3, 5, 1], [0.25, 1.25, 2.25, 1])
    coarse = ramp(centres(COARSE, COARSE_SHAPE))
    on_fine = roi.onto_grid(coarse, COARSE, FINE, FINE_SHAPE)
    assert on_fine.shape == FINE_SHAPE and on_fine.dtype == np.float32
    expected = ramp(centres(FINE, FINE_SHAPE))
    inside = (slice(1, 3), slice(1, 7), slice(1, 7))  # between coarse voxel centres: linear is exact
    np.testing.assert_allclose(on_fine[inside], expected[inside], atol=1e-5)


def test_labels_are_resampled_nearest_neighbour():
    coarse = np.zeros(COARSE_SHAPE, np.uint8)
    coarse[1, 2:, :2] = 7
    on_fine = roi.onto_grid(coarse, COARSE, FINE, FINE_SHAPE, labels=True)
    assert on_fine.dtype == np.uint8 and set(np.unique(on_fine)) == {0, 7}
    expected = np.zeros(FINE_SHAPE, np.uint8)
    expected[2:, 4:, :4] = 7  # each coarse voxel is 2 x 2 x 2 fine voxels
    np.testing.assert_array_equal(on_fine, expected)


def test_shifted_grid_is_refused_with_both_boxes():
    shifted = grid((4.0, 2.0, 2.0), (1.0, 0.5, 10.5))
    how, matrix, reason = roi.plan(shifted, COARSE_SHAPE, FINE, FINE_SHAPE, "dixon_sff", "t2w")
    assert how == "incompatible" and matrix is None
    assert "'dixon_sff'" in reason and "'t2w'" in reason and "9.5..17.5" in reason
    with pytest.raises(roi.GridMismatchError, match="does not cover the same region"):
        roi.onto_grid(np.zeros(COARSE_SHAPE), shifted, FINE, FINE_SHAPE)
    assert roi.plan(FINE[1:, 1:], FINE_SHAPE[1:], FINE, FINE_SHAPE)[0] == "incompatible"  # 2-D vs 3-D


def test_volume_to_world_matches_the_layer_placement_of_an_oblique_volume():
    """The CLI's grid (from a Volume) is the napari layer's grid: same matrix as scale/translate/rotate."""
    angle = np.deg2rad(12)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    world_linear = rotation @ np.diag([3.0, 0.8, 0.7])
    volume = io.Volume(np.zeros((5, 6, 7), np.float32), io.ras_affine(world_linear, np.array([4.0, -2.0, 9.0])))
    placement = io.layer_placement(volume)
    expected = np.eye(4)
    expected[:3, :3] = np.asarray(placement.get("rotate", np.eye(3))) @ np.diag(placement["scale"])
    expected[:3, 3] = placement["translate"]
    np.testing.assert_allclose(roi.volume_to_world(volume), expected, atol=1e-9)
    np.testing.assert_allclose(roi.volume_to_world(volume)[:3, 3], [4.0, -2.0, 9.0])


def test_shape_ids_start_above_the_labels():
    assert [roi.shape_label_base(m) for m in (None, 0, 4, 9, 10, 99, 250)] == [0, 10, 10, 10, 100, 100, 1000]
