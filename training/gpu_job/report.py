"""What the job says: timestamped progress lines (the device tool returns the log), strict JSON and the markdown
summary with one headline per phase (``gpu_job.md``), and a phase's progress that outlives its process."""

from __future__ import annotations

import json
import time
from pathlib import Path


def log(started: float, message: str) -> None:
    """One progress line: wall clock, seconds since the job started, the message (flushed at once)."""
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - started:6.1f}s] {message}", flush=True)


def finite(value):
    """JSON without NaN/Infinity (strict parsers refuse them): such numbers become null."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def progress_path(result_path: str | Path) -> Path:
    """Where a phase's partial result lies beside its final one."""
    return Path(result_path).with_suffix(".partial.json")


def save_progress(ctx: dict, result: dict) -> None:
    """Leave ``result`` as what the phase has measured so far: if it is killed at its budget, the report keeps
    these numbers (status ``killed``) instead of losing them with the process."""
    from napari_sff.io import atomic_write_text

    if ctx.get("progress_path"):
        atomic_write_text(ctx["progress_path"], json.dumps(finite(result), indent=1))


def partial_result(result_path: Path) -> dict:
    """The last progress a phase saved (empty if none, or if it cannot be read)."""
    try:
        return json.loads(progress_path(result_path).read_text())
    except (OSError, ValueError):
        return {}


def markdown(report: dict) -> str:
    """The job at a glance: each phase's status and headline numbers."""
    phases = report["phases"]
    lines = [f"GPU job ({report['profile']}), started {report['started']}, {report.get('seconds', 0):.0f} s.", "",
             "| phase | status | seconds | headline |", "|---|---|---|---|"]
    for name, result in phases.items():
        said = "; ".join(part for part in (result.get("error"), _partial_headline(name, result)) if part)
        lines.append(f"| {name} | {result['status']} | {result.get('wall_seconds', 0):.1f} | "
                     f"{said.replace('|', '/')[:300]} |")
    if report.get("not_returnable"):
        lines += ["", "**The device tool would not bring back:** " + "; ".join(report["not_returnable"])]
    return "\n".join(lines) + "\n"


def _partial_headline(name: str, result: dict) -> str:
    """The headline of a finished phase, or of what a killed or crashed one measured before (save_progress)."""
    if result["status"] not in ("ok", "killed", "error"):
        return ""
    try:
        headline = _headline(name, result)
    except (KeyError, TypeError, ValueError):  # a phase that stopped before it had these numbers
        return ""
    return headline if result["status"] == "ok" or not headline else f"measured before: {headline}"


def _headline(name: str, result: dict) -> str:
    if name == "environment":
        return f"{result.get('gpu') or result.get('device')}, torch {result.get('torch')}, " \
               f"GEMM {result['gemm']['tflops']:.1f} TFLOP/s ({result['gemm']['dtype']})"
    if name == "simulate":
        prior = result.get("muscle_prior", "simulator")
        anatomies = ", ".join(result.get("anatomies") or ["the domain's anatomies"])
        return (f"{result['cases']} cases ({result['domain']}, muscle prior {prior}; {anatomies}) "
                f"at {result['cases_per_s']:.1f}/s")
    if name == "cache":
        return ", ".join(f"{k} {v['slices']} slices" for k, v in result["splits"].items())
    if name in ("unet", "ddpm"):
        return (f"{result['steps']} steps in {result['train_step_seconds']} s ({result['slices_per_s']:.0f} slices/s, "
                f"{result.get('loader_wait_seconds')} s of it waiting for the loader, first step "
                f"{result.get('first_step_seconds')} s), best val MAE {result['best_validation'].get('mae')}")
    if name == "evaluate":
        return "; ".join(f"{k} MAE {v.get('mae')}, r {v.get('r')}" for k, v in result["models"].items())
    if name == "phantoms":
        met = result.get("targets", {}).get("met", {})
        return ("; ".join(f"{k} MAE {v.get('mae')}, r {v.get('r')}" for k, v in result["models"].items())
                + f"; targets met: {', '.join(k for k, ok in met.items() if ok) or 'none'} of {len(met)}")
    if name == "benchmark":
        return "; ".join(f"{k} {v['variant']} batch {v['batch']}: {v['ms_per_slice']:.3f} ms/slice "
                         f"(target {v['target_ms_per_slice']})" for k, v in result.get("best", {}).items())
    if name == "ablation":
        return "; ".join(f"{row['config']}: {row.get('steps')} steps, MAE {row.get('mae')}" for row in result["rows"])
    return ""
