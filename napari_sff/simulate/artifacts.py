"""k-space effects of the randomized domain: echo-train T2 blurring (TSE / HASTE), k-space truncation (Gibbs
ringing), partial Fourier with zero-filling and motion ghosts, then bias, Rician noise, a monotone intensity
curve and integer storage.

Why in k-space: these artefacts are what a real T2w scan adds on top of contrast, and each is one operation on
the phase-encode lines. The image is rendered per T2 class (tissues of similar T2 share one class); each class
is Fourier transformed along the phase-encode axis and every line is weighted by ``exp(-(t_echo - TE)/T2)``
(the contrast ``exp(-TE/T2)`` is already in the rendered signal, so the line at the k-space centre, acquired at
the effective TE, has weight 1). The classes are summed in k-space, the readout axis transformed, the masks and
ghost phases applied, and one inverse 2-D transform gives a complex image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.fft

from napari_sff.simulate.tissues import _FLOAT

_WORKERS = 2


def t2_classes(t2_ms: np.ndarray, tolerance: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """Group tissues whose T2 lies within ``tolerance`` (ratio) of a class's shortest: (class per tissue,
    class T2 = geometric mean of its members' extremes). The blur of a member differs from its class's by
    less than the echo-train weighting of a 10 % T2 change; it saves one FFT per tissue."""
    order = np.argsort(t2_ms, kind="stable")
    class_of = np.zeros(len(t2_ms), np.uint8)
    starts: list[float] = []
    ends: list[float] = []
    for index in order:
        t2 = float(t2_ms[index])
        if not starts or t2 > tolerance * starts[-1]:
            starts.append(t2)
            ends.append(t2)
        ends[-1] = t2
        class_of[index] = len(starts) - 1
    return class_of, np.sqrt(np.asarray(starts) * np.asarray(ends))


def echo_times(n_lines: int, te_ms: float, spacing_ms: float, train_length: int, order: str) -> np.ndarray:
    """Echo time of each phase-encode line, in FFT order (index 0 = k-space centre).

    ``linear``: the train sweeps k-space from one edge (first echo) to the other (last echo) with the centre
    at TE; ``centric``: TE at the centre and later echoes towards both edges. Times are whole echoes
    (``spacing * n``, 1 <= n <= ``train_length``).
    """
    k = np.fft.fftfreq(n_lines)  # -0.5 .. 0.5 (exclusive), signed
    first, last = spacing_ms, spacing_ms * train_length
    if order == "linear":
        t = np.where(k < 0, te_ms + (te_ms - first) * 2 * k, te_ms + (last - te_ms) * 2 * k)
    elif order == "centric":
        t = te_ms + (last - te_ms) * 2 * np.abs(k)
    else:
        raise ValueError(f"unknown k-space order {order!r}; valid orders: linear, centric")
    return np.clip(spacing_ms * np.rint(t / spacing_ms), first, last)


def _centred_mask(n: int, fraction: float) -> np.ndarray:
    """Lines (FFT order) within the central ``fraction`` of k-space: a truncated acquisition."""
    if fraction >= 1.0:
        return np.ones(n, bool)
    return np.abs(np.fft.fftfreq(n)) * n < fraction * n / 2


def _partial_fourier_mask(n: int, fraction: float) -> np.ndarray:
    """Lines acquired with partial Fourier: all positive lines, the negative ones up to ``fraction`` of all."""
    if fraction >= 1.0:
        return np.ones(n, bool)
    k = np.fft.fftfreq(n) * n
    return k >= -(fraction - 0.5) * n


def _ghost_phase(n: int, amplitude_rad: float, shift_px: float, phase: float) -> np.ndarray:
    """Periodic phase error per line (FFT order): replicas at multiples of ``shift_px`` along the phase
    axis, the first of relative amplitude J1(amplitude) (main image J0)."""
    k = np.fft.fftfreq(n) * n
    return np.exp(1j * amplitude_rad * np.sin(2 * math.pi * k * shift_px / n + phase)).astype(np.complex64)


def kspace_acquire(
    classes: np.ndarray,
    class_t2_ms: Sequence[float] | None,
    phase_axis: int,
    *,
    echo_times_ms: np.ndarray | None = None,
    te_ms: float = 0.0,
    kspace_fraction: tuple[float, float] = (1.0, 1.0),
    partial_fourier: float = 1.0,
    ghost: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """Complex image (Z, H, W) of the class images ``classes`` (C, Z, H, W) after the k-space effects.

    ``phase_axis`` is 1 (rows) or 2 (columns) of the (Z, H, W) image; ``echo_times_ms`` (per phase line, FFT
    order, from :func:`echo_times`) with ``class_t2_ms`` gives the echo-train weighting; ``kspace_fraction``
    (rows, cols) the acquired share of each in-plane axis; ``partial_fourier`` the acquired share of phase
    lines; ``ghost`` = (peak phase error in rad, shift in pixels, phase offset).
    """
    if phase_axis not in (1, 2):
        raise ValueError(f"phase_axis must be 1 (rows) or 2 (columns), got {phase_axis}")
    read_axis = 3 - phase_axis
    n_phase = classes.shape[1 + phase_axis]
    view = [1, 1, 1]
    view[phase_axis] = n_phase
    kspace = np.zeros(classes.shape[1:], np.complex64)
    for index, image in enumerate(classes):
        if not image.any():  # e.g. the class of air and cortical bone: no signal to weight
            continue
        lines = scipy.fft.fft(image, axis=phase_axis, workers=_WORKERS)
        if echo_times_ms is not None and class_t2_ms is not None:
            # Early echoes boost a short T2's lines; the cap (e^10) only keeps float32 finite.
            exponent = np.minimum(-(echo_times_ms - te_ms) / float(class_t2_ms[index]), 10.0)
            weight = np.exp(exponent).astype(_FLOAT)
            lines *= weight.reshape(view)
        kspace += lines
    phase_lines = _centred_mask(n_phase, kspace_fraction[phase_axis - 1]) & _partial_fourier_mask(
        n_phase, partial_fourier
    )
    weight = phase_lines.astype(np.complex64)
    if ghost is not None:
        weight *= _ghost_phase(n_phase, *ghost)
    kspace *= weight.reshape(view)
    kspace = scipy.fft.fft(kspace, axis=read_axis, workers=_WORKERS, overwrite_x=True)
    read_view = [1, 1, 1]
    read_view[read_axis] = classes.shape[1 + read_axis]
    kspace *= _centred_mask(read_view[read_axis], kspace_fraction[read_axis - 1]).reshape(read_view)
    return scipy.fft.ifft2(kspace, axes=(1, 2), workers=_WORKERS, overwrite_x=True).astype(np.complex64)


def monotone_curve(slopes: Sequence[float], top: float) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x, y) of a piecewise-linear increasing curve through 0 with the given segment slopes over
    [0, top]; beyond ``top`` it continues with the last slope."""
    x = np.linspace(0.0, top, len(slopes) + 1)
    y = np.concatenate([[0.0], np.cumsum(np.asarray(slopes) * (top / len(slopes)))])
    return x, y


def apply_curve(image: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Map intensities through the monotone curve (linear extrapolation past the last knot)."""
    x, y = knots
    out = np.interp(image, x, y).astype(_FLOAT)
    beyond = image > x[-1]
    if beyond.any():
        slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
        out[beyond] = (y[-1] + slope * (image[beyond] - x[-1])).astype(_FLOAT)
    return out
