"""Seconds per U-Net training step in float32 and under the mixed precision `training.train` would use; JSON out.

    python benchmarks/bench_training_step.py [--device cpu] [--batch 16] [--crop 128] [--out FILE]

One step = forward, L1 loss, backward and AdamW update on a random batch, with the shipped U-Net's
architecture; median over repeats after warm-up. The ratio float32 / mixed is the number to compare.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import time_call, torch_setup, write_report

# training/ is run from a checkout, not installed: make it importable when this file is run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def step_seconds(device, dtype, batch: int, crop: int, repeats: int) -> float:
    import torch

    from napari_sff.models import build_model, default_weights_path, read_metadata

    config = read_metadata(default_weights_path("unet"))["config"]
    model = build_model("unet", config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    t2w = torch.rand(batch, 1, crop, crop, generator=generator).to(device)
    sff = torch.rand(batch, 1, crop, crop, generator=generator).to(device)

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            prediction = model(t2w)
        loss = (prediction.float() - sff).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())  # wait for the device, as training.train does once per step

    return time_call(step, repeats, warmup=2)


def main() -> int:

    from napari_sff.inference import resolve_device
    from training.train import TrainConfig, autocast_dtype

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/training_step.json")
    args = parser.parse_args()

    device = resolve_device(args.device)
    mixed = autocast_dtype(TrainConfig(), device)
    results = {"float32_s_per_step": step_seconds(device, None, args.batch, args.crop, args.repeats)}
    if mixed is not None:
        results[f"{str(mixed).removeprefix('torch.')}_s_per_step"] = step_seconds(device, mixed, args.batch, args.crop,
                                                                                  args.repeats)
        results["float32_over_mixed"] = results["float32_s_per_step"] / list(results.values())[-1]
    results["setup"] = {**torch_setup(device, args.repeats), "mixed_precision": str(mixed), "batch": args.batch,
                        "crop": args.crop}
    write_report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
