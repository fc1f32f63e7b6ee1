"""Seconds to open a 512 x 512 x 200 uint16 DICOM MR series (~100 MB) as napari-sff does; JSON out.

    python benchmarks/bench_dicom_read.py [--rows 512] [--slices 200] [--repeats 3] [--out FILE]

The series is written first by tests/dicom_factory.py (single-frame MR files with shuffled names, oblique), once
without rescale (read as uint16) and once with a per-slice RescaleSlope/Intercept (read as float32). Measured,
median over repeats after one warm-up, files in the OS page cache (a first read from a cold disk adds the disk's
time for ~100 MB): the header scan (``io.list_series``), an eager read (``io.read_series``), a lazy read (dask
graph) plus one slice, and the napari reader (``io.read_dicom_layers``: what runs on the GUI thread).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import time_call, write_report

# tests/dicom_factory.py is run from a checkout: make it importable when this file is run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def measure(folder: Path, repeats: int) -> dict:
    from napari_sff import io

    info = io.list_series(folder)[0]
    lazy_first_slice = lambda: np.asarray(io.read_series(info, lazy=True).array[info_slices // 2])  # noqa: E731
    info_slices = len(info.files)
    volume = io.read_series(info)
    return {
        "dtype": str(volume.array.dtype),
        "output_mb": round(volume.array.nbytes / 1e6, 1),
        "scan_headers_s": round(time_call(lambda: io.list_series(folder), repeats), 3),
        "read_eager_s": round(time_call(lambda: io.read_series(info), repeats), 3),
        "read_lazy_plus_one_slice_s": round(time_call(lazy_first_slice, repeats), 3),
        "napari_reader_s": round(time_call(lambda: io.read_dicom_layers(folder), repeats), 3),
    }


def main() -> None:
    import dicom_factory

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "bench_dicom_read_cpu.json"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    values = rng.integers(0, 4000, size=(args.slices, args.rows, args.rows)).astype(np.float32)
    results: dict = {
        "series": f"{args.rows} x {args.rows} x {args.slices} single-frame MR, uint16 stored "
                  f"({values.size * 2 / 1e6:.0f} MB of pixels), oblique, shuffled file names",
        "machine": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "repeats": args.repeats, "page_cache": "warm (files just written)",
        "lazy_read_bytes_threshold": None,
    }
    from napari_sff.io.dicom import read

    results["lazy_read_bytes_threshold"] = read.LAZY_READ_BYTES
    with tempfile.TemporaryDirectory() as tmp:
        for variant, rescale in (("no_rescale", None), ("per_slice_rescale", True)):
            folder = Path(tmp) / variant
            slopes = np.linspace(1.0, 1.5, args.slices) if rescale else None
            intercepts = np.zeros(args.slices) if rescale else None
            started = time.perf_counter()
            dicom_factory.write_series(folder, values, slopes=slopes, intercepts=intercepts,
                                       orientation=dicom_factory.oblique_orientation(10.0, 5.0))
            results[variant] = {"write_s": round(time.perf_counter() - started, 2), **measure(folder, args.repeats)}
    write_report(results, args.out)


if __name__ == "__main__":
    main()
