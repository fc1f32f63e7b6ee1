"""The shared inference entry point: slicing axis, batching with OOM back-off, cancellation, devices."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import cpu_reports_native_bf16, limb

from napari_sff import inference
from napari_sff.inference import settings as inference_settings
from napari_sff.preprocess import normalise_t2w


class ScaleModel(torch.nn.Module):
    """Returns its normalised input; fails like a GPU out of memory for batches above ``max_batch``."""

    arch = "unet"

    def __init__(self, max_batch: int = 64):
        super().__init__()
        self.max_batch = max_batch
        self.batches: list[int] = []
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x):
        if x.shape[0] > self.max_batch:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        self.batches.append(x.shape[0])
        self.shapes.append(tuple(x.shape[-2:]))
        return x


def test_batch_size_backs_off_on_out_of_memory():
    model = ScaleModel(max_batch=2)
    slices = np.random.default_rng(0).uniform(0, 100, (7, 16, 16)).astype(np.float32)
    sff, _ = inference.predict_slices(model, slices, device=torch.device("cpu"), batch_size=8, mirror=False)
    assert max(model.batches) == 2 and sum(model.batches) == 7
    # Known answer: the model echoes its normalised input, so each slice comes back in its place, clipped to 1.
    np.testing.assert_array_equal(sff, np.clip(normalise_t2w(slices), 0, 1))
    assert sff.max() == 1 and (normalise_t2w(slices) > 1).any()


def test_default_batch_size_is_the_measured_one_per_device():
    assert inference.default_batch_size("cpu") == 1 and inference.default_batch_size(torch.device("cpu")) == 1
    assert inference.default_batch_size("cuda:1") == 8
    model = ScaleModel()
    inference.predict_slices(model, np.ones((3, 8, 8), np.float32), device=torch.device("cpu"), mirror=False)
    assert model.batches == [1, 1, 1]  # no batch size given: the CPU's default


def test_slice_axis_defaults_to_the_thickest_and_output_keeps_the_grid():
    volume = np.random.default_rng(1).uniform(0, 100, (6, 5, 4)).astype(np.float32)
    prediction = inference.predict_volume(volume, (1.0, 1.0, 4.0), model=ScaleModel(), device="cpu")
    assert prediction.slice_axis == 2 and prediction.sff.shape == volume.shape
    only = inference.predict_volume(volume, (4.0, 1.0, 1.0), model=ScaleModel(), device="cpu", slice_indices=[3])
    assert only.sff[3].any() and not np.delete(only.sff, 3, axis=0).any()


def test_pixels_outside_the_trained_spacing_are_resampled_into_it_and_back():
    rows, cols = np.meshgrid(np.linspace(0, 1, 40), np.linspace(0, 1, 48), indexing="ij")
    volume = np.stack([100 + 400 * rows * cols] * 2).astype(np.float32)  # smooth, so resampling is near-exact
    model = ScaleModel()
    model.input_spacing_mm = (1.0, 2.0)

    fine = inference.predict_volume(volume, (4.0, 0.5, 3.0), model=model, device="cpu")
    assert model.shapes[-1] == (20, 72) and fine.model_spacing == (1.0, 2.0)  # 0.5 -> 1.0 mm, 3.0 -> 2.0 mm
    native = inference.predict_volume(volume, (4.0, 0.5, 3.0), model=model, device="cpu", resample=False)
    assert model.shapes[-1] == (40, 48) and native.model_spacing is None
    assert fine.sff.shape == volume.shape and np.abs(fine.sff - native.sff).max() < 0.03  # same place, not shifted
    inside = inference.predict_volume(volume, (4.0, 1.5, 1.99), model=model, device="cpu")
    assert model.shapes[-1] == (40, 48) and inside.model_spacing is None
    assert inference.model_input_spacing((0.5, 1.5), None) is None  # a checkpoint that does not say: no change


def test_cancel_between_batches_returns_nothing():
    volume = np.ones((6, 8, 8), np.float32)
    with pytest.raises(inference.PredictionCancelled):
        inference.predict_volume(volume, (3, 1, 1), model=ScaleModel(), device="cpu", batch_size=1,
                                 cancel=lambda: True)


def test_devices_and_bad_arguments():
    assert inference.available_devices()[-1] == "cpu"
    assert inference.resolve_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        inference.resolve_device("tpu")
    with pytest.raises(ValueError, match="4D"):
        inference.predict_volume(np.ones((2, 2, 2, 2)), (1, 1, 1), model=ScaleModel(), device="cpu")
    with pytest.raises(ValueError, match="slice axis"):
        inference.choose_slice_axis((1, 1, 1), 5)


def test_volumes_predicted_together_equal_each_predicted_alone(tiny_weights):
    """Slices of consecutive volumes share batches; each volume still gets exactly its own prediction."""
    from napari_sff.inference import predict_volume, predict_volumes

    rng = np.random.default_rng(4)
    volumes = [(rng.uniform(0, 1000, (3, 32, 32)).astype(np.float32), (5.0, 1.5, 1.5)),
               (rng.uniform(0, 1000, (2, 32, 32)).astype(np.float32), (5.0, 1.5, 1.5)),
               (rng.uniform(0, 1000, (2, 24, 40)).astype(np.float32), (5.0, 1.5, 1.5))]  # another shape: own group
    together = predict_volumes(volumes, "unet", weights=tiny_weights["unet"], device="cpu", batch_size=4)
    assert [p.sff.shape for p in together] == [v.shape for v, _ in volumes]
    for (array, spacing), prediction in zip(volumes, together, strict=True):
        alone = predict_volume(array, spacing, "unet", weights=tiny_weights["unet"], device="cpu", batch_size=1)
        np.testing.assert_allclose(prediction.sff, alone.sff, atol=1e-5)


# ------------------------------------------------------------------------------ resampling, calibration, settings
@pytest.fixture(autouse=True)
def scratch_cache(tmp_path, monkeypatch):
    """Every test gets its own calibration cache (never the user's) and calibration on first use switched on."""
    monkeypatch.setenv("NAPARI_SFF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NAPARI_SFF_CALIBRATE", raising=False)
    return tmp_path / "cache"


class ConvModel(ScaleModel):
    """ScaleModel with one real 3x3 convolution (so it has weights whose memory format can change)."""

    def __init__(self):
        super().__init__()
        self.spread = torch.nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.conv = torch.nn.Conv2d(2, 1, 3, padding=1, bias=False)  # 2 input channels: its format shows
        with torch.no_grad():
            self.spread.weight.copy_(torch.arange(18.0).reshape(2, 1, 3, 3) / 36)
            self.conv.weight.copy_(torch.arange(18.0).reshape(1, 2, 3, 3) / 72)

    def forward(self, x):
        super().forward(x)
        return self.conv(self.spread(x))


@pytest.mark.parametrize(("shape", "order"), [((23, 17), 1), ((50, 61), 1), ((45, 30), 3), ((20, 40), 0)])
def test_resample_slices_gives_skimages_numbers(shape, order):
    from skimage.transform import resize

    stack = np.random.default_rng(2).uniform(0, 500, (3, 37, 41)).astype(np.float32)
    shrinks = shape[0] < 37 or shape[1] < 41
    expected = resize(stack, (3, *shape), order=order, anti_aliasing=shrinks, preserve_range=True)
    got = inference.resample_slices(stack, shape, order)
    assert got.shape == (3, *shape) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)  # float32 GEMM vs float64 splines, values ~500
    with pytest.raises(ValueError, match="order"):
        inference.resample_slices(stack, shape, 7)


def _fake_timer(seconds_per_call: dict[tuple[int, bool], float], calls: list):
    def timer(candidate, run):
        calls.append(candidate)
        run()  # the candidate really runs (in its memory format): it must not fail
        return seconds_per_call[candidate.batch_size, candidate.channels_last]
    return timer


def test_calibration_picks_the_fastest_per_slice_and_caches_it(scratch_cache):
    model, cpu = ConvModel(), torch.device("cpu")
    # Per call; per slice that is 1.0, 0.45, 0.30, 0.32 contiguous and 0.9, 0.5, 0.25, 0.40 channels-last.
    per_call = {(1, False): 1.0, (2, False): 0.9, (4, False): 1.2, (8, False): 2.56,
                (1, True): 0.9, (2, True): 1.0, (4, True): 1.0, (8, True): 3.2}
    calls: list = []
    winner, table = inference.calibrate(model, cpu, shape=(16, 16), timer=_fake_timer(per_call, calls))
    assert (winner.batch_size, winner.channels_last) == (4, True)
    assert table["batch4/channels_last"] == pytest.approx(250.0) and len(table) == len(calls) == 8
    assert model.conv.weight.is_contiguous()  # a caller's model is restored
    assert not model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    cached = inference.read_calibration(model, cpu)
    assert (cached.batch_size, cached.channels_last, cached.source) == (4, True, "calibrated")
    # The cache round trip: run_settings reads it, and no second calibration runs.
    assert inference.run_settings(model, cpu) == cached and len(calls) == 8
    model.batches.clear()
    inference.predict_slices(model, np.ones((9, 8, 8), np.float32), device=cpu, mirror=False)
    assert model.batches == [4, 4, 1]
    mode = (scratch_cache / inference.CALIBRATION_FILE).stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_large_slices_get_their_own_calibration(scratch_cache, monkeypatch):
    """A 395² slice (a 512² scan at 0.7 mm, resampled) is calibrated at 512², apart from 256² slices: on 2 cores
    the 256² winner ran large slices 1.4x slower than batch 1 (benchmarks/bench_predict.py)."""
    assert [inference.size_class(s) for s in ((256, 256), (300, 300), (395, 395), (512, 512), (8, 8), None)] == [
        256, 256, 512, 512, 256, 256]
    model, cpu = ConvModel(), torch.device("cpu")
    timed_sides: list[int] = []

    def timer(candidate, run):  # batch 4 wins at 256², batch 1 at 512²
        run()
        side = model.shapes[-1][0]
        timed_sides.append(side)
        return candidate.batch_size * (0.1 if candidate.batch_size == (4 if side == 256 else 1) else 1.0)

    monkeypatch.setattr(inference_settings, "_time_once", timer)
    model.batches.clear()
    inference.predict_volume(np.ones((2, 395, 395), np.float32), (3, 1, 1), model=model, device="cpu",
                             resample=False, mirror=False)
    assert set(timed_sides) == {512} and model.batches[-2:] == [1, 1]
    inference.predict_volume(np.ones((5, 64, 64), np.float32), (3, 1, 1), model=model, device="cpu",
                             resample=False, mirror=False)
    assert set(timed_sides) == {512, 256} and model.batches[-2:] == [4, 1]
    count = len(timed_sides)
    inference.predict_volumes([(np.ones((2, 395, 395), np.float32), (3, 1, 1))] * 2, model=model, device="cpu",
                              resample=False, mirror=False)
    assert len(timed_sides) == count and model.batches[-4:] == [1, 1, 1, 1]  # both cached now
    assert inference.read_calibration(model, cpu, 512).batch_size == 1
    assert inference.read_calibration(model, cpu).batch_size == 4  # the 256² entry keeps its old key
    assert inference.calibration_key(model, cpu, 512) == inference.calibration_key(model, cpu) + "|512x512"


class RoundingModel(torch.nn.Module):
    """Its map is 0.5 in float32. Under bfloat16 autocast its 1 x 1 convolution (weight 256, exact in bfloat16)
    sees the input rounded to bfloat16, and the map becomes 0.5 + ``gain`` x (that rounding error)."""

    arch = "unet"

    def __init__(self, gain: float):
        super().__init__()
        self.gain = gain
        self.conv = torch.nn.Conv2d(1, 1, 1, bias=False)
        torch.nn.init.constant_(self.conv.weight, 256.0)
        self.dtypes: list[torch.dtype] = []  # the autocast dtype of each call (float32: none)

    def forward(self, x):
        on = torch.is_autocast_enabled("cpu")
        self.dtypes.append(torch.get_autocast_dtype("cpu") if on else torch.float32)
        return 0.5 + self.gain * (self.conv(x).float() / 256 - x.float())


def _bf16_rounding_error(values: np.ndarray) -> np.ndarray:
    """|bfloat16(v) - v| for float32 values, rounding to nearest even by hand on the bits (not with torch)."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
    return np.abs(rounded - values)


def test_bfloat16_candidates_only_on_a_cpu_that_has_it(monkeypatch):
    from napari_sff.inference import devices

    cpu = torch.device("cpu")
    assert all(c.precision is None for c in inference.calibration_candidates(cpu))  # conftest: no native bf16
    monkeypatch.setattr(inference_settings, "cpu_has_native_bf16", lambda: True)
    reduced = [c for c in inference.calibration_candidates(cpu) if c.precision is not None]
    assert [(c.batch_size, c.channels_last, c.precision) for c in reduced] == [
        (b, True, "bfloat16") for b in inference.CALIBRATION_BATCHES]
    assert inference.calibration_candidates(cpu, arch="ddpm") == inference.calibration_candidates(cpu)
    assert all(c.precision is None for c in inference.calibration_candidates(torch.device("cuda")))
    assert devices.cpu_has_native_bf16() == cpu_reports_native_bf16()  # torch's answer, the CPU's own flags
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        inference.RunSettings(1, True, precision="half")


@pytest.mark.parametrize(("gain", "chosen"), [(1.0, "bfloat16"), (40.0, None)])
def test_calibration_takes_bfloat16_only_when_clearly_faster_and_close_to_float32(scratch_cache, monkeypatch,
                                                                                   gain, chosen):
    import json

    monkeypatch.setattr(inference_settings, "cpu_has_native_bf16", lambda: True)
    model, cpu = RoundingModel(gain), torch.device("cpu")

    def timer(candidate, run):  # bfloat16 twice as fast per slice; batch 1 fastest in each precision
        run()
        return candidate.batch_size * (0.5 if candidate.precision == "bfloat16" else 1.0) * (
            1.0 if candidate.batch_size == 1 else 1.5)

    winner, table = inference.calibrate(model, cpu, shape=(16, 16), timer=timer)
    assert (winner.batch_size, winner.precision) == (1, chosen)
    assert table["batch1/channels_last/bfloat16"] == pytest.approx(500.0)
    entry = next(iter(json.loads((scratch_cache / inference.CALIBRATION_FILE).read_text()).values()))
    # The deviation it measured on the calibration batch's first slice (uniform noise, seed 0), worked out by hand.
    first = np.random.default_rng(0).uniform(0, 1, (8, 16, 16)).astype(np.float32)[0]
    expected = np.mean(np.abs(np.clip(0.5 + gain * _bf16_rounding_error(first), 0, 1) - 0.5))
    assert entry["sff_deviation_from_float32"]["batch1/channels_last/bfloat16"] == pytest.approx(expected, rel=0.05)
    assert (expected <= inference_settings.PRECISION_TOLERANCE) == (chosen == "bfloat16")
    assert entry["precision"] == chosen and inference.read_calibration(model, cpu).precision == chosen
    # Predictions run in the calibrated precision, say so, and a caller's precision wins.
    model.dtypes.clear()
    prediction = inference.predict_volume(np.ones((2, 16, 16), np.float32), (3, 1, 1), model=model, device="cpu",
                                          mirror=False)
    assert prediction.precision == (chosen or "float32")
    assert model.dtypes == [torch.bfloat16 if chosen else torch.float32] * 2
    model.dtypes.clear()
    forced = inference.predict_volume(np.ones((2, 16, 16), np.float32), (3, 1, 1), model=model, device="cpu",
                                      mirror=False, precision="float32")
    assert forced.precision == "float32" and model.dtypes == [torch.float32] * 2


class StepModel(torch.nn.Module):
    """Stands for a DDPM in calibration: the maps are made by the patched ``_run_batch`` below."""

    arch = "ddpm"

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)


@pytest.mark.parametrize(("drift_per_step", "chosen"), [(0.00005, "bfloat16"), (0.0002, None)])
def test_the_ddpm_s_bfloat16_is_judged_on_a_whole_sample_not_on_the_timed_step(scratch_cache, monkeypatch,
                                                                                 drift_per_step, chosen):
    """Rounding adds up over DDIM steps: a drift of 0.0002 per step passes on the one step calibration times but
    not over predict's 50 (0.01 > the 0.005 tolerance); 0.00005 per step passes both. The whole sample is made
    once per precision, for the batch's first slice."""
    monkeypatch.setattr(inference_settings, "cpu_has_native_bf16", lambda: True)
    calls = []

    def run_batch(model, batch, device, is_ddpm, ddim_steps, *args, precision=None, **kwargs):
        calls.append((len(batch), ddim_steps, precision))
        drift = drift_per_step * ddim_steps if precision == "bfloat16" else 0.0
        return np.full((len(batch), *batch.shape[1:]), 0.5 + drift, np.float32), None

    monkeypatch.setattr(inference_settings, "_run_batch", run_batch)

    def timer(candidate, run):  # bfloat16 twice as fast per slice; batch 1 fastest in each precision
        run()
        return candidate.batch_size * (0.5 if candidate.precision == "bfloat16" else 1.0) * (
            1.0 if candidate.batch_size == 1 else 1.5)

    winner, _ = inference.calibrate(StepModel(), torch.device("cpu"), shape=(8, 8), timer=timer)
    assert (winner.batch_size, winner.precision) == (1, chosen)
    assert {c for c in calls if c[1] != 1} == {(1, inference_settings.DDPM_CHECK_STEPS, None),
                                               (1, inference_settings.DDPM_CHECK_STEPS, "bfloat16")}
    assert len([c for c in calls if c[1] != 1]) == 2  # one whole sample per precision, whatever the batch sizes


def test_ties_go_to_the_smaller_batch_and_an_empty_table_is_refused():
    small, large = inference.RunSettings(1, False), inference.RunSettings(8, True)
    assert inference.choose_settings({large: 0.100, small: 0.109}) == small  # within 10 %: the smaller batch
    assert inference.choose_settings({large: 0.090, small: 0.101}) == large
    with pytest.raises(ValueError, match="no calibration"):
        inference.choose_settings({})


def test_an_explicit_batch_size_always_wins(scratch_cache):
    model, cpu = ConvModel(), torch.device("cpu")
    calls: list = []
    inference.calibrate(model, cpu, shape=(8, 8), candidates=[inference.RunSettings(4, True)],
                        timer=_fake_timer({(4, True): 1.0}, calls))
    inference.predict_slices(model, np.ones((5, 8, 8), np.float32), device=cpu, batch_size=2, mirror=False)
    assert model.batches[-3:] == [2, 2, 1]
    chosen = inference.run_settings(model, cpu, 3)
    assert (chosen.batch_size, chosen.channels_last, chosen.source) == (3, True, "caller")
    model.batches.clear()
    volume = np.ones((5, 8, 8), np.float32)
    inference.predict_volume(volume, (3, 1, 1), model=model, device="cpu", batch_size=5, mirror=False)
    assert model.batches == [5] and len(calls) == 1  # and no calibration ran for it


def test_no_cache_means_one_calibration_then_none(scratch_cache, monkeypatch):
    model, cpu = ConvModel(), torch.device("cpu")
    calls: list = []
    per_call = {(b, cl): b * (1.0 if b == 2 else 2.0) for b in (1, 2, 4, 8) for cl in (False, True)}
    # Patched where calibrate looks it up: the package only re-exports names.
    monkeypatch.setattr(inference_settings, "_time_once", _fake_timer(per_call, calls))
    inference.predict_volume(np.ones((4, 8, 8), np.float32), (3, 1, 1), model=model, device="cpu")
    assert len(calls) >= 8 and model.batches[-2:] == [2, 2]  # batch 2 was "fastest" per slice
    inference.predict_volume(np.ones((4, 8, 8), np.float32), (3, 1, 1), model=model, device="cpu")
    assert len(calls) == len(inference.calibration_candidates(cpu))  # cached: not timed again
    (scratch_cache / inference.CALIBRATION_FILE).write_text("{not json")
    assert inference.read_calibration(model, cpu) is None  # a broken cache is ignored, not fatal
    monkeypatch.setenv("NAPARI_SFF_CALIBRATE", "0")
    assert inference.run_settings(model, cpu) == inference.default_settings(cpu)


def test_channels_last_gives_the_same_numbers_and_leaves_a_callers_model_as_it_was():
    model, cpu = ConvModel(), torch.device("cpu")
    slices = np.random.default_rng(5).uniform(0, 100, (3, 12, 10)).astype(np.float32)
    plain, _ = inference.predict_slices(model, slices, device=cpu, settings=inference.RunSettings(2, False))
    inference.predict_slices(model, slices, device=cpu, settings=inference.RunSettings(2, True))
    assert model.conv.weight.is_contiguous()  # a caller's model (training's, say) is never converted
    model._napari_sff_owned = True  # as load_model marks its own: converted, and kept so
    fast, _ = inference.predict_slices(model, slices, device=cpu, settings=inference.RunSettings(2, True))
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.conv.weight.is_contiguous()
    np.testing.assert_allclose(fast, plain, atol=1e-6)


# ---------------------------------------------------------------------- behaviour pinned before the package split
class SeededModel(torch.nn.Module):
    """Two 3x3 convolutions with weights from numpy's seeded generator (stable across torch versions)."""

    arch = "unet"

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(7)
        self.a = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 1, 3, padding=1)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.from_numpy(rng.normal(0, 0.5, tuple(parameter.shape)).astype(np.float32)))
        self.input_spacing_mm = (1.0, 2.0)

    def forward(self, x):
        return torch.sigmoid(self.b(torch.relu(self.a(x))))


class SeededSampler(torch.nn.Module):
    """A DDPM stand-in: ``samples`` noisy sigmoids drawn from the generator predict_slices seeds per batch."""

    arch = "ddpm"

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7))
        self.input_spacing_mm = (1.0, 2.0)

    def sample(self, x, steps, eta, n_samples, generator, progress):
        draws = []
        for i in range(n_samples):
            progress(i + 1, n_samples)
            draws.append(torch.sigmoid(self.w * x + 0.3 * torch.randn(x.shape, generator=generator)))
        stacked = torch.stack(draws)
        return stacked.mean(0), stacked.std(0)


def _pinned_volume() -> np.ndarray:
    return np.random.default_rng(11).uniform(0, 800, (3, 20, 24)).astype(np.float32)


@pytest.mark.parametrize(("resample", "total", "squares", "voxel"), [
    # Recorded with the single-module napari_sff/inference.py (commit f582ece) before it became a package (one
    # pass per slice: the mirror came later, and is pinned by its own test).
    (True, 697.8125124573708, 340.0894049787382, 0.4739360511302948),
    (False, 726.4927845299244, 371.9416107740685, 0.5139731764793396),
])
def test_predict_volume_of_a_seeded_model_is_unchanged(resample, total, squares, voxel):
    prediction = inference.predict_volume(_pinned_volume(), (4.0, 0.5, 3.0), model=SeededModel(), device="cpu",
                                          resample=resample, mirror=False)
    sff = prediction.sff.astype(np.float64)
    assert prediction.slice_axis == 0 and prediction.model_spacing == ((1.0, 2.0) if resample else None)
    assert sff.sum() == pytest.approx(total, rel=1e-6) and (sff ** 2).sum() == pytest.approx(squares, rel=1e-6)
    assert sff[1, 7, 9] == pytest.approx(voxel, rel=1e-6)


class RampModel(torch.nn.Module):
    """Its normalised input times a ramp that rises along the last axis: not mirror-symmetric, so the mirror
    image's map differs from the slice's and the mean of the two can be told from either."""

    arch = "unet"

    def forward(self, x):
        return x * torch.linspace(0.2, 1.0, x.shape[-1])


def test_the_mirror_averages_each_slice_with_its_mirror_images_map():
    slices = np.random.default_rng(3).uniform(0, 100, (5, 12, 10)).astype(np.float32)
    x = normalise_t2w(slices)
    ramp = np.linspace(0.2, 1.0, 10, dtype=np.float32)
    one_pass = np.clip(x * ramp, 0, 1)
    # By hand: the map of the mirrored slice, mirrored back, is the slice times the falling ramp.
    expected = (one_pass + np.clip(x * ramp[::-1], 0, 1)) / 2
    cpu = torch.device("cpu")
    for channels_last in (False, True):
        settings = inference.RunSettings(2, channels_last)
        mirrored, _ = inference.predict_slices(RampModel(), slices, device=cpu, settings=settings)
        np.testing.assert_allclose(mirrored, expected, rtol=1e-6, atol=1e-7)
        single, _ = inference.predict_slices(RampModel(), slices, device=cpu, settings=settings, mirror=False)
        np.testing.assert_allclose(single, one_pass, rtol=1e-6, atol=1e-7)
    assert np.abs(expected - one_pass).max() > 0.1
    volume = inference.predict_volume(slices, (3.0, 1.0, 1.0), model=RampModel(), device="cpu", resample=False)
    assert volume.mirrored and not inference.predict_volume(slices, (3.0, 1.0, 1.0), model=RampModel(), device="cpu",
                                                            resample=False, mirror=False).mirrored
    np.testing.assert_allclose(volume.sff, expected, rtol=1e-6, atol=1e-7)
    twice = inference.predict_volumes([(slices, (3.0, 1.0, 1.0))] * 2, model=RampModel(), device="cpu",
                                      resample=False)
    assert all(p.mirrored for p in twice)
    np.testing.assert_allclose(twice[1].sff, expected, rtol=1e-6, atol=1e-7)


def test_the_ddpm_is_never_mirrored():
    model = SeededSampler()
    kwargs = dict(model=model, device="cpu", samples=2, ddim_steps=2, batch_size=2, seed=5)
    mirrored = inference.predict_volume(_pinned_volume(), (4.0, 0.5, 3.0), **kwargs)
    single = inference.predict_volume(_pinned_volume(), (4.0, 0.5, 3.0), mirror=False, **kwargs)
    assert not mirrored.mirrored
    np.testing.assert_array_equal(mirrored.sff, single.sff)


def test_seeded_ddpm_mean_and_sd_are_unchanged():
    prediction = inference.predict_volume(_pinned_volume(), (4.0, 0.5, 3.0), model=SeededSampler(), device="cpu",
                                          samples=3, ddim_steps=2, batch_size=2, seed=5)
    sff, std = prediction.sff.astype(np.float64), prediction.std.astype(np.float64)
    # Recorded with the single-module napari_sff/inference.py (commit f582ece) before it became a package.
    assert sff.sum() == pytest.approx(857.8612146377563, rel=1e-6)
    assert std.sum() == pytest.approx(88.23254760541022, rel=1e-6)
    assert (std ** 2).sum() == pytest.approx(5.989323183432036, rel=1e-6)


def test_a_pointwise_model_maps_each_slice_back_in_place():
    """Known answer without the code under test: a 1x1 convolution is w * normalise(slice) + b, clipped."""
    model = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        model.weight.fill_(0.6)
        model.bias.fill_(0.1)
    volume = np.random.default_rng(3).uniform(0, 500, (5, 6, 4)).astype(np.float32)
    prediction = inference.predict_volume(volume, (1.0, 1.0, 3.0), model=model, device="cpu", resample=False)
    slices = np.moveaxis(volume, 2, 0)
    expected = np.moveaxis(np.clip(0.6 * normalise_t2w(slices) + 0.1, 0, 1), 0, 2)
    np.testing.assert_allclose(prediction.sff, expected, atol=1e-6)


def test_every_name_callers_import_is_still_there():
    """The names napari_sff/, training/, benchmarks/ and tests/ take from ``napari_sff.inference``."""
    used = ("ARCH_LABELS", "CALIBRATION_FILE", "Prediction", "PredictionCancelled", "RunSettings", "SlicePlan",
            "available_devices", "cache_dir", "cached_calibrations", "calibrate", "calibration_candidates",
            "calibration_key", "choose_settings", "choose_slice_axis", "default_batch_size", "default_settings",
            "device_description", "finish_slices", "load_model", "model_input_spacing", "plan_slices",
            "predict_slices", "predict_volume", "predict_volumes", "read_calibration", "resample_slices",
            "resolve_device", "run_settings", "_candidate_name", "_physical_cores")
    assert [name for name in used if not hasattr(inference, name)] == []


@pytest.mark.parametrize("method,fat_level,muscle_level", [("p99", 1.0, 0.3), ("fat", 0.5, 0.15)])
def test_every_prediction_path_feeds_the_model_the_normalisation_it_was_trained_on(method, fat_level, muscle_level):
    """A limb without fluid: the 99th percentile lands on its fat (fat 1, muscle 0.3); the fat reference puts fat at
    0.5 and muscle at 0.15. ScaleModel returns its input, so the map is what the model was fed."""
    slices = np.stack([limb(), limb(fat=900.0, muscle=270.0)]).astype(np.float32)
    fat, muscle = slices[0] == 1000.0, slices[0] == 300.0
    model = ScaleModel()
    model.input_normalisation = method  # what load_checkpoint sets from the checkpoint's record
    fed = [inference.predict_slices(model, slices, device=torch.device("cpu"), mirror=False)[0],
           inference.predict_volume(slices, (3.0, 1.0, 1.0), model=model, device="cpu", resample=False).sff,
           inference.predict_volumes([(slices, (3.0, 1.0, 1.0))], model=model, device="cpu", resample=False)[0].sff]
    for sff in fed:
        for image in sff:
            np.testing.assert_allclose(image[fat], fat_level, atol=1e-6)
            np.testing.assert_allclose(image[muscle], muscle_level, atol=1e-6)
