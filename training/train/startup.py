"""What a run starts with: its device and mixed precision, the process group under torchrun, the slice cache and
the model's first weights (and the record of where they came from)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist

from napari_sff.inference.devices import cpu_has_native_bf16
from napari_sff.models import build_model, load_checkpoint, make_config
from training.data import CACHE_INFO, build_slice_cache
from training.train.config import TrainConfig


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype for this device, or None for plain float32.

    bfloat16 on CUDA GPUs with bf16 tensor cores (compute capability 8.0 and later: A100, H100, ...): the range of
    float32, so no loss scaling and no overflow; float16 with loss scaling on older GPUs. bfloat16 on CPUs with
    native bf16 units (AVX512-BF16 / AMX), where it makes U-Net steps 1.9x faster
    (benchmarks/bench_training_step.py, 2 cores); elsewhere bf16 would be emulated and slower, so float32.
    """
    if not config.amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if cuda_capability(device) >= (8, 0) else torch.float16
    if device.type == "cpu" and torch.backends.mkldnn.is_available() and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA device; (0, 0) where no CUDA is usable (nothing to ask)."""
    if not torch.cuda.is_available():
        return (0, 0)
    return tuple(torch.cuda.get_device_capability(device))


def start_model(config: TrainConfig) -> torch.nn.Module:
    """A fresh model from ``config.model_config``, or the ``init_weights`` checkpoint's model and config.

    With ``init_weights`` an explicit ``model_config`` must match the checkpoint's own; without one, the
    checkpoint's config is used.
    """
    if not config.init_weights:
        return build_model(config.model, make_config(config.model, config.model_config or None))
    model, _ = load_checkpoint(config.init_weights, expected_arch=config.model)
    if config.model_config and make_config(config.model, config.model_config) != model.config:
        raise ValueError(f"--model-config {json.dumps(config.model_config)} differs from the config saved in "
                         f"{config.init_weights}; drop --model-config to use the checkpoint's")
    return model


def initial_weights_card(init_weights: str | None) -> dict:
    """What a run started from, for its checkpoints' headers: the file's name and sha256, and its own lineage
    (``widened_from``, ``initialised_from``) so that a chain of fine-tunes stays traceable. Empty from scratch."""
    if not init_weights:
        return {}
    from napari_sff.models import read_metadata
    from napari_sff.provenance import file_sha256

    source = read_metadata(init_weights).get("metadata", {})
    lineage = {key: source[key] for key in ("widened_from", "initialised_from") if key in source}
    return {"initialised_from": {"weights": Path(init_weights).name, "sha256": file_sha256(init_weights), **lineage}}


def setup_distributed(device_name: str) -> tuple[torch.device, int, int]:
    """(device, rank, world size); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if world > 1:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank), rank, world
    return torch.device("cpu"), rank, world


def prepare_cache(config: TrainConfig, rank: int) -> Path:
    """The slice cache for ``config.data``: used as is, or built once (by rank 0) inside the run folder."""
    data = Path(config.data)
    if (data / CACHE_INFO).exists():
        return data
    cache = Path(config.out) / "cache"
    if rank == 0 and not (cache / CACHE_INFO).exists():
        build_slice_cache(data, cache, size=config.cache_size, seed=config.seed, subject_regex=config.subject_regex,
                          register=config.register, workers=config.cache_workers)
    if dist.is_initialized():
        dist.barrier()
    return cache
