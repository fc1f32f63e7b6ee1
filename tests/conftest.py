"""Shared test setup: tiny model configs and weights, one torch thread, no calibration, no leftover workers."""

from __future__ import annotations

import numpy as np
import pytest

#: Small enough for 2 CPU cores at 256x256; the DDPM has 4 levels so its mid-block attention runs at 32x32.
TINY_CONFIGS = {
    "unet": {"base_channels": 4, "depth": 3},
    "ddpm": {"channels": (8, 8, 8, 8), "attention_levels": (False,) * 4, "num_head_channels": 8,
             "norm_num_groups": 4},
}


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny tensors: more OpenMP threads only spin against each other (and the GUI thread) on 2 cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def limb(fat: float = 1000.0, muscle: float = 300.0, fluid: float = 0.0, size: int = 128) -> np.ndarray:
    """A round limb: air, 3 px of skin, a fat ring 12 px wide, muscle inside, optionally a fluid pocket (a known
    answer for the input normalisations: fat is the subcutaneous reference, and the 99th percentile's unless a
    fluid pocket is there)."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    radius = np.hypot(yy, xx)
    image = np.full((size, size), 5.0)
    image[radius < 55] = 400.0  # skin
    image[radius < 52] = fat
    image[radius < 40] = muscle
    if fluid:
        image[np.hypot(yy - 5, xx + 8) < 14] = fluid
    return image


def cpu_reports_native_bf16() -> bool:
    """What the CPU itself says (Linux /proc/cpuinfo), independent of torch: AVX512-BF16 / AMX-BF16 units (x86), BF16
    (Arm "Features"). AVX-512 alone is not enough: oneDNN then emulates bf16, slower than float32.

    Elsewhere (macOS, Windows) torch's own per-instruction-set queries stand in.
    """
    from pathlib import Path

    import torch

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = set()
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags |= set(line.split(":", 1)[1].split())
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@pytest.fixture(autouse=True)
def cpu_without_native_bf16(monkeypatch):
    """Calibration candidates do not depend on the test machine's CPU: without native bfloat16 none are in
    bfloat16 (tests of bfloat16 calibration patch it back)."""
    monkeypatch.setattr("napari_sff.inference.settings.cpu_has_native_bf16", lambda: False)


@pytest.fixture(scope="session", autouse=True)
def no_calibration(tmp_path_factory):
    """Predictions in tests use the device defaults, and nothing is written to the user's cache: calibration
    (timing settings on first use) would make batch sizes depend on the machine's load. Tests of calibration set
    their own environment; subprocesses inherit this one."""
    import os

    saved = {key: os.environ.get(key) for key in ("NAPARI_SFF_CALIBRATE", "NAPARI_SFF_CACHE_DIR")}
    os.environ["NAPARI_SFF_CALIBRATE"] = "0"
    os.environ["NAPARI_SFF_CACHE_DIR"] = str(tmp_path_factory.mktemp("user_cache"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def bench_gui():
    """benchmarks/bench_gui.py: the GUI-stall measurements (each in a fresh process) the widget tests assert on."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gui.py"
    spec = importlib.util.spec_from_file_location("bench_gui", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_configs() -> dict:
    return TINY_CONFIGS


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> dict:
    """Untrained tiny checkpoints for both architectures (fast stand-ins for the shipped weights), seeded: unseeded,
    their weights depended on which tests ran first, and an untrained net can come out (nearly) constant, which
    tests that tell two maps apart (the mirror's) cannot use."""
    import torch

    from napari_sff.models import build_model, save_checkpoint

    folder = tmp_path_factory.mktemp("tiny_weights")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return {arch: save_checkpoint(build_model(arch, config), folder / f"{arch}.safetensors", metadata={})
                for arch, config in TINY_CONFIGS.items()}


@pytest.fixture(scope="session")
def constant_weights(tmp_path_factory, tiny_configs) -> dict:
    """Checkpoints with a known output: a U-Net whose head is the constant 0.3, a DDPM whose network predicts v = 0.

    With v = 0, DDIM's x0 at t = 999 is sqrt(alpha_cumprod) x_T ~ 0.006 N(0, 1), so the SFF is 0.5 within ~0.03.
    """
    import torch

    from napari_sff.models import build_model, save_checkpoint

    folder = tmp_path_factory.mktemp("constant_weights")
    unet, ddpm = build_model("unet", tiny_configs["unet"]), build_model("ddpm", tiny_configs["ddpm"])
    with torch.no_grad():
        unet.head.weight.zero_()
        unet.head.bias.fill_(0.3)
        last = ddpm.network.out[-1].conv
        last.weight.zero_()
        last.bias.zero_()
    return {arch: save_checkpoint(model, folder / f"{arch}.safetensors", metadata={})
            for arch, model in (("unet", unet), ("ddpm", ddpm))}


@pytest.fixture(autouse=True)
def no_worker_outlives_its_test():
    """A napari thread worker still running at interpreter exit aborts the process: wait for all of them."""
    yield
    try:
        from napari.qt.threading import WorkerBase
    except ImportError:  # no Qt in this environment: nothing can be running
        return
    WorkerBase.await_workers(msecs=60_000)
