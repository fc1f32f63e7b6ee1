"""Train the U-Net or the conditional DDPM on paired T2w / SFF slices; one GPU, many, or the CPU.

    python -m training.train --model unet --data DATA_DIR --out runs/unet
    torchrun --nproc_per_node=4 -m training.train --model ddpm --data DATA_DIR --out runs/ddpm

``--data`` is a folder of ``<case>_t2w.nii.gz`` / ``<case>_sff.nii.gz`` pairs (``napari-sff simulate`` writes
one) or a slice cache made by ``python -m training.data``. Needs torch, numpy, scipy and nibabel; the DDPM
also needs MONAI and einops (``pip install -e .`` brings them all). The run folder gets ``config.json``,
``metrics.csv``, ``last.safetensors``, ``best.safetensors`` and ``resume.pt`` (optimizer state, loaded with
``weights_only=True``); rerunning the same command resumes from it.

For a comparison at equal cost, ``--time-budget-s S`` stops a run once its training steps (data loading,
forward, backward, optimizer; not validation or checkpoints) have taken S wall seconds, across resumes, and the
learning rate then follows warm-up + cosine over those seconds instead of over the steps. On a GPU,
``--compile true`` (torch.compile), ``--channels-last`` (default there) and bf16 autocast (``--amp``) make steps
faster.

``--normalisation fat`` feeds the network slices scaled by their subcutaneous fat instead of the 99th-percentile
rule (``napari_sff.preprocess.normalise_t2w``); every checkpoint records which (``input_normalisation``) and
prediction normalises as its weights were trained. To a GroupNorm U-Net the two are nearly the same input
(``python -m training.input_scale``); the DDPM's input scale does matter.

Parts: ``config`` (``TrainConfig`` and the command line), ``startup`` (device, precision, process group, slice
cache and first weights of a run), ``schedules`` (learning rate and EMA decay), ``loop`` (loss, validation, the
CSV log, ``train`` and ``main``; ``__main__`` runs it) and ``provenance`` (what a checkpoint records about its
training data).
"""

from __future__ import annotations

import sys

from training.requirements import missing_requirements

# ``python -m training.train`` imports this package while it looks for ``__main__`` (sys.argv[0] is "-m" then):
# say what is missing before the imports below fail on it.
if sys.argv[:1] == ["-m"] and (_missing := missing_requirements()):
    raise SystemExit(f"training needs {', '.join(_missing)}: pip install -e . (or pip install {' '.join(_missing)})")

from training.train.config import TrainConfig, parse_args  # noqa: E402
from training.train.loop import UNET_LOSSES, CsvLog, l1_ssim_loss, main, train, unet_loss, validate  # noqa: E402
from training.train.provenance import (  # noqa: E402
    FEATURE_SLICES,
    NORMALISATION,
    STATISTICS_SLICES,
    describe_data,
    feature_statistics,
    feature_statistics_of,
    input_statistics,
    seen_spacing_range,
    training_slices,
    weights_digest,
)
from training.train.schedules import ema_decay_fn, warmup_cosine, warmup_cosine_in_time  # noqa: E402
from training.train.startup import (  # noqa: E402
    autocast_dtype,
    cuda_capability,
    initial_weights_card,
    prepare_cache,
    setup_distributed,
    start_model,
)

__all__ = [
    "FEATURE_SLICES", "NORMALISATION", "STATISTICS_SLICES", "UNET_LOSSES", "CsvLog", "TrainConfig", "autocast_dtype",
    "cuda_capability", "describe_data", "ema_decay_fn", "feature_statistics", "feature_statistics_of", "initial_weights_card",
    "input_statistics", "l1_ssim_loss", "main", "parse_args", "prepare_cache", "seen_spacing_range",
    "setup_distributed", "start_model", "train", "training_slices", "unet_loss", "validate", "warmup_cosine",
    "warmup_cosine_in_time", "weights_digest",
]
