"""What the job says: timestamped progress lines (the device tool returns the log), strict JSON and the markdown
summary with one headline per phase (``gpu_job.md``)."""

from __future__ import annotations

import time


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


def markdown(report: dict) -> str:
    """The job at a glance: each phase's status and headline numbers."""
    phases = report["phases"]
    lines = [f"GPU job ({report['profile']}), started {report['started']}, {report.get('seconds', 0):.0f} s.", "",
             "| phase | status | seconds | headline |", "|---|---|---|---|"]
    for name, result in phases.items():
        lines.append(f"| {name} | {result['status']} | {result.get('wall_seconds', 0):.1f} | "
                     f"{(result.get('error') or _headline(name, result)).replace('|', '/')[:300]} |")
    if report.get("not_returnable"):
        lines += ["", "**The device tool would not bring back:** " + "; ".join(report["not_returnable"])]
    return "\n".join(lines) + "\n"


def _headline(name: str, result: dict) -> str:
    if name == "environment":
        return f"{result.get('gpu') or result.get('device')}, torch {result.get('torch')}, " \
               f"GEMM {result['gemm']['tflops']:.1f} TFLOP/s ({result['gemm']['dtype']})"
    if name == "simulate":
        prior = result.get("muscle_prior", "simulator")
        return f"{result['cases']} cases ({result['domain']}, muscle prior {prior}) at {result['cases_per_s']:.1f}/s"
    if name == "cache":
        return ", ".join(f"{k} {v['slices']} slices" for k, v in result["splits"].items())
    if name in ("unet", "ddpm"):
        return (f"{result['steps']} steps in {result['train_step_seconds']} s ({result['slices_per_s']:.0f} slices/s), "
                f"best val MAE {result['best_validation'].get('mae')}")
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
