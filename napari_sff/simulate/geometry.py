"""Smooth randomness, the oversampled grid, randomly perturbed blobs and the scene the anatomy is painted in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from napari_sff.simulate.tissues import _FLOAT, TISSUE_IDS


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
    fit_fov: float | None = None  # field of view the anatomy is fitted to, when it may exceed the image

    def __post_init__(self) -> None:
        # Largest displacement per mm of warp or bend: an exact bound keeps every blob's window tight.
        self.field_peak = max(float(np.abs(self.field_x).max()), float(np.abs(self.field_y).max()))

    @property
    def fov(self) -> float:
        if self.fit_fov is not None:
            return float(self.fit_fov)
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
