"""The single inference entry point: a T2w volume -> batched 2D slices -> an SFF volume.

The CLI, the widgets and the evaluation all call :func:`predict_volume`. It never imports Qt or napari;
progress and cancellation are plain callbacks, checked between batches (and between DDIM steps).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


#: Fallbacks when no calibration (:func:`calibrate`) exists for a model and device, or it is switched off
#: (``NAPARI_SFF_CALIBRATE=0``). On the 2-core CPU here batch 1 in channels-last memory was fastest for the U-Net
#: at 256² and 395² (benchmarks/bench_predict.py); on GPUs larger batches fill the device (not measured here).
DEFAULT_BATCH = {"cpu": 1, "cuda": 8, "mps": 8}
DEFAULT_CHANNELS_LAST = {"cpu": True, "cuda": True, "mps": False}
#: Candidates :func:`calibrate` times, and the slice size it times them at (the shipped models' training size).
CALIBRATION_BATCHES = (1, 2, 4, 8)
CALIBRATION_SHAPE = (256, 256)
CALIBRATION_FILE = "calibration.json"


def default_batch_size(device: Any) -> int:
    """The fallback batch size for a device (a torch.device or its name); see :data:`DEFAULT_BATCH`."""
    return DEFAULT_BATCH.get(_device_kind(device), 1)


def _device_kind(device: Any) -> str:
    return getattr(device, "type", str(device).split(":")[0])


@dataclass(frozen=True)
class RunSettings:
    """How predict_slices runs a model on a device: slices per batch, memory format, CPU threads (None: as set)."""

    batch_size: int
    channels_last: bool
    threads: int | None = None
    source: str = "default"  # "default", "calibrated" (measured on this device) or "caller"


def default_settings(device: Any) -> RunSettings:
    kind = _device_kind(device)
    return RunSettings(DEFAULT_BATCH.get(kind, 1), DEFAULT_CHANNELS_LAST.get(kind, False), None, "default")


def cache_dir() -> Path:
    """Where napari-sff keeps per-user caches: ``$NAPARI_SFF_CACHE_DIR``, else the platform's user cache dir."""
    override = os.environ.get("NAPARI_SFF_CACHE_DIR")
    if override:
        return Path(override)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("napari-sff", appauthor=False))
    except ImportError:
        return Path.home() / ".cache" / "napari-sff"


def device_description(device: Any) -> str:
    """A name for the hardware behind ``device``: the GPU's name, or the CPU model and core count."""
    import torch

    device = torch.device(device) if not hasattr(device, "type") else device
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.type == "mps":
        return f"mps:{cpu}"
    return f"cpu:{cpu}:{os.cpu_count()} cpus:{torch.get_num_threads()} threads"


def calibration_key(model: Any, device: Any) -> str:
    """Device, torch version and model architecture: a calibration is valid for exactly these."""
    import torch

    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        shape = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    else:
        shape = f"{sum(p.numel() for p in model.parameters()) if hasattr(model, 'parameters') else 0} params"
    return f"{device_description(device)}|torch {torch.__version__}|{getattr(model, 'arch', type(model).__name__)} {shape}"


def read_calibration(model: Any, device: Any) -> RunSettings | None:
    """The cached winner for this model and device, or None (no file, no entry, or an unreadable file)."""
    entry = _read_cache().get(calibration_key(model, device))
    if not isinstance(entry, dict):
        return None
    try:
        return RunSettings(int(entry["batch_size"]), bool(entry["channels_last"]),
                           None if entry.get("threads") is None else int(entry["threads"]), "calibrated")
    except (KeyError, TypeError, ValueError):
        return None


def cached_calibrations(device: Any) -> dict[str, dict]:
    """Cached calibration entries for ``device`` under this torch, keyed by architecture (for ``napari-sff info``)."""
    import torch

    prefix = f"{device_description(device)}|torch {torch.__version__}|"
    return {key[len(prefix):]: entry for key, entry in _read_cache().items()
            if key.startswith(prefix) and isinstance(entry, dict)}


def _read_cache() -> dict:
    try:
        data = json.loads((cache_dir() / CALIBRATION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


def calibration_candidates(device: Any, batches: Sequence[int] = CALIBRATION_BATCHES) -> list[RunSettings]:
    """Settings worth timing on ``device``: each batch size in both memory formats (MPS: contiguous only), and on
    CPUs with more threads than physical cores also the physical core count."""
    import torch

    kind = _device_kind(device)
    formats = (False,) if kind == "mps" else (False, True)
    threads: list[int | None] = [None]
    physical = _physical_cores() if kind == "cpu" else None
    if physical and physical < torch.get_num_threads():
        threads.append(physical)
    return [RunSettings(int(b), cl, t, "calibrated") for t in threads for cl in formats for b in batches]


def choose_settings(seconds_per_slice: dict[RunSettings, float]) -> RunSettings:
    """The fastest candidate per slice; ties (within 2 %) go to the smaller batch, then contiguous memory."""
    if not seconds_per_slice:
        raise ValueError("no calibration timings to choose from")
    best = min(seconds_per_slice.values())
    close = [s for s, seconds in seconds_per_slice.items() if seconds <= 1.02 * best]
    return min(close, key=lambda s: (s.batch_size, s.channels_last, s.threads or 0))


def _time_once(candidate: RunSettings, run: Callable[[], object]) -> float:
    """Seconds of ``run()``: the best of two after a warm-up (the shared machine's noise only ever adds)."""
    import torch

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    run()
    samples = []
    for _ in range(2):
        sync()
        started = time.perf_counter()
        run()
        sync()
        samples.append(time.perf_counter() - started)
    return min(samples)


def calibrate(
    model: Any, device: Any, *, shape: Sequence[int] = CALIBRATION_SHAPE,
    candidates: Sequence[RunSettings] | None = None,
    timer: Callable[[RunSettings, Callable[[], object]], float] | None = None, save: bool = True,
) -> tuple[RunSettings, dict[str, float]]:
    """Time each candidate setting once on ``device`` with ``model`` (a few seconds), return the winner and the
    ms/slice of every candidate, and (``save``) cache the winner per device, torch version and architecture.

    ``timer(candidate, run)`` returns the seconds one ``run()`` takes (tests inject one). The DDPM is timed with a
    single DDIM step: the network call is what the settings change.
    """
    import torch

    device = torch.device(device) if not hasattr(device, "type") else device
    candidates = list(candidates or calibration_candidates(device))
    timer = timer or _time_once
    is_ddpm = getattr(model, "arch", "unet") == "ddpm"
    largest = max(c.batch_size for c in candidates)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 1, (largest, *(int(n) for n in shape))).astype(np.float32)
    timings: dict[RunSettings, float] = {}
    for candidate in candidates:
        with _settings_applied(model, candidate, convert_callers=True):
            def run(c: RunSettings = candidate) -> object:
                return _run_batch(model, batch[:c.batch_size], device, is_ddpm, 1, 1, 0.0, 0, None, None, 0, 1,
                                  c.channels_last)

            try:
                timings[candidate] = timer(candidate, run) / candidate.batch_size
            except torch.OutOfMemoryError:
                continue
    winner = choose_settings(timings)
    table = {_candidate_name(c): 1000 * seconds for c, seconds in timings.items()}
    if save:
        data = _read_cache()
        data[calibration_key(model, device)] = {
            "batch_size": winner.batch_size, "channels_last": winner.channels_last, "threads": winner.threads,
            "ms_per_slice": table, "shape": list(shape), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        from napari_sff.io.atomic import atomic_write_text

        atomic_write_text(cache_dir() / CALIBRATION_FILE, json.dumps(data, indent=1))
    return winner, table


def _candidate_name(settings: RunSettings) -> str:
    fmt = "channels_last" if settings.channels_last else "contiguous"
    return f"batch{settings.batch_size}/{fmt}" + ("" if settings.threads is None else f"/threads{settings.threads}")


def run_settings(model: Any, device: Any, batch_size: int | None = None, *,
                 calibrate_if_missing: bool | None = None) -> RunSettings:
    """The settings predict_slices uses: an explicit ``batch_size`` always wins (memory format and threads then
    come from the calibration if cached, else the device default); otherwise the cached calibration, or one run
    now (unless ``NAPARI_SFF_CALIBRATE=0``), or the device default when calibration fails."""
    cached = read_calibration(model, device)
    if batch_size is not None:
        base = cached or default_settings(device)
        return dataclasses.replace(base, batch_size=max(1, int(batch_size)), source="caller")
    if cached is not None:
        return cached
    if calibrate_if_missing is None:
        calibrate_if_missing = os.environ.get("NAPARI_SFF_CALIBRATE", "1") != "0"
    has_weights = hasattr(model, "parameters") and any(True for _ in model.parameters())
    if calibrate_if_missing and has_weights:  # nothing to tune in a module without weights
        try:
            return calibrate(model, device)[0]
        except (RuntimeError, OSError, ValueError):  # a device that cannot run a candidate: fall back, never fail
            pass
    return default_settings(device)


@contextmanager
def _settings_applied(model: Any, settings: RunSettings, *, convert_callers: bool = False) -> Iterator[None]:
    """Put the model's weights in the settings' memory format and set the thread count, for the duration.

    Only models loaded by :func:`load_model` change format (and keep it): a caller's model (training's, under
    DDP perhaps) runs in the format it is in, unless ``convert_callers`` (calibration), which restores it.
    """
    import torch

    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    owned = getattr(model, "_napari_sff_owned", False)
    # Weights whose strides tell the formats apart (a 1-channel kernel is both at once).
    telling = [p for p in model.parameters() if p.dim() == 4 and p.is_contiguous() != p.is_contiguous(
        memory_format=torch.channels_last)] if hasattr(model, "parameters") else []
    was_channels_last = bool(telling) and telling[0].is_contiguous(memory_format=torch.channels_last)
    change = bool(telling) and was_channels_last != settings.channels_last and (owned or convert_callers)
    threads_before = torch.get_num_threads()
    with torch.no_grad():
        if change:
            model.to(memory_format=fmt)
        if settings.threads is not None and settings.threads != threads_before:
            torch.set_num_threads(settings.threads)
        try:
            yield
        finally:
            if torch.get_num_threads() != threads_before:
                torch.set_num_threads(threads_before)
            if change and not owned:
                model.to(memory_format=torch.channels_last if was_channels_last else torch.contiguous_format)


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
        model._napari_sff_owned = True  # predict_slices may keep it in the calibrated memory format
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


# ------------------------------------------------------------------------------------------------ predict
def predict_slices(
    model: Any, slices: np.ndarray, *, device: torch.device, batch_size: int | None = None, ddim_steps: int = 50,
    samples: int = 1, eta: float = 0.0, seed: int = 0, progress: ProgressCallback | None = None,
    cancel: CancelCallback | None = None, settings: RunSettings | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw T2w slices (N, H, W) -> SFF (N, H, W) in [0, 1], and the DDPM SD when ``samples`` > 1.

    Batches back off (halve) on out-of-memory; ``progress(done, total)`` counts slices for the U-Net and
    slice-steps for the DDPM; ``cancel()`` is checked between batches and DDIM steps. ``settings`` (batch size,
    memory format, threads) default to :func:`run_settings`; an explicit ``batch_size`` overrides theirs.
    """
    is_ddpm = getattr(model, "arch", "unet") == "ddpm"
    steps_per_slice = ddim_steps if is_ddpm else 1
    total = len(slices) * steps_per_slice
    sff = np.zeros(slices.shape, dtype=np.float32)
    std = np.zeros(slices.shape, dtype=np.float32) if is_ddpm and samples > 1 else None
    normalised = normalise_t2w(np.asarray(slices, dtype=np.float32))
    if settings is None:
        settings = run_settings(model, device, batch_size)
    elif batch_size is not None:
        settings = dataclasses.replace(settings, batch_size=max(1, int(batch_size)), source="caller")
    with _settings_applied(model, settings):
        _predict_batches(model, normalised, sff, std, device, settings, is_ddpm, ddim_steps, samples, eta, seed,
                         progress, cancel, steps_per_slice, total)
    return sff, std


def _predict_batches(model, normalised, sff, std, device, settings, is_ddpm, ddim_steps, samples, eta, seed,
                     progress, cancel, steps_per_slice, total) -> None:
    import torch

    batch_size = max(1, settings.batch_size)
    start = 0
    while start < len(normalised):
        if cancel is not None and cancel():
            raise PredictionCancelled("prediction cancelled")
        stop = min(start + batch_size, len(normalised))
        try:
            mean, spread = _run_batch(model, normalised[start:stop], device, is_ddpm, ddim_steps, samples, eta,
                                      seed + start, progress, cancel, start * steps_per_slice, total,
                                      settings.channels_last)
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


def _run_batch(model, batch, device, is_ddpm, ddim_steps, samples, eta, seed, progress, cancel, done, total,
               channels_last=False):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch[:, None])).to(device)
    if channels_last:  # one channel: the same bytes, only the strides say so (no copy)
        x = x.contiguous(memory_format=torch.channels_last)
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
    settings = run_settings(model, torch_device, batch_size)  # a first calibration is not the scan's time
    started = time.perf_counter()
    plan = plan_slices(array, spacing, model, slice_axis=slice_axis, slice_indices=slice_indices, resample=resample)
    sff_slices, std_slices = predict_slices(
        model, plan.slices, device=torch_device, ddim_steps=ddim_steps, samples=samples,
        eta=eta, seed=seed, progress=progress, cancel=cancel, settings=settings,
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
    settings = run_settings(model, torch_device, batch_size)
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
                                          ddim_steps=ddim_steps, samples=samples, eta=eta, seed=seed,
                                          settings=settings)
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
