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
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from training.requirements import missing_requirements

if __name__ == "__main__" and (_missing := missing_requirements()):
    raise SystemExit(f"training needs {', '.join(_missing)}: pip install -e . (or pip install {' '.join(_missing)})")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler, Subset  # noqa: E402

from napari_sff.inference.devices import cpu_has_native_bf16  # noqa: E402
from napari_sff.io import atomic_write, atomic_write_text  # noqa: E402
from napari_sff.models import build_model, load_checkpoint, make_config, save_checkpoint  # noqa: E402
from training.data import CACHE_INFO, Augmentation, SliceDataset, build_slice_cache  # noqa: E402
from training.metrics import image_metrics, summarise  # noqa: E402

NORMALISATION = "napari_sff.preprocess.normalise_t2w (per slice, 99th percentile inside the body mask)"


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json`` so a run can be re-created from it."""

    model: str = "unet"
    data: str = ""
    out: str = "runs/unet"
    model_config: dict = field(default_factory=dict)
    epochs: int = 20
    steps_per_epoch: int | None = None   # None: one pass over the training slices
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    loss: str = "l1"                      # U-Net: "l1" or "l1+ssim"
    ema: float | None = None              # EMA decay of the weights kept for validation/checkpoints
    augment: bool = True
    augmentation: dict = field(default_factory=dict)  # Augmentation fields that differ from its defaults
    crop: int | None = 128
    val_slices: int = 64                  # validation subset (DDPM sampling is costly)
    val_ddim_steps: int = 10
    seed: int = 0
    workers: int = 2
    amp: bool = True                      # mixed precision: bf16 on CUDA (fp16 before Ampere), bf16 on CPUs with it
    init_weights: str | None = None       # start from this checkpoint's weights (an earlier stage), not at random
    device: str = "auto"
    cache_size: int = 256                 # slices resampled to fit (never cropped), then padded to this
    subject_regex: str | None = None      # cases of one subject (its 'subject' group) share a split
    register: bool = False                # rigidly register each reference SFF to its T2w when caching
    cache_workers: int = 1                # processes building the slice cache
    weights_dtype: str = "float32"        # "float16" halves the shipped file
    channels_last: bool | None = None     # channels-last model and batches; None: on CUDA only
    compile: bool = False                 # torch.compile the training forward (minutes to build on a CPU)
    compile_backend: str = "inductor"     # "eager": dynamo tracing only, a cheap check that the model compiles
    time_budget_s: float | None = None    # stop once training steps took this many wall seconds (fair comparisons)
    ema_warmup: bool = False              # EMA decay min(ema, (1 + n) / (10 + n)) after n updates (short runs)

    @classmethod
    def defaults_for(cls, model: str) -> dict:
        if model == "ddpm":
            return {"lr": 2e-4, "ema": 0.999, "batch_size": 16, "loss": "mse"}
        return {}


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("unet", "ddpm"), required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", help="JSON file with TrainConfig fields (command-line flags win)")
    parser.add_argument("--model-config", type=json.loads, help='JSON, e.g. \'{"base_channels": 16}\'')
    parser.add_argument("--augmentation", type=json.loads, help='JSON, e.g. \'{"noise": [0, 0.01]}\'')
    for item in fields(TrainConfig):
        if item.name in ("model", "data", "out", "model_config", "augmentation"):
            continue
        flag = "--" + item.name.replace("_", "-")
        base = str(item.type).split(" ")[0]
        if base == "bool":  # "bool | None" fields: "none" (or leaving the flag out) keeps the automatic choice
            parser.add_argument(flag, type=_flag, default=None)
        else:
            kind = {"int": int, "float": float, "str": str}.get(base, None)
            parser.add_argument(flag, type=kind or _optional_number, default=None)
    args = vars(parser.parse_args(argv))
    values = TrainConfig.defaults_for(args["model"])
    if args.pop("config"):
        values.update(json.loads(Path(args["config"]).read_text()))
    values.update({k: v for k, v in args.items() if v is not None})
    return TrainConfig(**values)


def _flag(text: str) -> bool | None:
    if text.lower() == "none":
        return None
    return text.lower() in ("1", "true", "yes")


def _optional_number(text: str):
    if text.lower() == "none":
        return None
    return float(text) if "." in text or "e" in text.lower() else int(text)


# ----------------------------------------------------------------------------------------------- helpers
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


def _cosine_to_one_percent(progress: float) -> float:
    """The decay after warm-up: 1 at ``progress`` 0, 0.01 at 1 (and beyond)."""
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def warmup_cosine(total_steps: int, warmup_fraction: float = 0.03):
    """LR factor: linear warm-up, then cosine decay to 1 %; depends only on the step, so resuming with more
    epochs stretches the schedule instead of breaking it."""
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return _cosine_to_one_percent((step - warmup) / max(1, total_steps - warmup))

    return factor


def warmup_cosine_in_time(budget_s: float, seconds: Callable[[], float], warmup_fraction: float = 0.03):
    """LR factor of a run with a time budget: the same warm-up + cosine, over training seconds (``seconds()``)
    instead of steps, so every run of a wall-time comparison ends its schedule when its budget ends, however
    many steps it managed."""
    warmup = warmup_fraction * budget_s

    def factor(step: int) -> float:
        spent = seconds()
        if spent < warmup:
            return max(spent / warmup, 1e-3)
        return _cosine_to_one_percent((spent - warmup) / max(1e-9, budget_s - warmup))

    return factor


def ema_decay_fn(decay: float, warmup: bool):
    """``multi_avg_fn`` for AveragedModel: a fixed decay, or with ``warmup`` min(decay, (1 + n) / (10 + n)) after n
    updates, so that a short run's average is not mostly its random start (0.999 keeps e^-1 of the first
    weights after 1000 steps)."""
    if not warmup:
        return torch.optim.swa_utils.get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = float(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, weight)

    return update


def l1_ssim_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    from monai.losses import SSIMLoss

    return 0.84 * SSIMLoss(spatial_dims=2, data_range=1.0)(prediction, target) + 0.16 * (prediction - target).abs().mean()


@torch.no_grad()
def validate(model, dataset, config: TrainConfig, device: torch.device) -> dict:
    """Per-image MAE and Pearson r inside the body mask on a fixed validation subset."""
    from napari_sff.inference import predict_slices

    model.eval()
    count = min(len(dataset), config.val_slices)
    indices = np.linspace(0, len(dataset) - 1, count).astype(int) if count else []
    raw = np.stack([np.asarray(dataset.t2w[i]) for i in indices])
    truth = np.stack([np.asarray(dataset.sff[i]) for i in indices])
    predicted, _ = predict_slices(model, raw, device=device, batch_size=config.batch_size,  # one pass: cheaper
                                  ddim_steps=config.val_ddim_steps, seed=config.seed, mirror=False)
    per_image = [image_metrics(p, t, r) for p, t, r in zip(predicted, truth, raw, strict=True)]
    return summarise(per_image)


class CsvLog:
    """Rows appended to a CSV; a resumed run keeps the columns of the file it continues."""

    def __init__(self, path: Path, columns: Sequence[str]):
        self.path, self.columns = path, list(columns)
        if path.exists():
            with path.open(newline="") as stream:
                self.columns = next(csv.reader(stream), None) or self.columns
        else:
            with path.open("w", newline="") as stream:
                csv.writer(stream).writerow(self.columns)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as stream:
            csv.writer(stream).writerow([row.get(c, "") for c in self.columns])


# ------------------------------------------------------------------------------------------------- train
def train(config: TrainConfig) -> dict:
    """Run (or resume) training; returns the best validation metrics. Every rank ends with equal weights."""
    from tqdm import tqdm

    budget = config.time_budget_s
    if budget is not None and not budget > 0:
        raise ValueError(f"--time-budget-s must be a positive number of seconds, got {budget}")
    device, rank, world = setup_distributed(config.device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    out = Path(config.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(asdict(config), indent=1))
    cache = prepare_cache(config, rank)

    augmentation = Augmentation(**{"crop": config.crop, **config.augmentation}) if config.augment else None
    train_set = SliceDataset(cache, "train", augmentation, seed=config.seed)
    val_set = SliceDataset(cache, "val")
    if len(train_set) == 0:
        raise ValueError(f"{cache}: the training split is empty; add cases")
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, seed=config.seed) if world > 1 else None
    model = start_model(config).to(device)
    model_config = model.config
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes (crops, drop_last): find the fastest kernels once
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=True if device.type == "cuda" else None)
    steps_per_epoch = config.steps_per_epoch or math.ceil(len(train_set) / (config.batch_size * world))
    total_steps = steps_per_epoch * config.epochs
    clock = {"seconds": 0.0}  # wall seconds of training steps, across resumes: what --time-budget-s limits
    schedule = (warmup_cosine(total_steps) if budget is None else
                warmup_cosine_in_time(budget, lambda: clock["seconds"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    amp_dtype = autocast_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    ema = (torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=ema_decay_fn(config.ema, config.ema_warmup))
           if config.ema else None)

    start_epoch, best, seconds_before, global_step = 0, {"mae": math.inf}, 0.0, 0
    resume = out / "resume.pt"
    if resume.exists():
        state = torch.load(resume, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, best = int(state["epoch"]), {"mae": float(state["best_mae"])}
        seconds_before = float(state.get("seconds", 0.0))  # older resume files lack these three
        clock["seconds"] = float(state.get("train_seconds", seconds_before))
        global_step = int(state.get("step", start_epoch * steps_per_epoch))
    wrapped = DistributedDataParallel(model) if world > 1 else model
    forward = torch.compile(wrapped, backend=config.compile_backend) if config.compile else wrapped
    log = CsvLog(out / "metrics.csv", ["epoch", "step", "train_loss", "val_mae", "val_mae_sd", "val_r",
                                       "lr", "seconds", "train_seconds"]) if rank == 0 else None
    loader_args = {"num_workers": config.workers, "persistent_workers": config.workers > 0, "drop_last": True,
                   "pin_memory": device.type == "cuda"}
    data_card = {**describe_data(cache, augmentation), **initial_weights_card(config.init_weights)}  # every checkpoint
    started = time.perf_counter()  # "seconds" in the log: training time of the run, across resumes
    stopped_by = None
    for epoch in range(start_epoch, config.epochs):
        if budget is not None and clock["seconds"] >= budget:  # a resumed run whose budget is already spent
            stopped_by = "time budget"
            break
        train_set.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        source = train_set if config.steps_per_epoch is None else Subset(
            train_set, np.random.default_rng((config.seed, epoch)).integers(
                0, len(train_set), steps_per_epoch * config.batch_size * world).tolist())
        epoch_sampler = sampler if config.steps_per_epoch is None else (
            DistributedSampler(source, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None)
        loader = DataLoader(source, batch_size=config.batch_size, sampler=epoch_sampler,
                            shuffle=epoch_sampler is None and config.steps_per_epoch is None,
                            generator=torch.Generator().manual_seed(config.seed + epoch), **loader_args)
        model.train()
        losses = []
        tick = time.perf_counter()  # the loader's start and every batch's loading count as training time
        for step, (t2w, sff) in enumerate(tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=rank != 0,
                                               total=min(len(loader), steps_per_epoch), leave=False)):
            if step >= steps_per_epoch:
                break
            t2w = t2w.to(device, non_blocking=True, memory_format=memory_format)
            sff = sff.to(device, non_blocking=True, memory_format=memory_format)
            with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                output = forward(t2w, sff) if config.model == "ddpm" else forward(t2w)  # the DDPM returns its loss
            if config.model == "ddpm":
                loss = output.float()
            else:  # in float32: SSIM's local variances (E[x^2] - E[x]^2) cancel catastrophically in half precision
                prediction = output.float()
                loss = l1_ssim_loss(prediction, sff) if config.loss == "l1+ssim" else (prediction - sff).abs().mean()
            loss_value = float(loss.detach())  # one device sync per step, for the check, the log and the clock
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"{config.model} training loss is {loss_value} at epoch {epoch + 1}, step "
                                         f"{step + 1}; lower --lr, or train with --amp false")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            losses.append(loss_value)
            global_step += 1
            now = time.perf_counter()
            clock["seconds"] = _agreed_seconds(clock["seconds"] + now - tick, world, device) if budget else (
                clock["seconds"] + now - tick)
            tick = now
            if budget is not None and clock["seconds"] >= budget:
                stopped_by = "time budget"
                break
        evaluated = ema.module if ema is not None else model
        metrics = validate(evaluated, val_set, config, device) if rank == 0 else {}
        if rank == 0:
            row = {"epoch": epoch + 1, "step": global_step, "train_loss": float(np.mean(losses)),
                   "val_mae": metrics["mae"], "val_mae_sd": metrics["mae_sd"], "val_r": metrics["r"],
                   "lr": scheduler.get_last_lr()[0], "seconds": round(seconds_before + time.perf_counter() - started, 1),
                   "train_seconds": round(clock["seconds"], 1)}
            log.write(row)
            print(json.dumps(row), flush=True)
            card = {"normalisation": NORMALISATION, "training": asdict(config), "epoch": epoch + 1,
                    "validation": metrics, "train_seconds": row["seconds"], "device": str(device),
                    "world_size": world, "steps": global_step, "train_step_seconds": row["train_seconds"],
                    "stopped_by": stopped_by, **data_card}
            dtype = getattr(torch, config.weights_dtype)
            save_checkpoint(evaluated, out / "last.safetensors", config=model_config, metadata=card, dtype=dtype)
            if metrics["mae"] < best["mae"]:
                best = metrics
                save_checkpoint(evaluated, out / "best.safetensors", config=model_config, metadata=card, dtype=dtype)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch + 1,
                     "best_mae": best["mae"], "seconds": row["seconds"], "train_seconds": clock["seconds"],
                     "step": global_step}
            if ema is not None:
                state["ema"] = ema.state_dict()
            with atomic_write(resume) as tmp:
                torch.save(state, tmp)
        if dist.is_initialized():
            dist.barrier()
        if stopped_by:
            break
    if stopped_by and rank == 0:
        print(json.dumps({"stopped": stopped_by, "time_budget_s": budget, "train_seconds": round(clock["seconds"], 1),
                          "steps": global_step}), flush=True)
    if rank == 0 and config.model == "unet":  # what predict measures each slice's features against
        from training.stamp import stamp_features

        for name in ("last.safetensors", "best.safetensors"):
            if (out / name).exists():
                stamp_features(out / name, cache, augmentation, device)
    if world > 1:  # evidence that DDP kept the replicas in lock-step
        atomic_write_text(out / f"weights_rank{rank}.sha256", weights_digest(model))
    if dist.is_initialized():
        dist.destroy_process_group()
    return best


def _agreed_seconds(seconds: float, world: int, device: torch.device) -> float:
    """The largest training clock over all ranks: with a time budget every rank must see the same learning rate
    and stop at the same step, or DDP's replicas drift apart (or hang in an all-reduce)."""
    if world == 1:
        return seconds
    value = torch.tensor([seconds], dtype=torch.float64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return float(value)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over all parameters and buffers in state-dict order."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def describe_data(cache: Path, augmentation: Augmentation | None) -> dict:
    """What every checkpoint of a run says about its data: the cache's splits and the pixel spacings seen."""
    info = json.loads((cache / CACHE_INFO).read_text())
    splits = {k: {"slices": v["slices"], "cases": len(v["cases"]), "in_plane_spacing_mm": v.get("in_plane_spacing_mm")}
              for k, v in info["splits"].items()}
    return {"training_data": {"source": info["data_dir"], "slice_size": info["size"], "splits": splits},
            "input_spacing_mm": seen_spacing_range(splits["train"]["in_plane_spacing_mm"], augmentation),
            "input_statistics": input_statistics(cache, augmentation)}


#: Training slices whose statistics make a checkpoint's ``input_statistics`` (evenly spaced over the split).
STATISTICS_SLICES = 2000


def input_statistics(cache: Path, augmentation: Augmentation | None, *, max_slices: int = STATISTICS_SLICES,
                     seed: int = 0) -> dict[str, list[float]] | None:
    """The ranges of :mod:`napari_sff.domain`'s statistics over (augmented) training slices: what predict
    compares a scan with to warn that it lies outside what the model saw."""
    from napari_sff.domain import slice_statistics, training_ranges

    parts = [slice_statistics(slices) for slices in training_slices(cache, augmentation, max_slices, seed)]
    return training_ranges(parts) if parts else None


#: Training slices whose U-Net features make a checkpoint's ``feature_statistics``.
FEATURE_SLICES = 1000


def training_slices(cache: Path, augmentation: Augmentation | None, max_slices: int, seed: int = 0,
                    chunk: int = 64) -> Iterator[np.ndarray]:
    """Raw training slices in chunks, evenly spaced over the split and augmented as in training but whole (a crop
    would change the share of body): what a checkpoint's records of its training data are computed from."""
    from dataclasses import replace

    from training.data import open_split

    raw, truth = open_split(cache, "train")
    if not len(raw):
        return
    indices = np.unique(np.linspace(0, len(raw) - 1, min(max_slices, len(raw))).round().astype(int))
    whole_slices = None if augmentation is None else replace(augmentation, crop=None)
    for start in range(0, len(indices), chunk):
        part = indices[start:start + chunk]
        slices = raw[part]
        if whole_slices is not None:
            rng = np.random.default_rng((seed, start))
            slices = np.stack([whole_slices(image, sff, rng)[0] for image, sff in zip(slices, truth[part], strict=True)])
        yield np.asarray(slices, dtype=np.float32)


def feature_statistics(model: torch.nn.Module, cache: Path, augmentation: Augmentation | None, *,
                       max_slices: int = FEATURE_SLICES, seed: int = 0) -> dict | None:
    """The U-Net's bottleneck features over its training slices (:func:`napari_sff.domain.feature_statistics`):
    what predict measures each slice's distance from. None for a model without a U-Net encoder."""
    from napari_sff.domain import FeatureRecorder
    from napari_sff.domain import feature_statistics as describe_features
    from napari_sff.preprocess import normalise_t2w

    if getattr(model, "encoders", None) is None:
        return None
    device = next(model.parameters()).device
    model = model.eval()
    with FeatureRecorder(model) as recorder, torch.inference_mode():
        for slices in training_slices(cache, augmentation, max_slices, seed, chunk=16):
            model(torch.from_numpy(normalise_t2w(slices)[:, None]).to(device).float())
            recorder.keep()
    features = recorder.features()
    return None if features is None or len(features) < 4 else describe_features(features)


def seen_spacing_range(data_range: Sequence[float] | None, augmentation: Augmentation | None) -> list[float] | None:
    """In-plane pixel spacings (mm) the model saw in training: the training cases' range, widened by zoom.

    A zoom z shows anatomy z times larger, as a pixel spacing divided by z would. Inference resamples slices
    whose spacing lies outside this range into it (``napari_sff.inference``); None for caches that predate it.
    """
    if not data_range:
        return None
    low_zoom, high_zoom = augmentation.zoom if augmentation is not None else (1.0, 1.0)
    return [data_range[0] / high_zoom, data_range[1] / low_zoom]


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    best = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best validation: {json.dumps(best)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
