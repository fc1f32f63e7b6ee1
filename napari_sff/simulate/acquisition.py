"""Physics and acquisition: tissue properties per case, TSE signal, partial volume, chemical shift, bias,
Rician noise and integer storage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_sff.simulate.geometry import _Scene, _smooth_field
from napari_sff.simulate.tissues import _FLOAT, SUBVOXELS, T1_SCALE_1P5T, TISSUE_IDS, TISSUES


def _tissue_properties(rng: np.random.Generator, field_strength: float) -> dict[str, np.ndarray]:
    """Per-case PD, fat fraction, T1 and T2 of every tissue, with +-8 % biological spread in relaxation."""
    n = len(TISSUES)
    props = {key: np.zeros(n) for key in ("pd", "fat", "t1", "t2", "washout")}
    t1_scale = 1.0 if field_strength == 3.0 else T1_SCALE_1P5T
    for index, tissue in enumerate(TISSUES.values()):
        props["pd"][index] = rng.uniform(*tissue.proton_density)
        props["fat"][index] = rng.uniform(*tissue.fat_fraction)
        props["t1"][index] = tissue.t1_ms * t1_scale * rng.uniform(0.92, 1.08)
        props["t2"][index] = tissue.t2_ms * rng.uniform(0.92, 1.08)
        props["washout"][index] = tissue.washout
    return props


def _tse_weight(t1: np.ndarray | float, t2: np.ndarray | float, tr: float, te: float) -> np.ndarray:
    """T2w TSE signal per unit proton density: (1 - exp(-TR/T1)) * exp(-TE/T2)."""
    return (1.0 - np.exp(-tr / np.asarray(t1))) * np.exp(-te / np.asarray(t2))


def _sum_subvoxels(volume: np.ndarray) -> np.ndarray:
    """Mean over each 2x2 in-plane block: the partial-volume average of the oversampled grid."""
    mean = np.add(volume[:, 0::2, 0::2], volume[:, 0::2, 1::2])
    mean += volume[:, 1::2, 0::2]
    mean += volume[:, 1::2, 1::2]
    mean *= _FLOAT(0.25)
    return mean


def _shifted(volume: np.ndarray, axis: int, shift: int) -> np.ndarray:
    """Volume moved by ``shift`` voxels along ``axis``, zero-filled (the image edges are air)."""
    if shift == 0:
        return volume
    out = np.zeros_like(volume)
    target = [slice(None)] * volume.ndim
    source = [slice(None)] * volume.ndim
    target[axis], source[axis] = (
        (slice(shift, None), slice(None, -shift)) if shift > 0 else (slice(None, shift), slice(-shift, None))
    )
    out[tuple(target)] = volume[tuple(source)]
    return out


def _max_subvoxel(volume: np.ndarray) -> np.ndarray:
    """Largest of the 4 sub-voxels of each output voxel."""
    top = np.maximum(volume[:, 0::2, 0::2], volume[:, 0::2, 1::2])
    return np.maximum(top, np.maximum(volume[:, 1::2, 0::2], volume[:, 1::2, 1::2]), out=top)


def _dominant_subvoxel(volume: np.ndarray, fill: int) -> np.ndarray:
    """Value shared by at least 3 of the 4 sub-voxels of each output voxel, else ``fill``."""
    s0, s1 = volume[:, 0::2, 0::2], volume[:, 0::2, 1::2]
    s2, s3 = volume[:, 1::2, 0::2], volume[:, 1::2, 1::2]
    s0_count = (s0 == s1).astype(np.uint8) + (s0 == s2) + (s0 == s3)
    return np.where(s0_count >= 2, s0, np.where((s1 == s2) & (s2 == s3), s1, np.uint8(fill)))


def _render(
    scene: _Scene,
    props: dict[str, np.ndarray],
    tr: float,
    te: float,
    texture: tuple[np.ndarray, np.ndarray],
    fat_shift: tuple[int, int],
    water_class: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Oversampled tissue maps -> partial-volume T2w signal, fat PD and total PD at output resolution.

    ``fat_shift`` = (axis, sub-voxels): the T2w fat signal is displaced along the readout axis (chemical
    shift of a low-bandwidth TSE); the Dixon-like fat PD is not. With ``water_class`` (a T2 class per tissue
    id, see ``artifacts.t2_classes``) the signal comes back split per class, (classes + 1, Z, H, W), the fat
    signal last, for the echo-train weighting of the randomized domain.
    """
    fat_weight = _FLOAT(_tse_weight(props["t1"][-1], props["t2"][-1], tr, te))
    water_weight = _tse_weight(props["t1"], props["t2"], tr, te)
    pd, fat = props["pd"], props["fat"]
    visible = 1.0 - props["washout"]  # flowing blood holds no fat, so only its water signal needs it
    water_signal_lut = (pd * visible * (1 - fat) * water_weight).astype(_FLOAT)

    tissue = scene.tissue
    water_signal = water_signal_lut[tissue]
    fat_pd = (pd * fat).astype(_FLOAT)[tissue]
    total_pd = pd.astype(_FLOAT)[tissue]

    # Muscle: per-muscle fat fraction, marbled by a smooth field, plus fat streaks that get more frequent
    # and stronger as the muscle gets fattier. Computed per output voxel (textures live there, and the
    # sub-voxels of one block belong to one muscle but for rare septum-less contacts), then broadcast.
    muscle_index = TISSUE_IDS["muscle"]
    z, h, w = tissue.shape
    blocks = (z, h // SUBVOXELS, SUBVOXELS, w // SUBVOXELS, SUBVOXELS)
    marbling, streaks = texture
    base = _max_subvoxel(np.asarray(scene.muscle_fat, _FLOAT)[scene.muscle])
    streak = np.maximum(_FLOAT(0.8), _FLOAT(2.0) - _FLOAT(3.0) * base)  # threshold on the streak field
    np.subtract(streaks, streak, out=streak)
    np.clip(streak, 0, _FLOAT(0.5), out=streak)
    streak *= _FLOAT(0.2) + base
    muscle_fat = base * (1 + _FLOAT(0.3) * marbling)
    muscle_fat += streak
    np.clip(muscle_fat, 0, _FLOAT(0.95), out=muscle_fat)
    pd_muscle = _FLOAT(pd[muscle_index])
    muscle_water = (pd_muscle * _FLOAT(water_weight[muscle_index])) * (1 - muscle_fat)
    muscle_fat *= pd_muscle
    is_muscle = (tissue == muscle_index).reshape(blocks)
    np.copyto(water_signal.reshape(blocks), muscle_water[:, :, None, :, None], where=is_muscle)
    np.copyto(fat_pd.reshape(blocks), muscle_fat[:, :, None, :, None], where=is_muscle)

    fat_signal = fat_weight * _sum_subvoxels(_shifted(fat_pd, *fat_shift))
    if water_class is None:
        signal = _sum_subvoxels(water_signal)
        signal += fat_signal
    else:
        class_map = np.asarray(water_class, np.uint8)[tissue]
        n_classes = int(np.max(water_class)) + 1
        signal = np.empty((n_classes + 1, *fat_signal.shape), _FLOAT)
        zero = _FLOAT(0)
        for index in range(n_classes):
            signal[index] = _sum_subvoxels(np.where(class_map == index, water_signal, zero))
        signal[-1] = fat_signal
    return signal, _sum_subvoxels(fat_pd), _sum_subvoxels(total_pd)


def _bias_field(
    rng: np.random.Generator, body: np.ndarray, axes: Sequence[np.ndarray], amplitude: float,
    correlation_fov: float = 0.3,
) -> np.ndarray:
    """Smooth multiplicative field spanning 1 +- amplitude over the body (floored at 0.2)."""
    fov = float(axes[2][-1] - axes[2][0])
    bias = _smooth_field(rng, axes, (150.0, correlation_fov * fov, correlation_fov * fov))
    inside = bias[body] if body.any() else bias
    low, high = float(inside.min()), float(inside.max())
    bias -= _FLOAT((low + high) / 2)
    bias *= _FLOAT(2 * amplitude / max(high - low, 1e-6))
    bias += 1
    np.maximum(bias, _FLOAT(0.2), out=bias)
    return bias


def _rician(
    rng: np.random.Generator, real: np.ndarray, sigma: float, imaginary: np.ndarray | None = None
) -> np.ndarray:
    """|real + i imaginary + complex Gaussian noise of SD sigma per channel|; ``real`` is overwritten."""
    sigma = _FLOAT(sigma)
    real += sigma * rng.standard_normal(real.shape, dtype=_FLOAT)
    noise = sigma * rng.standard_normal(real.shape, dtype=_FLOAT)
    if imaginary is not None:
        noise += imaginary
    real *= real
    noise *= noise
    real += noise
    return np.sqrt(real, out=real)


def _store(magnitude: np.ndarray, factor: float) -> np.ndarray:
    """Scanner scale and integer storage (uint16 range, kept as float32)."""
    magnitude *= _FLOAT(factor)
    return np.minimum(np.rint(magnitude, out=magnitude), _FLOAT(np.iinfo(np.uint16).max), out=magnitude)


def _acquire(
    rng: np.random.Generator,
    signal: np.ndarray,
    body: np.ndarray,
    axes: Sequence[np.ndarray],
    reference: float,
    snr: float,
    bias_amplitude: float,
    scale: float,
) -> np.ndarray:
    """Bias field (spanning +-bias_amplitude over the body), Rician noise and integer storage."""
    bias = _bias_field(rng, body, axes, bias_amplitude)
    magnitude = _rician(rng, signal * bias, reference / snr)
    return _store(magnitude, scale / reference)
