"""Paired T2-weighted / signal-fat-fraction (SFF) phantoms for training and testing T2w -> SFF models.

Why a simulator: paired T2w/Dixon data are scarce, and a model that maps T2w to SFF has to learn anatomical
context (fluid, edema and kidney are bright but hold no fat; marrow is intermediate yet fatty; vessels are
dark), not a per-pixel intensity lookup. So every case gets its own anatomy, composition and acquisition.

How a case is made:

1. A tissue map and a muscle-id map are painted at twice the output in-plane resolution: randomly perturbed
   ellipses ("blobs") whose centres, radii and boundary wobble drift smoothly with the slice position, all
   seen through one smooth random warp of the plane; the muscle compartment is split into muscles by a
   weighted Voronoi partition with thin fat septa between them.
2. Each tissue is a water/fat mixture: proton density PD and fat fraction f are drawn per case from
   ``TISSUES``; per muscle the fat fraction follows the case's condition (healthy, sarcopenic, myopathic)
   and is marbled by smooth random fields.
3. T2w TSE signal per component: ``S = PD * (1 - exp(-TR/T1)) * exp(-TE/T2)``, water and fat summed.
   The ground-truth SFF is what a two-point Dixon would report from proton densities,
   ``SFF = sum(PD * f) / sum(PD)`` (no T1/T2 weighting, i.e. close to PDFF), and 0 where there is hardly any
   signal (mean PD below ``SIGNAL_PD_THRESHOLD``: air, cortical bone).
4. The T2w fat signal is displaced along the readout by the fat-water chemical shift, sub-voxels are averaged
   2x2 (partial volume), then the T2w image gets a smooth multiplicative bias field, Rician noise, an
   arbitrary scanner scale and integer storage. The SFF map stays noise-free and unshifted.

Axis order is display order: (slice inferior->superior, row anterior->posterior, column patient's right ->
patient's left). Internally x grows with the column (towards the patient's left) and y with the row
(towards posterior), both in mm.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

ANATOMIES = ("thigh", "calf", "abdomen")


# ---------------------------------------------------------------------------------------------------------
# Tissue table
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tissue:
    """Composition and water relaxation of one tissue class; ranges are drawn once per case.

    ``t1_ms`` is the 3 T value of the water component (1.5 T uses ``T1_SCALE_1P5T`` times it); ``t2_ms`` is
    taken as field-independent. The fat component of every tissue uses the ``fat_protons`` row.
    """

    proton_density: tuple[float, float]  # relative to pure water
    t1_ms: float
    t2_ms: float
    fat_fraction: tuple[float, float] = (0.0, 0.0)  # proton-density fat fraction
    washout: float = 0.0  # fraction of TSE signal lost to through-plane flow (flow void)


# Sources: de Bazelaire et al., Radiology 2004;230:652 (abdominal tissues, 3 T vs 1.5 T); Gold et al., AJR
# 2004;183:343 (musculoskeletal tissues at 3 T: muscle T1 ~1420 ms, T2 ~32 ms; marrow; synovial fluid);
# Lu et al., MRM 2004;52:679 (blood T1 at 3 T ~1650 ms); Henkelman et al., Radiology 1992 (J-coupling keeps
# fat bright on TSE: apparent T2 well above the spin-echo value). PDFF ranges: Hu & Kan, Curr Radiol Rep 2013
# (adipose ~0.9-0.95); Karampinos et al. (vertebral marrow 0.27-0.6, rising with age); Tang et al., Radiology
# 2013 (liver steatosis grades ~0.064/0.174/0.221). Rows marked "approx." are plausible guesses, not measured.
TISSUES: dict[str, Tissue] = {
    "air": Tissue((0.0, 0.0), 1000.0, 1.0),
    "skin": Tissue((0.65, 0.8), 1000.0, 40.0, (0.0, 0.1)),  # approx.
    "subcutaneous_fat": Tissue((0.9, 1.0), 1000.0, 40.0, (0.90, 0.95)),  # water T1/T2 approx.
    "visceral_fat": Tissue((0.88, 1.0), 1000.0, 40.0, (0.85, 0.95)),  # water T1/T2 approx.
    "intermuscular_fat": Tissue((0.85, 0.95), 1100.0, 35.0, (0.70, 0.90)),  # fascia + fat, approx.
    "muscle": Tissue((0.75, 0.85), 1420.0, 32.0, (0.02, 0.08)),  # Gold 2004; healthy thigh PDFF
    "edema": Tissue((0.8, 0.9), 1600.0, 60.0, (0.0, 0.02)),  # inflamed muscle T2 ~40-70 ms, approx.
    "cortical_bone": Tissue((0.0, 0.0), 1000.0, 1.0),  # ultra-short T2: no TSE or Dixon signal
    "marrow_long_bone": Tissue((0.9, 1.0), 600.0, 50.0, (0.60, 0.95)),  # yellow marrow; Gold 2004
    "marrow_vertebral": Tissue((0.8, 0.9), 590.0, 49.0, (0.27, 0.60)),  # de Bazelaire 2004
    "intervertebral_disc": Tissue((0.8, 0.9), 1200.0, 90.0),  # nucleus pulposus, approx.
    "liver": Tissue((0.7, 0.8), 812.0, 42.0, (0.01, 0.05)),  # de Bazelaire 2004; normal liver PDFF
    "spleen": Tissue((0.8, 0.85), 1328.0, 61.0),  # de Bazelaire 2004
    "kidney": Tissue((0.85, 0.9), 1142.0, 76.0),  # de Bazelaire 2004 (cortex)
    "bowel": Tissue((0.75, 0.85), 1200.0, 80.0),  # wall and mixed contents, approx.
    "fluid": Tissue((0.95, 1.0), 3800.0, 1500.0),  # CSF / cysts / synovial fluid; Gold 2004, approx.
    "flowing_blood": Tissue((0.85, 0.9), 1650.0, 150.0, washout=0.95),  # dark flow void; Lu 2004
    "slow_blood": Tissue((0.85, 0.9), 1650.0, 150.0),  # slow venous flow stays bright on T2w
    # Not painted: relaxation of the fat (methylene) protons shared by every tissue. T1 ~380 ms at 3 T
    # (de Bazelaire 2004); apparent TSE T2 ~130 ms because J-coupling is broken up by the echo train.
    "fat_protons": Tissue((1.0, 1.0), 380.0, 130.0, (1.0, 1.0)),
}
TISSUE_IDS: dict[str, int] = {name: index for index, name in enumerate(TISSUES)}
MIXED_TISSUE = 255  # `tissues` value where no tissue fills at least 3 of the 4 sub-voxels
T1_SCALE_1P5T = 0.8  # T1 is about 20 % shorter at 1.5 T (de Bazelaire 2004); T2 is kept

# Per-muscle fat fraction by case condition (thigh PDFF: healthy 0.02-0.08; myopathy up to 0.6+).
MUSCLE_FAT_BY_CONDITION = {
    "healthy": (0.02, 0.08),
    "sarcopenic": (0.10, 0.30),
    "myopathic": (0.15, 0.60),
}
CONDITION_PROBABILITY = {"healthy": 0.55, "sarcopenic": 0.2, "myopathic": 0.25}
HEALTHY_PARASPINAL_FAT = (0.08, 0.21)  # adult paraspinal PDFF is higher than limb muscle
LIVER_STEATOSIS = (0.06, 0.25)
LIVER_STEATOSIS_PROBABILITY = 0.4

# Field of view (mm) by anatomy and number of limbs: at 256 px the in-plane spacing stays within 1-2 mm.
FOV_MM = {
    ("thigh", 1): (256.0, 330.0),
    ("thigh", 2): (360.0, 500.0),
    ("calf", 1): (256.0, 300.0),
    ("calf", 2): (300.0, 420.0),
    ("abdomen", 1): (360.0, 500.0),
}
SUBVOXELS = 2  # in-plane oversampling factor for partial volume
SIGNAL_PD_THRESHOLD = 0.3  # mean PD below which a voxel is mostly air/cortex: SFF is set to 0 there
GAMMA_HZ_PER_T = 42.577e6  # proton gyromagnetic ratio / 2 pi
_FLOAT = np.float32


@dataclass
class SimulatedCase:
    """One simulated volume pair; all arrays are (slices, rows, cols) in display order."""

    t2w: np.ndarray  # float32, integer-valued scanner units (0..65535) with bias field and Rician noise
    sff: np.ndarray  # float32 in [0, 1], noise-free, 0 where there is hardly any signal
    labels: np.ndarray  # uint16; 0 = background, 1..K = muscle groups (only where muscle dominates a voxel)
    label_names: dict[int, str]
    spacing: tuple[float, float, float]  # (slice thickness, row, col) in mm
    params: dict  # JSON-serialisable case description (anatomy, seed, protocol, composition)
    tissues: np.ndarray | None = None  # uint8 dominant tissue id (TISSUE_IDS / MIXED_TISSUE), on request


# ---------------------------------------------------------------------------------------------------------
# Smooth randomness
# ---------------------------------------------------------------------------------------------------------
def _wander(rng: np.random.Generator, z_mm: np.ndarray, amplitude: float) -> np.ndarray:
    """Smooth per-slice offset (trend plus a slow sinusoid), about +-amplitude over +-50 mm of slab."""
    slope, wiggle = rng.uniform(-1.0, 1.0, 2)
    period, phase = rng.uniform(80.0, 250.0), rng.uniform(0.0, 2 * math.pi)
    offset = slope * z_mm / 50.0 + 0.5 * wiggle * np.sin(2 * math.pi * z_mm / period + phase)
    return (amplitude * offset).astype(_FLOAT)


def _ellipsoid_profile(z_mm: np.ndarray, centre_mm: float, half_length_mm: float) -> np.ndarray:
    """Radius factor of an ellipsoid cut at each slice: structures appear and vanish along the slab."""
    return np.sqrt(np.clip(1.0 - ((z_mm - centre_mm) / half_length_mm) ** 2, 0.0, None)).astype(_FLOAT)


def _blend_matrix(coords: np.ndarray, correlation: float) -> np.ndarray:
    """Gaussian weights from lattice nodes to coordinates, rows normalised to unit output variance."""
    step = 0.8 * correlation
    low = float(coords.min()) - 2 * step
    n_nodes = int(math.ceil((float(coords.max()) - low) / step)) + 3
    nodes = low + step * np.arange(n_nodes)
    weights = np.exp(-0.5 * ((coords[:, None] - nodes[None, :]) / correlation) ** 2)
    weights[weights < 1e-4] = 0.0  # truncate the kernel: float32 denormals would make BLAS crawl
    weights /= np.sqrt((weights**2).sum(axis=1, keepdims=True))
    return weights.astype(_FLOAT)


def _smooth_field(
    rng: np.random.Generator, axes: Sequence[np.ndarray], correlation_mm: Sequence[float]
) -> np.ndarray:
    """Unit-variance smooth Gaussian random field on a (z, y, x) grid.

    Random weights on a coarse lattice blended by separable Gaussian kernels: three small matrix products,
    so it is cheap even at the oversampled resolution.
    """
    mz, my, mx = (_blend_matrix(c, s) for c, s in zip(axes, correlation_mm, strict=True))
    (n_z, nz), (n_y, ny), (n_x, nx) = mz.shape, my.shape, mx.shape
    coarse = rng.standard_normal((nz, ny * nx), dtype=_FLOAT)
    # Three plain 2-D products (few large BLAS calls instead of many small batched ones).
    field = (mz @ coarse).reshape(n_z, ny, nx).transpose(1, 0, 2).reshape(ny, n_z * nx)
    field = (my @ field).reshape(n_y * n_z, nx)
    field = (field @ mx.T).reshape(n_y, n_z, n_x)
    return np.ascontiguousarray(field.transpose(1, 0, 2))


# ---------------------------------------------------------------------------------------------------------
# Geometry: the oversampled grid and randomly perturbed blobs
# ---------------------------------------------------------------------------------------------------------
Window = tuple[slice, slice]


@dataclass
class _Grid:
    """Oversampled pixel centres in mm, the patient's pose in the field of view, and a smooth plane warp.

    Anatomy coordinates = rotate(pixel - shift) + warp: every shape is bent the same way, which gives
    organic outlines without per-shape cost. ``bend`` adds a second, independent displacement (the warp's
    components swapped) for shapes that should curve more, like the boundaries between muscles.
    """

    x: np.ndarray  # (W,) column centres
    y: np.ndarray  # (H,) row centres
    z: np.ndarray  # (Z,) slice centres
    shift: tuple[float, float]
    rotation: float
    field_x: np.ndarray  # (Z, H, W) unit-variance smooth fields
    field_y: np.ndarray
    warp_mm: float

    def __post_init__(self) -> None:
        # Largest displacement per mm of warp or bend: an exact bound keeps every blob's window tight.
        self.field_peak = max(float(np.abs(self.field_x).max()), float(np.abs(self.field_y).max()))

    @property
    def fov(self) -> float:
        return float(self.x[-1] - self.x[0] + self.x[1] - self.x[0])

    def window(self, x_lo: float, x_hi: float, y_lo: float, y_hi: float, bend: float = 0.0) -> Window | None:
        """Pixel window covering an anatomy-space box (conservatively, given rotation and warp)."""
        m = self.field_peak * (self.warp_mm + bend)
        corners = np.array(
            [[x_lo - m, y_lo - m], [x_lo - m, y_hi + m], [x_hi + m, y_lo - m], [x_hi + m, y_hi + m]]
        )
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        px = self.shift[0] + c * corners[:, 0] - s * corners[:, 1]
        py = self.shift[1] + s * corners[:, 0] + c * corners[:, 1]
        step = float(self.x[1] - self.x[0])
        cols = np.clip(np.searchsorted(self.x, [px.min() - step, px.max() + step]), 0, len(self.x))
        rows = np.clip(np.searchsorted(self.y, [py.min() - step, py.max() + step]), 0, len(self.y))
        if cols[1] <= cols[0] or rows[1] <= rows[0]:
            return None
        return slice(int(rows[0]), int(rows[1])), slice(int(cols[0]), int(cols[1]))

    def coords(self, window: Window, bend: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Anatomy-space (x, y) of every pixel in the window, shape (Z, h, w)."""
        rows, cols = window
        px = self.x[cols][None, None, :] - self.shift[0]
        py = self.y[rows][None, :, None] - self.shift[1]
        c, s = _FLOAT(math.cos(self.rotation)), _FLOAT(math.sin(self.rotation))
        fx, fy = self.field_x[:, rows, cols], self.field_y[:, rows, cols]
        x = fx * _FLOAT(self.warp_mm)
        x += c * px + s * py
        y = fy * _FLOAT(self.warp_mm)
        y += c * py - s * px
        if bend:
            x += _FLOAT(bend) * fy
            y += _FLOAT(bend) * fx
        return x, y


N_HARMONICS = 4  # boundary wobble harmonics k = 2 .. 5


@dataclass
class _Blob:
    """Ellipse with a wobbly boundary whose every parameter is a per-slice array (slow change along z)."""

    cx: np.ndarray
    cy: np.ndarray
    a: np.ndarray  # semi-axis along the blob's own x
    b: np.ndarray
    angle: np.ndarray
    wobble: np.ndarray  # (Z, K) relative amplitude of boundary harmonic k
    phase: np.ndarray  # (Z, K)

    def scaled(self, factor: float | np.ndarray) -> _Blob:
        return replace(self, a=(self.a * factor).astype(_FLOAT), b=(self.b * factor).astype(_FLOAT))

    def grown(self, mm_a: float | np.ndarray, mm_b: float | np.ndarray | None = None) -> _Blob:
        """Semi-axes changed by a margin in mm (negative shrinks): nested shells share one outline."""
        mm_b = mm_a if mm_b is None else mm_b
        return replace(
            self, a=np.maximum(self.a + mm_a, 0).astype(_FLOAT), b=np.maximum(self.b + mm_b, 0).astype(_FLOAT)
        )

    def shrunk(self, mm: float | np.ndarray) -> _Blob:
        return self.grown(-mm)

    def rewobbled(self, rng: np.random.Generator, z_mm: np.ndarray, amount: float) -> _Blob:
        """Add independent boundary harmonics, so a shell around this blob varies in thickness."""
        extra_amp, extra_phase = _harmonics(rng, z_mm, amount)
        phasor = self.wobble * np.exp(1j * self.phase) + extra_amp * np.exp(1j * extra_phase)
        return replace(self, wobble=np.abs(phasor).astype(_FLOAT), phase=np.angle(phasor).astype(_FLOAT))

    def level(self, grid: _Grid, bend: float = 0.0) -> tuple[Window, np.ndarray] | None:
        """Normalised radius (< 1 inside) over the blob's pixel window; None if the blob misses the image."""
        a, b = np.maximum(self.a, 1e-3), np.maximum(self.b, 1e-3)
        reach = np.maximum(a, b) * (1 + np.abs(self.wobble).sum(axis=1))
        window = grid.window(
            float((self.cx - reach).min()),
            float((self.cx + reach).max()),
            float((self.cy - reach).min()),
            float((self.cy + reach).max()),
            bend,
        )
        if window is None or float(np.maximum(self.a, self.b).max()) <= 0:
            return None
        x, y = grid.coords(window, bend)
        x -= self.cx[:, None, None]
        y -= self.cy[:, None, None]
        cos, sin = np.cos(self.angle)[:, None, None], np.sin(self.angle)[:, None, None]
        u = x * cos
        u += y * sin
        u /= a[:, None, None]
        y *= cos
        y -= x * sin
        y /= b[:, None, None]
        v = y
        theta = np.arctan2(v, u)
        u *= u
        v *= v
        u += v
        np.sqrt(u, out=u)  # radius in units of the ellipse
        boundary = np.full_like(theta, 1.0)
        negligible = 0.25 * float(grid.x[1] - grid.x[0]) / float(np.maximum(a, b).max())
        for k in range(self.wobble.shape[1]):
            if float(self.wobble[:, k].max()) < negligible:  # under a quarter pixel: not worth a cosine
                continue
            term = np.multiply(theta, _FLOAT(k + 2), out=v)
            term += self.phase[:, k, None, None]
            np.cos(term, out=term)
            term *= self.wobble[:, k, None, None]
            boundary += term
        u /= boundary
        return window, u


def _harmonics(rng: np.random.Generator, z_mm: np.ndarray, amount: float) -> tuple[np.ndarray, np.ndarray]:
    """Boundary wobble: harmonic k = 2..5 with amplitude ~ amount/(k-1), phases drifting with the slice."""
    k = np.arange(2, 2 + N_HARMONICS)
    amplitude = amount * rng.uniform(0.2, 1.0, N_HARMONICS) / (k - 1)
    phase0 = rng.uniform(0, 2 * math.pi, N_HARMONICS)
    drift = rng.uniform(-0.4, 0.4, N_HARMONICS)
    return (
        np.broadcast_to(amplitude, (len(z_mm), N_HARMONICS)).astype(_FLOAT),
        (phase0[None, :] + np.outer(z_mm / 50.0, drift)).astype(_FLOAT),
    )


def _make_blob(
    rng: np.random.Generator,
    z_mm: np.ndarray,
    centre: tuple[float | np.ndarray, float | np.ndarray],
    radii: tuple[float, float],
    *,
    angle: float = 0.0,
    drift_mm: float = 2.0,
    radius_drift: float = 0.04,
    wobble: float = 0.04,
    profile: np.ndarray | None = None,
) -> _Blob:
    """Random blob around a nominal centre/size; ``profile`` multiplies the radii slice by slice."""
    scale = 1.0 + _wander(rng, z_mm, radius_drift)
    if profile is not None:
        scale = scale * profile
    wobble_amp, wobble_phase = _harmonics(rng, z_mm, wobble)
    return _Blob(
        cx=(centre[0] + _wander(rng, z_mm, drift_mm)).astype(_FLOAT),
        cy=(centre[1] + _wander(rng, z_mm, drift_mm)).astype(_FLOAT),
        a=(radii[0] * scale * (1 + _wander(rng, z_mm, radius_drift / 2))).astype(_FLOAT),
        b=(radii[1] * scale * (1 + _wander(rng, z_mm, radius_drift / 2))).astype(_FLOAT),
        angle=(angle + _wander(rng, z_mm, 0.05)).astype(_FLOAT),
        wobble=wobble_amp,
        phase=wobble_phase,
    )


@dataclass
class _Frame:
    """Local frame of a body part: nominal layouts are written medial/posterior-positive in frame units."""

    cx: np.ndarray  # (Z,)
    cy: np.ndarray
    sx: np.ndarray  # mm per frame unit, per slice
    sy: np.ndarray
    angle: float = 0.0
    mirror: float = 1.0  # +1: medial is +x (patient's right limb); -1 for the left limb

    @classmethod
    def of(cls, blob: _Blob, angle: float = 0.0, mirror: float = 1.0) -> _Frame:
        """Frame whose units are the blob's semi-axes."""
        return cls(blob.cx, blob.cy, blob.a, blob.b, angle, mirror)

    @classmethod
    def at(cls, centre: tuple[np.ndarray, np.ndarray]) -> _Frame:
        """Frame in mm around a per-slice point."""
        return cls(centre[0], centre[1], np.ones_like(centre[0]), np.ones_like(centre[1]))

    def place(self, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
        lx, ly = self.mirror * x * self.sx, y * self.sy
        c, s = math.cos(self.angle), math.sin(self.angle)
        return (self.cx + c * lx - s * ly).astype(_FLOAT), (self.cy + s * lx + c * ly).astype(_FLOAT)


# ---------------------------------------------------------------------------------------------------------
# Painting the oversampled tissue / muscle maps
# ---------------------------------------------------------------------------------------------------------
# Tissues that organs, vessels and lesions may displace (soft tissue in general / inside the abdominal cavity).
_SOFT_TISSUES = ("muscle", "intermuscular_fat", "subcutaneous_fat", "visceral_fat", "edema", "bowel")
_CAVITY_TISSUES = ("visceral_fat", "bowel", "fluid", "air")


class _Scene:
    """Oversampled tissue-id and muscle-id volumes, filled back to front (painter's algorithm)."""

    def __init__(self, grid: _Grid, rng: np.random.Generator) -> None:
        shape = (len(grid.z), len(grid.y), len(grid.x))
        self.grid, self.rng = grid, rng
        self.tissue = np.zeros(shape, np.uint8)
        self.muscle = np.zeros(shape, np.uint8)  # 0 = no muscle, else index into muscle_group / muscle_fat
        self.muscle_group: list[int] = [0]
        self.muscle_fat: list[float] = [0.0]

    def add_muscle(self, group: int, fat_fraction: float) -> int:
        self.muscle_group.append(group)
        self.muscle_fat.append(fat_fraction)
        return len(self.muscle_group) - 1

    def paint(
        self,
        window: Window,
        mask: np.ndarray,
        tissue: str,
        *,
        muscle_id: int | np.ndarray | None = 0,
        only: Sequence[str] | None = None,
    ) -> None:
        """Set ``tissue`` under ``mask``; ``only`` restricts to current tissues; muscle_id None keeps ids."""
        rows, cols = window
        tissue_view, muscle_view = self.tissue[:, rows, cols], self.muscle[:, rows, cols]
        if only is not None:
            mask = mask & np.isin(tissue_view, [TISSUE_IDS[name] for name in only])
        tissue_view[mask] = TISSUE_IDS[tissue]
        if isinstance(muscle_id, np.ndarray):
            muscle_view[mask] = muscle_id[mask]
        elif muscle_id is not None:
            muscle_view[mask] = muscle_id

    def paint_blob(self, blob: _Blob, tissue: str, *, slices: np.ndarray | None = None, **kwargs) -> None:
        got = blob.level(self.grid)
        if got is None:
            return
        window, level = got
        mask = level < 1.0
        if slices is not None:
            mask &= slices[:, None, None]
        self.paint(window, mask, tissue, **kwargs)

    def paint_bone(self, blob: _Blob, cortex_mm: float, marrow: str, **kwargs) -> None:
        self.paint_blob(blob, "cortical_bone", **kwargs)
        self.paint_blob(blob.shrunk(cortex_mm), marrow, **kwargs)

    def paint_layers(self, outer: _Blob, skin_mm: float, fat: str) -> None:
        """Skin over a fat layer: the outer shell shared by limbs and trunk (one level map for both)."""
        got = outer.level(self.grid)
        if got is None:
            return
        window, level = got
        skin_level = (1 - skin_mm / np.sqrt(np.maximum(outer.a * outer.b, 1e-6)))[:, None, None]
        self.paint(window, level < 1.0, "skin")
        self.paint(window, level < skin_level, fat)

    def paint_vessel(
        self,
        centre: tuple[float | np.ndarray, float | np.ndarray],
        radius: float,
        artery: bool,
        only: Sequence[str] | None = None,
    ) -> None:
        """Vessel, in a thin fat sheath unless ``only`` limits it (e.g. to the liver); arteries are flow voids,
        veins either void or bright slow flow."""
        blob = _make_blob(
            self.rng, self.grid.z, centre, (radius, radius * self.rng.uniform(0.8, 1.0)), wobble=0.02
        )
        if only is None:
            self.paint_blob(blob.grown(1.5), "intermuscular_fat", only=_SOFT_TISSUES)
        slow = (not artery) and self.rng.random() < 0.5
        self.paint_blob(blob, "slow_blood" if slow else "flowing_blood", only=only)

    def paint_muscles(
        self,
        compartment: _Blob,
        seeds: Sequence[tuple[np.ndarray, np.ndarray, float, int]],
        septum_mm: float,
        bend_mm: float,
    ) -> None:
        """Weighted Voronoi split of the compartment's subcutaneous-fat voxels into muscles with fat septa.

        Weights > 1 shrink a cell into a rounder, smaller muscle (e.g. sartorius); septa are where the
        nearest and second-nearest weighted distances differ by less than ``septum_mm``. The partition is
        computed in coordinates bent by ``bend_mm`` so that boundaries curve instead of forming polygons.
        """
        got = compartment.level(self.grid)
        if got is None:
            return
        window, level = got
        rows, cols = window
        inside = (level < 1.0) & (self.tissue[:, rows, cols] == TISSUE_IDS["subcutaneous_fat"])
        x, y = (coord[inside] for coord in self.grid.coords(window, bend_mm))
        nearest = np.full(x.shape, np.inf, _FLOAT)
        second = np.full(x.shape, np.inf, _FLOAT)
        owner = np.zeros(x.shape, np.uint8)
        distance, dy = np.empty_like(x), np.empty_like(x)
        closer = np.empty(x.shape, bool)
        slice_of = np.nonzero(inside)[0]  # per-slice seed positions, gathered for the voxels inside
        for sx, sy, weight, muscle_id in seeds:  # squared weighted distances: same ordering, no sqrt
            np.subtract(x, sx[slice_of], out=distance)
            distance *= distance
            np.subtract(y, sy[slice_of], out=dy)
            dy *= dy
            distance += dy
            distance *= _FLOAT(weight**2)
            np.less(distance, nearest, out=closer)
            np.minimum(second, distance, out=second)
            np.copyto(second, nearest, where=closer)
            np.copyto(owner, np.uint8(muscle_id), where=closer)
            np.minimum(nearest, distance, out=nearest)
        np.sqrt(second, out=second)
        np.sqrt(nearest, out=nearest)
        second -= nearest
        septum = second < septum_mm
        tissue_view, muscle_view = self.tissue[:, rows, cols], self.muscle[:, rows, cols]
        tissue_view[inside] = np.where(septum, TISSUE_IDS["intermuscular_fat"], TISSUE_IDS["muscle"]).astype(
            np.uint8
        )
        muscle_view[inside] = np.where(septum, 0, owner).astype(np.uint8)

    def paint_patches(
        self,
        frame: _Frame,
        *,
        spread: float,
        count: int,
        radius_mm: tuple[float, float],
        tissue: str,
        only: Sequence[str],
        muscle_id: int | None = 0,
    ) -> None:
        """Irregular focal lesions (edema, cysts) within ``spread`` frame units, each limited in z."""
        z = self.grid.z
        for _ in range(count):
            r, phi = spread * math.sqrt(self.rng.random()), self.rng.uniform(0, 2 * math.pi)
            centre = frame.place(r * math.cos(phi), r * math.sin(phi))
            z0 = self.rng.uniform(z.min(), z.max())
            radius = self.rng.uniform(*radius_mm)
            blob = _make_blob(
                self.rng,
                z,
                centre,
                (radius, radius * self.rng.uniform(0.5, 1.0)),
                angle=self.rng.uniform(0, math.pi),
                wobble=0.15,
                profile=_ellipsoid_profile(z, z0, self.rng.uniform(15.0, 60.0)),
            )
            self.paint_blob(blob, tissue, only=only, muscle_id=muscle_id)


# ---------------------------------------------------------------------------------------------------------
# Muscle composition
# ---------------------------------------------------------------------------------------------------------
def _draw_muscle_fat(
    rng: np.random.Generator, label_names: dict[int, str], healthy_override: dict[str, tuple[float, float]]
) -> tuple[str, dict[int, float]]:
    """Case condition and base fat fraction per muscle group; myopathy may spare some groups."""
    conditions = list(CONDITION_PROBABILITY)
    condition = conditions[rng.choice(len(conditions), p=list(CONDITION_PROBABILITY.values()))]
    groups = sorted(label_names)
    affected = set(groups)
    if condition == "myopathic":
        n_affected = int(rng.integers(1, len(groups) + 1))
        affected = {int(g) for g in rng.choice(groups, size=n_affected, replace=False)}
    fat = {}
    for group in groups:
        healthy = healthy_override.get(label_names[group], MUSCLE_FAT_BY_CONDITION["healthy"])
        low, high = MUSCLE_FAT_BY_CONDITION[condition] if group in affected else healthy
        fat[group] = float(rng.uniform(max(low, healthy[0]), max(high, healthy[1])))
    return condition, fat


def _add_muscle_seeds(
    scene: _Scene,
    frame: _Frame,
    layout: Sequence[tuple[int, float, float, float]],
    group_fat: dict[int, float],
) -> list[tuple[np.ndarray, np.ndarray, float, int]]:
    """Jittered Voronoi seeds (x, y, weight, muscle id) for a layout of (group, x, y, weight) rows."""
    rng, z = scene.rng, scene.grid.z
    seeds = []
    for group, x, y, weight in layout:
        sx, sy = frame.place(x + rng.uniform(-0.07, 0.07), y + rng.uniform(-0.07, 0.07))
        muscle_id = scene.add_muscle(group, group_fat[group] * rng.uniform(0.85, 1.15))
        seeds.append(
            (
                sx + _wander(rng, z, 3.0),
                sy + _wander(rng, z, 3.0),
                weight * rng.uniform(0.95, 1.05),
                muscle_id,
            )
        )
    return seeds


# ---------------------------------------------------------------------------------------------------------
# Limbs (thigh, calf)
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Bone:
    x: float  # frame units (compartment radii), medial / posterior positive
    y: float
    radius_mm: tuple[float, float]
    cortex_mm: tuple[float, float]
    triangularity: float = 0.0  # extra 3rd-harmonic wobble (tibia)


@dataclass(frozen=True)
class _Vessel:
    x: float  # deep vessels: frame units; superficial: direction, placed mid-way through subcutaneous fat
    y: float
    radius_mm: tuple[float, float]
    artery: bool
    superficial: bool = False


@dataclass(frozen=True)
class _LimbLayout:
    """Nominal cross-section of one limb at mid-level, written for a right limb (medial = +x)."""

    label_names: dict[int, str]
    muscles: tuple[tuple[int, float, float, float], ...]  # (group, x, y, Voronoi weight)
    bones: tuple[_Bone, ...]
    vessels: tuple[_Vessel, ...]
    compartment_mm: tuple[float, float]  # muscle compartment radius range (healthy)
    subcutaneous_mm: tuple[float, float]
    girth_drift: float  # relative radius change over 50 mm of slab (direction drawn per case)
    # Fat pads (x, y, radius in frame units) where a bone lies right under the skin.
    bare_bone: tuple[tuple[float, float, float], ...] = ()


THIGH = _LimbLayout(
    label_names={1: "quadriceps", 2: "hamstrings", 3: "adductors", 4: "sartorius/gracilis"},
    muscles=(
        (1, 0.0, -0.78, 1.25),  # rectus femoris
        (1, -0.62, -0.2, 0.95),  # vastus lateralis
        (1, 0.42, -0.5, 1.05),  # vastus medialis
        (1, -0.1, -0.38, 1.15),  # vastus intermedius
        (2, -0.4, 0.62, 1.05),  # biceps femoris
        (2, 0.15, 0.7, 1.0),  # semitendinosus / semimembranosus
        (3, 0.45, 0.25, 0.95),  # adductor magnus
        (3, 0.5, -0.05, 1.15),  # adductor longus / brevis
        (4, 0.72, -0.45, 1.6),  # sartorius
        (4, 0.88, 0.25, 1.7),  # gracilis
    ),
    bones=(_Bone(-0.05, 0.0, (12.0, 15.0), (4.0, 7.0)),),  # femur
    vessels=(
        _Vessel(0.55, -0.22, (3.0, 4.5), artery=True),  # superficial femoral artery
        _Vessel(0.6, -0.1, (4.0, 6.0), artery=False),  # femoral vein
        _Vessel(0.12, 0.18, (2.5, 3.5), artery=True),  # profunda femoris
        _Vessel(0.95, -0.3, (2.0, 3.0), artery=False, superficial=True),  # great saphenous vein
    ),
    compartment_mm=(50.0, 68.0),
    subcutaneous_mm=(4.0, 30.0),
    girth_drift=0.06,
)

CALF = _LimbLayout(
    label_names={1: "gastrocnemius", 2: "soleus", 3: "tibialis anterior", 4: "peroneal", 5: "deep posterior"},
    muscles=(
        (1, 0.3, 0.72, 1.0),  # gastrocnemius, medial head
        (1, -0.3, 0.7, 1.1),  # gastrocnemius, lateral head
        (2, 0.0, 0.32, 0.85),  # soleus
        (3, -0.12, -0.6, 1.0),  # tibialis anterior (with the toe extensors)
        (4, -0.78, -0.12, 1.05),  # peroneus longus / brevis
        (5, 0.1, -0.05, 1.15),  # tibialis posterior and long flexors
    ),
    bones=(
        _Bone(0.35, -0.5, (11.0, 14.0), (3.0, 5.0), triangularity=0.12),  # tibia
        _Bone(-0.5, 0.02, (5.0, 7.0), (1.5, 2.5)),  # fibula
    ),
    vessels=(
        _Vessel(-0.05, -0.35, (1.5, 2.2), artery=True),  # anterior tibial
        _Vessel(0.25, 0.1, (2.0, 2.8), artery=False),  # posterior tibial
        _Vessel(-0.3, 0.08, (1.8, 2.5), artery=False),  # peroneal
        _Vessel(0.8, -0.5, (1.5, 2.5), artery=False, superficial=True),  # great saphenous vein
        _Vessel(0.0, 1.0, (1.5, 2.2), artery=False, superficial=True),  # small saphenous vein
    ),
    compartment_mm=(40.0, 52.0),
    subcutaneous_mm=(3.0, 22.0),
    girth_drift=0.05,
    bare_bone=((0.62, -0.72, 0.3),),  # the tibia's medial face
)

LIMB_LAYOUTS = {"thigh": THIGH, "calf": CALF}


def _paint_limb(
    scene: _Scene,
    layout: _LimbLayout,
    centre_x: float,
    mirror: float,
    radius: float,
    fat_mm: float,
    group_fat: dict[int, float],
) -> None:
    """One limb: skin, subcutaneous fat, muscles with septa, focal lesions, vessels, bones."""
    rng, z = scene.rng, scene.grid.z
    angle = rng.uniform(-0.25, 0.25)
    compartment = _make_blob(
        rng,
        z,
        (centre_x, rng.uniform(-5, 5)),
        (radius, radius * rng.uniform(0.85, 1.05)),
        angle=angle,
        profile=1 + _wander(rng, z, layout.girth_drift),
        wobble=0.05,
    )
    # Subcutaneous fat: the same outline grown by the fat thickness, off-centre and re-wobbled so it varies.
    outer = compartment.grown(*(fat_mm * rng.uniform(0.8, 1.25, 2))).rewobbled(rng, z, 0.2 * fat_mm / radius)
    offset = 0.2 * fat_mm * rng.uniform(-1, 1, 2)
    outer = replace(outer, cx=outer.cx + _FLOAT(offset[0]), cy=outer.cy + _FLOAT(offset[1]))
    scene.paint_layers(outer, rng.uniform(1.2, 2.5), "subcutaneous_fat")

    frame = _Frame.of(compartment, angle, mirror)
    seeds = _add_muscle_seeds(scene, frame, layout.muscles, group_fat)
    scene.paint_muscles(
        compartment, seeds, septum_mm=rng.uniform(0.6, 1.8), bend_mm=rng.uniform(0.1, 0.2) * radius
    )
    for x, y, r in layout.bare_bone:
        pad = _make_blob(rng, z, frame.place(x, y), (r * radius, r * radius * 1.2), angle=angle, wobble=0.05)
        scene.paint_blob(pad, "subcutaneous_fat", only=("muscle", "intermuscular_fat"))

    if rng.random() < 0.3:  # edema: bright on T2w, no fat, still counted as muscle
        count = int(rng.integers(1, 4))
        scene.paint_patches(
            frame,
            spread=0.75,
            count=count,
            radius_mm=(8.0, 25.0),
            tissue="edema",
            only=("muscle",),
            muscle_id=None,
        )
    if rng.random() < 0.2:  # cyst / fluid collection
        scene.paint_patches(
            frame, spread=0.85, count=1, radius_mm=(4.0, 15.0), tissue="fluid", only=_SOFT_TISSUES
        )

    for vessel in layout.vessels:
        if vessel.superficial:
            reach = (1 + 0.5 * fat_mm / radius) / math.hypot(vessel.x, vessel.y)
            centre = frame.place(vessel.x * reach, vessel.y * reach)
        else:
            centre = frame.place(vessel.x, vessel.y)
        scene.paint_vessel(centre, rng.uniform(*vessel.radius_mm), vessel.artery)

    for bone in layout.bones:
        r = rng.uniform(*bone.radius_mm)
        blob = _make_blob(
            rng,
            z,
            frame.place(bone.x, bone.y),
            (r, r * rng.uniform(0.85, 1.0)),
            angle=rng.uniform(0, math.pi),
            wobble=0.03,
            radius_drift=0.02,
            drift_mm=1.5,
        )
        triangle = np.zeros(N_HARMONICS, _FLOAT)
        triangle[1] = bone.triangularity  # harmonic k = 3
        blob = replace(blob, wobble=blob.wobble + triangle)
        scene.paint_bone(blob, rng.uniform(*bone.cortex_mm), "marrow_long_bone")


def _build_limbs(
    scene: _Scene, anatomy: str, n_limbs: int, condition: str, group_fat: dict[int, float]
) -> dict:
    """One or two limbs side by side, shrunk where needed so that they fit the field of view."""
    rng = scene.rng
    layout = LIMB_LAYOUTS[anatomy]
    radius = rng.uniform(*layout.compartment_mm) * (0.85 if condition != "healthy" else 1.0)
    fat_mm, gap = rng.uniform(*layout.subcutaneous_mm), rng.uniform(3.0, 20.0)
    width = n_limbs * 2 * (radius + 1.25 * fat_mm) + (n_limbs - 1) * 2 * gap
    fit = min(1.0, 0.92 * scene.grid.fov / width)
    radius, fat_mm, gap = radius * fit, fat_mm * fit, gap * fit
    if n_limbs == 2:
        half_gap = gap + radius + 1.25 * fat_mm
        sides = [(-half_gap, 1.0), (half_gap, -1.0)]  # patient's right limb on the image left
    else:
        sides = [(0.0, 1.0 if rng.random() < 0.5 else -1.0)]
    for centre_x, mirror in sides:
        _paint_limb(scene, layout, centre_x, mirror, radius * rng.uniform(0.95, 1.05), fat_mm, group_fat)
    side = "both" if n_limbs == 2 else ("right" if sides[0][1] > 0 else "left")
    return {"n_limbs": n_limbs, "side": side, "subcutaneous_fat_mm": round(fat_mm, 2)}


# ---------------------------------------------------------------------------------------------------------
# Abdomen (upper lumbar level)
# ---------------------------------------------------------------------------------------------------------
ABDOMEN_LABELS = {
    1: "rectus abdominis",
    2: "lateral abdominal wall",
    3: "psoas",
    4: "quadratus lumborum",
    5: "paraspinal",
}
# Voronoi seeds of the muscular shell for the patient's right side (x < 0), mirrored for the left:
# (group, x, y, weight) in units of the shell's semi-axes.
ABDOMINAL_WALL = (
    (1, -0.25, -0.97, 1.0),  # rectus abdominis
    (2, -0.8, -0.55, 1.0),  # external / internal oblique, transversus
    (2, -0.99, 0.05, 1.0),  # obliques, flank
    (2, -0.75, 0.65, 1.0),  # posterolateral wall (latissimus)
    (5, -0.2, 0.98, 1.0),  # back, continuous with the erector spinae
)


@dataclass
class _Trunk:
    """Key landmarks of one abdomen, shared by the organ painters (mm; y grows towards posterior)."""

    wall: _Blob  # outer boundary of the muscular shell
    cavity: _Blob  # inner boundary: peritoneal + retroperitoneal space
    fat_mm: float
    vertebra_a: float  # vertebral body semi-axes and centre row
    vertebra_b: float
    vertebra_y: float
    canal_r: float
    canal_y: float
    back_inner: float  # front of the back muscles' shell

    @property
    def cav(self) -> _Frame:
        return _Frame.of(self.cavity)


def _paint_trunk_wall(scene: _Scene, group_fat: dict[int, float]) -> _Trunk:
    """Skin, subcutaneous fat, the muscular shell split into wall muscles, and the fat-filled cavity."""
    rng, z = scene.rng, scene.grid.z
    fat_mm = rng.uniform(8.0, 45.0)
    wall_a = min(rng.uniform(120.0, 165.0), 0.46 * scene.grid.fov - 1.2 * fat_mm)
    wall_b = min(rng.uniform(88.0, 115.0), 0.8 * wall_a)
    wall = _make_blob(rng, z, (0.0, 0.0), (wall_a, wall_b), wobble=0.04)
    outer = wall.grown(fat_mm * rng.uniform(0.8, 1.2), fat_mm * rng.uniform(0.7, 1.1)).rewobbled(rng, z, 0.02)
    outer = replace(outer, cy=outer.cy - _FLOAT(0.15 * fat_mm))  # more fat in front than behind
    scene.paint_layers(outer, rng.uniform(1.5, 2.5), "subcutaneous_fat")

    wall_thickness = rng.uniform(9.0, 16.0)
    cavity = wall.shrunk(wall_thickness)
    scene.paint_blob(cavity, "visceral_fat")  # first, so that the Voronoi split only sees the thin shell
    layout = [(g, sign * x, y, w) for g, x, y, w in ABDOMINAL_WALL for sign in (1.0, -1.0)]
    seeds = _add_muscle_seeds(scene, _Frame.of(wall), layout, group_fat)
    scene.paint_muscles(wall, seeds, septum_mm=rng.uniform(0.8, 2.0), bend_mm=rng.uniform(8.0, 15.0))

    vertebra_a, vertebra_b = rng.uniform(20.0, 25.0), rng.uniform(15.0, 19.0)
    vertebra_y = wall_b - rng.uniform(55.0, 70.0)
    canal_r = rng.uniform(7.0, 9.5)
    return _Trunk(
        wall,
        cavity,
        fat_mm,
        vertebra_a,
        vertebra_b,
        vertebra_y,
        canal_r,
        canal_y=vertebra_y + vertebra_b + canal_r + 1.0,
        back_inner=wall_b - wall_thickness,
    )


def _paint_back_muscles(scene: _Scene, trunk: _Trunk, group_fat: dict[int, float]) -> None:
    """Erector spinae behind the spine and quadratus lumborum beside it, each in a thin fat sheath."""
    rng, z = scene.rng, scene.grid.z
    for side in (-1.0, 1.0):
        rx, ry = rng.uniform(24.0, 34.0), max(10.0, (trunk.back_inner - trunk.canal_y + 12.0) / 2)
        erector = _make_blob(
            rng, z, (side * (0.85 * rx + 4.0), trunk.back_inner - ry + 4.0), (rx, ry), angle=side * 0.15
        )
        quadratus_centre = (
            side * (trunk.vertebra_a + rng.uniform(35.0, 50.0)),
            trunk.vertebra_y + rng.uniform(12.0, 22.0),
        )
        quadratus = _make_blob(
            rng, z, quadratus_centre, (rng.uniform(16.0, 24.0), rng.uniform(8.0, 13.0)), angle=-side * 0.5
        )
        for blob, group in ((erector, 5), (quadratus, 4)):
            muscle_id = scene.add_muscle(group, group_fat[group] * rng.uniform(0.9, 1.1))
            scene.paint_blob(blob.grown(1.5), "intermuscular_fat", only=("visceral_fat",))
            scene.paint_blob(
                blob, "muscle", muscle_id=muscle_id, only=("visceral_fat", "intermuscular_fat", "muscle")
            )


def _paint_bowel(scene: _Scene, trunk: _Trunk) -> None:
    """Bowel loops on a jittered lattice over the front of the cavity, meandering from slice to slice.

    The leaner the patient, the tighter they pack (less visceral fat in the gaps).
    """
    rng, z = scene.rng, scene.grid.z
    spacing = rng.uniform(0.22, 0.3)
    packing = float(np.clip(1.15 - trunk.fat_mm / 90.0 + rng.uniform(-0.15, 0.15), 0.5, 1.1))
    lattice = np.arange(-1.0, 1.0 + spacing, spacing)
    for gx in lattice:
        for gy in lattice:
            lx, ly = gx + rng.uniform(-0.3, 0.3) * spacing, gy + rng.uniform(-0.3, 0.3) * spacing
            if lx**2 + ly**2 > 0.8 or ly > 0.35:
                continue
            radius = 0.5 * spacing * packing * rng.uniform(0.8, 1.2) * float(np.mean(trunk.cavity.b))
            loop = _make_blob(
                rng,
                z,
                trunk.cav.place(lx, ly),
                (radius, radius * rng.uniform(0.6, 1.0)),
                angle=rng.uniform(0, math.pi),
                drift_mm=10.0,
                wobble=0.08,
            )
            scene.paint_blob(loop, "bowel", only=_CAVITY_TISSUES)
            contents = ("fluid", "air", "bowel")[rng.choice(3, p=[0.3, 0.2, 0.5])]
            scene.paint_blob(loop.scaled(rng.uniform(0.5, 0.75)), contents, only=("bowel",))


def _paint_liver_and_spleen(scene: _Scene, trunk: _Trunk) -> float:
    """Liver (patient's right, growing towards superior) with vessels and maybe a gallbladder or cyst; the
    spleen (left, posterior). Returns the liver's fat fraction (steatosis in some cases)."""
    rng, z = scene.rng, scene.grid.z
    cav = trunk.cav
    steatosis = rng.random() < LIVER_STEATOSIS_PROBABILITY
    liver_fat = float(rng.uniform(*(LIVER_STEATOSIS if steatosis else TISSUES["liver"].fat_fraction)))
    liver_profile = np.clip(rng.uniform(0.6, 0.85) + rng.uniform(0.1, 0.25) * z / 50.0, 0.15, 1.1)
    liver = _make_blob(rng, z, cav.place(-0.42, -0.1), (0.55, 0.75), profile=liver_profile, wobble=0.05)
    liver = replace(liver, a=liver.a * trunk.cavity.a, b=liver.b * trunk.cavity.b)
    scene.paint_blob(liver, "liver", only=_CAVITY_TISSUES)
    lobe_profile = np.clip(0.5 + (z - rng.uniform(-40.0, 20.0)) / 60.0, 0.0, 1.0)  # left lobe, higher up
    left_lobe = _make_blob(rng, z, cav.place(0.12, -0.55), (0.35, 0.3), profile=lobe_profile)
    left_lobe = replace(left_lobe, a=left_lobe.a * trunk.wall.a, b=left_lobe.b * trunk.wall.b)
    scene.paint_blob(left_lobe, "liver", only=_CAVITY_TISSUES)
    liver_frame = _Frame.of(liver)
    for _ in range(int(rng.integers(2, 6))):
        centre = liver_frame.place(*rng.uniform(-0.5, 0.5, 2))
        scene.paint_vessel(centre, rng.uniform(2.5, 6.0), artery=False, only=("liver",))
    if rng.random() < 0.35:  # gallbladder under the liver
        scene.paint_patches(
            _Frame.at(cav.place(-0.3, -0.45)),
            spread=1.0,
            count=1,
            radius_mm=(10.0, 18.0),
            tissue="fluid",
            only=("liver", "visceral_fat", "bowel"),
        )
    if rng.random() < 0.2:  # hepatic cyst
        scene.paint_patches(
            liver_frame, spread=0.5, count=1, radius_mm=(5.0, 20.0), tissue="fluid", only=("liver",)
        )

    spleen_profile = np.clip(rng.uniform(0.4, 0.9) + rng.uniform(0.2, 0.4) * z / 50.0, 0.0, 1.0)
    spleen = _make_blob(
        rng, z, cav.place(0.7, 0.4), (0.2, 0.38), angle=-0.5, profile=spleen_profile, wobble=0.06
    )
    spleen = replace(spleen, a=spleen.a * trunk.wall.a, b=spleen.b * trunk.wall.b)
    scene.paint_blob(spleen, "spleen", only=_CAVITY_TISSUES)
    return liver_fat


def _paint_kidneys_and_vessels(scene: _Scene, trunk: _Trunk) -> None:
    """Kidneys (ellipsoids along z, the right one lower) with renal sinus fat and sometimes a cyst; aorta and
    inferior vena cava in front of the spine."""
    rng, z = scene.rng, scene.grid.z
    z_left = rng.uniform(-30.0, 30.0)
    for side, z_centre in ((-1.0, z_left - rng.uniform(10.0, 25.0)), (1.0, z_left)):
        profile = _ellipsoid_profile(z, z_centre, rng.uniform(45.0, 60.0))
        centre = (
            side * (trunk.vertebra_a + rng.uniform(35.0, 50.0)),
            trunk.vertebra_y + rng.uniform(-12.0, 2.0),
        )
        kidney = _make_blob(
            rng,
            z,
            centre,
            (rng.uniform(25.0, 32.0), rng.uniform(17.0, 23.0)),
            angle=-side * rng.uniform(0.3, 0.7),
            profile=profile,
            wobble=0.03,
        )
        scene.paint_blob(kidney, "kidney", only=_CAVITY_TISSUES + ("liver", "spleen", "intermuscular_fat"))
        sinus = replace(kidney.scaled(0.4), cx=kidney.cx - side * 0.35 * kidney.a)  # hilum faces the spine
        scene.paint_blob(sinus, "visceral_fat", only=("kidney",))
        if rng.random() < 0.2:
            scene.paint_patches(
                _Frame.of(kidney),
                spread=0.6,
                count=1,
                radius_mm=(5.0, 15.0),
                tissue="fluid",
                only=("kidney", "visceral_fat"),
            )
    front = trunk.vertebra_y - trunk.vertebra_b
    scene.paint_vessel((rng.uniform(5.0, 15.0), front - 14.0), rng.uniform(8.0, 12.0), artery=True)  # aorta
    scene.paint_vessel((-rng.uniform(20.0, 30.0), front - 10.0), rng.uniform(8.0, 11.0), artery=False)  # IVC


def _paint_psoas(scene: _Scene, trunk: _Trunk, group_fat: dict[int, float]) -> None:
    """Psoas muscles alongside the vertebral body, growing towards inferior."""
    rng, z = scene.rng, scene.grid.z
    profile = np.clip(1.0 - rng.uniform(0.15, 0.35) * z / 50.0, 0.3, 1.6)
    for side in (-1.0, 1.0):
        r = rng.uniform(10.0, 17.0)
        centre = (side * (trunk.vertebra_a + 0.8 * r), trunk.vertebra_y - 0.1 * trunk.vertebra_b)
        psoas = _make_blob(rng, z, centre, (r, r * 1.2), angle=side * 0.3, profile=profile)
        muscle_id = scene.add_muscle(3, group_fat[3] * rng.uniform(0.9, 1.1))
        scene.paint_blob(psoas.grown(1.5), "intermuscular_fat", only=("visceral_fat",))
        scene.paint_blob(psoas, "muscle", muscle_id=muscle_id)


def _paint_spine(scene: _Scene, trunk: _Trunk) -> None:
    """Vertebral body (or a disc, depending on the slice), canal with CSF, posterior arch, spinous process."""
    rng, z = scene.rng, scene.grid.z
    vertebra = _make_blob(
        rng,
        z,
        (0.0, trunk.vertebra_y),
        (trunk.vertebra_a, trunk.vertebra_b),
        wobble=0.02,
        drift_mm=1.0,
        radius_drift=0.02,
    )
    level_height, disc_height = rng.uniform(26.0, 32.0), rng.uniform(7.0, 11.0)
    is_disc = (z - rng.uniform(0.0, level_height)) % (level_height + disc_height) < disc_height
    scene.paint_bone(vertebra, rng.uniform(1.0, 2.0), "marrow_vertebral", slices=~is_disc)
    scene.paint_blob(vertebra, "intervertebral_disc", slices=is_disc)
    canal_r, canal_y = trunk.canal_r, trunk.canal_y
    arch = _make_blob(rng, z, (0.0, canal_y + 2.0), (canal_r + 6.0, canal_r + 5.0), wobble=0.03, drift_mm=1.0)
    scene.paint_bone(arch, 1.5, "marrow_vertebral")
    spinous_half = max(5.0, (trunk.back_inner - 4.0 - canal_y - canal_r) / 2)
    spinous = _make_blob(
        rng, z, (0.0, canal_y + canal_r + spinous_half), (4.5, spinous_half), wobble=0.02, drift_mm=1.0
    )
    scene.paint_bone(spinous, 1.2, "marrow_vertebral")
    canal = _make_blob(rng, z, (0.0, canal_y), (canal_r * 1.2, canal_r), wobble=0.02, drift_mm=1.0)
    scene.paint_blob(canal, "fluid")


def _build_abdomen(scene: _Scene, group_fat: dict[int, float]) -> tuple[dict, float]:
    """Upper-lumbar cross-section, painted back to front; returns params and the liver's fat fraction."""
    rng = scene.rng
    trunk = _paint_trunk_wall(scene, group_fat)
    _paint_back_muscles(scene, trunk, group_fat)
    _paint_bowel(scene, trunk)
    liver_fat = _paint_liver_and_spleen(scene, trunk)
    _paint_kidneys_and_vessels(scene, trunk)
    _paint_psoas(scene, trunk, group_fat)
    if rng.random() < 0.15:  # edema inside muscle, before the bones go on top
        scene.paint_patches(
            _Frame.of(trunk.wall),
            spread=0.9,
            count=int(rng.integers(1, 3)),
            radius_mm=(8.0, 20.0),
            tissue="edema",
            only=("muscle",),
            muscle_id=None,
        )
    _paint_spine(scene, trunk)
    params = {
        "subcutaneous_fat_mm": round(trunk.fat_mm, 2),
        "liver_fat_fraction": round(liver_fat, 4),
        "steatosis": liver_fat > TISSUES["liver"].fat_fraction[1],
    }
    return params, liver_fat


# ---------------------------------------------------------------------------------------------------------
# Physics and acquisition
# ---------------------------------------------------------------------------------------------------------
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
) -> tuple[np.ndarray, ...]:
    """Oversampled tissue maps -> partial-volume T2w signal, fat PD and total PD at output resolution.

    ``fat_shift`` = (axis, sub-voxels): the T2w fat signal is displaced along the readout axis (chemical
    shift of a low-bandwidth TSE); the Dixon-like fat PD is not.
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

    signal = _sum_subvoxels(water_signal)
    signal += fat_weight * _sum_subvoxels(_shifted(fat_pd, *fat_shift))
    return signal, _sum_subvoxels(fat_pd), _sum_subvoxels(total_pd)


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
    fov = float(axes[2][-1] - axes[2][0])
    bias = _smooth_field(rng, axes, (150.0, 0.3 * fov, 0.3 * fov))
    inside = bias[body] if body.any() else bias
    low, high = float(inside.min()), float(inside.max())
    bias -= _FLOAT((low + high) / 2)
    bias *= _FLOAT(2 * bias_amplitude / max(high - low, 1e-6))
    bias += 1
    np.maximum(bias, _FLOAT(0.2), out=bias)
    sigma = _FLOAT(reference / snr)
    real = signal * bias
    real += sigma * rng.standard_normal(signal.shape, dtype=_FLOAT)
    imaginary = sigma * rng.standard_normal(signal.shape, dtype=_FLOAT)
    real *= real
    imaginary *= imaginary
    real += imaginary
    magnitude = np.sqrt(real, out=real)
    magnitude *= _FLOAT(scale / reference)
    return np.minimum(np.rint(magnitude, out=magnitude), _FLOAT(np.iinfo(np.uint16).max), out=magnitude)


# ---------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------
def simulate_case(
    anatomy: str = "thigh",
    *,
    size: int = 256,
    n_slices: int = 24,
    seed: int = 0,
    field_strength: float | None = None,
    return_tissues: bool = False,
) -> SimulatedCase:
    """Simulate one paired T2w/SFF volume; the same arguments always give bit-identical arrays.

    The seed fixes the anatomy and protocol independently of ``size`` and ``n_slices`` (a small preview shows
    the same patient). In-plane spacing is field of view / size: 1-2 mm at the default size of 256.
    ``field_strength`` (1.5 or 3.0 T) overrides the drawn one. ``return_tissues`` adds the dominant tissue per
    voxel (ids in ``TISSUE_IDS``; ``MIXED_TISSUE`` where no tissue fills 3 of the 4 sub-voxels), which is what
    tests and evaluations need to look at one tissue at a time.
    """
    if anatomy not in ANATOMIES:
        raise ValueError(f"unknown anatomy {anatomy!r}; valid anatomies: {', '.join(ANATOMIES)}")
    if size < 8 or n_slices < 1:
        raise ValueError(f"size must be >= 8 and n_slices >= 1, got size={size}, n_slices={n_slices}")
    if field_strength not in (None, 1.5, 3.0):
        raise ValueError(f"field_strength must be 1.5 or 3.0 (tesla) or None, got {field_strength}")
    # Independent streams, so that e.g. the anatomy of a seed does not change with size or field strength.
    protocol_rng, warp_rng, anatomy_rng, tissue_rng, noise_rng = (
        np.random.default_rng(stream)
        for stream in np.random.SeedSequence([seed, ANATOMIES.index(anatomy)]).spawn(5)
    )

    # Acquisition protocol.
    drawn_field = float(protocol_rng.choice([1.5, 3.0]))
    field_strength = drawn_field if field_strength is None else float(field_strength)
    tr, te = protocol_rng.uniform(3000.0, 3500.0), protocol_rng.uniform(80.0, 100.0)
    snr, bias_amplitude = protocol_rng.uniform(15.0, 50.0), protocol_rng.uniform(0.1, 0.3)
    scale = 10 ** protocol_rng.uniform(1.0, 3.5)
    # Fat-water chemical shift of the T2w readout: 3.4 ppm of the Larmor frequency over the pixel bandwidth.
    bandwidth_hz = protocol_rng.uniform(300.0, 800.0)
    shift_px = 3.4e-6 * GAMMA_HZ_PER_T * field_strength / bandwidth_hz
    readout_axis = int(protocol_rng.integers(1, 3))
    fat_shift = int(round(SUBVOXELS * shift_px)) * (1 if protocol_rng.random() < 0.5 else -1)
    thickness = protocol_rng.uniform(3.0, 6.0)
    n_limbs = 1 if anatomy == "abdomen" or protocol_rng.random() < 0.4 else 2
    fov = protocol_rng.uniform(*FOV_MM[anatomy, n_limbs])
    spacing = fov / size

    # Oversampled grid, pose and warp.
    fine = size * SUBVOXELS
    fine_axis = ((np.arange(fine) + 0.5) * fov / fine - fov / 2).astype(_FLOAT)
    z_mm = ((np.arange(n_slices) - (n_slices - 1) / 2) * thickness).astype(_FLOAT)
    warp_mm, warp_corr = warp_rng.uniform(2.0, 6.0), warp_rng.uniform(40.0, 80.0)
    fine_axes = (z_mm, fine_axis, fine_axis)
    warp = [_smooth_field(warp_rng, fine_axes, (150.0, warp_corr, warp_corr)) for _ in range(2)]
    grid = _Grid(
        x=fine_axis,
        y=fine_axis,
        z=z_mm,
        shift=tuple(warp_rng.uniform(-0.04, 0.04, 2) * fov),
        rotation=warp_rng.uniform(-0.1, 0.1),
        field_x=warp[0],
        field_y=warp[1],
        warp_mm=warp_mm,
    )
    scene = _Scene(grid, anatomy_rng)

    # Anatomy.
    label_names = ABDOMEN_LABELS if anatomy == "abdomen" else LIMB_LAYOUTS[anatomy].label_names
    overrides = {"paraspinal": HEALTHY_PARASPINAL_FAT}
    condition, group_fat = _draw_muscle_fat(anatomy_rng, label_names, overrides)
    props = _tissue_properties(tissue_rng, field_strength)
    if anatomy == "abdomen":
        anatomy_params, props["fat"][TISSUE_IDS["liver"]] = _build_abdomen(scene, group_fat)
    else:
        anatomy_params = _build_limbs(scene, anatomy, n_limbs, condition, group_fat)

    # Physics.
    # Muscle texture is built at output resolution: within one output voxel it would average out anyway.
    out_axis = ((np.arange(size) + 0.5) * spacing - fov / 2).astype(_FLOAT)
    out_axes = (z_mm, out_axis, out_axis)
    fibre_mm = tissue_rng.uniform(20.0, 40.0)  # fat streaks run along the fibres, i.e. through the slices
    marbling_mm, streak_mm = tissue_rng.uniform(5.0, 10.0), max(2.5, 1.2 * spacing)
    texture = (
        _smooth_field(tissue_rng, out_axes, (fibre_mm, marbling_mm, marbling_mm)),
        _smooth_field(tissue_rng, out_axes, (fibre_mm, streak_mm, streak_mm)),
    )
    signal, fat_pd, total_pd = _render(scene, props, tr, te, texture, (readout_axis, fat_shift))
    has_signal = total_pd > SIGNAL_PD_THRESHOLD
    sff = np.where(has_signal, fat_pd / np.where(has_signal, total_pd, 1), 0).clip(0, 1).astype(_FLOAT)

    # Acquisition: noise relative to healthy muscle (fat fraction 0.04) at this protocol.
    m = TISSUE_IDS["muscle"]
    reference = float(
        props["pd"][m]
        * (
            0.96 * _tse_weight(props["t1"][m], props["t2"][m], tr, te)
            + 0.04 * _tse_weight(props["t1"][-1], props["t2"][-1], tr, te)
        )
    )
    t2w = _acquire(noise_rng, signal, has_signal, out_axes, reference, snr, bias_amplitude, scale)

    group_lut = np.asarray(scene.muscle_group, np.uint16)
    labels = group_lut[_dominant_subvoxel(scene.muscle, 0)]
    tissues = _dominant_subvoxel(scene.tissue, MIXED_TISSUE)
    counts = np.bincount(labels.ravel(), minlength=len(label_names) + 1)
    sums = np.bincount(labels.ravel(), weights=sff.ravel(), minlength=len(label_names) + 1)
    params = {
        "anatomy": anatomy,
        "seed": int(seed),
        "size": int(size),
        "n_slices": int(n_slices),
        "field_strength_t": float(field_strength),
        "tr_ms": round(float(tr), 1),
        "te_ms": round(float(te), 1),
        "snr": round(float(snr), 2),
        "bias_amplitude": round(float(bias_amplitude), 3),
        "intensity_scale": round(float(scale), 3),
        "fov_mm": round(float(fov), 2),
        "bandwidth_hz_per_px": round(float(bandwidth_hz), 1),
        "readout_axis": readout_axis,
        "fat_shift_px": round(fat_shift / SUBVOXELS, 2),
        "condition": condition,
        "muscle_fat_fraction": {label_names[g]: round(v, 4) for g, v in group_fat.items()},
        "muscle_sff": {
            name: round(float(sums[g] / counts[g]), 4) for g, name in label_names.items() if counts[g]
        },
        "edema": bool((tissues == TISSUE_IDS["edema"]).any()),
        "fluid": bool((tissues == TISSUE_IDS["fluid"]).any()),
        "tissue_ids": dict(TISSUE_IDS),
        **anatomy_params,
    }
    return SimulatedCase(
        t2w=t2w,
        sff=sff,
        labels=labels,
        label_names=dict(label_names),
        spacing=(float(thickness), float(spacing), float(spacing)),
        params=params,
        tissues=tissues if return_tissues else None,
    )


def simulate_cases(
    n_cases: int, *, seed: int = 0, size: int = 256, n_slices: int = 24, return_tissues: bool = False
) -> Iterator[SimulatedCase]:
    """Yield ``n_cases`` cases; anatomies are shuffled within each block of three so they stay balanced.

    Case i uses the seed ``SeedSequence([seed, i]).generate_state(1)[0]`` (stored in ``params["seed"]``), so
    any single case can be regenerated with ``simulate_case`` alone.
    """
    order_rng = np.random.default_rng(np.random.SeedSequence([seed, 2**31]))
    order: list[str] = []
    for index in range(n_cases):
        if not order:
            order = [ANATOMIES[i] for i in order_rng.permutation(len(ANATOMIES))]
        case_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        yield simulate_case(order.pop(0), size=size, n_slices=n_slices, seed=case_seed, return_tissues=return_tissues)
