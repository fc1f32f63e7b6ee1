"""A fair DDPM: its variants and the U-Net, each trained for the same wall time, scored the same way.

    python -m training.ddpm_ablation --data CACHE --out DIR --budget-s 600 \\
        [--configs v-linear,eps-linear,v-cosine,eps-cosine,unet] [--split val] [--ddim-steps 50]

Answers the referee's "is the DDPM given the same care?": every configuration is trained by
``training.train`` (the one training loop) with ``--time-budget-s``, so each gets the same seconds of training
steps (validation and checkpoints excluded) and a warm-up + cosine learning rate laid over those seconds, however
many steps it manages. The DDPM variants differ only in prediction type (v or epsilon) and beta schedule (linear
or cosine); T, EMA (with warm-up, so a short run is not mostly its random start) and the learning rate are
written into the report. Each run's last (EMA) weights are scored on ``--split`` with
``training.evaluate``'s functions; ``ablation.json`` and ``ablation.md`` (config, steps reached, r, MAE, SSIM,
PSNR, ms/image) go into ``--out``. ``--independent DATA`` scores every run on a second held-out set as well (the
test split of DATA, e.g. ``training.phantoms``' independent family cached with ``--test-only``): the simulator's
own validation split flatters what was trained on its cases. Each set gets paired Wilcoxon tests of per-image MAE
against the first configuration. A rerun resumes: finished runs are not trained again.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from napari_sff.io import atomic_write_text

#: name -> (model, DDPMConfig fields that make the variant); the DDPM architecture comes from --ddpm-config.
CONFIGS: dict[str, tuple[str, dict]] = {
    "v-linear": ("ddpm", {"prediction_type": "v_prediction", "beta_schedule": "linear_beta"}),
    "eps-linear": ("ddpm", {"prediction_type": "epsilon", "beta_schedule": "linear_beta"}),
    "v-cosine": ("ddpm", {"prediction_type": "v_prediction", "beta_schedule": "cosine"}),
    "eps-cosine": ("ddpm", {"prediction_type": "epsilon", "beta_schedule": "cosine"}),
    "unet": ("unet", {}),
}

#: Training settings every run shares unless --train overrides them. Epochs are only a cap: the budget stops.
COMMON_TRAINING = {"epochs": 1_000_000, "steps_per_epoch": 200, "val_slices": 16, "ema_warmup": True}

LR_SCHEDULE = "linear warm-up over the first 3 % of the time budget, then cosine decay to 1 % at its end"


def training_config(name: str, *, cache: str, out: Path, budget_s: float, train: dict | None = None,
                    ddpm_config: dict | None = None, unet_config: dict | None = None):
    """The TrainConfig of configuration ``name``: the model's defaults, the shared settings, the variant."""
    from training.train import TrainConfig

    if name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; choose from {', '.join(CONFIGS)}")
    model, variant = CONFIGS[name]
    base = (ddpm_config if model == "ddpm" else unet_config) or {}
    values = {**TrainConfig.defaults_for(model), **COMMON_TRAINING, **(train or {}), "model": model,
              "data": str(cache), "out": str(out / name), "model_config": {**base, **variant},
              "time_budget_s": float(budget_s)}
    return TrainConfig(**values)


def run_summary(run: Path) -> dict:
    """What a finished run says about itself: steps, training seconds, why it stopped, the model's config."""
    from napari_sff.models import read_metadata

    header = read_metadata(run / "last.safetensors")
    card = header.get("metadata", {})
    return {"steps": card.get("steps"), "train_step_seconds": card.get("train_step_seconds"),
            "first_step_seconds": card.get("first_step_seconds"),
            "loader_wait_seconds": card.get("loader_wait_seconds"),
            "stopped_by": card.get("stopped_by"), "epochs": card.get("epoch"), "model_config": header.get("config"),
            "weights": str(run / "last.safetensors")}


def describe(config, model_config: dict) -> dict:
    """The settings the referee asks to see stated: T, beta schedule, prediction type, EMA, LR and its schedule."""
    row = {"model": config.model, "lr": config.lr, "lr_schedule": LR_SCHEDULE, "batch_size": config.batch_size,
           "crop": config.crop, "ema": config.ema, "ema_warmup": bool(config.ema and config.ema_warmup),
           "amp": config.amp, "compile": config.compile, "time_budget_s": config.time_budget_s}
    if config.model == "ddpm":
        row.update({"prediction_type": model_config.get("prediction_type"),
                    "beta_schedule": model_config.get("beta_schedule"),
                    "T": model_config.get("num_train_timesteps")})
    return row


def run_ablation(data: str, out: str | Path, budget_s: float, configs: Sequence[str] = tuple(CONFIGS), *,
                 split: str = "val", max_images: int | None = 64, ddim_steps: int = 50, batch_size: int | None = None,
                 device: str = "auto", seed: int = 0, train: dict | None = None, ddpm_config: dict | None = None,
                 unet_config: dict | None = None, independent: str | None = None, log=print) -> dict:
    """Train every configuration for ``budget_s`` seconds of training steps, score each, write the report.

    A configuration that fails gets a row with its error and the others still run. Returns the report.
    """
    import torch

    from napari_sff.inference import default_batch_size, resolve_device
    from training.evaluate import as_cache, load_split, run_model, score
    from training.train import train as train_run

    unknown = [name for name in configs if name not in CONFIGS]
    if unknown:
        raise ValueError(f"unknown configuration(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    if not budget_s > 0:
        raise ValueError(f"--budget-s must be a positive number of seconds, got {budget_s}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = as_cache(data)
    evaluation_device = resolve_device(device)
    batch = batch_size or default_batch_size(evaluation_device)
    sets = {"split": load_split(str(cache), split, max_images)}
    if independent is not None:
        sets["independent"] = load_split(str(as_cache(independent)), "test", max_images)
    raw = sets["split"][0]
    rows, image_maes = [], []
    for name in configs:
        started = time.perf_counter()
        row: dict = {"config": name}
        try:
            config = training_config(name, cache=str(cache), out=out, budget_s=budget_s,
                                     train={"seed": seed, "device": device, **(train or {})},
                                     ddpm_config=ddpm_config, unet_config=unet_config)
            log(f"ablation: training {name} for {budget_s:g} s of training steps")
            train_run(config)
            summary = run_summary(Path(config.out))
            row.update(describe(config, summary["model_config"]))
            row.update(summary)
            maes = {}
            for which, (images, truth) in sets.items():
                predicted, ms = run_model(config.model, summary["weights"], images, device=evaluation_device,
                                          batch_size=batch, ddim_steps=ddim_steps, seed=seed)
                scores, maes[which] = score(predicted, truth, images)
                if which == "split":
                    row.update(scores)
                    row["ms_per_image"] = ms
                else:
                    row[which] = scores
            image_maes.append(maes)
            row["ddim_steps"] = ddim_steps if config.model == "ddpm" else None
        except Exception as exc:  # one failing configuration must not cost the others
            row["error"] = f"{type(exc).__name__}: {exc}"
            log(f"ablation: {name} failed: {row['error']}")
        row["wall_seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        if "error" in row:
            image_maes.append(None)
    _paired_tests(rows, image_maes)
    report = {"data": str(data), "split": split, "images": int(len(raw)), "budget_s": budget_s,
              "independent": None if independent is None else {"data": str(independent), "split": "test",
                                                               "images": int(len(sets["independent"][0]))},
              "ddim_steps": ddim_steps, "batch_size": batch, "device": str(evaluation_device),
              "gpu": torch.cuda.get_device_name(evaluation_device) if evaluation_device.type == "cuda" else None,
              "torch": torch.__version__, "machine": platform.platform(), "common_training": {
                  **COMMON_TRAINING, **(train or {})}, "rows": rows}
    atomic_write_text(out / "ablation.json", json.dumps(report, indent=1))
    atomic_write_text(out / "ablation.md", markdown(report))
    return report


def _paired_tests(rows: list[dict], image_maes: list[dict | None]) -> None:
    """Each scored row gets ``paired_p`` (per set: ``training.evaluate.paired_test``, Wilcoxon signed-rank of
    per-image MAE against the first scored configuration's, the same images in the same order)."""
    from training.evaluate import paired_test

    scored = [(row, maes) for row, maes in zip(rows, image_maes, strict=True) if maes is not None]
    if len(scored) < 2:
        return
    first_row, first = scored[0]
    for row, maes in scored[1:]:
        row["paired_p_vs"] = first_row["config"]
        for which, values in maes.items():
            (row if which == "split" else row[which])["paired_p"] = paired_test(values, first[which])["p_value"]


def _number(row: dict, key: str, digits: int) -> str:
    value = row.get(key)
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    """The ablation table, with the settings every run shared and what each run reached."""
    lines = [f"Each configuration trained for {report['budget_s']:g} s of training steps (validation and "
             f"checkpoints excluded) on {report['gpu'] or report['device']}; scored on the {report['split']} split "
             f"({report['images']} images, DDPM {report['ddim_steps']} DDIM steps, batch {report['batch_size']}). "
             f"Learning rate: {LR_SCHEDULE}.", "",
             "| config | prediction | β schedule | T | EMA | lr | steps reached | r | MAE ± SD | SSIM | PSNR dB | "
             "ms/image |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        if "error" in row:
            lines.append(f"| {row['config']} | failed: {row['error']} |" + " |" * 10)
            continue
        ema = "none" if not row.get("ema") else f"{row['ema']}" + (" (warm-up)" if row.get("ema_warmup") else "")
        lines.append(
            f"| {row['config']} | {row.get('prediction_type') or 'n/a (regression)'} | {row.get('beta_schedule') or '–'} "
            f"| {row.get('T') or '–'} | {ema} | {row['lr']:g} | {row['steps']} | {_number(row, 'r', 3)} | "
            f"{_number(row, 'mae', 3)} ± {_number(row, 'mae_sd', 3)} | {_number(row, 'ssim', 3)} | "
            f"{_number(row, 'psnr', 1)} | {_number(row, 'ms_per_image', 1)} |")
    scored = [row for row in report["rows"] if "error" not in row]
    if any("paired_p" in row for row in scored):
        lines += ["", f"Paired Wilcoxon of per-image MAE against {scored[0]['config']} ({report['split']} split): "
                  + "; ".join(f"{row['config']} p = {row['paired_p']:.2g}" for row in scored[1:]) + "."]
    if report.get("independent"):
        extra = report["independent"]
        lines += ["", f"The same weights on an independent held-out set, the test split of {extra['data']} "
                  f"({extra['images']} images):", "",
                  f"| config | r | MAE ± SD | SSIM | PSNR dB | paired p vs {scored[0]['config'] if scored else '–'} |",
                  "|---|---|---|---|---|---|"]
        for row in scored:
            other = row["independent"]
            p = "–" if "paired_p" not in other else f"{other['paired_p']:.2g}"
            lines.append(f"| {row['config']} | {_number(other, 'r', 3)} | {_number(other, 'mae', 3)} ± "
                         f"{_number(other, 'mae_sd', 3)} | {_number(other, 'ssim', 3)} | {_number(other, 'psnr', 1)} "
                         f"| {p} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ddpm_ablation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="slice cache (or a folder of pairs, cached on the fly)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget-s", type=float, required=True, help="seconds of training steps per configuration")
    parser.add_argument("--configs", type=lambda s: [v for v in s.split(",") if v], default=list(CONFIGS),
                        help=f"comma-separated, from {', '.join(CONFIGS)} (default: all)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--max-images", type=int, default=64)
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, help="inference batch (default: the device's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=json.loads, default=None,
                        help='JSON of TrainConfig fields for every run, e.g. \'{"batch_size": 32, "workers": 8}\'')
    parser.add_argument("--ddpm-config", type=json.loads, default=None, help="JSON DDPMConfig fields (architecture)")
    parser.add_argument("--unet-config", type=json.loads, default=None, help="JSON UNetConfig fields")
    parser.add_argument("--independent", help="a second held-out set (its test split) every run is scored on too")
    args = parser.parse_args(argv)
    from training.train import TrainConfig

    known = {f for f in asdict(TrainConfig())}
    if args.train and (unknown := sorted(set(args.train) - known)):
        parser.error(f"--train has no TrainConfig field(s) {', '.join(unknown)}")
    report = run_ablation(args.data, args.out, args.budget_s, args.configs, split=args.split,
                          max_images=args.max_images, ddim_steps=args.ddim_steps, batch_size=args.batch_size,
                          device=args.device, seed=args.seed, train=args.train, ddpm_config=args.ddpm_config,
                          unet_config=args.unet_config, independent=args.independent)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
