"""The job's phases, each a function ``(ctx, plan) -> result dict`` run in a process of its own by the runner:
versions and the GEMM peak, simulated cases, the slice cache, U-Net and DDPM training, scoring on the test split
and on independent phantoms, and the fair-DDPM ablation (the speed benchmark has a module of its own). Heavy imports stay inside the functions,
so a phase process imports only what its phase needs.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from napari_sff.timing import gemm_rate

from .benchmark import phase_benchmark
from .report import log


def phase_environment(ctx: dict, plan: dict) -> dict:
    """Versions, the device and its measured matrix-multiply peak (what the speed results are a fraction of)."""
    import torch

    from napari_sff.inference import resolve_device
    from training.requirements import REQUIRED, missing_requirements

    device = resolve_device(ctx["device"])
    result = {"python": sys.version.split()[0], "torch": torch.__version__, "device": str(device),
              "machine": platform.platform(), "cpu_count": os.cpu_count(),
              "packages": {name: _version(name) for name in (*REQUIRED, "skimage", "pydicom", "highdicom")},
              "missing": missing_requirements()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        result.update({"gpu": props.name, "capability": list(torch.cuda.get_device_capability(device)),
                       "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                       "multiprocessors": props.multi_processor_count, "cuda": torch.version.cuda,
                       "cudnn": torch.backends.cudnn.version(), "bf16": torch.cuda.is_bf16_supported()})
    n = plan["gemm_size"]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rate = gemm_rate(device, n, dtype, repeats=10 if device.type == "cuda" else 3, warmup=3)
    result["gemm"] = {"size": n, "dtype": str(dtype).removeprefix("torch."), "tflops": rate / 1e12}
    return result


def _version(name: str) -> str | None:
    try:
        return importlib.import_module(name).__version__
    except Exception:
        return None


def _simulate_chunk(out_dir: str, chunk: int, count: int, seed: int, size: int, slices: int,
                    domain: str, muscle_prior: str = "simulator", anatomies: list[str] | None = None) -> list[str]:
    """Worker: ``count`` cases of one seed block written as uncompressed NIfTI (faster to write and read)."""
    import numpy as np

    from napari_sff import io
    from napari_sff.sample_data import case_volumes
    from napari_sff.simulate import simulate_cases

    block_seed = int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])
    names = []
    for k, case in enumerate(simulate_cases(count, seed=block_seed, size=size, n_slices=slices, domain=domain,
                                                muscle_prior=muscle_prior, anatomies=anatomies)):
        name = f"b{chunk:04d}c{k}_{case.params.get('anatomy', 'case')}"
        for suffix, volume in case_volumes(case).items():
            io.write_nifti(volume, Path(out_dir) / f"{name}_{suffix}.nii", overwrite=True)
        names.append(name)
    return names


def phase_simulate(ctx: dict, plan: dict) -> dict:
    """Simulated paired cases on every core, block by block, until the case count or the budget is reached."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    data = Path(ctx["work"]) / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    domain = ctx.get("domain") or "default"
    anatomies = ctx.get("anatomies")
    # One shuffled block of anatomies per task keeps them balanced.
    block = len(anatomies) if anatomies else 4 if domain == "randomized" else 3
    chunks = [(c, min(block, plan["cases"] - c * block)) for c in range((plan["cases"] + block - 1) // block)]
    deadline = time.time() + plan["budget_s"] - 5  # stop handing out blocks; running ones finish (seconds)
    muscle_prior = ctx.get("muscle_prior") or "simulator"
    args = (plan["seed"], plan["size"], plan["slices"], domain, muscle_prior, anatomies)
    names: list[str] = []
    workers = plan.get("workers") or os.cpu_count() or 1
    started = time.perf_counter()
    if workers == 1:
        for chunk, count in chunks:
            if time.time() > deadline:
                break
            names += _simulate_chunk(str(data), chunk, count, *args)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending = {pool.submit(_simulate_chunk, str(data), chunk, count, *args) for chunk, count in chunks}
            while pending:
                done, pending = wait(pending, timeout=max(0.1, deadline - time.time()), return_when=FIRST_COMPLETED)
                for future in done:
                    names += future.result()
                if time.time() > deadline:
                    for future in pending:
                        future.cancel()
                    names += [name for future in pending if not future.cancelled() for name in future.result()]
                    break
    seconds = time.perf_counter() - started
    if not names:
        raise RuntimeError(f"no case finished within {plan['budget_s']} s; raise the simulate budget")
    return {"cases": len(names), "asked": plan["cases"], "size": plan["size"], "slices_per_case": plan["slices"],
            "domain": domain, "muscle_prior": muscle_prior, "anatomies": anatomies, "seconds": seconds, "workers": workers,
            "cases_per_s": len(names) / seconds, "folder": str(data)}


def phase_cache(ctx: dict, plan: dict) -> dict:
    """The slice cache every later phase trains and scores on."""
    from training.data import CACHE_INFO, build_slice_cache

    cache = Path(ctx["work"]) / "cache"
    if cache.exists():
        shutil.rmtree(cache)
    started = time.perf_counter()
    build_slice_cache(Path(ctx["work"]) / "data", cache, size=plan["size"], seed=0,
                      workers=plan.get("workers") or os.cpu_count() or 1)
    info = json.loads((cache / CACHE_INFO).read_text())
    return {"seconds": time.perf_counter() - started, "size": plan["size"], "refused": len(info["refused"]),
            "splits": {name: {"cases": len(split["cases"]), "slices": split["slices"]}
                       for name, split in info["splits"].items()}}


def _train_phase(arch: str, ctx: dict, plan: dict) -> dict:
    """Train ``arch`` for ``train_s`` seconds of steps; a failure with torch.compile is retried without it."""
    import csv
    from dataclasses import replace

    from training.train import TrainConfig, train

    runs = Path(ctx["work"]) / "runs"
    deadline = time.time() + plan["budget_s"]
    settings = {**TrainConfig.defaults_for(arch), **plan["train"], "device": ctx["device"]}
    model_config = plan["model_config"]
    if ctx.get("init") in ("shipped", "widened"):  # fine-tune the shipped weights, not from scratch
        from napari_sff.models import default_weights_path

        settings["init_weights"] = str(default_weights_path(arch))
        if "fine_tune_lr" in plan:  # a trained map takes smaller steps than a start from scratch
            settings["lr"] = plan["fine_tune_lr"]
        if arch == "unet" and ctx["init"] == "widened":  # twice as wide, computing the shipped map (training.widen)
            from training import widen

            settings["init_weights"] = str(Path(ctx["work"]) / "unet_widened.safetensors")
            widen.main([str(default_weights_path(arch)), settings["init_weights"], "--factor", "2"])
        model_config = None
    elif arch == "unet" and ctx.get("unet_config"):  # another width / depth, trained from scratch
        model_config = ctx["unet_config"]
    config = TrainConfig(model=arch, data=str(Path(ctx["work"]) / "cache"), out=str(runs / arch),
                         model_config=model_config, time_budget_s=plan["train_s"], **settings)
    if Path(config.out).exists():
        shutil.rmtree(config.out)
    result: dict = {}
    try:
        best = train(config)
    except Exception as exc:
        if not config.compile:
            raise
        overhead = plan["budget_s"] - plan["train_s"]
        left = deadline - time.time() - overhead
        result["compile_error"] = f"{type(exc).__name__}: {exc}"[:2000]
        log(ctx["started"], f"{arch}: training with torch.compile failed ({result['compile_error'][:200]}); "
                            f"{max(0.0, left):.0f} s left for eager training")
        if left < 5:
            raise
        config = replace(config, compile=False, out=config.out + "_eager", time_budget_s=left)
        best = train(config)
    run = Path(config.out)
    from training.ddpm_ablation import run_summary

    summary = run_summary(run)
    weights = Path(ctx["out"]) / f"{arch}.safetensors"
    shutil.copyfile(run / "last.safetensors", weights)
    with (run / "metrics.csv").open() as stream:
        log_rows = list(csv.DictReader(stream))
    slices = (summary["steps"] or 0) * config.batch_size
    return {**result, "weights": weights.name, "init": config.init_weights or "scratch",
            "model_config": config.model_config,
            "best_validation": best, "steps": summary["steps"],
            "train_step_seconds": summary["train_step_seconds"], "stopped_by": summary["stopped_by"],
            "first_step_seconds": summary["first_step_seconds"],
            "loader_wait_seconds": summary["loader_wait_seconds"],
            "slices_per_s": slices / max(1e-9, summary["train_step_seconds"] or 0.0),
            "training": {k: v for k, v in vars(config).items() if k not in ("data", "out")},
            "metrics": log_rows}


def phase_unet(ctx: dict, plan: dict) -> dict:
    return _train_phase("unet", ctx, plan)


def phase_ddpm(ctx: dict, plan: dict) -> dict:
    return _train_phase("ddpm", ctx, plan)


def _score_models(ctx: dict, plan: dict, cache: Path) -> dict:
    """Identity, and the U-Net and DDPM this job trained, on the test split of ``cache`` (evaluate's scoring)."""
    from napari_sff.inference import resolve_device
    from training.evaluate import evenly_spaced, identity_prediction, load_split, run_model, score

    device = resolve_device(ctx["device"])
    raw, truth = load_split(str(cache), "test", plan["max_images"])
    rows = {"identity": {**score(identity_prediction(raw), truth, raw)[0], "ms_per_image": 0.0}}
    for arch in ("unet", "ddpm"):
        weights = Path(ctx["out"]) / f"{arch}.safetensors"
        if not weights.exists():
            rows[arch] = {"error": f"no {weights.name}: its training phase failed"}
            continue
        index = evenly_spaced(len(raw), plan["ddpm_max_images"] if arch == "ddpm" else None)
        predicted, ms = run_model(arch, str(weights), raw[index], device=device, batch_size=plan["batch_size"],
                                  ddim_steps=plan["ddim_steps"])
        rows[arch] = {**score(predicted, truth[index], raw[index])[0], "ms_per_image": ms}
        if arch == "ddpm":
            rows[arch]["ddim_steps"] = plan["ddim_steps"]
    return {"split": "test", "images": int(len(raw)), "batch_size": plan["batch_size"], "models": rows}


def phase_evaluate(ctx: dict, plan: dict) -> dict:
    """Identity, U-Net and DDPM on the test split, with ``training.evaluate``'s scoring."""
    return _score_models(ctx, plan, Path(ctx["work"]) / "cache")


#: Issue #11's generalisation targets on phantoms of another family (body MAE per slice image, pooled r).
PHANTOM_TARGETS = {"unet_r": 0.97, "unet_mae_vs_identity": 0.5, "unet_roi_mae": 0.02, "ddpm_r": 0.95}


def phase_phantoms(ctx: dict, plan: dict) -> dict:
    """The independent check: phantoms of another family (``training.phantoms``), rendered on every core, scored
    like the test split, plus ROI means and the error by tissue over whole volumes, against issue #11's targets."""
    from napari_sff.inference import resolve_device
    from napari_sff.models import read_metadata
    from training.data import build_slice_cache
    from training.phantoms import write_cases
    from training.volume_checks import volume_checks

    work = Path(ctx["work"])
    folder, cache = work / "phantoms", work / "phantom_cache"
    for path in (folder, cache):
        if path.exists():
            shutil.rmtree(path)
    workers = plan.get("workers") or os.cpu_count() or 1
    started = time.perf_counter()
    write_cases(folder, plan["cases"], seed=plan["seed"], size=plan["size"], n_slices=plan["slices"],
                workers=min(workers, plan["cases"]))
    render_s = time.perf_counter() - started
    unet = Path(ctx["out"]) / "unet.safetensors"
    spacing = read_metadata(unet)["metadata"].get("input_spacing_mm") if unet.exists() else None
    build_slice_cache(folder, cache, size=plan["size"], val_fraction=0.0, test_fraction=1.0,
                      spacing_range=spacing, workers=min(workers, plan["cases"]))
    result = {"cases": plan["cases"], "seed": plan["seed"], "render_seconds": render_s, "spacing_range": spacing,
              **_score_models(ctx, plan, cache)}
    models = {arch: (str(Path(ctx["out"]) / f"{arch}.safetensors"), plan["ddim_steps"]) for arch in ("unet", "ddpm")
              if (Path(ctx["out"]) / f"{arch}.safetensors").exists()}
    checks = volume_checks(cache, "test", models, device=resolve_device(ctx["device"]),
                           batch_size=plan["batch_size"], rois=True, tissues=True)
    result["rois"] = {k: v for k, v in checks["rois"].items() if k != "means"}
    result["tissues"] = checks["tissues"]
    rows, rois = result["models"], result["rois"]
    met = {}
    if "r" in rows.get("unet", {}):
        met["unet_r"] = rows["unet"]["r"] >= PHANTOM_TARGETS["unet_r"]
        met["unet_mae_vs_identity"] = (rows["unet"]["mae"]
                                       <= PHANTOM_TARGETS["unet_mae_vs_identity"] * rows["identity"]["mae"])
        met["unet_roi_mae"] = rois.get("unet", {}).get("mae", float("inf")) <= PHANTOM_TARGETS["unet_roi_mae"]
    if "r" in rows.get("ddpm", {}):
        met["ddpm_r"] = rows["ddpm"]["r"] >= PHANTOM_TARGETS["ddpm_r"]
        met["ddpm_better_than_identity"] = rows["ddpm"]["mae"] < rows["identity"]["mae"]
    result["targets"] = {"targets": PHANTOM_TARGETS, "met": met}
    return result


def phase_ablation(ctx: dict, plan: dict) -> dict:
    """training.ddpm_ablation with the seconds left split equally between as many configurations as fit, scored on
    the validation split and on the independent phantoms."""
    from training.data import CACHE_INFO
    from training.ddpm_ablation import run_ablation

    left = plan["budget_s"]
    configs = list(plan["configs"])
    while configs and (left / len(configs) - plan["overhead_s"]) < plan["min_config_s"]:
        configs.pop()
    if not configs:
        raise RuntimeError(f"only {left:.0f} s left: not enough for one configuration")
    budget = min(plan.get("max_config_s", float("inf")), left / len(configs) - plan["overhead_s"])
    out = Path(ctx["work"]) / "ablation"
    if out.exists():
        shutil.rmtree(out)
    phantoms = Path(ctx["work"]) / "phantom_cache"  # the phantoms phase's, when it ran: scored there too
    report = run_ablation(str(Path(ctx["work"]) / "cache"), out, budget, configs, split="val",
                          independent=str(phantoms) if (phantoms / CACHE_INFO).exists() else None,
                          max_images=plan["max_images"], ddim_steps=plan["ddim_steps"],
                          batch_size=plan["batch_size"], device=ctx["device"],
                          train={k: v for k, v in plan["train"].items() if k != "device"},
                          ddpm_config=plan["ddpm_config"], unet_config=plan["unet_config"],
                          log=lambda message: log(ctx["started"], message))
    shutil.copyfile(out / "ablation.md", Path(ctx["out"]) / "ablation.md")
    return report


PHASE_FUNCTIONS: dict[str, Callable[[dict, dict], dict]] = {
    "environment": phase_environment, "simulate": phase_simulate, "cache": phase_cache, "unet": phase_unet,
    "ddpm": phase_ddpm, "evaluate": phase_evaluate, "phantoms": phase_phantoms, "benchmark": phase_benchmark,
    "ablation": phase_ablation}
