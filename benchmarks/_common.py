"""What every torch benchmark here shares: the timing, the machine it ran on, JSON out.

The timing (median, CUDA synchronised), FLOP count and GEMM rate are :mod:`napari_sff.timing`'s, re-exported here,
so the benchmarks, the calibration and the GPU job measure the same way.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from napari_sff.io.atomic import atomic_write_text
from napari_sff.timing import forward_flops, gemm_rate, time_call

__all__ = ["forward_flops", "gemm_rate", "time_call", "torch_setup", "write_report"]


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
