"""Paired T2w / SFF slices for training: a one-off memory-mapped cache, splits by case, augmentation.

``python -m training.data DATA_DIR CACHE_DIR`` extracts every 2D slice once. Cases, not slices, are split
between train / val / test, so no subject leaks between them. The cache stores raw T2w (scanner units) so that
augmentation can vary what scanners vary before the shared normalisation runs.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_sff import io
from napari_sff.inference import choose_slice_axis
from napari_sff.preprocess import normalise_t2w

SPLITS = ("train", "val", "test")
CACHE_INFO = "cache.json"


def find_pairs(data_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(case id, T2w path, SFF path) for every ``<case>_t2w.nii[.gz]`` with a matching ``<case>_sff`` file."""
    data_dir = Path(data_dir)
    pairs = []
    for t2w in sorted(data_dir.glob("*_t2w.nii*")):
        case = io.nifti_stem(t2w)[: -len("_t2w")]
        matches = sorted(data_dir.glob(f"{case}_sff.nii*"))
        if matches:
            pairs.append((case, t2w, matches[0]))
    if not pairs:
        raise FileNotFoundError(f"{data_dir}: no <case>_t2w.nii.gz / <case>_sff.nii.gz pairs found")
    return pairs


def split_cases(cases: Sequence[str], *, val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Case id -> split, shuffled by ``seed``; every split gets at least one case when there are three."""
    order = np.random.default_rng(seed).permutation(len(cases))
    n_test = max(1 if len(cases) >= 3 else 0, round(test_fraction * len(cases)))
    n_val = max(1 if len(cases) >= 3 else 0, round(val_fraction * len(cases)))
    split = {}
    for rank, index in enumerate(order):
        split[cases[index]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split


def fit_to_size(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop or zero-pad the last two axes to ``size`` x ``size``."""
    out = np.zeros(image.shape[:-2] + (size, size), dtype=image.dtype)
    src, dst = [], []
    for extent in image.shape[-2:]:
        if extent >= size:
            start = (extent - size) // 2
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
        else:
            start = (size - extent) // 2
            src.append(slice(0, extent))
            dst.append(slice(start, start + extent))
    out[(..., *dst)] = image[(..., *src)]
    return out


def build_slice_cache(
    data_dir: str | os.PathLike, cache_dir: str | os.PathLike, *, size: int = 256, val_fraction: float = 0.15,
    test_fraction: float = 0.15, seed: int = 0,
) -> Path:
    """Extract all 2D slices of all pairs once into ``{split}_t2w.npy`` / ``{split}_sff.npy`` (float32)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pairs = find_pairs(data_dir)
    assignment = split_cases([case for case, _, _ in pairs], val_fraction=val_fraction,
                             test_fraction=test_fraction, seed=seed)
    slices: dict[str, dict[str, list]] = {s: {"t2w": [], "sff": [], "index": [], "spacing": []} for s in SPLITS}
    for case, t2w_path, sff_path in pairs:
        t2w, sff = io.read_nifti(t2w_path), io.read_nifti(sff_path)
        if t2w.array.shape != sff.array.shape:
            raise ValueError(f"{case}: T2w shape {t2w.array.shape} != SFF shape {sff.array.shape}")
        axis = choose_slice_axis(t2w.spacing, "auto")
        sff_array = sff.array.astype(np.float32)
        if io.sff_unit_scale(sff_array) != 1.0:
            sff_array = sff_array / np.float32(io.sff_unit_scale(sff_array))
        target = slices[assignment[case]]
        target["spacing"] += [float(v) for i, v in enumerate(t2w.spacing) if i != axis]  # slices are not resampled
        for k in range(t2w.array.shape[axis]):
            target["t2w"].append(fit_to_size(np.take(t2w.array, k, axis=axis).astype(np.float32), size))
            target["sff"].append(fit_to_size(np.clip(np.take(sff_array, k, axis=axis), 0, 1), size))
            target["index"].append([case, k])
    info = {"data_dir": str(Path(data_dir).resolve()), "size": size, "seed": seed, "splits": {}}
    for split, content in slices.items():
        for key in ("t2w", "sff"):
            array = np.stack(content[key]) if content[key] else np.zeros((0, size, size), np.float32)
            with io.atomic_write(cache_dir / f"{split}_{key}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, array)
        info["splits"][split] = {"slices": len(content["index"]),
                                 "cases": sorted({case for case, _ in content["index"]}),
                                 "index": content["index"],
                                 # What inference compares a user's pixels with (see training.train.seen_spacing_range).
                                 "in_plane_spacing_mm": ([min(content["spacing"]), max(content["spacing"])]
                                                         if content["spacing"] else None)}
    io.atomic_write_text(cache_dir / CACHE_INFO, json.dumps(info))
    return cache_dir


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
        theta = np.deg2rad(angle)
        matrix = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) / zoom
        centre = (np.array(t2w.shape) - 1) / 2
        offset = centre - matrix @ centre
        t2w = ndimage.affine_transform(t2w, matrix, offset, order=1, mode="constant")
        sff = ndimage.affine_transform(sff, matrix, offset, order=1, mode="constant")
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


class SliceDataset:
    """Map-style dataset over one split of the cache: (normalised T2w, SFF), each (1, H, W) float32.

    Arrays are memory-mapped, so DataLoader workers share the page cache instead of copies.
    """

    def __init__(self, cache_dir: str | os.PathLike, split: str, augmentation: Augmentation | None = None,
                 seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        cache_dir = Path(cache_dir)
        self.t2w = np.load(cache_dir / f"{split}_t2w.npy", mmap_mode="r")
        self.sff = np.load(cache_dir / f"{split}_sff.npy", mmap_mode="r")
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.t2w)

    def __getitem__(self, index: int):
        import torch

        t2w, sff = np.asarray(self.t2w[index]), np.asarray(self.sff[index])
        if self.augmentation is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            t2w, sff = self.augmentation(t2w, sff, rng)
        image = normalise_t2w(t2w)
        return torch.from_numpy(np.ascontiguousarray(image)[None]), torch.from_numpy(np.ascontiguousarray(sff)[None])


def augmentation_config(augmentation: Augmentation | None) -> dict | None:
    return None if augmentation is None else asdict(augmentation)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__)
    parser.add_argument("data_dir")
    parser.add_argument("cache_dir")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_slice_cache(args.data_dir, args.cache_dir, size=args.size, seed=args.seed)
    info = json.loads((Path(args.cache_dir) / CACHE_INFO).read_text())
    for split, content in info["splits"].items():
        print(f"{split}: {content['slices']} slices from {len(content['cases'])} cases")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
