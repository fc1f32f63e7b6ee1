"""How fast the training loader feeds a model: slices per second per worker count, and one slice's cost; JSON out.

    python benchmarks/bench_loader.py [--cache DIR] [--workers 0 1 2] [--batch 64] [--batches 12] [--out FILE]

What `training.train` runs for each batch: `SliceDataset` items (read from the slice cache, `Augmentation` with the
training defaults on whole slices, the normalisation) collated by a `DataLoader`, as in the GPU job (whole 256²
slices, batches of 64). On a GPU the training step may wait for this (training/GPU.md, *Choices and why*):
``per_worker_slices_per_s`` times the job's 14 workers is what its loader can give. Without ``--cache`` a small
cache of the randomized simulator is built in a temporary folder first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import time_call, torch_setup, write_report

# training/ is run from a checkout, not installed: make it importable when this file is run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def loader_rate(dataset, workers: int, batch: int, batches: int) -> dict:
    """Slices per second once the first batch has come (the workers' start-up is reported apart)."""
    import numpy as np
    from torch.utils.data import DataLoader, Subset

    indices = np.random.default_rng(0).integers(0, len(dataset), batch * (batches + 1)).tolist()
    loader = DataLoader(Subset(dataset, indices), batch_size=batch, num_workers=workers, drop_last=True)
    started = time.perf_counter()
    stream = iter(loader)
    next(stream)
    first = time.perf_counter() - started
    started, count = time.perf_counter(), 0
    for t2w, _ in stream:
        count += t2w.shape[0]
    rate = count / (time.perf_counter() - started)
    return {"workers": workers, "first_batch_s": first, "slices_per_s": rate,
            "per_worker_slices_per_s": rate / max(1, workers)}


def main() -> int:
    import torch

    from napari_sff.sample_data import write_cases
    from training.data import Augmentation, SliceDataset, build_slice_cache

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", help="a slice cache (training.data); default: 4 fresh randomized cases")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=12, help="timed batches after the first")
    parser.add_argument("--repeats", type=int, default=50, help="single-slice timings")
    parser.add_argument("--out", default="benchmarks/results/loader.json")
    args = parser.parse_args()

    torch.set_num_threads(1)  # as in a DataLoader worker
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as scratch:
        cache = args.cache
        if cache is None:
            write_cases(Path(scratch) / "cases", 4, seed=11, size=256, n_slices=8, domain="randomized")
            cache = build_slice_cache(Path(scratch) / "cases", Path(scratch) / "cache", size=256,
                                      val_fraction=0.25, test_fraction=0.25)
        dataset = SliceDataset(cache, "train", Augmentation(crop=None), seed=0)
        sizes = {tuple(dataset.t2w[i].shape) for i in range(len(dataset))}
        counter = iter(range(10**9))
        one_slice = time_call(lambda: dataset[next(counter) % len(dataset)], args.repeats, warmup=3)
        results = {"setup": torch_setup(torch.device("cpu"), args.repeats), "cache": str(args.cache or "fresh"),
                   "train_slices": len(dataset), "slice_shapes": sorted(sizes), "batch": args.batch,
                   "augmentation": "Augmentation(crop=None): the training defaults on whole slices",
                   "one_slice_ms": 1000 * one_slice,
                   "loaders": [loader_rate(dataset, workers, args.batch, args.batches) for workers in args.workers]}
    write_report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
