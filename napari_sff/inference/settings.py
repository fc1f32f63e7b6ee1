"""How a model runs on a device (batch size, memory format, CPU threads, precision), measured once and cached.

Good settings differ by device, torch version, model and slice size (on the 2-core CPU batch 2 channels-last
was fastest on 256² slices and batch 1 on 395² ones; GPUs fill up with larger batches; bfloat16 was 8x slower
than float32 on a CPU without it in hardware and 1.5-1.7x faster on one with it, for both models), so
:func:`calibrate` times a few candidates on first use for the size class of the slices (:func:`size_class`) and
caches the winner in the user cache dir; :func:`run_settings` is what every prediction asks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sff.inference.batches import _run_batch
from napari_sff.inference.devices import (
    DEFAULT_BATCH,
    DEFAULT_CHANNELS_LAST,
    PRECISIONS,
    _device_kind,
    _physical_cores,
    cpu_has_native_bf16,
    default_precision,
    device_description,
)
from napari_sff.timing import time_call

#: Candidates :func:`calibrate` times, and the slice size it times them at (the shipped models' training size).
CALIBRATION_BATCHES = (1, 2, 4, 8)
CALIBRATION_SHAPE = (256, 256)
#: The square sides slices are calibrated at: each slice takes the one nearest in pixel count (a 395² slice of a
#: 512² scan at 0.7 mm is timed at 512²). benchmarks/bench_predict.py: on 2 cores the 256² winner (batch 2) ran
#: 395² slices at 170 ms/slice against 122 for batch 1.
CALIBRATION_SIDES = (256, 512)
CALIBRATION_FILE = "calibration.json"

#: Says when a calibration starts (the CLI shows napari_sff's INFO records; the widget never calibrates).
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """How predict_slices runs a model on a device: slices per batch, memory format, CPU threads (None: as set),
    precision (one of :data:`~napari_sff.inference.devices.PRECISIONS`; None: the device's default, float16
    autocast on CUDA and float32 elsewhere)."""

    batch_size: int
    channels_last: bool
    threads: int | None = None
    source: str = "default"  # "default", "calibrated" (measured on this device) or "caller"
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")

    def precision_on(self, device: Any) -> str:
        """The precision these settings run a model in on ``device``: theirs, else the device's default."""
        return self.precision or default_precision(device)


def with_precision(settings: RunSettings, precision: str | None = None) -> RunSettings:
    """``settings`` in ``precision``, else in ``$NAPARI_SFF_PRECISION`` (one precision for every run of a process:
    the widget, a cohort, an evaluation), else as they are."""
    precision = precision or os.environ.get("NAPARI_SFF_PRECISION") or None
    return settings if precision is None else dataclasses.replace(settings, precision=precision)


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


def size_class(shape: Sequence[int] | None) -> int:
    """The side of :data:`CALIBRATION_SIDES` nearest to a slice ``shape`` in log pixel count (256 when unknown)."""
    if not shape:
        return CALIBRATION_SIDES[0]
    pixels = float(np.prod([max(1, int(n)) for n in shape[-2:]]))
    return min(CALIBRATION_SIDES, key=lambda side: abs(np.log(pixels / side ** 2)))


def calibration_key(model: Any, device: Any, side: int = CALIBRATION_SIDES[0]) -> str:
    """Device, torch version, model architecture and slice size class: a calibration is valid for exactly these
    (the first size class keeps the key calibrations had before there were classes)."""
    import torch

    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        shape = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    else:
        shape = f"{sum(p.numel() for p in model.parameters()) if hasattr(model, 'parameters') else 0} params"
    size = "" if side == CALIBRATION_SIDES[0] else f"|{side}x{side}"
    return (f"{device_description(device)}|torch {torch.__version__}|{getattr(model, 'arch', type(model).__name__)} "
            f"{shape}{size}")


def read_calibration(model: Any, device: Any, side: int = CALIBRATION_SIDES[0]) -> RunSettings | None:
    """The cached winner for this model, device and size class, or None (no file, no entry, or unreadable)."""
    entry = _read_cache().get(calibration_key(model, device, side))
    if not isinstance(entry, dict):
        return None
    try:
        return RunSettings(int(entry["batch_size"]), bool(entry["channels_last"]),
                           None if entry.get("threads") is None else int(entry["threads"]), "calibrated",
                           entry.get("precision"))
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


#: A larger batch (or another memory format) must be this much faster per slice to win: one calibration's timings
#: swing more than that on a busy machine (benchmarks/bench_predict.py, quiet machine: batch 2 channels-last won the
#: calibration at 31.6 ms/slice against 33.9 for batch 1, then measured 95 against 28 ms/slice in the same run).
CALIBRATION_TIE = 0.10


#: A reduced-precision candidate counts only if its SFF differs from float32's by at most this much on average
#: (0.5 percentage points) on the calibration slice. Measured with the shipped U-Net on an AMD EPYC with native
#: bfloat16: over the body of the model card's 144 phantom slices the maps moved 0.21 pp on average (99th
#: percentile 1.1 pp, one voxel 15 pp), per-image MAE 0.0785 -> 0.0782, muscle ROI means unchanged at 4.7 pp
#: against the model's own error of about 8 pp per image (README, "Device-aware defaults").
PRECISION_TOLERANCE = 0.005
#: The DDPM's reduced precision is judged on a whole sample of the calibration slice with this many DDIM steps
#: (predict's default), from the same noise as float32's, not on the one step its timing runs: rounding adds up
#: over the steps. Measured on an AMD EPYC with native bfloat16 (50 steps, a phantom slice): 0.07 pp apart on
#: average in the body (99th percentile 0.38 pp), at half the time per slice.
DDPM_CHECK_STEPS = 50


def calibration_candidates(device: Any, batches: Sequence[int] = CALIBRATION_BATCHES,
                           arch: str = "unet") -> list[RunSettings]:
    """Settings worth timing on ``device``: each batch size in both memory formats (MPS: contiguous only), on
    CPUs with more threads than physical cores also the physical core count, and on CPUs with native bfloat16
    (:func:`~napari_sff.inference.devices.cpu_has_native_bf16`) each batch size in bfloat16, channels-last (the
    DDPM's checked on a whole sample: :data:`DDPM_CHECK_STEPS`). ``arch`` is kept for callers; both models get
    the same candidates."""
    import torch

    kind = _device_kind(device)
    formats = (False,) if kind == "mps" else (False, True)
    threads: list[int | None] = [None]
    physical = _physical_cores() if kind == "cpu" else None
    if physical and physical < torch.get_num_threads():
        threads.append(physical)
    candidates = [RunSettings(int(b), cl, t, "calibrated") for t in threads for cl in formats for b in batches]
    if kind == "cpu" and cpu_has_native_bf16():
        candidates += [RunSettings(int(b), True, None, "calibrated", "bfloat16") for b in batches]
    return candidates


def choose_settings(seconds_per_slice: dict[RunSettings, float]) -> RunSettings:
    """The fastest candidate per slice; ties (within ``CALIBRATION_TIE``) go to the device's own precision, then
    the smaller batch, then contiguous memory: a reduced precision must be clearly faster to be chosen."""
    if not seconds_per_slice:
        raise ValueError("no calibration timings to choose from")
    best = min(seconds_per_slice.values())
    close = [s for s, seconds in seconds_per_slice.items() if seconds <= (1 + CALIBRATION_TIE) * best]
    return min(close, key=lambda s: (s.precision is not None, s.batch_size, s.channels_last, s.threads or 0))


def _time_once(candidate: RunSettings, run: Callable[[], object]) -> float:
    """Seconds of ``run()``: the best of two after a warm-up (the shared machine's noise only ever adds).

    The seam tests replace; the timing itself is :func:`napari_sff.timing.time_call`, the one every benchmark uses.
    """
    return time_call(run, repeats=2, warmup=1, statistic="best")


def calibrate(
    model: Any, device: Any, *, shape: Sequence[int] = CALIBRATION_SHAPE,
    candidates: Sequence[RunSettings] | None = None,
    timer: Callable[[RunSettings, Callable[[], object]], float] | None = None, save: bool = True,
) -> tuple[RunSettings, dict[str, float]]:
    """Time each candidate setting once on ``device`` with ``model`` (a few seconds), return the winner and the
    ms/slice of every candidate, and (``save``) cache the winner per device, torch version and architecture.

    ``timer(candidate, run)`` returns the seconds one ``run()`` takes (tests inject one). The DDPM is timed with a
    single DDIM step: the network call is what the settings change; a reduced precision is then checked on a
    whole sample (:data:`DDPM_CHECK_STEPS`). The winner is cached for ``shape``'s size class (:func:`size_class`).
    """
    import torch

    device = torch.device(device) if not hasattr(device, "type") else device
    is_ddpm = getattr(model, "arch", "unet") == "ddpm"
    candidates = list(candidates or calibration_candidates(device, arch="ddpm" if is_ddpm else "unet"))
    timer = timer or _time_once
    largest = max(c.batch_size for c in candidates)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 1, (largest, *(int(n) for n in shape))).astype(np.float32)
    timings: dict[RunSettings, float] = {}
    first_slice: dict[RunSettings, np.ndarray] = {}  # each candidate's SFF of the batch's first slice

    def run(c: RunSettings) -> object:
        result = _run_batch(model, batch[:c.batch_size], device, is_ddpm, 1, 1, 0.0, 0, None, None, 0, 1,
                            c.channels_last, precision=c.precision)
        first_slice[c] = result[0][0]
        return result

    for candidate in candidates:
        with _settings_applied(model, candidate, convert_callers=True):
            try:
                timings[candidate] = timer(candidate, lambda c=candidate: run(c)) / candidate.batch_size
            except torch.OutOfMemoryError:
                timings.pop(candidate, None)
    checked: dict[tuple, np.ndarray] = {}  # the DDPM's whole samples, per precision and memory format

    def check_slice(c: RunSettings) -> np.ndarray:
        """The SFF whose agreement with float32's decides a reduced precision: the U-Net's timed first slice;
        the DDPM's whole sample of that slice (one per precision and memory format: the batch size changes no
        rounding)."""
        if not is_ddpm:
            if c not in first_slice:  # a timer that did not run it
                run(c)
            return first_slice[c]
        key = (c.precision_on(device), c.channels_last)
        if key not in checked:
            with _settings_applied(model, c, convert_callers=True):
                checked[key] = _run_batch(model, batch[:1], device, True, DDPM_CHECK_STEPS, 1, 0.0, 0, None, None,
                                          0, 1, c.channels_last, precision=c.precision)[0][0]
        return checked[key]

    deviations = _precision_deviations(timings, check_slice, device)
    eligible = {c: t for c, t in timings.items() if deviations.get(c, 0.0) <= PRECISION_TOLERANCE}
    winner = choose_settings(eligible)
    table = {_candidate_name(c): 1000 * seconds for c, seconds in timings.items()}
    if save:
        data = _read_cache()
        data[calibration_key(model, device, size_class(shape))] = {
            "batch_size": winner.batch_size, "channels_last": winner.channels_last, "threads": winner.threads,
            "precision": winner.precision, "ms_per_slice": table,
            "sff_deviation_from_float32": {_candidate_name(c): d for c, d in deviations.items()},
            "shape": list(shape), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        from napari_sff.io.atomic import atomic_write_text

        atomic_write_text(cache_dir() / CALIBRATION_FILE, json.dumps(data, indent=1))
    return winner, table


def _precision_deviations(timed: dict[RunSettings, float], check_slice: Callable[[RunSettings], np.ndarray],
                          device: Any) -> dict[RunSettings, float]:
    """Mean |SFF difference| of each timed candidate that asks for a reduced precision from a float32 candidate's
    (``check_slice``: what is compared; a float32 run at batch 1 where none was timed). Candidates in the
    device's default precision are not checked (float16 on CUDA: what predict always ran there)."""
    reduced = [c for c in timed if c.precision not in (None, "float32")]
    if not reduced:
        return {}
    full = next((c for c in timed if c.precision_on(device) == "float32"),
                RunSettings(1, reduced[0].channels_last, None, "calibrated", "float32"))
    reference = check_slice(full)
    return {c: float(np.mean(np.abs(check_slice(c) - reference))) for c in reduced}


def _candidate_name(settings: RunSettings) -> str:
    fmt = "channels_last" if settings.channels_last else "contiguous"
    return (f"batch{settings.batch_size}/{fmt}" + ("" if settings.threads is None else f"/threads{settings.threads}")
            + ("" if settings.precision is None else f"/{settings.precision}"))


def run_settings(model: Any, device: Any, batch_size: int | None = None, *,
                 calibrate_if_missing: bool | None = None, shape: Sequence[int] | None = None) -> RunSettings:
    """The settings predict_slices uses for slices of ``shape`` (their size class; 256² when not given): an
    explicit ``batch_size`` always wins (memory format and threads then come from the calibration if cached, else
    the device default); otherwise the cached calibration, or one run now at the class's size (unless
    ``NAPARI_SFF_CALIBRATE=0``), or the device default when calibration fails."""
    side = size_class(shape)
    cached = read_calibration(model, device, side)
    if batch_size is not None:
        base = cached or default_settings(device)
        return dataclasses.replace(base, batch_size=max(1, int(batch_size)), source="caller")
    if cached is not None:
        return cached
    if calibrate_if_missing is None:
        calibrate_if_missing = os.environ.get("NAPARI_SFF_CALIBRATE", "1") != "0"
    has_weights = hasattr(model, "parameters") and any(True for _ in model.parameters())
    if calibrate_if_missing and has_weights:  # nothing to tune in a module without weights
        arch = getattr(model, "arch", "model")
        _log.info("napari-sff: measuring the %s's fastest settings on this %s once, for %d x %d slices (seconds; "
                  "the DDPM's up to a minute); kept in %s; NAPARI_SFF_CALIBRATE=0 skips it",
                  {"unet": "U-Net", "ddpm": "DDPM"}.get(arch, arch), _device_kind(device), side, side, cache_dir())
        try:
            return calibrate(model, device, shape=(side, side))[0]
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
