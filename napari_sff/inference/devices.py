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
