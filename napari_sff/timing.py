"""The one place that measures speed: timing a call, counting a model's FLOPs, measuring the GEMM rate.

Why here, a top-level module of the installed package: the calibration in :mod:`napari_sff.inference.settings`
needs the timer at run time, and the installed package cannot import ``benchmarks/`` (not shipped) or
``training/`` (not shipped either), while both of those can import ``napari_sff``. It is not inside
:mod:`napari_sff.inference` because FLOP counts and GEMM rates are measurement tools, not inference: the
benchmarks and the GPU job use them without running a prediction. torch is imported inside the functions, so
importing this module stays cheap (the plugin's menus and the CLI start fast).

Callers: :func:`napari_sff.inference.settings.calibrate` (best of 2), ``benchmarks/_common.py`` and every
benchmark (median), ``training/gpu_job`` (median timing, FLOPs, the GEMM peak), ``benchmarks/bench_predict.py``
(FLOPs per slice, the float32 GEMM peak, each GEMM kernel's rate).
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


def gemm_rates(device: Any, size: int = 2048, dtype: Any = None, *, repeats: int = 3, warmup: int = 1,
               rounds: int = 1) -> dict[str, float]:
    """FLOP/s of one ``size`` x ``size`` matrix product (``dtype``: float32 unless given) by each GEMM kernel the
    device has, keyed by name: ``"matmul"`` (``a @ b``: the BLAS library, MKL in torch's CPU wheels) and, on CPUs
    with oneDNN, ``"onednn"`` (the same product as a 1 x 1 convolution in channels-last memory, the library that
    runs the models' convolutions). Each is the best of ``rounds`` medians of ``repeats`` runs: contention on a
    shared machine only ever lowers a rate, so the highest seen is closest to the hardware's.

    Why two: MKL picks its kernels by CPU vendor, and on an AMD EPYC (Zen 5, AVX-512) ``a @ b`` ran at 212-223
    GFLOP/s while oneDNN's 1 x 1 convolution of the same size ran at 469-481 (benchmarks/bench_predict.py records
    both): a model's "fraction of the GEMM peak" against MKL alone came out above 1.
    """
    import torch

    if rounds < 1:
        raise ValueError(f"rounds must be at least 1 (got {rounds})")
    dtype = dtype or torch.float32
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    kernels = {"matmul": lambda: a @ b}
    if a.device.type == "cpu" and torch.backends.mkldnn.is_available():
        kernels["onednn"] = _onednn_product(a, b)

    def best(kernel: Callable[[], object]) -> float:
        return max(2 * size**3 / time_call(kernel, repeats, warmup) for _ in range(rounds))

    return {name: best(kernel) for name, kernel in kernels.items()}


def _onednn_product(a: Any, b: Any) -> Callable[[], Any]:
    """``a @ b`` as oneDNN computes it: a 1 x 1 convolution of ``b`` (``k`` channels, 1 x ``n`` pixels, stored
    channels-last) with ``a`` as the ``m`` x ``k`` kernel. Returns a call giving the (m, n) product."""
    import torch.nn.functional as F

    m, k = a.shape
    n = b.shape[1]
    image = b.t().contiguous().reshape(1, 1, n, k).permute(0, 3, 1, 2)  # (1, k, 1, n), channels-last strides
    kernel = a.reshape(m, k, 1, 1)
    return lambda: F.conv2d(image, kernel).reshape(m, n)


def gemm_rate(device: Any, size: int = 2048, dtype: Any = None, *, repeats: int = 3, warmup: int = 1,
              rounds: int = 1) -> float:
    """The machine's GEMM rate (FLOP/s) for ``size`` x ``size`` products: the fastest kernel of
    :func:`gemm_rates`, the number a model's FLOP/s is compared with."""
    return max(gemm_rates(device, size, dtype, repeats=repeats, warmup=warmup, rounds=rounds).values())
