"""The shared inference entry point: slicing axis, batching with OOM back-off, cancellation, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sff import inference
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
    sff, _ = inference.predict_slices(model, slices, device=torch.device("cpu"), batch_size=8)
    assert max(model.batches) == 2 and sum(model.batches) == 7
    # Known answer: the model echoes its normalised input, so each slice comes back in its place, clipped to 1.
    np.testing.assert_array_equal(sff, np.clip(normalise_t2w(slices), 0, 1))
    assert sff.max() == 1 and (normalise_t2w(slices) > 1).any()


def test_default_batch_size_is_the_measured_one_per_device():
    assert inference.default_batch_size("cpu") == 1 and inference.default_batch_size(torch.device("cpu")) == 1
    assert inference.default_batch_size("cuda:1") == 8
    model = ScaleModel()
    inference.predict_slices(model, np.ones((3, 8, 8), np.float32), device=torch.device("cpu"))
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
