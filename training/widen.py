"""Widen a U-Net checkpoint (Net2Net): every layer ``factor`` times as many channels, the same function.

    python -m training.widen napari_sff/weights/unet.safetensors runs/unet_w32.safetensors --factor 2

Why: whether a wider U-Net carries over better is a question of capacity, but a wider network trained from
scratch on a CPU budget mostly measures how far it got from random weights. Widening the shipped weights starts
the wider network exactly where the shipped one is, so fine-tuning both for the same wall time asks the capacity
question alone (``python -m training.train --init-weights OUT`` trains it in its own, wider architecture).

How (Chen et al., "Net2Net", 2016): each channel is copied ``factor`` times; a layer's weights from a copied
channel are divided by ``factor``, so every sum over the copies equals the original's. GroupNorm keeps its
number of groups, and each group holds the copies of its original channels only, so its mean and variance are the
original group's. ``noise`` perturbs every copy but the first (a fraction of the layer's weight SD): exact copies
would receive identical gradients and never become different channels.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from napari_sff.models import load_checkpoint, save_checkpoint
from napari_sff.models.unet import SFFUNet, UNetConfig


def _groups(channels: int) -> int:
    """GroupNorm's groups in SFFUNet (models.unet._norm_layer): 8 where possible, else 1."""
    return 8 if channels % 8 == 0 else 1


def channel_map(width: int, factor: int) -> np.ndarray:
    """For each channel of the ``factor``-times wider layer, the original channel it copies: group by group, the
    group's channels ``factor`` times over (so a GroupNorm group holds copies of its own channels only)."""
    groups = _groups(width)
    if _groups(width * factor) != groups:
        raise ValueError(f"cannot widen {width} channels by {factor}: GroupNorm would use {_groups(width * factor)} "
                         f"groups instead of {groups}; choose a factor that keeps the group count")
    size = width // groups
    return np.array([g * size + (o % size) for g in range(groups) for o in range(factor * size)])


def _copy(old: torch.Tensor, out_map: np.ndarray | None, in_map: np.ndarray | None, in_dim: int, factor: int,
          noise: float, generator: torch.Generator) -> torch.Tensor:
    """``old`` indexed along its output (dim 0 or, for a transposed convolution, 1) and input dims by the maps;
    weights from copied input channels divided by ``factor``; every output copy but the first perturbed."""
    out_dim = 1 - in_dim if old.dim() > 1 else 0
    new = old
    if out_map is not None:
        new = new.index_select(out_dim, torch.as_tensor(out_map))
    if in_map is not None and old.dim() > 1:
        new = new.index_select(in_dim, torch.as_tensor(in_map)) / factor
    new = new.clone()
    if noise > 0 and out_map is not None and old.dim() > 1:
        first = np.zeros(len(out_map), dtype=bool)
        first[np.unique(out_map, return_index=True)[1]] = True  # the first copy of each original channel
        later = torch.as_tensor(np.flatnonzero(~first))
        shape = list(new.shape)
        shape[out_dim] = len(later)
        jitter = noise * float(old.std()) * torch.randn(shape, generator=generator)
        new.index_add_(out_dim, later, jitter)
    return new


def widen_unet(model: SFFUNet, factor: int, noise: float = 0.0, seed: int = 0) -> SFFUNet:
    """A U-Net with ``factor`` times the channels of ``model`` at every level that computes the same map
    (exactly with ``noise=0``; ``noise`` is relative to each layer's weight SD)."""
    if factor < 1:
        raise ValueError(f"factor must be at least 1 (got {factor})")
    config = model.config
    if config.norm not in ("group", "none"):
        raise ValueError(f"only GroupNorm (or no norm) U-Nets can be widened here, not {config.norm!r}")
    wide = SFFUNet(UNetConfig(**{**vars(config), "base_channels": config.base_channels * factor}))
    widths = [config.base_channels * 2**i for i in range(config.depth)]
    maps = [channel_map(w, factor) for w in widths]
    old, new = model.state_dict(), {}
    generator = torch.Generator().manual_seed(seed)

    def copy(name: str, out_map, in_map, in_dim: int = 1) -> None:
        new[name] = _copy(old[name], out_map, in_map, in_dim, factor, noise, generator)

    def double_conv(prefix: str, in_map, out_map) -> None:
        for conv, norm, cin in ((0, 1, in_map), (3, 4, out_map)):
            copy(f"{prefix}.{conv}.weight", out_map, cin)
            if f"{prefix}.{conv}.bias" in old:
                copy(f"{prefix}.{conv}.bias", out_map, None)
            for part in ("weight", "bias"):
                if f"{prefix}.{norm}.{part}" in old:
                    new[f"{prefix}.{norm}.{part}"] = old[f"{prefix}.{norm}.{part}"][torch.as_tensor(out_map)].clone()

    for level, out_map in enumerate(maps):
        double_conv(f"encoders.{level}", None if level == 0 else maps[level - 1], out_map)
    for index, level in enumerate(range(config.depth - 2, -1, -1)):  # ups/decoders run from the bottom up
        low, high = maps[level], maps[level + 1]
        copy(f"ups.{index}.weight", low, high, in_dim=0)  # ConvTranspose2d: (in, out, kh, kw)
        copy(f"ups.{index}.bias", low, None)
        double_conv(f"decoders.{index}", np.concatenate([low, low + widths[level]]), low)  # cat(up, skip)
    copy("head.weight", None, maps[0])
    new["head.bias"] = old["head.bias"].clone()
    wide.load_state_dict(new)
    return wide.eval()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="U-Net .safetensors checkpoint")
    parser.add_argument("out", help="the widened checkpoint (.safetensors)")
    parser.add_argument("--factor", type=int, default=2, help="channels per original channel (default 2)")
    parser.add_argument("--noise", type=float, default=0.01,
                        help="perturbation of the copies, as a fraction of each layer's weight SD (default 0.01)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if Path(args.out).resolve() == Path(args.weights).resolve():
        raise SystemExit(f"{args.out}: the widened checkpoint must not replace its source; choose another name")
    model, header = load_checkpoint(args.weights, expected_arch="unet")
    wide = widen_unet(model, args.factor, args.noise, args.seed)
    metadata = dict(header.get("metadata", {}))
    metadata.pop("feature_statistics", None)  # the bottleneck is wider now: training stamps new ones
    from napari_sff.provenance import file_sha256

    metadata["widened_from"] = {"weights": Path(args.weights).name, "sha256": file_sha256(args.weights),
                                "factor": args.factor, "noise": args.noise, "seed": args.seed,
                                "base_channels": model.config.base_channels}
    save_checkpoint(wide, args.out, metadata=metadata)
    params = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in wide.parameters()))
    print(f"{args.weights} ({params[0]:,} parameters, base {model.config.base_channels}) -> {args.out} "
          f"({params[1]:,} parameters, base {wide.config.base_channels}, noise {args.noise})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
