"""Slices through the model batch by batch: the one loop that calibration times and every prediction runs.

Kept apart so that settings (which time one batch) and predict (which runs them all) share it without importing
each other. Batches halve on out-of-memory; ``cancel()`` is checked between batches and DDIM steps. With
``mirror`` the U-Net also predicts every slice mirrored left-right (the last axis) and returns the mean of the
two maps: test-time augmentation with the flip it was trained with (measured in the model card: lower error on
every held-out set, at twice the network time).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_sff.inference.devices import default_precision

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]


class PredictionCancelled(Exception):
    """Raised when the cancel callback asks to stop; nothing partial is returned."""


def _predict_batches(model, normalised, sff, std, device, settings, is_ddpm, ddim_steps, samples, eta, seed,
                     progress, cancel, steps_per_slice, total, features=None, mirror=False) -> None:
    import torch

    batch_size = max(1, settings.batch_size)
    start = 0
    while start < len(normalised):
        if cancel is not None and cancel():
            raise PredictionCancelled("prediction cancelled")
        stop = min(start + batch_size, len(normalised))
        try:
            mean, spread = _run_batch(model, normalised[start:stop], device, is_ddpm, ddim_steps, samples, eta,
                                      seed + start, progress, cancel, start * steps_per_slice, total,
                                      settings.channels_last, mirror, settings.precision)
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise RuntimeError("out of memory with batch size 1; use a smaller image or --device cpu") from None
            batch_size //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        sff[start:stop] = mean
        if features is not None:  # napari_sff.domain.FeatureRecorder: this batch's features count now
            features.keep()
        if std is not None:
            std[start:stop] = spread
        start = stop
        if progress is not None:
            progress(start * steps_per_slice, total)


def _run_batch(model, batch, device, is_ddpm, ddim_steps, samples, eta, seed, progress, cancel, done, total,
               channels_last=False, mirror=False, precision=None):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch[:, None])).to(device)
    if channels_last:  # one channel: the same bytes, only the strides say so (no copy)
        x = x.contiguous(memory_format=torch.channels_last)
    precision = precision or default_precision(device)  # None: the device's (float16 autocast on CUDA)
    autocast = torch.autocast(device_type=device.type, dtype=getattr(torch, precision),
                              enabled=precision != "float32")
    with torch.inference_mode(), autocast:
        if not is_ddpm:
            # The mirrored pass first: a FeatureRecorder keeps the features of the last pass, the slices as given.
            mirrored = model(_mirrored(x, channels_last)).float().clamp_(0, 1).flip(-1) if mirror else None
            out = model(x).float().clamp_(0, 1)
            if mirrored is not None:
                out = (out + mirrored) / 2
            return out[:, 0].cpu().numpy(), None

        def step_report(step: int, steps: int) -> None:
            if cancel is not None and cancel():
                raise PredictionCancelled("prediction cancelled")
            if progress is not None:  # ``steps`` counts DDIM steps over all sampling passes
                progress(done + len(batch) * ddim_steps * step // max(1, steps), total)

        generator = torch.Generator(device=device).manual_seed(seed)
        mean, spread = model.sample(x, steps=ddim_steps, eta=eta, n_samples=samples, generator=generator,
                                    progress=step_report)
        return mean.float()[:, 0].cpu().numpy(), spread.float()[:, 0].cpu().numpy()


def _mirrored(x, channels_last: bool):
    """``x`` mirrored along its last axis, in the memory format the model runs in."""
    import torch

    flipped = x.flip(-1)
    return flipped.contiguous(memory_format=torch.channels_last) if channels_last else flipped.contiguous()
