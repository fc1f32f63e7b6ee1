"""The phase runner: every phase in a process of its own, killed at its budget (plus grace), its result or its
error (traceback, exit code, "killed") captured into the report, which is rewritten after each phase so that a
job cut short still brings back what it did. A phase that measures several things in turn (the benchmark)
leaves what it has so far with :func:`~.report.save_progress`, and a kill keeps it. Each process starting clean
also gives each phase clean CUDA memory.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from .phases import PHASE_FUNCTIONS
from .profiles import PHASES, PROFILES, RETURN_LIMITS
from .report import finite, log, markdown, partial_result, progress_path


def _phase_process(name: str, ctx: dict, plan: dict, result_path: str) -> None:
    """Child process: run one phase and leave its result (or its error) as JSON at ``result_path``."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would flood the log the device tool returns
    if ctx["device"] == "cpu":
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    started = time.perf_counter()
    ctx = {**ctx, "progress_path": str(progress_path(result_path))}
    try:
        result = {"status": "ok", **PHASE_FUNCTIONS[name](ctx, plan)}
    except Exception as exc:  # with what it measured before the error, if it saved any progress
        result = {**partial_result(result_path), "status": "error", "error": f"{type(exc).__name__}: {exc}"[:4000],
                  "traceback": traceback.format_exc()[-4000:]}
    result["seconds"] = round(time.perf_counter() - started, 2)
    from napari_sff.io import atomic_write_text

    atomic_write_text(result_path, json.dumps(finite(result), indent=1))


#: How the job's models start: from scratch, from the shipped weights, or (U-Net) from them made twice as wide.
INITS = ("scratch", "shipped", "widened")


def check_options(*, dry_run: bool = False, init: str = "scratch", unet_config: dict | None = None,
                  muscle_prior: str = "simulator", anatomies: Sequence[str] | None = None) -> None:
    """``run_job``'s options that cannot work, as a ``ValueError`` with one line, before any work."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, not {init!r}")
    from napari_sff.simulate.tissues import get_muscle_prior

    get_muscle_prior(muscle_prior)  # an unknown name fails here, not in the simulate phase's workers
    if anatomies is not None:
        from napari_sff.simulate.case import check_anatomies

        check_anatomies(anatomies)
    if unet_config and init != "scratch":
        raise ValueError("--unet-config trains a new architecture from scratch; it cannot fine-tune the shipped "
                         f"weights (drop --init {init})")
    if unet_config:
        check_weights_come_back(unet_config, PROFILES["dry" if dry_run else "gpu"]["unet"]["train"]["weights_dtype"])


def unet_weights_bytes(unet_config: dict, weights_dtype: str) -> int:
    """The tensors' bytes in a checkpoint of a U-Net of ``unet_config`` saved in ``weights_dtype`` (the file adds
    its JSON header: config and training card)."""
    import torch

    from napari_sff.models import build_model

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        state = build_model("unet", unet_config).state_dict()  # the parameters and the buffers
    return sum(t.numel() for t in state.values()) * torch.empty((), dtype=getattr(torch, weights_dtype)).element_size()


def check_weights_come_back(unet_config: dict, weights_dtype: str) -> None:
    """Refuse, before any work, a ``--unet-config`` whose weights file would be over the device tool's size for a
    returned file: the call's whole point would be left behind on the machine."""
    estimate, limit = unet_weights_bytes(unet_config, weights_dtype), RETURN_LIMITS["file_bytes"]
    if estimate > 0.97 * limit:  # the header (config, training card, intensity statistics) adds some kilobytes
        raise ValueError(f"--unet-config {json.dumps(unet_config)} makes U-Net weights of {estimate / 2**20:.1f} MiB "
                         f"in {weights_dtype}: over the device tool's {limit / 2**20:.0f} MiB for a returned file; "
                         "choose a smaller width or depth")


def run_job(out: str | Path, *, work: str | Path | None = None, dry_run: bool = False, domain: str = "default",
            total_s: float | None = None, phases: Sequence[str] = PHASES, start_method: str | None = None,
            init: str = "scratch", unet_config: dict | None = None, muscle_prior: str = "simulator",
            anatomies: Sequence[str] | None = None) -> dict:
    """Run every phase in its own process, each stopped at its budget; returns (and writes) the report.

    ``init="shipped"`` trains both models on from the weights in ``napari_sff/weights`` (in their own
    architecture) instead of from scratch; ``init="widened"`` does the same with the shipped U-Net made twice as
    wide first (``training.widen``: the same map, 4x the parameters); ``unet_config`` (e.g.
    ``{"base_channels": 32, "depth": 5}``) gives the U-Net trained from scratch another width or depth than the
    profile's; ``muscle_prior`` is the simulated cases' (``napari_sff.simulate.MUSCLE_PRIORS``) and ``anatomies``
    the rotation they go through (None: the domain's; ``simulate_cases``)."""
    check_options(dry_run=dry_run, init=init, unet_config=unet_config, muscle_prior=muscle_prior,
                  anatomies=anatomies)
    anatomies = list(anatomies) if anatomies is not None else None
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
           "device": profile["device"], "domain": domain, "init": init, "unet_config": unet_config,
           "muscle_prior": muscle_prior, "anatomies": anatomies}
    method = start_method or profile["start_method"]
    context = multiprocessing.get_context(method)
    if method == "fork":  # children inherit the imports instead of repeating them (CUDA is never touched here)
        import napari_sff.models  # noqa: F401
        import training.evaluate  # noqa: F401
        import training.train  # noqa: F401
    report: dict = {"command": " ".join(sys.argv), "profile": profile_name, "total_s": total, "work": str(work),
                    "init": init, "unet_config": unet_config, "muscle_prior": muscle_prior,
                    "anatomies": anatomies, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)), "phases": {}}
    log(started, f"gpu_job ({profile_name}): out {out}, work {work}, {total:.0f} s in all")
    for name in phases:
        left = deadline - time.time()
        plan = dict(profile[name])
        if name == "ablation":
            plan["budget_s"] = left - profile["grace_s"]
        kept = float(plan.get("leave_s", 0))  # for the phases after this one
        budget = min(float(plan.get("budget_s", left)), left - kept)
        if budget < 3:
            why = f"{max(0.0, left):.0f} s left" + (f", {kept:.0f} s of them kept for the phases after it" if kept else "")
            report["phases"][name] = {"status": "skipped", "error": f"skipped: {why}"}
            log(started, f"{name}: skipped, {why}")
            continue
        plan["budget_s"] = budget
        if "train_s" in plan:  # a shortened phase shortens its training by as much
            plan["train_s"] = max(0.5, min(plan["train_s"], budget - (profile[name]["budget_s"] - plan["train_s"])))
        log(started, f"{name}: starting, budget {budget:.0f} s")
        result_path = work / f"phase_{name}.json"
        result_path.unlink(missing_ok=True)
        progress_path(result_path).unlink(missing_ok=True)
        process = context.Process(target=_phase_process, args=(name, ctx, plan, str(result_path)), name=name)
        phase_started = time.perf_counter()
        process.start()
        process.join(budget + profile["grace_s"])
        if process.is_alive():
            process.kill()
            process.join(10)
            result = {**partial_result(result_path), "status": "killed",  # with what it measured before, if any
                      "error": f"killed after {time.perf_counter() - phase_started:.0f} s, over its budget of "
                               f"{budget:.0f} s (+{profile['grace_s']} s grace)"}
        elif result_path.exists():
            result = json.loads(result_path.read_text())
        else:
            result = {**partial_result(result_path), "status": "error",
                      "error": f"the phase process exited with code {process.exitcode} and left no result "
                               "(crashed or out of memory?)"}
        result["wall_seconds"] = round(time.perf_counter() - phase_started, 2)
        result["budget_s"] = round(budget, 1)
        report["phases"][name] = result
        log(started, f"{name}: {result['status']} in {result['wall_seconds']:.1f} s"
                     + (f" -- {result['error'][:300]}" if result.get("error") else ""))
        report["seconds"] = round(time.time() - started, 1)
        atomic_write_text(out / "gpu_job.json", json.dumps(report, indent=1))
    report["files"] = sorted(path.name for path in out.iterdir() if path.is_file())
    report["not_returnable"] = not_returnable(out, extra=["gpu_job.md"])  # gpu_job.md: written next, small
    atomic_write_text(out / "gpu_job.json", json.dumps(report, indent=1))
    atomic_write_text(out / "gpu_job.md", markdown(report))
    log(started, f"done in {time.time() - started:.0f} s: {', '.join(report['files'])}")
    for problem in report["not_returnable"]:
        log(started, f"warning: the device tool would not bring this back: {problem}")
    return report


def not_returnable(out: Path, extra: Sequence[str] = ()) -> list[str]:
    """What in ``out`` (plus the names ``extra``, about to be written) the device tool would leave behind
    (:data:`RETURN_LIMITS`): one line per problem, none when everything comes back."""
    import re

    files = {path.name: path.stat().st_size for path in out.iterdir() if path.is_file()}
    files |= {name: 0 for name in extra if name not in files}
    problems = [f"{name}: {size / 2**20:.1f} MiB, over {RETURN_LIMITS['file_bytes'] / 2**20:.0f} MiB"
                for name, size in sorted(files.items()) if size > RETURN_LIMITS["file_bytes"]]
    problems += [f"{name}: a name with other characters than letters, digits, '.', '_' and '-'"
                 for name in sorted(files) if not re.fullmatch(RETURN_LIMITS["name_pattern"], name)]
    if len(files) > RETURN_LIMITS["files"]:
        problems.append(f"{len(files)} files, over {RETURN_LIMITS['files']}")
    if sum(files.values()) > RETURN_LIMITS["total_bytes"]:
        problems.append(f"{sum(files.values()) / 2**20:.1f} MiB in all, over "
                        f"{RETURN_LIMITS['total_bytes'] / 2**20:.0f} MiB")
    return problems
