"""Cohort prediction: volumes per minute, one file after another vs the cohort runner (reads and writes overlapped).

``python benchmarks/bench_cohort.py [--device cpu|cuda] [--volumes 12]`` simulates T2w volumes (24 x 256², not
timed), then predicts all of them with the shipped U-Net twice in one process: a plain loop of read -> predict ->
write per file, and :func:`napari_sff.cohort.run_cohort` with the same three steps (what ``napari-sff predict
FOLDER -o OUT`` runs). Writes ``docs/bench_cohort_<device>.json``; compare the two rates of one run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import torch_setup, write_report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--volumes", type=int, default=12)
    parser.add_argument("--out")
    args = parser.parse_args()

    from napari_sff import cohort, io, jobs
    from napari_sff.inference import load_model, resolve_device
    from napari_sff.sample_data import write_cases

    device = resolve_device(args.device)
    settings = jobs.PredictSettings(device=str(device))
    load_model("unet", None, device)
    results = {"benchmark": "cohort prediction, shipped U-Net, 24 x 256² simulated T2w volumes",
               **torch_setup(device, repeats=1), "volumes": args.volumes}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_cases(tmp / "sim", args.volumes, seed=21, size=256, n_slices=24)
        for path in (tmp / "sim").glob("*_t2w.nii.gz"):
            (tmp / "in").mkdir(exist_ok=True)
            shutil.move(path, tmp / "in" / path.name)
        items = cohort.collect_inputs([tmp / "in"])
        warm = jobs.read_job(items[0].path, settings)
        jobs.predict_job(warm, settings)  # warm-up outside the clocks

        started = time.perf_counter()
        for item in items:
            job = jobs.read_job(item.path, settings)
            prediction = jobs.predict_job(job, settings)
            jobs.write_job(job, prediction, item.output(tmp / "loop"), settings)
        loop = time.perf_counter() - started

        summary = cohort.run_cohort(
            items, tmp / "cohort", read=lambda path: jobs.read_job(path, settings),
            predict=lambda job: jobs.predict_job(job, settings),
            write=lambda job, prediction, output: jobs.write_job(job, prediction, output, settings))
        assert len(summary.done) == len(items) and not summary.failed
        read_seconds = time.perf_counter()
        for item in items:
            io.read_volume(item.path)
        read_seconds = time.perf_counter() - read_seconds
    results.update({
        "loop_seconds": loop, "loop_volumes_per_minute": 60 * len(items) / loop,
        "cohort_seconds": summary.seconds, "cohort_volumes_per_minute": 60 * len(items) / summary.seconds,
        "speed_up": loop / summary.seconds, "reading_seconds_all_volumes": read_seconds,
    })
    write_report(results, args.out or ROOT / "docs" / f"bench_cohort_{device.type}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
