"""Add what a checkpoint's training data looked like to a checkpoint made before it was recorded.

    python -m training.stamp --cache CACHE napari_sff/weights/unet.safetensors napari_sff/weights/ddpm.safetensors

Each checkpoint gets ``input_statistics`` (:func:`training.train.input_statistics`: the ranges of
:mod:`napari_sff.domain`'s statistics over its training slices, augmented with the run's own recorded
augmentation) and, for the U-Net, ``feature_statistics`` (:func:`training.train.feature_statistics`: its
bottleneck features over those slices) computed from ``CACHE``, which must be the cache the model was trained
on: its training split must have the cases and slices the checkpoint's header records, or the file is left
alone. The weights are re-written bit for bit (checked) in the dtype they were stored in; only the JSON header
changes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file

from napari_sff.models import load_checkpoint, read_metadata, save_checkpoint
from training.data import CACHE_INFO, Augmentation
from training.train import feature_statistics, feature_statistics_of, input_statistics


def stamp(weights: Path, cache: Path) -> dict:
    """Add ``input_statistics`` from ``cache`` to ``weights`` (see the module docstring); returns them."""
    header = read_metadata(weights)
    metadata = dict(header.get("metadata", {}))
    recorded = metadata.get("training_data", {}).get("splits", {}).get("train", {})
    train = json.loads((cache / CACHE_INFO).read_text())["splits"]["train"]
    if (recorded.get("cases"), recorded.get("slices")) != (len(train["cases"]), train["slices"]):
        raise ValueError(f"{weights}: trained on {recorded.get('cases')} cases / {recorded.get('slices')} slices, "
                         f"but {cache} holds {len(train['cases'])} / {train['slices']}; give the cache it was "
                         "trained on")
    augmentation = Augmentation(**metadata.get("training", {}).get("augmentation", {}))
    model, _ = load_checkpoint(weights, expected_arch=header["arch"])
    metadata["input_statistics"] = input_statistics(cache, augmentation, normalisation=model.input_normalisation)
    metadata["input_statistics_added"] = (f"{_dt.date.today().isoformat()} by training.stamp from the training "
                                          "cache; weights unchanged")
    if header["arch"] == "unet":
        metadata["feature_statistics"] = feature_statistics(model, cache, augmentation)
    _rewrite_header(weights, header, metadata, model)
    return metadata["input_statistics"]


def stamp_features(weights: Sequence[Path], cache: Path, augmentation: Augmentation | None,
                   device: str | torch.device = "cpu") -> None:
    """Add each U-Net checkpoint's ``feature_statistics`` over the training slices of ``cache``, computed on
    ``device`` in one pass over the slices (the end of every U-Net training run calls this on its last and best
    checkpoints, on the training device)."""
    headers = [read_metadata(path) for path in weights]
    models = [load_checkpoint(path, expected_arch=header["arch"], device=device)[0]
              for path, header in zip(weights, headers, strict=True)]
    for path, header, model, statistics in zip(weights, headers, models,
                                               feature_statistics_of(models, cache, augmentation), strict=True):
        _rewrite_header(path, header, {**header.get("metadata", {}), "feature_statistics": statistics}, model)


def _rewrite_header(weights: Path, header: dict, metadata: dict, model: torch.nn.Module) -> None:
    """Save ``model`` (loaded from ``weights``) again with ``metadata`` as its JSON header; the tensors must come
    out bit for bit."""
    before = load_file(str(weights))
    dtype = getattr(torch, header.get("weights_dtype", "float32"))
    save_checkpoint(model, weights, config=header.get("config"), metadata=metadata, dtype=dtype)
    after = load_file(str(weights))
    if before.keys() != after.keys() or any(not torch.equal(before[k], after[k]) for k in before):
        raise RuntimeError(f"{weights}: the weights changed while re-writing the header; restore it from git")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.stamp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True, help="the slice cache the checkpoints were trained on")
    parser.add_argument("weights", nargs="+")
    args = parser.parse_args(argv)
    for path in args.weights:
        try:
            ranges = stamp(Path(path), Path(args.cache))
        except (ValueError, RuntimeError) as exc:
            print(f"python -m training.stamp: error: {exc}", file=sys.stderr)
            return 2
        print(f"{path}: " + "; ".join(f"{k} {lo:.3f}-{hi:.3f}" for k, (lo, hi) in ranges.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
