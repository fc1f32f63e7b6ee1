"""Time :func:`napari_sff.stats.roi_table` on a clinical-size volume and record the result as JSON.

Why: the ROI table is recomputed whenever the user edits labels or changes slice, so it has to
stay well under a second for a 512x512x100 volume with ~20 muscles and a few value maps.

Usage::

    python benchmarks/bench_stats.py [--out benchmarks/results/stats.json] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from napari_sff.io.atomic import atomic_write_text  # noqa: E402
from napari_sff.stats import roi_table  # noqa: E402


def make_case(
    shape: tuple[int, int, int], n_labels: int, n_sources: int, layout: str, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Synthetic label volume and float32 SFF maps.

    ``layout="muscles"``: a round "body" covering ~64% of every slice cut into ``n_labels``
    Voronoi cells (compact regions, like muscle segmentations), the same on every slice; one
    source is NaN outside the body, as a masked prediction would be.  ``layout="random"``:
    every voxel gets a random label (0..n_labels) - the cache-hostile worst case.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    if layout == "random":
        labels = rng.integers(0, n_labels + 1, shape, dtype=np.uint8)
        body = labels > 0
    else:
        yy, xx = np.mgrid[0:ny, 0:nx]
        cy, cx, radius = ny / 2, nx / 2, 0.45 * min(ny, nx)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        r = 0.9 * radius * np.sqrt(rng.random(n_labels))  # seeds inside the body: no empty cell
        phi = rng.uniform(0, 2 * np.pi, n_labels)
        seeds = np.stack([cy + r * np.sin(phi), cx + r * np.cos(phi)], axis=1)
        d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
        plane = np.where(inside, d2.argmin(axis=-1) + 1, 0).astype(np.uint8)
        labels = np.broadcast_to(plane, shape).copy()
        body = labels > 0
    values = {}
    for s in range(n_sources):
        v = rng.random(shape, dtype=np.float32)
        if s == n_sources - 1:
            v[~body] = np.nan
        values[f"source{s}"] = v
    return values, labels


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, write the JSON file and return its content."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stats.json"))
    parser.add_argument("--shape", type=int, nargs=3, default=(100, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--labels", type=int, default=20)
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layout", choices=("muscles", "random"), default="muscles")
    args = parser.parse_args(argv)

    shape = tuple(args.shape)
    values, labels = make_case(shape, args.labels, args.sources, args.layout)
    spacing = (3.0, 0.8, 0.8)
    reference = next(iter(values))

    def run(**kw: object) -> dict:
        """Median wall and CPU seconds; CPU time is less disturbed by other jobs on the machine."""
        wall, cpu = [], []
        for _ in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            rows = roi_table(values, labels, spacing, reference=reference, **kw)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        assert len(rows) == args.labels * args.sources
        return {
            "wall_seconds_median": round(statistics.median(wall), 4),
            "cpu_seconds_median": round(statistics.median(cpu), 4),
            "wall_seconds_all": [round(t, 4) for t in wall],
        }

    load_before = os.getloadavg()
    volume = run()
    one_slice = run(slice_index=shape[0] // 2, slice_axis=0)

    result = {
        "benchmark": "napari_sff.stats.roi_table",
        "shape": list(shape),
        "dtype": "float32",
        "n_labels": args.labels,
        "n_sources": args.sources,
        "layout": args.layout,
        "foreground_fraction": round(float(np.count_nonzero(labels)) / labels.size, 4),
        "repeats": args.repeats,
        "volume": volume,
        "one_slice": one_slice,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "loadavg_1min_before": round(load_before[0], 2),
        },
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
