"""One prepared command for a single H100/H200 lent for a few minutes: data, both models, evaluation, speed.

    python -m training.gpu_job --out DIR [--work DIR] [--domain randomized] [--total-s 530]
    python -m training.gpu_job --out DIR --dry-run      # every phase, tiny, on the CPU, in well under a minute

Phases, in order, each in a process of its own (a hung or crashed phase is killed at its budget and the next
one starts; CUDA memory starts clean): ``environment`` (versions, the GPU, a bf16 GEMM for the machine's peak),
``simulate`` (cases from ``napari_sff.simulate.simulate_cases`` on every core until the case count or the
budget is reached), ``cache`` (``training.data.build_slice_cache``), ``unet`` and ``ddpm`` (``training.train``
with bf16 autocast, channels-last, large batches and ``--time-budget-s``; the U-Net also torch.compile'd, and a
compile failure falls back to eager), ``evaluate`` (test split, ``training.evaluate``'s functions),
``benchmark`` (ms per 256² slice: U-Net at batch 1 and 64, DDPM at 50 DDIM steps batched, fp16 and bf16,
eager, CUDA graphs and torch.compile mode="reduce-overhead", against the targets) and, with the time left,
``ablation`` (``training.ddpm_ablation`` at a small equal budget per configuration).

``DIR`` receives few files, as the device tool brings back at most eight: ``gpu_job.json`` (every phase's numbers
or its error, rewritten after each phase), ``gpu_job.md``, ``unet.safetensors``, ``ddpm.safetensors`` (float16,
loadable with ``napari_sff.models.load_checkpoint``) and ``ablation.md``. Everything else (cases, cache, runs)
goes to ``--work``. Progress lines carry the wall clock and the seconds since the start. training/GPU.md says
how to launch it through the device tool.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("environment", "simulate", "cache", "unet", "ddpm", "evaluate", "benchmark", "ablation")
#: What the issue asks of one H100/H200 (ms per 256² slice, batched).
TARGETS_MS_PER_SLICE = {"unet": 0.25, "ddpm_50_steps": 25.0}

_GPU_TRAIN = {"amp": True, "channels_last": True, "workers": max(1, min(14, (os.cpu_count() or 2) - 2)),
              "weights_dtype": "float16", "ema_warmup": True, "epochs": 1_000_000, "crop": None}
_DDPM_ARCH = {"channels": [32, 64, 128, 128], "attention_levels": [False, False, False, True],
              "num_head_channels": 32, "norm_num_groups": 32}
_TINY_TRAIN = {"amp": False, "workers": 0, "batch_size": 2, "crop": 16, "cache_size": 32, "steps_per_epoch": 25,
               "epochs": 1_000_000, "val_slices": 2, "val_ddim_steps": 2, "weights_dtype": "float16",
               "ema_warmup": True, "device": "cpu"}
_TINY_UNET = {"base_channels": 4, "depth": 3}
_TINY_DDPM = {"channels": [8, 8, 8, 8], "attention_levels": [False, False, False, True], "num_head_channels": 8,
              "norm_num_groups": 4}

#: Seconds per phase (the process is killed at its budget plus ``grace_s``); training phases stop their steps
#: at ``train_s`` and use the rest for start-up, the final validation and checkpoints.
PROFILES: dict[str, dict] = {
    "gpu": {
        "total_s": 530, "grace_s": 10, "start_method": "spawn", "device": "auto",
        "environment": {"budget_s": 20, "gemm_size": 8192},
        "simulate": {"budget_s": 45, "cases": 192, "size": 256, "slices": 24, "seed": 2026},
        "cache": {"budget_s": 50, "size": 256},
        "unet": {"budget_s": 100, "train_s": 75, "model_config": {"base_channels": 16, "depth": 4},
                 "train": {**_GPU_TRAIN, "batch_size": 64, "lr": 2e-3, "steps_per_epoch": 300, "val_slices": 64,
                           "compile": True}},
        "ddpm": {"budget_s": 135, "train_s": 105, "model_config": _DDPM_ARCH,
                 "train": {**_GPU_TRAIN, "batch_size": 64, "lr": 3e-4, "ema": 0.999, "steps_per_epoch": 300,
                           "val_slices": 32, "val_ddim_steps": 10}},
        "evaluate": {"budget_s": 40, "max_images": 256, "ddpm_max_images": 64, "ddim_steps": 50, "batch_size": 64},
        "benchmark": {"budget_s": 70, "size": 256, "batches": [1, 64], "ddpm_batch": 64, "ddim_steps": 50,
                      "dtypes": ["float16", "bfloat16"], "repeats": 5, "compile_backend": "inductor"},
        "ablation": {"min_config_s": 15, "overhead_s": 12, "configs": ["v-linear", "eps-linear", "v-cosine",
                                                                       "eps-cosine", "unet"],
                     "max_images": 32, "ddim_steps": 50, "batch_size": 32,
                     "train": {**_GPU_TRAIN, "batch_size": 64, "steps_per_epoch": 200, "val_slices": 8,
                               "val_ddim_steps": 5}, "ddpm_config": _DDPM_ARCH,
                     "unet_config": {"base_channels": 16, "depth": 4}},
    },
    "dry": {
        "total_s": 120, "grace_s": 30, "start_method": "fork", "device": "cpu",
        "environment": {"budget_s": 20, "gemm_size": 256},
        "simulate": {"budget_s": 20, "cases": 6, "size": 32, "slices": 3, "seed": 1, "workers": 1},
        "cache": {"budget_s": 20, "size": 32, "workers": 1},
        "unet": {"budget_s": 20, "train_s": 1.0, "model_config": _TINY_UNET,
                 "train": {**_TINY_TRAIN, "compile": True, "compile_backend": "eager"}},
        "ddpm": {"budget_s": 20, "train_s": 1.0, "model_config": _TINY_DDPM, "train": _TINY_TRAIN},
        "evaluate": {"budget_s": 20, "max_images": 4, "ddpm_max_images": 2, "ddim_steps": 2, "batch_size": 2},
        "benchmark": {"budget_s": 30, "size": 16, "batches": [1, 4], "ddpm_batch": 2, "ddim_steps": 2,
                      "dtypes": ["float16"], "repeats": 1, "compile_backend": "eager"},
        "ablation": {"min_config_s": 0.5, "overhead_s": 4, "configs": ["v-linear", "eps-linear"], "max_images": 2,
                     "ddim_steps": 2, "batch_size": 2, "train": {**_TINY_TRAIN, "steps_per_epoch": 2},
                     "ddpm_config": _TINY_DDPM, "unet_config": _TINY_UNET, "max_config_s": 1.0},
    },
}


# ------------------------------------------------------------------------------------------------ logging
def log(started: float, message: str) -> None:
    """One progress line: wall clock, seconds since the job started, the message (flushed at once)."""
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - started:6.1f}s] {message}", flush=True)


# ------------------------------------------------------------------------------------------------- phases
def phase_environment(ctx: dict, plan: dict) -> dict:
    """Versions, the device and its measured matrix-multiply peak (what the speed results are a fraction of)."""
    import torch

    from napari_sff.inference import resolve_device

    try:
        from training.train import REQUIRED
    except ImportError:  # the report then names what is missing, from this list
        REQUIRED = ("torch", "numpy", "scipy", "nibabel", "monai", "einops", "safetensors", "tqdm")  # noqa: N806
    device = resolve_device(ctx["device"])
    result = {"python": sys.version.split()[0], "torch": torch.__version__, "device": str(device),
              "machine": platform.platform(), "cpu_count": os.cpu_count(),
              "packages": {name: _version(name) for name in (*REQUIRED, "skimage", "pydicom", "highdicom")},
              "missing": [name for name in REQUIRED if importlib.util.find_spec(name) is None]}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        result.update({"gpu": props.name, "capability": list(torch.cuda.get_device_capability(device)),
                       "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                       "multiprocessors": props.multi_processor_count, "cuda": torch.version.cuda,
                       "cudnn": torch.backends.cudnn.version(), "bf16": torch.cuda.is_bf16_supported()})
    n = plan["gemm_size"]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = _time(lambda: a @ b, repeats=10 if device.type == "cuda" else 3, warmup=3)
    result["gemm"] = {"size": n, "dtype": str(dtype).removeprefix("torch."), "tflops": 2 * n**3 / seconds / 1e12}
    return result


def _version(name: str) -> str | None:
    try:
        return importlib.import_module(name).__version__
    except Exception:
        return None


def _simulate_chunk(out_dir: str, chunk: int, count: int, seed: int, size: int, slices: int,
                    domain: str | None) -> list[str]:
    """Worker: ``count`` cases of one seed block written as uncompressed NIfTI (faster to write and read)."""
    import numpy as np

    from napari_sff import io
    from napari_sff.sample_data import case_volumes
    from napari_sff.simulate import simulate_cases

    extra = {"domain": domain} if domain else {}
    block_seed = int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])
    names = []
    for k, case in enumerate(simulate_cases(count, seed=block_seed, size=size, n_slices=slices, **extra)):
        name = f"b{chunk:04d}c{k}_{case.params.get('anatomy', 'case')}"
        for suffix, volume in case_volumes(case).items():
            io.write_nifti(volume, Path(out_dir) / f"{name}_{suffix}.nii", overwrite=True)
        names.append(name)
    return names


def domain_support(domain: str | None) -> tuple[str | None, str | None]:
    """(domain to pass, note): the domain only when the installed ``simulate_cases`` takes one."""
    from napari_sff.simulate import simulate_cases

    if not domain:
        return None, None
    if "domain" not in inspect.signature(simulate_cases).parameters:
        return None, f"domain {domain!r} ignored: this napari_sff.simulate.simulate_cases has no domain option"
    return domain, None


def phase_simulate(ctx: dict, plan: dict) -> dict:
    """Simulated paired cases on every core, block by block, until the case count or the budget is reached."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    data = Path(ctx["work"]) / "data"
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    domain, note = domain_support(ctx.get("domain"))
    block = 4 if domain == "randomized" else 3  # one shuffled block of anatomies per task keeps them balanced
    chunks = [(c, min(block, plan["cases"] - c * block)) for c in range((plan["cases"] + block - 1) // block)]
    deadline = time.time() + plan["budget_s"] - 5  # stop handing out blocks; running ones finish (seconds)
    args = (plan["seed"], plan["size"], plan["slices"], domain)
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
            "domain": domain or "default", "domain_note": note, "seconds": seconds, "workers": workers,
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
    config = TrainConfig(model=arch, data=str(Path(ctx["work"]) / "cache"), out=str(runs / arch),
                         model_config=plan["model_config"], time_budget_s=plan["train_s"], **settings)
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
    return {**result, "weights": weights.name, "best_validation": best, "steps": summary["steps"],
            "train_step_seconds": summary["train_step_seconds"], "stopped_by": summary["stopped_by"],
            "slices_per_s": slices / max(1e-9, summary["train_step_seconds"] or 0.0),
            "training": {k: v for k, v in vars(config).items() if k not in ("data", "out")},
            "metrics": log_rows}


def phase_unet(ctx: dict, plan: dict) -> dict:
    return _train_phase("unet", ctx, plan)


def phase_ddpm(ctx: dict, plan: dict) -> dict:
    return _train_phase("ddpm", ctx, plan)


def phase_evaluate(ctx: dict, plan: dict) -> dict:
    """Identity, U-Net and DDPM on the test split, with ``training.evaluate``'s scoring."""
    from napari_sff.inference import resolve_device
    from training.evaluate import identity_prediction, load_split, run_model, score

    device = resolve_device(ctx["device"])
    raw, truth = load_split(str(Path(ctx["work"]) / "cache"), "test", plan["max_images"])
    rows = {"identity": {**score(identity_prediction(raw), truth, raw)[0], "ms_per_image": 0.0}}
    for arch in ("unet", "ddpm"):
        weights = Path(ctx["out"]) / f"{arch}.safetensors"
        if not weights.exists():
            rows[arch] = {"error": f"no {weights.name}: its training phase failed"}
            continue
        count = plan["ddpm_max_images"] if arch == "ddpm" else None
        predicted, ms = run_model(arch, str(weights), raw[:count], device=device, batch_size=plan["batch_size"],
                                  ddim_steps=plan["ddim_steps"])
        rows[arch] = {**score(predicted, truth[:count], raw[:count])[0], "ms_per_image": ms}
        if arch == "ddpm":
            rows[arch]["ddim_steps"] = plan["ddim_steps"]
    return {"split": "test", "images": int(len(raw)), "batch_size": plan["batch_size"], "models": rows}


@functools.cache
def _bench_common():
    """benchmarks/_common.py, loaded from its file (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("napari_sff_bench_common", ROOT / "benchmarks" / "_common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    return common


def _time(function: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """The benchmarks' median timing (CUDA synchronised): benchmarks/_common.py's time_call."""
    return _bench_common().time_call(function, repeats, warmup)


def _forward_flops(model, example) -> float:
    """Floating-point operations of one forward pass (torch's FLOP counter: convolutions and matmuls)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(*example)
    return float(counter.get_total_flops())


def _benchmark_rows(name: str, variants: dict[str, Callable[[], Callable[[], object]]], per_call: int,
                    repeats: int, deadline: float, started: float) -> list[dict]:
    """Time each variant (a builder returning the call to time) while the budget lasts; errors become rows."""
    rows = []
    for label, build in variants.items():
        if time.time() > deadline:
            rows.append({"variant": label, "error": "skipped: the benchmark budget was spent"})
            continue
        try:
            call = build()
            seconds = _time(call, repeats, warmup=2)
            rows.append({"variant": label, "ms_per_slice": 1000 * seconds / per_call})
            log(started, f"benchmark {name} {label}: {rows[-1]['ms_per_slice']:.4f} ms/slice")
        except Exception as exc:
            rows.append({"variant": label, "error": f"{type(exc).__name__}: {exc}"[:500]})
    return rows


def _cuda_graph(function: Callable[[], object]) -> Callable[[], object]:
    """``function`` (static inputs inside) captured once as a CUDA graph; the returned call replays it."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("CUDA graphs need a CUDA device")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream, as capture requires
            function()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        function()
    return graph.replay


def phase_benchmark(ctx: dict, plan: dict) -> dict:
    """ms per slice of both networks in every variant that fits the budget; the targets and the best kept."""
    import copy

    import numpy as np
    import torch

    from napari_sff.inference import predict_slices, resolve_device
    from napari_sff.models import build_model, ddim_sample_loop, load_checkpoint

    device = resolve_device(ctx["device"])
    deadline = time.time() + plan["budget_s"] - 5
    size, repeats = plan["size"], plan["repeats"]
    backend = plan["compile_backend"]
    compile_options = {"mode": "reduce-overhead"} if backend == "inductor" else {}

    def trained_or_default(arch: str, default_config: dict):
        weights = Path(ctx["out"]) / f"{arch}.safetensors"
        if weights.exists():
            return load_checkpoint(weights, expected_arch=arch, device=str(device))[0].eval(), weights.name
        return build_model(arch, default_config).to(device).eval(), "untrained, " + json.dumps(default_config)

    result: dict = {"device": str(device), "size": size, "targets_ms_per_slice": TARGETS_MS_PER_SLICE,
                    "compile": {"backend": backend, **compile_options}}
    unet, result["unet_weights"] = trained_or_default("unet", PROFILES[ctx["profile"]]["unet"]["model_config"])
    x1 = torch.rand(max(plan["batches"]), 1, size, size, device=device)
    flops = _forward_flops(unet, (x1[:1],))
    result["unet_gflop_per_slice"] = flops / 1e9
    raw = np.random.default_rng(0).uniform(0, 1000, (max(plan["batches"]), size, size)).astype(np.float32)
    rows = []
    for batch in plan["batches"]:
        variants: dict[str, Callable] = {
            "predict_slices (numpy in/out, fp16 autocast on CUDA)":
                lambda b=batch: (lambda: predict_slices(unet, raw[:b], device=device, batch_size=b))}
        for dtype_name in plan["dtypes"]:
            dtype = getattr(torch, dtype_name)
            half = copy.deepcopy(unet).to(dtype=dtype, memory_format=torch.channels_last)
            x = x1[:batch].to(dtype=dtype).contiguous(memory_format=torch.channels_last)

            def eager(model=half, x=x):
                return lambda: _no_grad(model, x)

            def graphed(model=half, x=x):
                return _cuda_graph(lambda: _no_grad(model, x))

            def compiled(model=half, x=x):
                fast = torch.compile(model, backend=backend, **compile_options)
                return lambda: _no_grad(fast, x)

            variants.update({f"{dtype_name} eager": eager, f"{dtype_name} CUDA graph": graphed,
                             f"{dtype_name} torch.compile": compiled})
        for row in _benchmark_rows(f"unet batch {batch}", variants, batch, repeats, deadline, ctx["started"]):
            rows.append({"batch": batch, **row})
    result["unet"] = rows

    ddpm, result["ddpm_weights"] = trained_or_default("ddpm", PROFILES[ctx["profile"]]["ddpm"]["model_config"])
    batch, steps = plan["ddpm_batch"], plan["ddim_steps"]
    cond = torch.rand(batch, 1, size, size, device=device)
    timestep = torch.full((batch,), 999, dtype=torch.long, device=device)
    result["ddpm_network_gflop_per_slice_step"] = _forward_flops(
        ddpm.network, (torch.cat([cond[:1], cond[:1]], dim=1), timestep[:1])) / 1e9
    ac = ddpm.scheduler.alphas_cumprod
    variants = {}
    for dtype_name in plan["dtypes"]:
        dtype = getattr(torch, dtype_name)

        def autocast_sample(dtype=dtype):
            generator = torch.Generator(device=device).manual_seed(0)

            def call():
                with torch.autocast(device.type, dtype=dtype):
                    return ddpm.sample(cond, steps=steps, generator=generator)
            return call

        def network_loop(dtype=dtype, graph: bool = False, compiled: bool = False):
            network = copy.deepcopy(ddpm.network).to(dtype=dtype, memory_format=torch.channels_last)
            if compiled:
                network = torch.compile(network, backend=backend, **compile_options)
            x_in = torch.zeros(batch, 2, size, size, device=device, dtype=dtype)
            x_in[:, 1:] = cond.to(dtype)
            t_in = timestep.clone()
            out = {}

            def forward():
                with torch.inference_mode():
                    out["v"] = network(x_in, t_in)

            run = _cuda_graph(forward) if graph else forward

            def denoise(x, t):
                x_in[:, :1].copy_(x)
                t_in.fill_(t)
                run()
                return out["v"].float()

            def call():
                noise = torch.randn(batch, 1, size, size, device=device)
                return ddim_sample_loop(denoise, noise, ac, steps=steps, prediction_type=ddpm.config.prediction_type)
            return call

        variants.update({f"{dtype_name} autocast (ConditionalDDPM.sample)": autocast_sample,
                         f"{dtype_name} weights, eager": lambda d=dtype: network_loop(d),
                         f"{dtype_name} weights, CUDA graph per step": lambda d=dtype: network_loop(d, graph=True),
                         f"{dtype_name} weights, torch.compile": lambda d=dtype: network_loop(d, compiled=True)})
    result["ddpm"] = [{"batch": batch, "ddim_steps": steps, **row} for row in
                      _benchmark_rows(f"ddpm batch {batch}, {steps} steps", variants, batch, max(1, repeats // 2),
                                      deadline, ctx["started"])]
    result["best"] = _best(result)
    return result


def _no_grad(model, x):
    import torch

    with torch.inference_mode():
        return model(x)


def _best(result: dict) -> dict:
    """The fastest batched variant of each network, against its target."""
    best = {}
    largest = max((row["batch"] for row in result["unet"]), default=1)
    for key, rows, target in (("unet", [r for r in result["unet"] if r["batch"] == largest], "unet"),
                              ("ddpm", result["ddpm"], "ddpm_50_steps")):
        timed = [row for row in rows if "ms_per_slice" in row]
        if timed:
            fastest = min(timed, key=lambda row: row["ms_per_slice"])
            comparable = result["size"] == 256 and result["device"].startswith("cuda")  # what the targets are for
            best[key] = {**fastest, "target_ms_per_slice": TARGETS_MS_PER_SLICE[target],
                         "meets_target": fastest["ms_per_slice"] <= TARGETS_MS_PER_SLICE[target] if comparable
                         else None}
    return best


def phase_ablation(ctx: dict, plan: dict) -> dict:
    """training.ddpm_ablation with the seconds left split equally between as many configurations as fit."""
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
    report = run_ablation(str(Path(ctx["work"]) / "cache"), out, budget, configs, split="val",
                          max_images=plan["max_images"], ddim_steps=plan["ddim_steps"],
                          batch_size=plan["batch_size"], device=ctx["device"],
                          train={k: v for k, v in plan["train"].items() if k != "device"},
                          ddpm_config=plan["ddpm_config"], unet_config=plan["unet_config"],
                          log=lambda message: log(ctx["started"], message))
    shutil.copyfile(out / "ablation.md", Path(ctx["out"]) / "ablation.md")
    return report


PHASE_FUNCTIONS: dict[str, Callable[[dict, dict], dict]] = {
    "environment": phase_environment, "simulate": phase_simulate, "cache": phase_cache, "unet": phase_unet,
    "ddpm": phase_ddpm, "evaluate": phase_evaluate, "benchmark": phase_benchmark, "ablation": phase_ablation}


# ---------------------------------------------------------------------------------------------- the runner
def _phase_process(name: str, ctx: dict, plan: dict, result_path: str) -> None:
    """Child process: run one phase and leave its result (or its error) as JSON at ``result_path``."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would flood the log the device tool returns
    if ctx["device"] == "cpu":
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    started = time.perf_counter()
    try:
        result = {"status": "ok", **PHASE_FUNCTIONS[name](ctx, plan)}
    except Exception as exc:
        result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:4000],
                  "traceback": traceback.format_exc()[-4000:]}
    result["seconds"] = round(time.perf_counter() - started, 2)
    from napari_sff.io import atomic_write_text

    atomic_write_text(result_path, json.dumps(_finite(result), indent=1))


def _finite(value):
    """JSON without NaN/Infinity (strict parsers refuse them): such numbers become null."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def run_job(out: str | Path, *, work: str | Path | None = None, dry_run: bool = False, domain: str | None = None,
            total_s: float | None = None, phases: Sequence[str] = PHASES, start_method: str | None = None) -> dict:
    """Run every phase in its own process, each stopped at its budget; returns (and writes) the report."""
    from napari_sff.io import atomic_write_text

    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would flood the log the device tool returns
    profile_name = "dry" if dry_run else "gpu"
    profile = PROFILES[profile_name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(work) if work else Path(tempfile.mkdtemp(prefix="napari-sff-gpu-job-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    total = float(total_s or profile["total_s"])
    deadline = started + total
    ctx = {"out": str(out.resolve()), "work": str(work.resolve()), "started": started, "profile": profile_name,
           "device": profile["device"], "domain": domain}
    method = start_method or profile["start_method"]
    context = multiprocessing.get_context(method)
    if method == "fork":  # children inherit the imports instead of repeating them (CUDA is never touched here)
        import napari_sff.models  # noqa: F401
        import training.evaluate  # noqa: F401
        import training.train  # noqa: F401
    report: dict = {"command": " ".join(sys.argv), "profile": profile_name, "total_s": total, "work": str(work),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)), "phases": {}}
    log(started, f"gpu_job ({profile_name}): out {out}, work {work}, {total:.0f} s in all")
    for name in phases:
        left = deadline - time.time()
        plan = dict(profile[name])
        if name == "ablation":
            plan["budget_s"] = left - profile["grace_s"]
        budget = min(float(plan.get("budget_s", left)), left)
        if budget < 3:
            report["phases"][name] = {"status": "skipped", "error": f"skipped: {max(0.0, left):.0f} s left"}
            log(started, f"{name}: skipped, {max(0.0, left):.0f} s left")
            continue
        plan["budget_s"] = budget
        if "train_s" in plan:  # a shortened phase shortens its training by as much
            plan["train_s"] = max(0.5, min(plan["train_s"], budget - (profile[name]["budget_s"] - plan["train_s"])))
        log(started, f"{name}: starting, budget {budget:.0f} s")
        result_path = work / f"phase_{name}.json"
        result_path.unlink(missing_ok=True)
        process = context.Process(target=_phase_process, args=(name, ctx, plan, str(result_path)), name=name)
        phase_started = time.perf_counter()
        process.start()
        process.join(budget + profile["grace_s"])
        if process.is_alive():
            process.kill()
            process.join(10)
            result = {"status": "killed", "error": f"killed after {time.perf_counter() - phase_started:.0f} s, over "
                                                   f"its budget of {budget:.0f} s (+{profile['grace_s']} s grace)"}
        elif result_path.exists():
            result = json.loads(result_path.read_text())
        else:
            result = {"status": "error", "error": f"the phase process exited with code {process.exitcode} and "
                                                  "left no result (crashed or out of memory?)"}
        result["wall_seconds"] = round(time.perf_counter() - phase_started, 2)
        report["phases"][name] = result
        log(started, f"{name}: {result['status']} in {result['wall_seconds']:.1f} s"
                     + (f" -- {result['error'][:300]}" if result.get("error") else ""))
        report["seconds"] = round(time.time() - started, 1)
        atomic_write_text(out / "gpu_job.json", json.dumps(report, indent=1))
    report["files"] = sorted(path.name for path in out.iterdir() if path.is_file())
    atomic_write_text(out / "gpu_job.json", json.dumps(report, indent=1))
    atomic_write_text(out / "gpu_job.md", markdown(report))
    log(started, f"done in {time.time() - started:.0f} s: {', '.join(report['files'])}")
    return report


def markdown(report: dict) -> str:
    """The job at a glance: each phase's status and headline numbers."""
    phases = report["phases"]
    lines = [f"GPU job ({report['profile']}), started {report['started']}, {report.get('seconds', 0):.0f} s.", "",
             "| phase | status | seconds | headline |", "|---|---|---|---|"]
    for name, result in phases.items():
        lines.append(f"| {name} | {result['status']} | {result.get('wall_seconds', 0):.1f} | "
                     f"{(result.get('error') or _headline(name, result)).replace('|', '/')[:300]} |")
    return "\n".join(lines) + "\n"


def _headline(name: str, result: dict) -> str:
    if name == "environment":
        return f"{result.get('gpu') or result.get('device')}, torch {result.get('torch')}, " \
               f"GEMM {result['gemm']['tflops']:.1f} TFLOP/s ({result['gemm']['dtype']})"
    if name == "simulate":
        return f"{result['cases']} cases ({result['domain']}) at {result['cases_per_s']:.1f}/s"
    if name == "cache":
        return ", ".join(f"{k} {v['slices']} slices" for k, v in result["splits"].items())
    if name in ("unet", "ddpm"):
        return (f"{result['steps']} steps in {result['train_step_seconds']} s ({result['slices_per_s']:.0f} slices/s), "
                f"best val MAE {result['best_validation'].get('mae')}")
    if name == "evaluate":
        return "; ".join(f"{k} MAE {v.get('mae')}, r {v.get('r')}" for k, v in result["models"].items())
    if name == "benchmark":
        return "; ".join(f"{k} {v['variant']} batch {v['batch']}: {v['ms_per_slice']:.3f} ms/slice "
                         f"(target {v['target_ms_per_slice']})" for k, v in result.get("best", {}).items())
    if name == "ablation":
        return "; ".join(f"{row['config']}: {row.get('steps')} steps, MAE {row.get('mae')}" for row in result["rows"])
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.gpu_job", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the few files to bring back")
    parser.add_argument("--work", help="folder for cases, cache and runs (default: a new temporary folder)")
    parser.add_argument("--dry-run", action="store_true", help="every phase with tiny settings on the CPU")
    parser.add_argument("--domain", help="simulator domain (e.g. randomized), if the installed simulator has one")
    parser.add_argument("--total-s", type=float, help="seconds for the whole job (default: the profile's)")
    parser.add_argument("--phases", type=lambda s: [v for v in s.split(",") if v], default=list(PHASES),
                        help=f"comma-separated subset of {', '.join(PHASES)}")
    parser.add_argument("--start-method", choices=("spawn", "fork", "forkserver"),
                        help="how phase processes start (default: spawn on the GPU, fork for the dry run)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.phases if name not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    report = run_job(args.out, work=args.work, dry_run=args.dry_run, domain=args.domain, total_s=args.total_s,
                     phases=args.phases, start_method=args.start_method)
    failed = [name for name, result in report["phases"].items() if result["status"] != "ok"]
    return 1 if len(failed) == len(report["phases"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
