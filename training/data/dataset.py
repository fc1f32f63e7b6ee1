"""Training samples from the slice cache: augmentation that varies what scanners vary, and the dataset."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from napari_sff.preprocess import normalise_t2w
from training.data.cache import SPLITS, open_split


@dataclass
class Augmentation:
    """What real scanners vary, applied to raw T2w before normalisation (and geometry to both images)."""

    crop: int | None = 128          # random crop size (None: whole slice)
    flip_lr: float = 0.5            # left-right mirror probability (anatomy is roughly symmetric)
    flip_ud: float = 0.5            # with transpose: any of the 8 in-plane orientations, since users'
    transpose: float = 0.5          # scans may arrive sagittal-first, prone, or with swapped axes
    rotate_deg: float = 10.0        # uniform +- range
    zoom: tuple[float, float] = (0.85, 1.15)
    # Gamma and noise stay mild: SFF is read from relative T2w intensity, and healthy muscle sits at only ~0.1-0.3
    # of the 99th percentile, so gamma 0.8-1.25 or noise SD 0.05 (the first defaults) hide the very contrast the
    # model needs (validation MAE 0.0765 vs 0.0781 after the same 600 fine-tuning steps, milder vs first).
    gamma: tuple[float, float] = (0.9, 1.1)
    bias: float = 0.25              # max relative amplitude of a smooth multiplicative field
    noise: tuple[float, float] = (0.0, 0.02)  # Rician noise SD relative to the 99th percentile
    scale: tuple[float, float] = (0.1, 10.0)  # global intensity factor (log-uniform)

    def __post_init__(self) -> None:
        # Settings parsed from JSON (a run's config) give lists where the ranges are (low, high) tuples.
        for name, value in vars(self).items():
            if isinstance(value, list):
                setattr(self, name, tuple(value))

    def __call__(self, t2w: np.ndarray, sff: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        t2w, sff = self._geometry(t2w, sff, rng)
        reference = max(float(np.percentile(t2w, 99)), 1e-6)
        image = t2w / reference
        image = np.clip(image, 0, None) ** rng.uniform(*self.gamma)
        image = image * self._bias_field(image.shape, rng)
        sigma = rng.uniform(*self.noise)
        if sigma > 0:
            real = image + rng.normal(0, sigma, image.shape)
            image = np.hypot(real, rng.normal(0, sigma, image.shape))
        scale = np.exp(rng.uniform(np.log(self.scale[0]), np.log(self.scale[1])))
        return (image * reference * scale).astype(np.float32), sff.astype(np.float32)

    def _geometry(self, t2w, sff, rng):
        if rng.random() < self.flip_lr:
            t2w, sff = t2w[:, ::-1], sff[:, ::-1]
        if rng.random() < self.flip_ud:
            t2w, sff = t2w[::-1], sff[::-1]
        if rng.random() < self.transpose:
            t2w, sff = t2w.T, sff.T
        angle = rng.uniform(-self.rotate_deg, self.rotate_deg)
        zoom = rng.uniform(*self.zoom)
        if angle != 0 or zoom != 1:  # (a neutral Augmentation, as --robustness uses, leaves the pixels as they are)
            theta = np.deg2rad(angle)
            matrix = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) / zoom
            centre = (np.array(t2w.shape) - 1) / 2
            t2w, sff = warp_bilinear(np.stack([t2w, sff]), matrix, centre - matrix @ centre)
        if self.crop and self.crop < t2w.shape[0]:
            row, col = (rng.integers(0, extent - self.crop + 1) for extent in t2w.shape)
            t2w = t2w[row:row + self.crop, col:col + self.crop]
            sff = sff[row:row + self.crop, col:col + self.crop]
        return t2w, sff

    def _bias_field(self, shape, rng):
        rows, cols = (np.linspace(-1, 1, n) for n in shape)
        coefficients = rng.uniform(-1, 1, size=5) * self.bias / 2
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        field = 1 + coefficients[0] * rr + coefficients[1] * cc + coefficients[2] * rr * cc
        field += coefficients[3] * (rr**2 - 0.5) + coefficients[4] * (cc**2 - 0.5)
        return np.clip(field, 0.5, 1.5)


def warp_bilinear(images: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Each image of ``images`` (C, H, W) sampled at ``matrix @ (row, col) + offset`` for every output pixel,
    bilinearly, 0 beyond the edge pixels' centres fading in over one pixel: what ``scipy.ndimage.affine_transform(
    image, matrix, offset, order=1, mode="grid-constant")`` gives, as one torch ``grid_sample`` for all channels.

    It was the loader's largest cost: with scipy a 256² pair's augmentation and normalisation took 13.3 ms on one
    core, with this 7.6 ms (medians, interleaved in one run, 7 December 2026), and a loader worker gives 146 slices
    per second instead of 81: what a GPU training step waits for when the loader is its limit (training/GPU.md).
    Beyond the edge, scipy's ``mode="constant"`` (used until then) gave 0 at once instead of fading over a pixel.
    """
    import torch
    import torch.nn.functional as F

    channels, height, width = images.shape
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    source_rows = matrix[0, 0] * rows + matrix[0, 1] * cols + offset[0]
    source_cols = matrix[1, 0] * rows + matrix[1, 1] * cols + offset[1]
    # grid_sample's coordinates with align_corners=True: -1 and +1 are the centres of the first and last pixels.
    grid = np.stack([source_cols * (2 / max(width - 1, 1)) - 1, source_rows * (2 / max(height - 1, 1)) - 1], axis=-1)
    with torch.inference_mode():
        warped = F.grid_sample(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[None],
                               torch.from_numpy(grid.astype(np.float32))[None], mode="bilinear",
                               padding_mode="zeros", align_corners=True)
    return warped[0].numpy()


class SliceDataset:
    """Map-style dataset over one split of the cache: (normalised T2w, SFF), each (1, H, W) float32.

    Each case's slices are memory-mapped, so DataLoader workers share the page cache instead of copies.
    """

    def __init__(self, cache_dir: str | os.PathLike, split: str, augmentation: Augmentation | None = None,
                 seed: int = 0, normalisation: str = "p99"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        self.t2w, self.sff = open_split(cache_dir, split)
        self.augmentation = augmentation
        self.seed = seed
        self.normalisation = normalisation  # normalise_t2w's method: the model's input
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.t2w)

    def __getitem__(self, index: int):
        import torch

        t2w, sff = np.asarray(self.t2w[index]), np.asarray(self.sff[index])
        if self.augmentation is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            t2w, sff = self.augmentation(t2w, sff, rng)
        image = normalise_t2w(t2w, self.normalisation)
        return torch.from_numpy(np.ascontiguousarray(image)[None]), torch.from_numpy(np.ascontiguousarray(sff)[None])


def augmentation_config(augmentation: Augmentation | None) -> dict | None:
    return None if augmentation is None else asdict(augmentation)
