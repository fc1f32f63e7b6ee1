"""A run's configuration (``TrainConfig``, saved as ``config.json``) and the command line that fills it."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path


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
    loss: str = "l1"                      # U-Net: "l1", "l1+ssim" or "mse" (loop.UNET_LOSSES)
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
    normalisation: str = "p99"            # the input's normalise_t2w method, recorded in every checkpoint: p99 | fat

    @classmethod
    def defaults_for(cls, model: str) -> dict:
        if model == "ddpm":
            return {"lr": 2e-4, "ema": 0.999, "batch_size": 16, "loss": "mse"}
        return {}


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    import training.train as package

    usage = package.__doc__.split("\nParts:")[0]  # the package's docstring less its list of parts
    parser = argparse.ArgumentParser(prog="python -m training.train", description=usage,
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

