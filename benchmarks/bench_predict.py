"""End-to-end ``predict_volume`` speed against this machine's float32 GEMM peak, measured in one run; writes JSON.

    python benchmarks/bench_predict.py [--device auto] [--slices 8] [--repeats 3] [--out docs/bench_predict_cpu.json]

In one run: the float32 GEMM peak (a 2048² product, best of several rounds: a shared machine's noise only slows it;
the faster of MKL's ``a @ b`` and oneDNN's 1 x 1 convolution, each recorded: on an AMD EPYC MKL reached less than
half of oneDNN's rate, see napari_sff.timing.gemm_rates),
the shipped U-Net's FLOPs per slice (counted with ``torch.utils.flop_counter``, on the padded grid the model
really sees), and for (a) a 256² volume at a pixel size inside the model's range and (b) a 512² volume at 0.7 mm
(resampled into the model's range and back): resample-in, model and resample-back ms/slice for every setting
tried (batch 1/2/4/8, channels-last or not, threads, and bfloat16 on CPUs that have it in hardware), each end to
end as a fraction of the GEMM peak of its precision, and ``predict_volume`` with the setting its calibration chose
for that slice size (``predict_volume``) and the same in float32 (``predict_volume_float32``, what issue #11's
targets are stated in): ``ms_per_slice`` is what ``napari-sff predict`` prints (the prediction's own time),
``wall_ms_per_slice`` the whole call's (it adds the out-of-distribution checks made after the prediction). Also the
pipeline as it was before (skimage resize in and cubic out, batch 1 contiguous on CPUs, batch 8 channels-last
on CUDA), timed in the same run, and the largest SFF difference between the two. Every U-Net pass is one per
slice (``mirror=False``) except ``predict_volume_mirrored``, predict's default (each slice and its mirror image:
twice the FLOPs, counted so in its fraction). Compare ratios, not absolute
times: the machine here is shared. Timing, FLOP count and GEMM rate are ``napari_sff.timing``'s (via _common).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from _common import forward_flops, gemm_rate, time_call, torch_setup, write_report

from napari_sff import inference
from napari_sff.inference import RunSettings, load_model, resolve_device
from napari_sff.inference.devices import cpu_has_native_bf16, device_description
from napari_sff.timing import gemm_rates

#: The side of the float32 square matmul the GEMM peak is measured with.
GEMM_SIZE = 2048


def gemm_peak(device, rounds: int = 3, dtype=None) -> float:
    """GFLOP/s of a GEMM_SIZE² product (float32 unless ``dtype``; napari_sff.timing's gemm_rate: the fastest
    kernel's best of ``rounds`` medians)."""
    return gemm_rate(device, GEMM_SIZE, dtype, rounds=rounds) / 1e9


def legacy_predict(array, spacing, model, device):
    """The pipeline before benchmarks/bench_predict.py existed: skimage resize in (linear, anti-aliased), the old
    per-device batch and memory format, skimage cubic back. Returns (sff, seconds by stage)."""
    import time

    from skimage.transform import resize

    def sk(stack, shape, order):
        out = (len(stack), *shape)
        shrinks = any(n < o for n, o in zip(out[1:], stack.shape[1:], strict=True))
        return resize(stack, out, order=order, anti_aliasing=shrinks, preserve_range=True).astype(np.float32)

    settings = RunSettings(8, True) if device.type == "cuda" else RunSettings(1, False)
    times = {}
    started = time.perf_counter()
    plan = inference.plan_slices(array, spacing, model, resample=False)
    axis = plan.axis
    in_plane = [float(v) for i, v in enumerate(spacing) if i != axis]
    target = inference.model_input_spacing(in_plane, model.input_spacing_mm)
    slices = plan.slices
    if target is not None:
        grid = [max(16, round(n * v / t)) for n, v, t in zip(slices.shape[1:], in_plane, target, strict=True)]
        slices = sk(slices, grid, 1)
    times["resample_in"] = time.perf_counter() - started
    started = time.perf_counter()
    sff, _ = inference.predict_slices(model, slices, device=device, settings=settings, mirror=False)
    times["model"] = time.perf_counter() - started
    started = time.perf_counter()
    if target is not None:
        sff = np.clip(sk(sff, plan.slices.shape[1:], 3), 0, 1)
    times["resample_back"] = time.perf_counter() - started
    return np.moveaxis(sff, 0, axis), times


def add_fractions(result: dict, peaks: dict[str, float]) -> None:
    """Fractions of the GEMM peak of each run's precision (``peaks``: GFLOP/s by precision) end to end, for the
    model alone, and against the peak measured beside it."""
    flops = result["gflop_per_slice"] * 1e9
    for config in result["configs"].values():
        peak = peaks[config["precision"]]
        config["model_fraction_of_peak"] = flops / (config["model_ms_per_slice"] / 1000) / 1e9 / peak
        config["end_to_end_fraction_of_peak"] = flops / (config["end_to_end_ms_per_slice"] / 1000) / 1e9 / peak
        config["end_to_end_fraction_of_peak_beside"] = (flops / (config["end_to_end_ms_per_slice"] / 1000) / 1e9
                                                        / config["gemm_peak_beside_gflops"])
    for key, passes in (("predict_volume", 1), ("predict_volume_float32", 1), ("predict_volume_mirrored", 2),
                        ("predict_volume_mirrored_float32", 2), ("before", 1)):
        peak = peaks[result[key].get("precision", "float32")]
        for timed, fraction in (("ms_per_slice", "fraction_of_peak"), ("wall_ms_per_slice", "wall_fraction_of_peak")):
            if timed in result[key]:
                result[key][fraction] = passes * flops / (result[key][timed] / 1000) / 1e9 / peak


def bench_volume(array, spacing, model, device, peaks: list[float], repeats, candidates) -> dict:
    """Times for one volume; ``peaks`` gets the float32 GEMM peak measured after each float32 setting (fractions
    come later)."""
    plan = inference.plan_slices(array, spacing, model)
    n = len(plan.slices)
    shape = plan.slices.shape[1:]
    import torch

    flops = forward_flops(model, torch.zeros(1, 1, *shape, device=device))
    per_slice = {"resample_in": time_call(lambda: inference.plan_slices(array, spacing, model), repeats) / n}
    sff, _ = inference.predict_slices(model, plan.slices, device=device, settings=candidates[0], mirror=False)
    per_slice["resample_back"] = time_call(lambda: inference.finish_slices(plan, sff, None), repeats) / n
    resample = per_slice["resample_in"] + per_slice["resample_back"]
    configs = {}
    for settings in candidates:
        seconds = time_call(lambda s=settings: inference.predict_slices(model, plan.slices, device=device,
                                                                          settings=s, mirror=False), repeats) / n
        total = seconds + resample
        # The peak beside it, in its precision: the load on a shared machine drifts. Float32's count for the run.
        precision = settings.precision_on(device)
        beside = gemm_peak(device, rounds=1, dtype=getattr(torch, precision))
        if precision == "float32":
            peaks.append(beside)
        configs[inference._candidate_name(settings)] = {
            "model_ms_per_slice": 1000 * seconds, "end_to_end_ms_per_slice": 1000 * total,
            "gemm_peak_beside_gflops": beside, "precision": precision}
    best_name = min(configs, key=lambda k: configs[k]["end_to_end_ms_per_slice"])

    # predict_volume as `napari-sff predict` runs it (its own ms/slice), with the calibrated settings.
    def run_new(mirror=False, precision=None):
        return inference.predict_volume(array, spacing, model=model, device=str(device), mirror=mirror,
                                        precision=precision)

    def printed_and_wall(mirror=False, precision=None) -> dict:
        """The ms/slice predict prints (the Prediction's own, median of the timed runs), the whole call's (which
        adds the out-of-distribution checks made after the prediction) and the precision it ran in."""
        runs = []
        wall = 1000 * time_call(lambda: runs.append(run_new(mirror, precision)), repeats) / n
        return {"ms_per_slice": float(np.median([r.ms_per_slice for r in runs[1:]])),  # runs[0]: the warm-up
                "wall_ms_per_slice": wall, "precision": runs[-1].precision}

    new = run_new(precision="float32")  # a first call calibrates for this slice size (not timed)
    chosen = inference._candidate_name(inference.run_settings(model, device, shape=shape))
    # Interleaved rounds, each variant's median over them: the load on a shared machine drifts within a run.
    variants = {"calibrated": (False, None), "float32": (False, "float32"), "mirrored": (True, None),
                "mirrored_float32": (True, "float32")}
    rounds: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(3):
        for name, how in variants.items():
            rounds[name].append(printed_and_wall(*how))
    timed = {name: {key: (float(np.median([r[key] for r in runs])) if key != "precision" else runs[-1][key])
                    for key in runs[0]} for name, runs in rounds.items()}
    # The old pipeline, timed and compared in the same run.
    old_sff, _ = legacy_predict(array, spacing, model, device)
    stages = [legacy_predict(array, spacing, model, device)[1] for _ in range(repeats)]
    old = {k: 1000 * float(np.median([s[k] for s in stages])) / n for k in stages[0]}
    old_total = sum(old.values())
    body = array > np.percentile(array, 99) * 0.1  # the body mask normalise_t2w uses, roughly: bright voxels
    difference = np.abs(new.sff - old_sff)
    precision_difference = np.abs(run_new().sff - new.sff)  # the calibrated precision's map against float32's
    return {
        "volume_shape": list(array.shape), "spacing_mm": list(spacing), "model_input_shape": list(shape),
        "gflop_per_slice": flops / 1e9,
        "resample_in_ms_per_slice": 1000 * per_slice["resample_in"],
        "resample_back_ms_per_slice": 1000 * per_slice["resample_back"],
        "configs": configs, "fastest_config": best_name,
        "predict_volume": {**timed["calibrated"], "settings": chosen},
        "predict_volume_float32": timed["float32"],
        "predict_volume_mirrored": timed["mirrored"],
        "predict_volume_mirrored_float32": timed["mirrored_float32"],
        "before": {"stages_ms_per_slice": old, "ms_per_slice": old_total},
        "speedup_over_before": old_total / timed["calibrated"]["ms_per_slice"],
        "sff_difference_to_before": {"max": float(difference.max()), "mean_in_body": float(difference[body].mean())},
        "sff_difference_calibrated_to_float32": {"max": float(precision_difference.max()),
                                                 "mean_in_body": float(precision_difference[body].mean())},
    }


def main() -> int:
    import torch

    from napari_sff.simulate import simulate_case

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="docs/bench_predict_cpu.json")
    args = parser.parse_args()
    # The calibration this run makes goes to a scratch cache, not the user's.
    os.environ["NAPARI_SFF_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_predict_")

    device = resolve_device(args.device)
    model, _ = load_model("unet", None, device)
    peaks = [gemm_peak(device)]
    winner, calibration = inference.calibrate(model, device)
    candidates = inference.calibration_candidates(device)
    if device.type == "cpu" and torch.get_num_threads() > 1:
        candidates += [RunSettings(1, cl, 1) for cl in (False, True)]
    low, high = model.input_spacing_mm
    inside = float(np.clip(1.5, low, high))
    cases = {
        "a_256_at_model_pixel_size": (simulate_case("thigh", size=256, n_slices=args.slices, seed=1).t2w,
                                      (5.0, inside, inside)),
        "b_512_at_0.7mm": (simulate_case("thigh", size=512, n_slices=args.slices, seed=1).t2w, (5.0, 0.7, 0.7)),
    }
    results: dict = {"calibration": {"winner": inference._candidate_name(winner), "ms_per_slice": calibration}}
    for name, (array, spacing) in cases.items():
        results[name] = bench_volume(array, spacing, model, device, peaks, args.repeats, candidates)
    # The machine's limit is the best GEMM rate seen in the run (contention only ever lowers it): strict fractions.
    kernels = {precision: {name: rate / 1e9 for name, rate in gemm_rates(
        device, GEMM_SIZE, getattr(torch, precision), rounds=3).items()} for precision in ("float32", "bfloat16")}
    peaks.append(max(kernels["float32"].values()))
    results["gemm_peak_gflops"] = {"used": max(peaks), "all": peaks,
                                   "kernels": kernels, "used_bfloat16": max(kernels["bfloat16"].values())}
    for name in cases:
        add_fractions(results[name], {"float32": results["gemm_peak_gflops"]["used"],
                                      "bfloat16": results["gemm_peak_gflops"]["used_bfloat16"]})
    results["setup"] = {**torch_setup(device, args.repeats), "slices": args.slices,
                        "physical_cores": inference._physical_cores(), "cpu": device_description(device),
                        "native_bf16": cpu_has_native_bf16() if device.type == "cpu" else None}
    write_report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
