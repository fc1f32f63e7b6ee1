"""Slice-cache build: slices per second and peak memory against the number of cases (memory should stay flat).

``python benchmarks/bench_slice_cache.py`` simulates paired cases (not timed), then builds the cache of the first
half and of all of them, each in a fresh process so that its peak resident memory is its own, with 1 and with 2
worker processes; writes ``docs/bench_slice_cache_cpu.json`` with slices/s, peak RSS and what a NAKO-size set
(230,000 slices) would take at the measured rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import write_report  # noqa: E402

NAKO_SLICES = 230_048


def _build(data_dir: str, cache_dir: str, workers: int) -> None:
    """Child process: build the cache and print its numbers as JSON."""
    from training.data import CACHE_INFO, build_slice_cache

    started = time.perf_counter()
    build_slice_cache(data_dir, cache_dir, size=256, workers=workers)
    seconds = time.perf_counter() - started
    info = json.loads((Path(cache_dir) / CACHE_INFO).read_text())
    slices = sum(split["slices"] for split in info["splits"].values())
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"slices": slices, "seconds": seconds, "peak_rss_mb_largest_process": peak / 1024}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=42, help="24 slices each: 42 cases = 1,008 slices")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_slice_cache_cpu.json"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _build(args.child[0], args.child[1], int(args.child[2]))
        return 0
    from napari_sff.sample_data import write_cases

    results = {"benchmark": "slice cache build (256² slices, simulated NIfTI pairs)", "machine": platform.platform(),
               "cpu_count": os.cpu_count(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_cases(tmp / "all", args.cases, seed=11, size=256, n_slices=24)
        half = tmp / "half"
        half.mkdir()
        for path in sorted((tmp / "all").glob("*.nii.gz"))[: 3 * (args.cases // 2)]:  # t2w, sff, labels per case
            (half / path.name).symlink_to(path)
        for data, label in ((half, "half"), (tmp / "all", "all")):
            for workers in (1, 2):
                cache = tmp / f"cache_{label}_{workers}"
                out = subprocess.run([sys.executable, __file__, "--child", str(data), str(cache), str(workers)],
                                     capture_output=True, text=True, check=True, cwd=ROOT)
                run = json.loads(out.stdout.strip().splitlines()[-1])
                run.update(cases=len(list(data.glob("*_t2w.nii.gz"))), workers=workers,
                           slices_per_second=run["slices"] / run["seconds"])
                run["nako_hours_at_this_rate"] = NAKO_SLICES / run["slices_per_second"] / 3600
                results["runs"].append(run)
    write_report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
