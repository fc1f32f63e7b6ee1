"""Which device to run on, and what to assume about it before anything is measured.

Device choice (``auto`` = cuda -> mps -> cpu, each confirmed by a trial allocation), the per-device fallback batch
size and memory format, and a description of the hardware that calibrations are keyed by. Torch is imported
inside the functions, so importing this module stays cheap for the CLI and the widgets.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


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
#: The precision a model runs in when its settings name none: float16 autocast on CUDA (tensor cores; what predict
#: always did there), float32 elsewhere. A CPU with native bfloat16 may calibrate to bfloat16 (settings.py).
DEFAULT_PRECISION = {"cpu": "float32", "cuda": "float16", "mps": "float32"}
#: Precisions a run can ask for: float32 throughout, or autocast to one of the 16-bit types.
PRECISIONS = ("float32", "bfloat16", "float16")


def default_precision(device: Any) -> str:
    """The precision for ``device`` (a torch.device or its name) when none is asked for: :data:`DEFAULT_PRECISION`."""
    return DEFAULT_PRECISION.get(_device_kind(device), "float32")


def cpu_has_native_bf16() -> bool:
    """bfloat16 arithmetic units on this CPU: AVX512-BF16 or AMX on x86, bf16 extensions on Arm. Only there can
    bfloat16 win, in training (training.train's autocast) or prediction (the calibration's candidates).

    oneDNN's own check accepts any AVX-512, where bfloat16 is emulated: 8x slower than float32 for the U-Net on
    the 2-core machine of earlier sessions, against 1.5-1.7x faster on an AMD EPYC with AVX512-BF16
    (benchmarks/bench_predict.py).
    """
    import torch

    if platform.machine().lower() in ("aarch64", "arm64"):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def default_batch_size(device: Any) -> int:
    """The fallback batch size for a device (a torch.device or its name); see :data:`DEFAULT_BATCH`."""
    return DEFAULT_BATCH.get(_device_kind(device), 1)


def _device_kind(device: Any) -> str:
    return getattr(device, "type", str(device).split(":")[0])


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


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        return None
