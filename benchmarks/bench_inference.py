"""Inference speed of the shipped U-Net and DDPM on this machine's best device; writes JSON.

    python benchmarks/bench_inference.py [--device auto] [--size 256] [--ddim-steps 1,10,50] [--out FILE]

Reports ms per 256x256 slice at batch size 1 (the paper's per-image latency) and at a larger batch
(throughput), median over repeats after a warm-up, and the DDPM/U-Net ratio measured in the same run — the
number to compare across machines, since absolute times are noisy here. Where the device runs bfloat16 in
hardware (CUDA, CPUs with native bf16), both models again in bfloat16 at batch 1 (the DDPM at 50 DDIM steps),
with how far its maps lie from float32's on a simulated thigh's middle slice (body voxels, the same noise).
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import time_call, torch_setup, write_report

from napari_sff.inference import load_model, predict_slices, resolve_device, run_settings
from napari_sff.inference.devices import cpu_has_native_bf16

#: The DDPM's steps for the precision comparison: predict's default.
DDPM_STEPS = 50


def bfloat16_rows(unet, ddpm, slices: np.ndarray, device, repeats: int) -> dict:
    """Both models at batch 1 in float32 and bfloat16 (timed in one run), and the maps' distance on a real slice."""
    from napari_sff.preprocess import body_mask
    from napari_sff.simulate import simulate_case

    rows: dict = {}
    for arch, model, steps in (("unet", unet, 1), ("ddpm", ddpm, DDPM_STEPS)):
        for precision in ("float32", "bfloat16"):
            seconds = time_call(lambda m=model, s=steps, p=precision: predict_slices(
                m, slices[:1], device=device, batch_size=1, ddim_steps=s, mirror=False, precision=p),
                1 if arch == "ddpm" else repeats)
            rows[f"{arch}_{precision}_ms_per_slice"] = 1000 * seconds
        rows[f"{arch}_bfloat16_speedup"] = rows[f"{arch}_float32_ms_per_slice"] / rows[f"{arch}_bfloat16_ms_per_slice"]
    case = simulate_case("thigh", seed=0)
    middle = case.t2w.shape[0] // 2
    t2w = case.t2w[middle:middle + 1]
    body = body_mask(t2w[0])
    for arch, model, steps in (("unet", unet, 1), ("ddpm", ddpm, DDPM_STEPS)):
        maps = {p: predict_slices(model, t2w, device=device, batch_size=1, ddim_steps=steps, mirror=False,
                                  precision=p)[0][0] for p in ("float32", "bfloat16")}
        apart = np.abs(maps["bfloat16"] - maps["float32"])[body]
        rows[f"{arch}_bfloat16_from_float32_pp"] = {"mean": 100 * float(apart.mean()),
                                                   "p99": 100 * float(np.percentile(apart, 99)),
                                                   "max": 100 * float(apart.max())}
    rows["ddpm_steps"] = DDPM_STEPS
    return rows


def main() -> int:

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
        seconds = time_call(lambda b=batch: predict_slices(unet, slices[:b], device=device, batch_size=b, mirror=False),
                            args.repeats)
        results["unet"][f"batch{batch}_ms_per_slice"] = 1000 * seconds / batch
    ddpm, _ = load_model("ddpm", None, device)
    for steps in [int(s) for s in args.ddim_steps.split(",")]:
        seconds = time_call(lambda s=steps: predict_slices(ddpm, slices[:1], device=device, batch_size=1,
                                                          ddim_steps=s), max(1, args.repeats // 2))
        results["ddpm"][f"steps{steps}_batch1_ms_per_slice"] = 1000 * seconds
    unet_ms = results["unet"]["batch1_ms_per_slice"]
    results["ddpm_over_unet_batch1"] = {key: value / unet_ms for key, value in results["ddpm"].items()}
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        results["bfloat16"] = bfloat16_rows(unet, ddpm, slices, device, args.repeats)
    results["setup"] = {**torch_setup(device, args.repeats), "size": args.size,
                        "precision": {arch: run_settings(model, device, 1).precision_on(device)
                                      for arch, model in (("unet", unet), ("ddpm", ddpm))}}
    write_report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
