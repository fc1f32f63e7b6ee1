"""Where the slices come from and how they go back: slice axis, the model's pixel spacing, resampling.

A volume is cut along its thick-slice axis, each slice resized into the pixel range the model was trained on
(:func:`resample_slices`: skimage's numbers as two matrix products), and the prediction put back on the input
grid. Numpy and torch tensors only; no model is run here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def choose_slice_axis(spacing: Sequence[float], requested: int | str = "auto") -> int:
    """The slice axis: ``auto`` picks the axis with the largest voxel spacing (the thick-slice direction)."""
    if requested in ("auto", None):
        return int(np.argmax(np.asarray(spacing, dtype=float)))
    axis = int(requested)
    if axis not in (0, 1, 2):
        raise ValueError(f"slice axis must be auto, 0, 1 or 2, not {requested!r}")
    return axis


def model_input_spacing(in_plane: Sequence[float], seen: Sequence[float] | None) -> tuple[float, float] | None:
    """The in-plane spacing (mm) to predict at: each axis moved into the ``seen`` training range; None if inside.

    A U-Net reads anatomy at the pixel scale it was trained on: the simulator's 256² slices have 1-2 mm pixels,
    and a 0.5-1 mm thigh scan predicted at its own resolution loses accuracy (``training.evaluate
    --spacing-check`` measures how much, and what resampling gains back).
    """
    if not seen:
        return None
    low, high = seen
    rows, cols = (float(value) for value in in_plane)
    target = (float(np.clip(rows, low, high)), float(np.clip(cols, low, high)))
    if abs(target[0] - rows) <= 0.01 * rows and abs(target[1] - cols) <= 0.01 * cols:
        return None
    return target


@functools.lru_cache(maxsize=32)
def _resize_operator(old: int, new: int, order: int) -> torch.Tensor:
    """The (new, old) matrix of skimage's 1D resize (spline order, anti-aliasing, edge mode), built by resizing the
    identity once: skimage's resize is linear and separable, so two of these reproduce it on any stack."""
    import torch
    from skimage.transform import resize

    eye = np.eye(old)
    operator = resize(eye, (new, old), order=order, anti_aliasing=new < old, preserve_range=True, clip=False)
    operator[np.abs(operator) < 1e-9] = 0  # the spline's and the Gaussian's far tails: float32 denormals are slow
    return torch.from_numpy(operator.astype(np.float32))


def resample_slices(slices: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resize a stack (N, H, W) in-plane to ``shape`` (H', W'); anti-aliased where it shrinks.

    The same numbers as ``skimage.transform.resize(..., order, anti_aliasing=<shrinks>)`` (to float32 rounding),
    computed as ``rows @ slice @ cols.T`` with the two 1D resize matrices (cached per size): a GEMM instead of
    spline filtering and ``map_coordinates``, 10-40x faster on 2 cores (benchmarks/bench_predict.py).
    """
    import torch

    slices = np.asarray(slices)
    if slices.ndim != 3:
        raise ValueError(f"expected a stack of slices (N, H, W), got shape {slices.shape}")
    if order not in (0, 1, 2, 3, 4, 5):
        raise ValueError(f"interpolation order must be 0-5, not {order!r}")
    (count, height, width), (new_height, new_width) = slices.shape, (int(n) for n in shape)
    x = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))
    rows_first = new_height * width <= height * new_width  # the cheaper order (fewer multiply-adds)
    with torch.inference_mode():
        for axis in ((0, 1) if rows_first else (1, 0)):
            old, new = (height, new_height) if axis == 0 else (width, new_width)
            if old == new:
                continue
            operator = _resize_operator(old, new, order)
            if axis == 0:  # (H', H) broadcast over the stack: one batched GEMM, no transposed copy
                x = torch.matmul(operator, x)
            else:  # all rows of all slices at once: one large GEMM
                x = (x.reshape(-1, old) @ operator.T).reshape(count, x.shape[1], new)
        if order > 1 and slices.size:  # skimage clips higher orders to the input's range (its ``clip=True``)
            x = x.clamp(float(slices.min()), float(slices.max()))
        out = np.ascontiguousarray(x.numpy())
    return out.copy() if np.shares_memory(out, slices) else out


@dataclass
class SlicePlan:
    """One volume's slices as the model sees them (resampled into its pixel range when needed), and how to put
    the prediction back onto the volume's grid."""

    slices: np.ndarray  # (N, H, W) float32 at the model's pixel size
    axis: int
    indices: list[int]
    volume_shape: tuple[int, ...]
    target: tuple[float, float] | None  # model spacing when resampled
    single_image: bool


def plan_slices(
    array: np.ndarray, spacing: Sequence[float], model: Any, *, slice_axis: int | str = "auto",
    slice_indices: Sequence[int] | None = None, resample: bool = True,
) -> SlicePlan:
    """Cut a 2D or 3D T2w array (display order) into the slices to predict (see :func:`predict_volume`)."""
    array = np.asarray(array)
    single_image = array.ndim == 2
    if single_image:
        array, spacing, slice_axis = array[None], (1.0, *tuple(spacing)[-2:]), 0
    if array.ndim != 3:
        raise ValueError(f"expected a 2D or 3D T2w image, got {array.ndim}D; pick one volume of a 4D series")
    axis = choose_slice_axis(spacing, slice_axis)
    indices = list(range(array.shape[axis])) if slice_indices is None else [int(i) for i in slice_indices]
    if any(not 0 <= i < array.shape[axis] for i in indices):
        raise ValueError(f"slice indices {indices} outside 0..{array.shape[axis] - 1}")
    slices = np.moveaxis(array, axis, 0)[indices].astype(np.float32, copy=False)  # one copy
    in_plane = [float(value) for i, value in enumerate(spacing) if i != axis]
    target = model_input_spacing(in_plane, getattr(model, "input_spacing_mm", None)) if resample else None
    if target is not None:
        grid = [max(16, round(n * v / t)) for n, v, t in zip(slices.shape[1:], in_plane, target, strict=True)]
        slices = resample_slices(slices, grid, order=1)
    return SlicePlan(slices, axis, indices, array.shape, target, single_image)


def finish_slices(plan: SlicePlan, sff_slices: np.ndarray,
                  std_slices: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted slices back onto the volume's grid (resampled back when the plan resampled; 0 off the slices)."""
    shape = plan.volume_shape
    stack_shape = (shape[plan.axis], *(n for i, n in enumerate(shape) if i != plan.axis))
    if plan.target is not None:  # back to the input grid; cubic beat linear (body MAE 0.071 vs 0.074, 512² probes)
        sff_slices = np.clip(resample_slices(sff_slices, stack_shape[1:], order=3), 0, 1)
        if std_slices is not None:
            std_slices = np.clip(resample_slices(std_slices, stack_shape[1:], order=1), 0, None)

    def on_grid(values: np.ndarray) -> np.ndarray:
        full = np.zeros(stack_shape, dtype=np.float32)
        full[plan.indices] = values
        full = np.moveaxis(full, 0, plan.axis)
        return full[0] if plan.single_image else full

    return on_grid(sff_slices), None if std_slices is None else on_grid(std_slices)
