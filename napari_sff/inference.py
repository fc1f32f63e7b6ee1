"""The single inference entry point: a T2w volume -> batched 2D slices -> an SFF volume.

The CLI, the widgets and the evaluation all call :func:`predict_volume`. It never imports Qt or napari;
progress and cancellation are plain callbacks, checked between batches (and between DDIM steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sff.preprocess import normalise_t2w

if TYPE_CHECKING:
    import torch

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]
ARCH_LABELS = {"unet": "U-Net", "ddpm": "DDPM"}


class PredictionCancelled(Exception):
    """Raised when the cancel callback asks to stop; nothing partial is returned."""


@dataclass
class Prediction:
    """SFF (and, for several DDPM samples, its per-voxel SD) on the input grid, with timing."""

    sff: np.ndarray
    std: np.ndarray | None
    slice_axis: int
    slice_indices: list[int]
    seconds: float
    device: str
    arch: str
    # In-plane spacing (mm) the model predicted at, when the input's lay outside what it was trained on.
    model_spacing: tuple[float, float] | None = None
    # Why the scan lies outside what the model was trained on (napari_sff.domain), or None.
    out_of_distribution: str | None = None

    @property
    def ms_per_slice(self) -> float:
        return 1000.0 * self.seconds / max(1, len(self.slice_indices))


# ------------------------------------------------------------------------------------------------- devices
def available_devices() -> list[str]:
    """Devices torch can use here, best first; "cpu" is always last."""
    import torch

    devices = []
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return [*devices, "cpu"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` = cuda -> mps -> cpu, each confirmed by a trial allocation; a named device must work."""
    import torch

    if name not in ("auto", "cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    candidates = available_devices() if name == "auto" else [name]
    for candidate in candidates:
        try:
            torch.zeros(1, device=candidate) + 1
            return torch.device(candidate)
        except Exception as exc:  # a listed device can still fail (driver, busy GPU)
            if name != "auto":
                raise RuntimeError(f"device {name!r} is not usable here ({exc}); use --device auto or cpu") from exc
    return torch.device("cpu")


#: Slices per batch when the caller does not say, per device type. On the 2-core CPU here batch 1 beat batch 8
#: in every run (U-Net 53 vs 71 and 73 vs 88 ms/slice, benchmarks/bench_inference.py; channels-last gained
#: nothing there); on GPUs larger batches fill the device (not measured here: no GPU was lent).
DEFAULT_BATCH = {"cpu": 1, "cuda": 8, "mps": 8}


def default_batch_size(device: Any) -> int:
    """The measured default batch size for a device (a torch.device or its name)."""
    kind = getattr(device, "type", str(device).split(":")[0])
    return DEFAULT_BATCH.get(kind, 1)


# -------------------------------------------------------------------------------------------------- models
_MODEL_CACHE: dict[tuple[str, str, float, str], tuple[Any, dict]] = {}


def load_model(arch: str, weights: str | Path | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode on ``device``, checkpoint metadata); shipped weights when ``weights`` is None.

    Cached by file and modification time, so the widget's repeated runs do not reload.
    """
    from napari_sff.models import CheckpointError, default_weights_path, load_checkpoint

    if arch not in ARCH_LABELS:
        raise ValueError(f"unknown model {arch!r}; use one of {', '.join(ARCH_LABELS)}")
    path = Path(weights) if weights else default_weights_path(arch)
    if weights is None and not path.exists():
        raise CheckpointError(f"shipped {arch} weights are missing at {path}; reinstall napari-sff or pass --weights")
    key = (arch, str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0, str(device))
    if key not in _MODEL_CACHE:
        model, metadata = load_checkpoint(path, expected_arch=arch, device=str(device))
        model.eval()
        # Carried by the model, so that predict_volume can match a user's pixel size to the training data's.
        seen = metadata.get("metadata", {}).get("input_spacing_mm")
        model.input_spacing_mm = (float(seen[0]), float(seen[1])) if seen else None
        model.input_statistics = metadata.get("metadata", {}).get("input_statistics")  # see napari_sff.domain
        _MODEL_CACHE.clear()  # keep one model resident: weights can be large on small GPUs
        _MODEL_CACHE[key] = (model, metadata)
    return _MODEL_CACHE[key]


# ---------------------------------------------------------------------------------------------- geometry
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


def resample_slices(slices: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resize a stack (N, H, W) in-plane to ``shape`` (H', W'); anti-aliased where it shrinks."""
    from skimage.transform import resize

    out_shape = (len(slices), *(int(n) for n in shape))
    shrinks = any(new < old for new, old in zip(out_shape[1:], slices.shape[1:], strict=True))
    return resize(slices, out_shape, order=order, anti_aliasing=shrinks, preserve_range=True).astype(np.float32)


# ------------------------------------------------------------------------------------------------ predict
def predict_slices(
    model: Any, slices: np.ndarray, *, device: torch.device, batch_size: int | None = None, ddim_steps: int = 50,
    samples: int = 1, eta: float = 0.0, seed: int = 0, progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw T2w slices (N, H, W) -> SFF (N, H, W) in [0, 1], and the DDPM SD when ``samples`` > 1.

    Batches back off (halve) on out-of-memory; ``progress(done, total)`` counts slices for the U-Net and
    slice-steps for the DDPM; ``cancel()`` is checked between batches and DDIM steps.
    """
    import torch

    is_ddpm = getattr(model, "arch", "unet") == "ddpm"
    steps_per_slice = ddim_steps if is_ddpm else 1
    total = len(slices) * steps_per_slice
    sff = np.zeros(slices.shape, dtype=np.float32)
    std = np.zeros(slices.shape, dtype=np.float32) if is_ddpm and samples > 1 else None
    normalised = normalise_t2w(np.asarray(slices, dtype=np.float32))
    batch_size = max(1, int(default_batch_size(device) if batch_size is None else batch_size))
    start = 0
    while start < len(slices):
        if cancel is not None and cancel():
            raise PredictionCancelled("prediction cancelled")
        stop = min(start + batch_size, len(slices))
        try:
            mean, spread = _run_batch(model, normalised[start:stop], device, is_ddpm, ddim_steps, samples, eta,
                                      seed + start, progress, cancel, start * steps_per_slice, total)
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise RuntimeError("out of memory with batch size 1; use a smaller image or --device cpu") from None
            batch_size //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        sff[start:stop] = mean
        if std is not None:
            std[start:stop] = spread
        start = stop
        if progress is not None:
            progress(start * steps_per_slice, total)
    return sff, std


def _run_batch(model, batch, device, is_ddpm, ddim_steps, samples, eta, seed, progress, cancel, done, total):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch[:, None])).to(device)
    if device.type == "cuda":
        x = x.to(memory_format=torch.channels_last)
    autocast = torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda")
    with torch.inference_mode(), autocast:
        if not is_ddpm:
            out = model(x).float().clamp_(0, 1)
            return out[:, 0].cpu().numpy(), None

        def step_report(step: int, steps: int) -> None:
            if cancel is not None and cancel():
                raise PredictionCancelled("prediction cancelled")
            if progress is not None:  # ``steps`` counts DDIM steps over all sampling passes
                progress(done + len(batch) * ddim_steps * step // max(1, steps), total)

        generator = torch.Generator(device=device).manual_seed(seed)
        mean, spread = model.sample(x, steps=ddim_steps, eta=eta, n_samples=samples, generator=generator,
                                    progress=step_report)
        return mean.float()[:, 0].cpu().numpy(), spread.float()[:, 0].cpu().numpy()


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
    slices = np.moveaxis(array, axis, 0)[indices].astype(np.float32)
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


def _model_on(arch: str, weights: str | Path | None, device: str, model: Any) -> tuple[Any, Any]:
    torch_device = resolve_device(device)
    if model is None:
        model, _ = load_model(arch, weights, torch_device)
    else:
        model = model.to(torch_device).eval()
    return model, torch_device


def predict_volume(
    array: np.ndarray, spacing: Sequence[float], arch: str = "unet", *, weights: str | Path | None = None,
    device: str = "auto", slice_axis: int | str = "auto", slice_indices: Sequence[int] | None = None,
    batch_size: int | None = None, ddim_steps: int = 50, samples: int = 1, eta: float = 0.0, seed: int = 0,
    progress: ProgressCallback | None = None, cancel: CancelCallback | None = None, model: Any = None,
    resample: bool = True,
) -> Prediction:
    """Predict SFF for a 3D T2w array (display order) on its own grid.

    ``slice_indices`` restricts the work to some slices (e.g. the one on screen); the others stay 0.
    With ``resample``, slices whose in-plane spacing lies outside the range the model was trained on (its
    checkpoint's ``input_spacing_mm``) are resized into it, predicted, and the SFF resized back (cubic).
    """
    array = np.asarray(array)
    model, torch_device = _model_on(arch, weights, device, model)
    started = time.perf_counter()
    plan = plan_slices(array, spacing, model, slice_axis=slice_axis, slice_indices=slice_indices, resample=resample)
    sff_slices, std_slices = predict_slices(
        model, plan.slices, device=torch_device, batch_size=batch_size, ddim_steps=ddim_steps, samples=samples,
        eta=eta, seed=seed, progress=progress, cancel=cancel,
    )
    sff, std = finish_slices(plan, sff_slices, std_slices)
    seconds = time.perf_counter() - started
    return Prediction(
        sff=sff, std=std, slice_axis=plan.axis, slice_indices=plan.indices, seconds=seconds,
        device=str(torch_device), arch=getattr(model, "arch", arch), model_spacing=plan.target,
        out_of_distribution=_out_of_distribution(plan, model),
    )


def _out_of_distribution(plan: SlicePlan, model: Any) -> str | None:
    """The scan's slices, as the model sees them, against the ranges its checkpoint recorded."""
    from napari_sff.domain import outside_training_range

    return outside_training_range(plan.slices, getattr(model, "input_statistics", None))


def predict_volumes(
    volumes: Sequence[tuple[np.ndarray, Sequence[float]]], arch: str = "unet", *, weights: str | Path | None = None,
    device: str = "auto", slice_axis: int | str = "auto", batch_size: int | None = None, ddim_steps: int = 50,
    samples: int = 1, eta: float = 0.0, seed: int = 0, model: Any = None, resample: bool = True,
) -> list[Prediction]:
    """:func:`predict_volume` for several (array, spacing) volumes, their slices batched together.

    Slices of consecutive volumes that share an in-plane shape (at the model's pixel size) fill the same batches,
    so a GPU stays busy when volumes have fewer slices than a batch. Each volume's result equals what
    :func:`predict_volume` gives it (each slice is predicted on its own; DDPM seeds follow the slice's place in
    the group); its ``seconds`` is its share of its group's time, by slices.
    """
    model, torch_device = _model_on(arch, weights, device, model)
    plans = [plan_slices(array, spacing, model, slice_axis=slice_axis, resample=resample)
             for array, spacing in volumes]
    predictions: list[Prediction] = []
    start = 0
    while start < len(plans):
        stop = start + 1
        while stop < len(plans) and plans[stop].slices.shape[1:] == plans[start].slices.shape[1:]:
            stop += 1
        group = plans[start:stop]
        started = time.perf_counter()
        sff_all, std_all = predict_slices(model, np.concatenate([plan.slices for plan in group]), device=torch_device,
                                          batch_size=batch_size, ddim_steps=ddim_steps, samples=samples, eta=eta,
                                          seed=seed)
        seconds = time.perf_counter() - started
        total = sum(len(plan.slices) for plan in group)
        offset = 0
        for plan in group:
            n = len(plan.slices)
            sff, std = finish_slices(plan, sff_all[offset:offset + n],
                                     None if std_all is None else std_all[offset:offset + n])
            predictions.append(Prediction(
                sff=sff, std=std, slice_axis=plan.axis, slice_indices=plan.indices, seconds=seconds * n / total,
                device=str(torch_device), arch=getattr(model, "arch", arch), model_spacing=plan.target,
                out_of_distribution=_out_of_distribution(plan, model)))
            offset += n
        start = stop
    return predictions
