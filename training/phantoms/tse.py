"""The TSE acquisition: protocol draw, echo trains per tissue (EPG, with a binned B1 map), k-space filled line by
line from the echo that acquires it, chemical shift of fat along the readout, receive-coil bias, complex noise,
magnitude, scanner scale and integer storage.

k-space is computed at twice the output matrix and cropped to the output's central lines (partial volume and
truncation ringing come from the sampling, as on a scanner). Lines are ordered centre-out around the effective
echo: the lines nearest ky = 0 come from echo ``n_eff`` (TE_eff = n_eff * ESP), the next bands from the echoes
nearest it, so T2 blurring and the effective TE follow from the sequence. ky and -ky share an echo, which keeps
the noise-free image real; noise is then added as complex Gaussian and the magnitude taken.
"""

from __future__ import annotations

import numpy as np

from training.phantoms.epg import tse_echoes
from training.phantoms.tissues import FAT, TISSUES

#: Protocol ranges (guess, within clinical T2w TSE practice; TE_eff and TR as the project's brief asks).
TE_EFF_MS = (60.0, 130.0)
TR_MS = (2000.0, 6000.0)
ESP_MS = (8.0, 15.0)
MAX_ETL = 32
REFOCUS_DEG = (120.0, 180.0)
FIELDS_T = (1.5, 3.0)
#: Fat-water shift 3.4 ppm; proton gyromagnetic ratio 42.577 MHz/T.
FAT_SHIFT_HZ_PER_T = 3.4e-6 * 42.577e6
READOUT_BW_HZ_PER_PIXEL = (200.0, 400.0)  # 3 T fat shift <= 2.2 px (guess)
#: Peak-to-peak B1+ variation of the refocusing angle across the FOV, by field (guess).
B1_SPREAD = {1.5: (0.02, 0.1), 3.0: (0.08, 0.3)}
B1_BINS = 9
#: Receive-coil shading: relative amplitude of the sensitivity change over the body (guess).
BIAS_STRENGTH = (0.1, 0.45)
SNR = (12.0, 60.0)  # mean muscle signal / noise SD per channel (guess)
STORED_MAX = (600.0, 4000.0)  # brightest stored value (scanner scaling varies widely; guess)


def draw_protocol(rng: np.random.Generator) -> dict:
    """A protocol: field, TR, ESP, ETL, effective echo, refocusing angle, readout bandwidth, phase-encode axis."""
    esp = float(rng.uniform(*ESP_MS))
    te_target = float(rng.uniform(*TE_EFF_MS))
    n_eff = int(np.clip(round(te_target / esp), int(np.ceil(TE_EFF_MS[0] / esp)), int(TE_EFF_MS[1] // esp)))
    etl = int(rng.integers(n_eff + 1, min(2 * n_eff + 6, MAX_ETL) + 1))
    field = float(rng.choice(FIELDS_T))
    return {"field_t": field, "tr_ms": float(rng.uniform(*TR_MS)), "esp_ms": esp, "etl": etl, "n_eff": n_eff,
            "te_eff_ms": n_eff * esp, "refocus_deg": float(rng.uniform(*REFOCUS_DEG)),
            "bandwidth_hz_per_px": float(rng.uniform(*READOUT_BW_HZ_PER_PIXEL)),
            "phase_encode_axis": str(rng.choice(["rows", "columns"])),
            "b1_spread": float(rng.uniform(*B1_SPREAD[field])), "b1_tilt_deg": float(rng.uniform(0, 360)),
            "bias_strength": float(rng.uniform(*BIAS_STRENGTH)), "bias_coils": int(rng.integers(1, 5)),
            "bias_seed": int(rng.integers(2**31)), "snr": float(rng.uniform(*SNR)),
            "stored_max": float(rng.uniform(*STORED_MAX))}


def draw_tissues(rng: np.random.Generator, field_t: float) -> dict[str, dict]:
    """Per-case tissue values (pd, t1, t2, fat fraction, TSE-only scale) at the protocol's field."""
    values = {}
    for name, tissue in {**TISSUES, "fat": FAT}.items():
        t1 = tissue.t1_3t if field_t >= 2.0 else tissue.t1_1p5t
        values[name] = {"pd": float(rng.uniform(*tissue.pd)), "t1_ms": float(rng.uniform(*t1)),
                        "t2_ms": float(rng.uniform(*tissue.t2)),
                        "fat_fraction": float(rng.uniform(*tissue.fat_fraction)),
                        "tse_scale": float(rng.uniform(*tissue.tse_scale))}
    return values


def echo_tables(protocol: dict, tissues: dict[str, dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steady-state echo amplitudes: water (n_tissues, B1_BINS, etl), fat (B1_BINS, etl), and the B1 bin scales."""
    spread = protocol["b1_spread"]
    scales = 1.0 + spread * (np.linspace(0, 1, B1_BINS) - 0.5) if spread > 0 else np.ones(B1_BINS)
    names = list(TISSUES)
    t1 = np.array([tissues[n]["t1_ms"] for n in names])[:, None]
    t2 = np.array([tissues[n]["t2_ms"] for n in names])[:, None]
    alpha = protocol["refocus_deg"] * scales  # above 180 deg a pulse acts like 360 deg minus it: EPG knows
    kwargs = dict(tr_ms=protocol["tr_ms"], esp_ms=protocol["esp_ms"], etl=protocol["etl"])
    water = tse_echoes(t1, t2, refocus_deg=alpha[None, :], **kwargs)
    fat = tse_echoes(tissues["fat"]["t1_ms"], tissues["fat"]["t2_ms"], refocus_deg=alpha, **kwargs)
    return water.astype(np.float32), fat.astype(np.float32), scales


def line_echoes(n_lines: int, etl: int, n_eff: int) -> np.ndarray:
    """Echo number (1-based) of each phase-encode line (FFT order, length ``n_lines``): centre-out around n_eff.

    Lines sorted by |ky| are cut into ``etl`` bands; the bands take the echoes sorted by distance from n_eff
    (the earlier first on a tie). ky and -ky always share a band.
    """
    ky = np.fft.fftfreq(n_lines, 1.0 / n_lines).astype(int)
    magnitude = np.abs(ky)
    levels = np.unique(magnitude)
    echoes_by_distance = sorted(range(1, etl + 1), key=lambda n: (abs(n - n_eff), n))
    per_band = n_lines / etl
    echo = np.empty(n_lines, int)
    count = 0
    band_of_level = {}
    for level in levels:
        lines = int((magnitude == level).sum())
        band_of_level[level] = min(int(count // per_band), etl - 1)
        count += lines
    for index, level in enumerate(magnitude):
        echo[index] = echoes_by_distance[band_of_level[level]]
    return echo


def _half_pixel(n: int) -> np.ndarray:
    """Phase that moves a 2n-sample signal by half a fine pixel, so the cropped n-sample grid samples the centres
    of fine-pixel pairs (where the block-averaged truth lives)."""
    k = np.fft.fftfreq(2 * n, 1.0 / (2 * n))
    return np.exp(2j * np.pi * k * 0.5 / (2 * n))


def acquire_slice(water_pd: np.ndarray, fat_pd: np.ndarray, index: np.ndarray, bias: np.ndarray,
                  water_table: np.ndarray, fat_table: np.ndarray, fat_bin: np.ndarray, protocol: dict,
                  ) -> np.ndarray:
    """Noise-free complex image (n x n) of one slice from fine (2n x 2n) maps, phase-encoding along axis 0.

    ``water_pd`` / ``fat_pd``: proton densities (already scaled by any TSE-only factor); ``index``: row into
    ``water_table`` (tissue x B1 bin, flattened) per fine pixel; ``fat_bin``: B1 bin per fine pixel; ``bias``:
    receive sensitivity. Fat moves along the readout (axis 1) by 3.4 ppm x field / bandwidth per pixel.
    """
    fine = water_pd.shape[0]
    n = fine // 2
    etl = water_table.shape[-1]
    echo_of_line = line_echoes(n, etl, protocol["n_eff"])
    shift_px = 2 * FAT_SHIFT_HZ_PER_T * protocol["field_t"] / protocol["bandwidth_hz_per_px"]
    kx = np.arange(n // 2 + 1)
    align = _half_pixel(n)
    fat_phase = (np.exp(-2j * np.pi * kx * shift_px / fine) * align[: n // 2 + 1]).astype(np.complex64)
    water_align = align[: n // 2 + 1].astype(np.complex64)
    ky = np.fft.fftfreq(n, 1.0 / n).astype(int)
    fine_rows = np.where(ky < 0, ky + fine, ky)  # the fine-grid FFT rows holding the output's lines
    row_align = align[fine_rows][:, None].astype(np.complex64)

    def spectrum(image: np.ndarray) -> np.ndarray:
        """The output's lines of the fine image's 2D spectrum (readout cropped first: pocketfft, no BLAS)."""
        half = np.fft.rfft(image, axis=1)[:, : n // 2 + 1]
        return np.fft.fft(half, axis=0)[fine_rows]

    # fat differs between echoes only by its B1-bin weights: one spectrum per bin, combined per echo
    fat_image = fat_pd * bias
    fat_bins = {b: spectrum(np.where(fat_bin == b, fat_image, 0.0).astype(np.float32))
                for b in np.unique(fat_bin)}
    water_image = (water_pd * bias).astype(np.float32)
    kspace = np.zeros((n, n // 2 + 1), np.complex64)
    for echo in np.unique(echo_of_line):
        rows = echo_of_line == echo
        total = spectrum(water_image * water_table[index, echo - 1])[rows] * water_align
        for b, fat_spectrum in fat_bins.items():
            total += fat_table[b, echo - 1] * fat_spectrum[rows] * fat_phase
        kspace[rows] = total
    return np.fft.irfft2(kspace * row_align, s=(n, n)) / 4.0


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, coils: int, strength: float) -> np.ndarray:
    """Receive sensitivity: root-sum-of-squares of a few surface-coil-like profiles placed around the FOV,
    normalised to mean 1; ``strength`` sets how far it departs from flat."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]] / np.array(shape).reshape(2, 1, 1)
    total = np.zeros(shape)
    for _ in range(coils):
        angle = rng.uniform(0, 2 * np.pi)
        cy, cx = 0.5 + 0.7 * np.sin(angle), 0.5 + 0.7 * np.cos(angle)
        width = rng.uniform(0.4, 0.9)
        total += 1.0 / (1.0 + ((rows - cy) ** 2 + (cols - cx) ** 2) / width**2) ** 1.5
    profile = np.sqrt(total)
    profile = profile / profile.mean()
    return (1.0 + strength * (profile - 1.0) / max(float(np.ptp(profile)), 1e-6)).astype(np.float32)


def b1_map(shape: tuple[int, int], spread: float, tilt_deg: float) -> np.ndarray:
    """Relative refocusing angle: a central brightening plus a tilt (dielectric pattern at 3 T), in [-0.5, 0.5]
    times the spread; returned as values in [0, 1] for binning."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]] / np.array(shape).reshape(2, 1, 1) - 0.5
    theta = np.deg2rad(tilt_deg)
    pattern = 0.6 * (1 - 4 * (rows**2 + cols**2)) + 0.4 * (rows * np.sin(theta) + cols * np.cos(theta)) * 2
    return np.clip((pattern - pattern.min()) / max(float(np.ptp(pattern)), 1e-6), 0, 1)
