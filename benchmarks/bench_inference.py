"""Inference speed of the shipped U-Net and DDPM on this machine's best device; writes JSON.

    python benchmarks/bench_inference.py [--device auto] [--size 256] [--ddim-steps 1,10,50] [--out FILE]

Reports ms per 256x256 slice at batch size 1 (the paper's per-image latency) and at a larger batch
(throughput), median over repeats after a warm-up, and the DDPM/U-Net ratio measured in the same run — the
number to compare across machines, since absolute times are noisy here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from napari_sff.inference import load_model, predict_slices, resolve_device


def time_call(function, repeats: int) -> float:
    """Median wall seconds of ``function()`` over ``repeats`` runs, after one warm-up run."""
    import torch

    function()
    samples = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ddim-steps", default="1,10,50")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    args = parser.parse_args()

    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    slices = rng.uniform(0, 1000, size=(args.batch, args.size, args.size)).astype(np.float32)
    results: dict = {"unet": {}, "ddpm": {}}

    unet, _ = load_model("unet", None, device)
    for batch in (1, args.batch):
        seconds = time_call(lambda b=batch: predict_slices(unet, slices[:b], device=device, batch_size=b),
                            args.repeats)
        results["unet"][f"batch{batch}_ms_per_slice"] = 1000 * seconds / batch
    ddpm, _ = load_model("ddpm", None, device)
    for steps in [int(s) for s in args.ddim_steps.split(",")]:
        seconds = time_call(lambda s=steps: predict_slices(ddpm, slices[:1], device=device, batch_size=1,
                                                          ddim_steps=s), max(1, args.repeats // 2))
        results["ddpm"][f"steps{steps}_batch1_ms_per_slice"] = 1000 * seconds
    unet_ms = results["unet"]["batch1_ms_per_slice"]
    results["ddpm_over_unet_batch1"] = {key: value / unet_ms for key, value in results["ddpm"].items()}
    results["setup"] = {
        "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "size": args.size, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.platform(), "cpu_count": os.cpu_count(), "repeats": args.repeats,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
