"""The speed benchmark: ms per slice of the U-Net and the DDPM in every GPU variant (fp16/bf16 weights, eager,
CUDA graphs, torch.compile) that fits the budget, against the targets.

Timing (median, CUDA synchronised) and FLOP counts are :mod:`napari_sff.timing`'s, the ones the benchmarks and the
calibration use, so the job's numbers and theirs are measured the same way (``time_call`` is re-exported here for
the other phases). A variant that fails (no CUDA for a graph, a compiler error)
becomes a row with its error; the others still run.

Order and budget: a torch.compile build can take longer than everything else here together (inductor built the
U-Net's training step in 57 s on a 2-core CPU, 7 December 2026), so the variants that need no compiler run first,
for both networks, and the compiled ones after them, batched first (the targets are batched). Each row records
``first_call_s`` (building the variant and its first call: for torch.compile, the compile); a compile is not begun
when the budget left is under 1.25 x the longest one so far (and at least 20 s), and every row is saved as it is
measured (:func:`~.report.save_progress`), so a kill at the budget keeps the rows before it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from napari_sff.timing import forward_flops, time_call

from .profiles import PROFILES, TARGETS_MS_PER_SLICE
from .report import log, save_progress

__all__ = ["phase_benchmark", "time_call"]

#: A compile is begun only with this many times the longest compile so far left in the budget, plus the margin,
#: and never with less than the floor: the first has no compile to go by (the U-Net's inference took 20 s to build
#: on the 2-core CPU), and one begun too late is killed and takes its grace from the next phase.
COMPILE_HEADROOM = (1.25, 2.0)
FIRST_COMPILE_FLOOR_S = 20.0


@dataclass
class Variant:
    """One way of running a network: ``build()`` returns the call to time, ``per_call`` slices per call."""

    network: str  # "unet" or "ddpm": the list of the result it goes to
    label: str
    build: Callable[[], Callable[[], object]]
    per_call: int
    fields: dict = field(default_factory=dict)  # e.g. the batch, written into the row
    compiles: bool = False  # torch.compile: its build may take most of the budget


def run_variants(variants: list[Variant], result: dict, repeats: dict[str, int], deadline: float, ctx: dict,
                 clock: Callable[[], float] = time.time) -> None:
    """Time each variant in turn into ``result[variant.network]`` while the budget lasts; errors and skips become
    rows with their reason, and the result so far is saved after each row."""
    longest_compile = 0.0
    for variant in variants:
        row = {**variant.fields, "variant": variant.label}
        left = deadline - clock()
        needed = max(FIRST_COMPILE_FLOOR_S, COMPILE_HEADROOM[0] * longest_compile + COMPILE_HEADROOM[1])
        if left <= 0:
            row["error"] = "skipped: the benchmark budget was spent"
        elif variant.compiles and left < needed:
            row["error"] = (f"skipped: {left:.0f} s of the budget were left, under the {needed:.0f} s a compile "
                            + (f"needs after one of {longest_compile:.0f} s" if longest_compile else "needs at least"))
        else:
            try:
                started = clock()
                call = variant.build()
                time_call(call, 1, warmup=0)  # synchronised; for torch.compile this is the compile
                row["first_call_s"] = round(clock() - started, 3)
                if variant.compiles:
                    longest_compile = max(longest_compile, row["first_call_s"])
                row["ms_per_slice"] = 1000 * time_call(call, repeats[variant.network], warmup=1) / variant.per_call
                log(ctx["started"], f"benchmark {variant.network} {variant.fields} {variant.label}: "
                                    f"{row['ms_per_slice']:.4f} ms/slice (first call {row['first_call_s']:.1f} s)")
            except Exception as exc:
                if variant.compiles and "first_call_s" not in row:  # a failed compile still took its time
                    longest_compile = max(longest_compile, clock() - started)
                row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        result[variant.network].append(row)
        result["best"] = _best(result)
        save_progress(ctx, result)


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
                    "compile": {"backend": backend, **compile_options}, "unet": [], "ddpm": []}
    unet, result["unet_weights"] = trained_or_default("unet", PROFILES[ctx["profile"]]["unet"]["model_config"])
    x1 = torch.rand(max(plan["batches"]), 1, size, size, device=device)
    result["unet_gflop_per_slice"] = forward_flops(unet, x1[:1]) / 1e9
    raw = np.random.default_rng(0).uniform(0, 1000, (max(plan["batches"]), size, size)).astype(np.float32)
    plain: list[Variant] = []  # no compiler: quick to build, run first
    compiled: dict[str, list[Variant]] = {"unet batched": [], "ddpm": [], "unet batch 1": []}
    for batch in plan["batches"]:
        plain.append(Variant("unet", "predict_slices (numpy in/out, fp16 autocast on CUDA)",
                             lambda b=batch: (lambda: predict_slices(unet, raw[:b], device=device, batch_size=b,
                                                                     mirror=False)), batch, {"batch": batch}))
        for dtype_name in plan["dtypes"]:
            dtype = getattr(torch, dtype_name)
            half = copy.deepcopy(unet).to(dtype=dtype, memory_format=torch.channels_last)
            x = x1[:batch].to(dtype=dtype).contiguous(memory_format=torch.channels_last)

            def eager(model=half, x=x):
                return lambda: _no_grad(model, x)

            def graphed(model=half, x=x):
                return _cuda_graph(lambda: _no_grad(model, x))

            def fast(model=half, x=x):
                built = torch.compile(model, backend=backend, **compile_options)
                return lambda: _no_grad(built, x)

            plain += [Variant("unet", f"{dtype_name} eager", eager, batch, {"batch": batch}),
                      Variant("unet", f"{dtype_name} CUDA graph", graphed, batch, {"batch": batch})]
            compiled["unet batch 1" if batch == 1 else "unet batched"].append(
                Variant("unet", f"{dtype_name} torch.compile", fast, batch, {"batch": batch}, compiles=True))

    ddpm, result["ddpm_weights"] = trained_or_default("ddpm", PROFILES[ctx["profile"]]["ddpm"]["model_config"])
    batch, steps = plan["ddpm_batch"], plan["ddim_steps"]
    cond = torch.rand(batch, 1, size, size, device=device)
    timestep = torch.full((batch,), 999, dtype=torch.long, device=device)
    result["ddpm_network_gflop_per_slice_step"] = forward_flops(
        ddpm.network, torch.cat([cond[:1], cond[:1]], dim=1), timestep[:1]) / 1e9
    ac = ddpm.scheduler.alphas_cumprod
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

        fields = {"batch": batch, "ddim_steps": steps}
        plain += [Variant("ddpm", f"{dtype_name} autocast (ConditionalDDPM.sample)", autocast_sample, batch, fields),
                  Variant("ddpm", f"{dtype_name} weights, eager", lambda d=dtype: network_loop(d), batch, fields),
                  Variant("ddpm", f"{dtype_name} weights, CUDA graph per step",
                          lambda d=dtype: network_loop(d, graph=True), batch, fields)]
        compiled["ddpm"].append(Variant("ddpm", f"{dtype_name} weights, torch.compile",
                                        lambda d=dtype: network_loop(d, compiled=True), batch, fields, compiles=True))
    run_variants(plain + [variant for group in compiled.values() for variant in group], result,
                 {"unet": repeats, "ddpm": max(1, repeats // 2)}, deadline, ctx)
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
