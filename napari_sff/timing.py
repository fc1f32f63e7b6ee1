"""The one place that measures speed: timing a call, counting a model's FLOPs, measuring the GEMM rate.

Why here, a top-level module of the installed package: the calibration in :mod:`napari_sff.inference.settings`
needs the timer at run time, and the installed package cannot import ``benchmarks/`` (not shipped) or
``training/`` (not shipped either), while both of those can import ``napari_sff``. It is not inside
:mod:`napari_sff.inference` because FLOP counts and GEMM rates are measurement tools, not inference: the
benchmarks and the GPU job use them without running a prediction. torch is imported inside the functions, so
importing this module stays cheap (the plugin's menus and the CLI start fast).

Callers: :func:`napari_sff.inference.settings.calibrate` (best of 2), ``benchmarks/_common.py`` and every
benchmark (median), ``training/gpu_job`` (median timing, FLOPs, the GEMM peak), ``benchmarks/bench_predict.py``
(FLOPs per slice, the float32 GEMM peak).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

#: How :func:`time_call` summarises its samples. "median": a typical run (benchmarks); "best": the fastest run,
#: for a shared machine whose noise only ever adds time (the calibration compares candidates).
STATISTICS: dict[str, Callable[[list[float]], float]] = {"median": statistics.median, "best": min}


def _synchronise_cuda() -> None:
    """Wait for queued CUDA work, so a timing covers the kernels and not just their launch. A process that never
    touched CUDA has nothing queued: it is not initialised here (which would cost seconds on a GPU machine)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_call(function: Callable[[], object], repeats: int, warmup: int = 1, *, statistic: str = "median",
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds one ``function()`` takes: ``warmup`` untimed runs, then ``repeats`` timed ones summarised by
    ``statistic`` ("median" or "best"). CUDA is synchronised before and after every timed run.

    ``clock`` is the time source (tests pass a fake one).
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}: use one of {', '.join(STATISTICS)}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1 (got {repeats}): a timing needs one timed run")
    for _ in range(warmup):
        function()
    samples = []
    for _ in range(repeats):
        _synchronise_cuda()
        started = clock()
        function()
        _synchronise_cuda()
        samples.append(clock() - started)
    return STATISTICS[statistic](samples)


def forward_flops(model: Callable[..., object], *inputs: Any) -> float:
    """Floating-point operations of one ``model(*inputs)`` as torch's FlopCounterMode counts them (convolutions
    and matrix products, a multiply-add counted as 2), without autograd. The ratio of this to a measured time
    and to :func:`gemm_rate` says how close a model runs to the machine's limit."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(*inputs)
    return float(counter.get_total_flops())


def gemm_rate(device: Any, size: int = 2048, dtype: Any = None, *, repeats: int = 3, warmup: int = 1,
              rounds: int = 1) -> float:
    """FLOP/s of a ``size`` x ``size`` matrix product on ``device`` (``dtype``: float32 unless given): the best
    of ``rounds`` medians of ``repeats`` runs each. The best, because contention on a shared machine only ever
    lowers the rate, so the highest seen is closest to the hardware's peak."""
    import torch

    if rounds < 1:
        raise ValueError(f"rounds must be at least 1 (got {rounds})")
    a, b = (torch.randn(size, size, device=device, dtype=dtype or torch.float32) for _ in range(2))
    return max(2 * size**3 / time_call(lambda: a @ b, repeats, warmup) for _ in range(rounds))
