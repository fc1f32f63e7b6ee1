"""napari_sff.timing, the one timer, FLOP counter and GEMM-rate measurement: known answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sff import timing
from napari_sff.inference import settings as inference_settings


def _fake_clock(timestamps: list[float], events: list):
    ticks = iter(timestamps)

    def clock() -> float:
        events.append("clock")
        return next(ticks)
    return clock


@pytest.mark.parametrize(("statistic", "expected"), [("median", 2.0), ("best", 1.0)])
def test_time_call_summarises_the_timed_runs_only(statistic, expected):
    events: list = []
    # Timed runs of 3, 1 and 2 s (start/stop pairs); the two warm-up runs read no clock.
    clock = _fake_clock([0.0, 3.0, 10.0, 11.0, 20.0, 22.0], events)
    seconds = timing.time_call(lambda: events.append("run"), repeats=3, warmup=2, statistic=statistic, clock=clock)
    assert seconds == expected
    assert events == ["run", "run"] + ["clock", "run", "clock"] * 3


def test_time_call_refuses_an_unknown_statistic_and_no_repeats():
    with pytest.raises(ValueError, match="unknown statistic 'mean'.*median, best"):
        timing.time_call(lambda: None, 1, statistic="mean")
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        timing.time_call(lambda: None, 0)


def test_time_call_synchronises_cuda_around_every_timed_run(monkeypatch):
    events: list = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: events.append("sync"))
    timing.time_call(lambda: events.append("run"), repeats=2, warmup=1, clock=_fake_clock([0, 1, 2, 3], events))
    assert events == ["run"] + ["sync", "clock", "run", "sync", "clock"] * 2
    events.clear()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # nothing ran on CUDA: nothing to wait for
    timing.time_call(lambda: events.append("run"), repeats=1, warmup=0, clock=_fake_clock([0, 1], events))
    assert events == ["clock", "run", "clock"]


def test_forward_flops_of_a_convolution_and_a_matmul_by_hand():
    conv = torch.nn.Conv2d(3, 5, kernel_size=3, padding=1, bias=False)
    # 2 (multiply + add) * Cin * Cout * k * k * H * W, for one 8 x 10 image
    assert timing.forward_flops(conv, torch.zeros(1, 3, 8, 10)) == 2 * 3 * 5 * 3 * 3 * 8 * 10
    # Several inputs (as the DDPM network takes x and t): a (4 x 6) @ (6 x 7) product is 2 * 4 * 6 * 7.
    assert timing.forward_flops(torch.matmul, torch.zeros(4, 6), torch.zeros(6, 7)) == 2 * 4 * 6 * 7


def test_gemm_rates_time_each_kernel_and_the_rate_is_the_fastest_kernels_best_round(monkeypatch):
    size, seen = 32, []
    # matmul's three rounds, then oneDNN's: oneDNN's best round (0.125 s) is the fastest of all.
    rounds_seconds = iter([0.5, 0.25, 1.0, 0.4, 0.125, 0.3])

    def fake_time_call(function, repeats, warmup):
        product = function()
        seen.append((tuple(product.shape), product.dtype, repeats, warmup))
        return next(rounds_seconds)

    monkeypatch.setattr(timing, "time_call", fake_time_call)
    rates = timing.gemm_rates("cpu", size, torch.bfloat16, repeats=4, warmup=2, rounds=3)
    expected = {"matmul": 2 * 32**3 / 0.25}
    if torch.backends.mkldnn.is_available():  # torch's CPU wheels have oneDNN
        expected["onednn"] = 2 * 32**3 / 0.125
    assert rates == expected
    assert seen == [((32, 32), torch.bfloat16, 4, 2)] * 3 * len(expected)
    seen.clear()
    rounds_seconds = iter([0.5, 1.0])
    # gemm_rate: the fastest kernel; one round of 3 runs after 1 warm-up each, in float32.
    assert timing.gemm_rate("cpu", size) == 2 * 32**3 / 0.5
    assert seen == [((32, 32), torch.float32, 3, 1)] * len(expected)


def test_the_onednn_kernel_computes_the_matrix_product_in_channels_last_memory():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 11))  # not square: rows and columns kept apart
    product = timing._onednn_product(torch.from_numpy(a).float(), torch.from_numpy(b).float())()
    assert product.shape == (5, 11)
    np.testing.assert_allclose(product.numpy(), a @ b, rtol=1e-5, atol=1e-5)  # numpy's product, not torch's


def test_the_calibration_times_with_the_shared_timer_best_of_two(monkeypatch):
    asked: list = []
    monkeypatch.setattr(inference_settings, "time_call",
                        lambda run, **how: asked.append(how) or 0.125)
    assert inference_settings._time_once(inference_settings.RunSettings(1, False), lambda: None) == 0.125
    assert asked == [{"repeats": 2, "warmup": 1, "statistic": "best"}]
