"""The training loop (``train``) with its loss, validation and CSV log, and ``main``, which runs it from the
command line."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from napari_sff.io import atomic_write, atomic_write_text
from napari_sff.models import save_checkpoint
from napari_sff.preprocess import NORMALISATIONS
from training.data import Augmentation, SliceDataset
from training.metrics import image_metrics, summarise
from training.train.config import TrainConfig, parse_args
from training.train.provenance import describe_data, normalisation_card, weights_digest
from training.train.schedules import ema_decay_fn, warmup_cosine, warmup_cosine_in_time
from training.train.startup import (
    autocast_dtype,
    initial_weights_card,
    prepare_cache,
    setup_distributed,
    start_model,
)

#: The U-Net's losses. "l1" (the shipped models'): each pixel's posterior median. "mse": its posterior mean, whose
#: ROI averages are unbiased over the training cases as a whole; measured on the phantoms it read healthy muscle
#: still fattier than L1 did (model card section 0g), so L1 stays the default.
UNET_LOSSES = ("l1", "l1+ssim", "mse")


def unet_loss(prediction: torch.Tensor, target: torch.Tensor, name: str) -> torch.Tensor:
    """The U-Net's training loss ``name`` (one of :data:`UNET_LOSSES`), in float32."""
    if name == "l1+ssim":
        return l1_ssim_loss(prediction, target)
    if name == "mse":
        return (prediction - target).square().mean()
    return (prediction - target).abs().mean()


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
    if config.model == "unet" and config.loss not in UNET_LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(UNET_LOSSES)} for the U-Net, got {config.loss!r}")
    if config.normalisation not in NORMALISATIONS:
        raise ValueError(f"--normalisation must be one of {', '.join(NORMALISATIONS)}, got {config.normalisation!r}")
    device, rank, world = setup_distributed(config.device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    out = Path(config.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(asdict(config), indent=1))
    cache = prepare_cache(config, rank)

    augmentation = Augmentation(**{"crop": config.crop, **config.augmentation}) if config.augment else None
    train_set = SliceDataset(cache, "train", augmentation, seed=config.seed, normalisation=config.normalisation)
    val_set = SliceDataset(cache, "val", normalisation=config.normalisation)
    if len(train_set) == 0:
        raise ValueError(f"{cache}: the training split is empty; add cases")
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, seed=config.seed) if world > 1 else None
    model = start_model(config).to(device)
    model.input_normalisation = config.normalisation  # validation predicts as inference will (EMA copies inherit it)
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
    data_card = {**describe_data(cache, augmentation, config.normalisation),  # in every checkpoint
                 **initial_weights_card(config.init_weights)}
    started = time.perf_counter()  # "seconds" in the log: training time of the run, across resumes
    stopped_by = None
    first_step_s = None  # this process's first step: the loader's start-up, a compile, cuDNN's kernel search
    loader_wait_s = 0.0  # of this process's steps, the seconds spent waiting for a batch: is the loader the limit?
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
            loader_wait_s += time.perf_counter() - tick
            t2w = t2w.to(device, non_blocking=True, memory_format=memory_format)
            sff = sff.to(device, non_blocking=True, memory_format=memory_format)
            with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                output = forward(t2w, sff) if config.model == "ddpm" else forward(t2w)  # the DDPM returns its loss
            if config.model == "ddpm":
                loss = output.float()
            else:  # in float32: SSIM's local variances (E[x^2] - E[x]^2) cancel catastrophically in half precision
                prediction = output.float()
                loss = unet_loss(prediction, sff, config.loss)
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
            if first_step_s is None:
                first_step_s = round(now - tick, 3)
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
            card = {**normalisation_card(config.normalisation), "training": asdict(config), "epoch": epoch + 1,
                    "validation": metrics, "train_seconds": row["seconds"], "device": str(device),
                    "world_size": world, "steps": global_step, "train_step_seconds": row["train_seconds"],
                    "first_step_seconds": first_step_s, "loader_wait_seconds": round(loader_wait_s, 3),
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

        stamp_features([out / name for name in ("last.safetensors", "best.safetensors") if (out / name).exists()],
                       cache, augmentation, device)  # each with its checkpoint's normalisation
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


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    best = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"best validation: {json.dumps(best)}")
    return 0
