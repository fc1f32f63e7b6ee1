"""What every torch benchmark here shares: median timing with device syncs, the machine it ran on, JSON out."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from napari_sff.io.atomic import atomic_write_text


def time_call(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``function()`` over ``repeats`` runs, after ``warmup`` runs (CUDA synchronised)."""
    import torch

    def synchronise() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        synchronise()
        started = time.perf_counter()
        function()
        synchronise()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def torch_setup(device, repeats: int) -> dict:
    """Where and how a result was measured: device (and GPU name), torch, threads, machine, repeats."""
    import torch

    return {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.platform(),
            "cpu_count": os.cpu_count(), "repeats": repeats}


def write_report(results: dict, out: str | Path) -> None:
    """Write ``results`` as JSON to ``out`` (folders made as needed) and print it."""
    atomic_write_text(out, json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
