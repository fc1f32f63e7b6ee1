"""Extended phase graph (EPG) of a CPMG echo train, and its steady state over repetitions (TR).

Why: a TSE image is not ``PD (1 - e^-TR/T1) e^-TE/T2``. With refocusing pulses below 180 deg part of the
magnetisation is parked on the longitudinal axis and comes back as stimulated echoes, so the echo train decays
more slowly than e^-t/T2 and depends on T1 and on the flip angle (hence on B1). The phantoms read every
phase-encode line from the echo that acquires it, so they need the whole train.

States follow Weigel, J Magn Reson Imaging 2015;41:266 ("Extended phase graphs: dephasing, RF pulses, and
echoes - pure and simple"): F+ (k = 0..K), F- (k = 0..K) and Z (k = 0..K); one crusher/readout lobe per half echo
spacing moves every transverse state by one order. Excitation is about x, refocusing about y (the CPMG
condition). Everything is vectorised over any number of (T1, T2, flip angle) combinations.
"""

from __future__ import annotations

import numpy as np


def _rotation(alpha: np.ndarray, phi: float) -> np.ndarray:
    """Weigel's RF mixing matrix for flip ``alpha`` (radians, any shape S) about an axis at ``phi``: (S, 3, 3)."""
    c2, s2 = np.cos(alpha / 2) ** 2, np.sin(alpha / 2) ** 2
    s, c = np.sin(alpha), np.cos(alpha)
    e1, e2 = np.exp(1j * phi), np.exp(2j * phi)
    rows = [
        [c2, e2 * s2, -1j * e1 * s],
        [np.conj(e2) * s2, c2, 1j * np.conj(e1) * s],
        [-0.5j * np.conj(e1) * s, 0.5j * e1 * s, c],
    ]
    return np.stack([np.stack(np.broadcast_arrays(*row), axis=-1) for row in rows], axis=-2)


def _apply(rotation: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Rotate (S, 3, K) states by (S, 3, 3) matrices."""
    return np.einsum("...ij,...jk->...ik", rotation, states)


def _relax_and_shift(states: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """Relaxation over one half echo spacing (Z0 recovers towards 1), then one order of dephasing."""
    out = states.copy()
    out[..., 0:2, :] *= e2[..., None, None]
    out[..., 2, :] *= e1[..., None]
    out[..., 2, 0] += 1.0 - e1
    fp, fm = out[..., 0, :], out[..., 1, :]
    fp[..., 1:] = fp[..., :-1].copy()
    fm[..., :-1] = fm[..., 1:].copy()
    fm[..., -1] = 0.0
    fp[..., 0] = np.conj(fm[..., 0])
    return out


def cpmg_echoes(t1_ms, t2_ms, *, esp_ms: float, etl: int, refocus_deg, excite_deg: float = 90.0,
                mz_start=1.0) -> tuple[np.ndarray, np.ndarray]:
    """Echo amplitudes (complex, shape S + (etl,)) and the longitudinal magnetisation Z0 after the last echo (S).

    ``t1_ms``, ``t2_ms``, ``refocus_deg`` and ``mz_start`` broadcast to one shape S (use ``np.inf`` for no
    relaxation). Echo n (1-based) is read at n * ``esp_ms`` after the excitation; equilibrium magnetisation is 1.
    """
    t1, t2, alpha, mz0 = np.broadcast_arrays(*(np.asarray(v, float) for v in (t1_ms, t2_ms, refocus_deg,
                                                                              mz_start)))
    if etl < 1 or esp_ms <= 0:
        raise ValueError(f"echo train needs etl >= 1 and esp_ms > 0 (got etl={etl}, esp_ms={esp_ms})")
    shape = t1.shape
    order = 2 * etl + 2
    states = np.zeros(shape + (3, order), complex)
    states[..., 2, 0] = mz0
    with np.errstate(divide="ignore"):
        e1 = np.exp(-(esp_ms / 2) / t1)
        e2 = np.exp(-(esp_ms / 2) / t2)
    states = _apply(_rotation(np.full(shape, np.deg2rad(excite_deg)), 0.0), states)
    refocus = _rotation(np.deg2rad(alpha), np.pi / 2)
    echoes = np.empty(shape + (etl,), complex)
    for n in range(etl):
        states = _relax_and_shift(states, e1, e2)
        states = _apply(refocus, states)
        states = _relax_and_shift(states, e1, e2)
        echoes[..., n] = states[..., 0, 0]
    return echoes, states[..., 2, 0].real


def tse_echoes(t1_ms, t2_ms, *, tr_ms: float, esp_ms: float, etl: int, refocus_deg,
               excite_deg: float = 90.0) -> np.ndarray:
    """Steady-state echo magnitudes (shape S + (etl,)) of a TSE repeated every ``tr_ms``.

    The transverse magnetisation is taken as spoiled after the train; Z0 then recovers for ``tr_ms - etl *
    esp_ms``. The train is affine in the starting Z0 (relaxation adds a constant), so two runs (Z0 = 1 and 0)
    give the map Z_end = a Z_start + b, and the steady state solves Z = 1 - (1 - (a Z + b)) E1(T_rec) exactly.
    """
    recovery = tr_ms - etl * esp_ms
    if recovery < 0:
        raise ValueError(f"TR {tr_ms} ms is shorter than the echo train ({etl} x {esp_ms} ms); lengthen TR")
    kwargs = dict(esp_ms=esp_ms, etl=etl, refocus_deg=refocus_deg, excite_deg=excite_deg)
    full, z_full = cpmg_echoes(t1_ms, t2_ms, mz_start=1.0, **kwargs)
    empty, z_empty = cpmg_echoes(t1_ms, t2_ms, mz_start=0.0, **kwargs)
    with np.errstate(divide="ignore"):
        decay = np.exp(-recovery / np.broadcast_to(np.asarray(t1_ms, float), z_full.shape))
    slope = z_full - z_empty
    start = (1 - decay * (1 - z_empty)) / (1 - slope * decay)
    return np.abs(empty + start[..., None] * (full - empty))
