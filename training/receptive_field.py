"""How much of a slice one U-Net output pixel sees: the support and spread of its input gradient.

    python -m training.receptive_field [--weights W] [--size 256]

Issue #11 asks for a network that sees far enough to calibrate a case (to the subcutaneous fat). This measures
it on the real weights: the gradient of the centre output pixel with respect to a random input slice, its
support (the theoretical receptive field: GroupNorm's statistics make it the whole slice) and the radii that
hold 50 / 90 / 99 % of its absolute mass (the effective receptive field).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
import torch


def receptive_field(model: torch.nn.Module, size: int = 256, seed: int = 0) -> dict:
    """Support and gradient-mass radii (pixels) of the centre output pixel of ``model`` on a ``size``² slice."""
    model = model.float().eval()
    generator = torch.Generator().manual_seed(seed)
    x = (0.5 * torch.rand(1, 1, size, size, generator=generator)).requires_grad_(True)
    centre = size // 2
    model(x)[0, 0, centre, centre].backward()
    gradient = x.grad[0, 0].abs().numpy().astype(np.float64)
    rows, cols = np.flatnonzero(gradient.max(1) > 0), np.flatnonzero(gradient.max(0) > 0)
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - centre, xx - centre).ravel()
    order = np.argsort(radius, kind="stable")
    mass = np.cumsum(gradient.ravel()[order]) / gradient.sum()
    return {"size": size,
            "support_px": [int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)],
            **{f"radius_{int(share * 100)}pct_px": float(radius[order][np.searchsorted(mass, share)])
               for share in (0.5, 0.9, 0.99)}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.receptive_field", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="U-Net checkpoint (default: the shipped one)")
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    from napari_sff.inference import load_model

    model, _ = load_model("unet", args.weights, "cpu")
    print(json.dumps(receptive_field(model, args.size), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
