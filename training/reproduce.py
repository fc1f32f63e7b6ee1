"""Re-create the shipped weights and their model card from scratch, with fixed seeds.

    python -m training.reproduce --profile cpu      # what the shipped weights were made with (2 CPU cores)
    python -m training.reproduce --profile gpu      # the same recipe, longer and wider, for one GPU

Steps: simulate paired cases -> slice cache (split by case) -> train U-Net -> train DDPM (each optionally
refined by further runs, each starting from the previous run's best weights) -> for the U-Net, the fine-tune
on the randomized simulator that made the shipped weights (model card section 0: its own simulated folders,
linked into one with a prefix per folder, and its own cache) -> copy the best checkpoints (fp16) into
``napari_sff/weights/`` -> evaluate on the held-out test cases -> write ``model_card.json`` / ``model_card.md``
into the work folder (``docs/model_card.*`` is edited by hand from such outputs; ``--card-dir docs`` replaces
it). Each step is skipped when its output exists, so an interrupted run continues where it stopped. Needs
torch, MONAI, einops, nibabel (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from napari_sff.io.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "napari_sff" / "weights"

# The first CPU run (the weights shipped before) had float32 and the original, stronger augmentation.
FIRST_CPU_RUN = {"amp": False, "augmentation": {"noise": [0.0, 0.05], "gamma": [0.8, 1.25]}}

PROFILES = {
    # Sized for 2 CPU cores: about 2 h for each model (docs/model_card.json has the measured times).
    "cpu": {
        "cases": 60, "seed": 2026,
        # The U-Net ran 12 epochs, then was resumed to 18 (a warm restart of the cosine schedule) once it was
        # clear it was still improving; "stages" replays exactly that.
        # Then a refinement run starts from that checkpoint with milder augmentation (the then-default noise and
        # gamma ranges blurred muscle contrast) and bfloat16 autocast; the DDPM gets the same two runs. The U-Net
        # gets a second refinement on whole 256² slices (the same pixels per step as 16 crops of 181²): muscle
        # SFF depends on per-case settings that only the rest of the slice reveals.
        "unet": {"stages": [12, 18], "steps_per_epoch": 250, "batch_size": 16, "crop": 128, "lr": 2e-3, "workers": 1,
                 "model_config": {"base_channels": 16, "depth": 4}, **FIRST_CPU_RUN,
                 "refine": [{"epochs": 20, "lr": 1e-3, "amp": True, "augmentation": {}},
                            {"epochs": 20, "lr": 3e-4, "crop": 256, "batch_size": 8, "amp": True, "augmentation": {}}]},
        "ddpm": {"stages": [6], "steps_per_epoch": 250, "batch_size": 8, "crop": 128, "lr": 5e-4, "ema": 0.995,
                 "workers": 1,
                 "val_ddim_steps": 10, "val_slices": 16,
                 "model_config": {"channels": [16, 32, 64, 64], "attention_levels": [False, False, False, True],
                                  "num_head_channels": 32, "norm_num_groups": 16}, **FIRST_CPU_RUN,
                 "refine": [{"epochs": 20, "lr": 2e-4, "amp": True, "augmentation": {}}]},
        # The shipped U-Net: the above fine-tuned on the randomized simulator (docs/model_card.md section 0).
        # Its time budget makes the number of steps depend on the machine (2,222 steps on the 2-core CPU).
        "unet_randomized": {
            "data": {"r": {"cases": 320, "seed": 3031, "domain": "randomized"},
                     "d": {"cases": 96, "seed": 3032, "domain": "default"}},
            "simulate": {"size": 256, "slices": 16},
            "cache": {"seed": 12, "spacing_range": [0.9077, 2.2812]},
            "train": {"epochs": 40, "steps_per_epoch": 100, "batch_size": 8, "crop": 256, "lr": 5e-4, "seed": 2027,
                      "val_slices": 64, "time_budget_s": 2700, "amp": True, "augmentation": {}},
        },
        "evaluate": {"max_images": 120, "ddpm_max_images": 24, "ablation": "1,5,10,25,50", "check_ddim_steps": 10,
                     "spacing_check": 6},
    },
    # One GPU: more data, longer training, the paper's 50-step DDIM evaluated on the whole test split.
    "gpu": {
        "cases": 400, "seed": 2026,
        "unet": {"stages": [40], "steps_per_epoch": None, "batch_size": 32, "crop": 192, "lr": 2e-3,
                 "workers": 8, "model_config": {"base_channels": 16, "depth": 4}},
        "ddpm": {"stages": [60], "steps_per_epoch": None, "batch_size": 32, "crop": 192, "lr": 2e-4, "ema": 0.999,
                 "workers": 8, "val_ddim_steps": 25, "val_slices": 64,
                 "model_config": {"channels": [32, 64, 128, 128],
                                  "attention_levels": [False, False, False, True],
                                  "num_head_channels": 32, "norm_num_groups": 32}},
        "evaluate": {"max_images": None, "ddpm_max_images": None, "ablation": "1,5,10,25,50,100",
                     "check_ddim_steps": 50, "spacing_check": 12},
    },
}


def run(command: list[str]) -> float:
    """Run a step in a subprocess (fresh memory, its own progress output); returns seconds taken."""
    print("+", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


def train_command(arch: str, cache: Path, out: Path, seed: int, settings: dict) -> list[str]:
    """``python -m training.train`` with every setting as a flag (dicts as JSON)."""
    command = [sys.executable, "-m", "training.train", "--model", arch, "--data", str(cache), "--out", str(out),
               "--seed", str(seed), "--weights-dtype", "float16"]
    for key, value in settings.items():
        if isinstance(value, dict):
            command += ["--" + key.replace("_", "-"), json.dumps(value)]
        elif value is not None:
            command += ["--" + key.replace("_", "-"), str(value)]
    return command


def evaluate_command(evaluation: dict, cache: Path, work: Path, final_runs: dict[str, Path],
                     figures: Path) -> list[str]:
    """``python -m training.evaluate`` on the test split for the final run of each model in ``final_runs``."""
    command = [sys.executable, "-m", "training.evaluate", "--data", str(cache), "--split", "test",
               "--unet", str(final_runs["unet"] / "best.safetensors"), "--out", str(work / "evaluation.json"),
               "--markdown", str(work / "evaluation.md"), "--robustness", "--rois",
               "--spacing-check", str(evaluation.get("spacing_check", 0)), "--figures", str(figures)]
    if "ddpm" in final_runs:
        command += ["--ddpm", str(final_runs["ddpm"] / "best.safetensors"), "--ablation", evaluation["ablation"],
                    "--check-ddim-steps", str(evaluation["check_ddim_steps"]),
                    "--samples-ablation", evaluation.get("samples_ablation", "1,4,8")]
        if evaluation["ddpm_max_images"]:
            command += ["--ddpm-max-images", str(evaluation["ddpm_max_images"])]
    if evaluation["max_images"]:
        command += ["--max-images", str(evaluation["max_images"])]
    return command


def training_seconds(metrics_csv: str) -> float | None:
    """A run's training time: the last "seconds" of its ``metrics.csv``, a clock that carries over resumes."""
    rows = list(csv.DictReader(io.StringIO(metrics_csv)))
    return float(rows[-1]["seconds"]) if rows else None


def refine_name(arch: str, number: int) -> str:
    """Folder of an architecture's ``number``-th refinement run: unet_refine, unet_refine2, ..."""
    return f"{arch}_refine" if number == 1 else f"{arch}_refine{number}"


def link_cases(folders: dict[str, Path], out: Path) -> None:
    """One folder of pairs from several simulated ones: each file linked as ``<prefix><name>`` (case names of
    different simulator runs repeat; the prefix keeps them apart and says where a case came from)."""
    out.mkdir(parents=True, exist_ok=True)
    for prefix, folder in folders.items():
        for source in sorted(folder.glob("*.nii.gz")):
            link = out / f"{prefix}{source.name}"
            if not (link.is_symlink() or link.exists()):
                link.symlink_to(os.path.relpath(source, out))


def randomized_finetune(recipe: dict, work: Path, previous: Path, seconds: dict[str, float]) -> Path:
    """The shipped U-Net's last run: simulate its folders (``recipe["simulate"]`` settings unless a folder has
    its own), link and cache them, fine-tune ``previous``'s best."""
    folders = {}
    for prefix, source in recipe["data"].items():
        folder = folders[prefix] = work / f"data_randomized_{prefix}"
        if not (folder / "manifest.json").exists():
            seconds[f"simulate_{prefix}"] = run([
                sys.executable, "-m", "napari_sff.cli", "simulate", str(folder), "--cases", str(source["cases"]),
                "--seed", str(source["seed"]), "--domain", source["domain"],
                "--size", str(source.get("size", recipe["simulate"]["size"])),
                "--slices", str(source.get("slices", recipe["simulate"]["slices"]))])
    mix, cache = work / "data_randomized", work / "cache_randomized"
    link_cases(folders, mix)
    if not (cache / "cache.json").exists():
        low, high = recipe["cache"]["spacing_range"]
        seconds["cache_randomized"] = run([sys.executable, "-m", "training.data", str(mix), str(cache), "--seed",
                                           str(recipe["cache"]["seed"]), "--spacing-range", str(low), str(high)])
    settings = dict(recipe["train"])
    seed = settings.pop("seed")
    out = work / "unet_randomized"
    seconds["finetune_unet_randomized"] = run(train_command(
        "unet", cache, out, seed, {**settings, "init_weights": str(previous / "best.safetensors")}))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--work", default="runs/reproduce", help="folder for data, cache and runs")
    parser.add_argument("--skip-ddpm", action="store_true")
    parser.add_argument("--no-install", action="store_true", help="leave napari_sff/weights untouched")
    parser.add_argument("--card-dir", default=None,
                        help="where model_card.json / .md go (default: the work folder; 'docs' replaces the "
                             "hand-edited card)")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    work = Path(args.work).resolve()  # the steps run from the checkout's root
    card_dir = work if args.card_dir is None else Path(args.card_dir).resolve()
    data, cache = work / "data", work / "cache"
    seconds: dict[str, float] = {}

    if not (data / "manifest.json").exists():
        seconds["simulate"] = run([sys.executable, "-m", "napari_sff.cli", "simulate", str(data), "--cases",
                                   str(profile["cases"]), "--seed", str(profile["seed"])])
    if not (cache / "cache.json").exists():
        seconds["cache"] = run([sys.executable, "-m", "training.data", str(data), str(cache), "--seed",
                                str(profile["seed"])])
    archs = ["unet"] if args.skip_ddpm else ["unet", "ddpm"]
    final_runs: dict[str, Path] = {}
    run_dirs: list[Path] = []  # every training run, in order, for the card's logs
    for arch in archs:
        out = work / arch
        settings = dict(profile[arch])
        refinements = settings.pop("refine", [])
        for epochs in settings.pop("stages"):  # each stage resumes the previous one with a longer schedule
            seconds[f"train_{arch}_to_epoch{epochs}"] = run(train_command(arch, cache, out, profile["seed"],
                                                                          {**settings, "epochs": epochs}))
        run_dirs.append(out)
        for number, refine in enumerate(refinements, start=1):
            # A new run that starts from the previous run's best weights, with its own schedule.
            previous, out = out, work / refine_name(arch, number)
            seconds[f"refine{number}_{arch}"] = run(train_command(
                arch, cache, out, profile["seed"],
                {**settings, **refine, "init_weights": str(previous / "best.safetensors")}))
            run_dirs.append(out)
        if arch == "unet" and "unet_randomized" in profile:
            out = randomized_finetune(profile["unet_randomized"], work, out, seconds)
            run_dirs.append(out)
        final_runs[arch] = out
        if not args.no_install:
            WEIGHTS.mkdir(exist_ok=True)
            shutil.copyfile(out / "best.safetensors", WEIGHTS / f"{arch}.safetensors")

    seconds["evaluate"] = run(evaluate_command(profile["evaluate"], cache, work, final_runs, card_dir / "figures"))

    logs = {run_dir.name: (run_dir / "metrics.csv").read_text() for run_dir in run_dirs
            if (run_dir / "metrics.csv").exists()}
    card = {
        "profile": args.profile, "recipe": profile,
        # Wall time of each step of this invocation (a finished run that is resumed takes seconds) ...
        "seconds": seconds,
        # ... and each run's own training time from its log, resumes included.
        "training_seconds": {name: training_seconds(log) for name, log in logs.items()},
        "hardware": {"machine": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count()},
        "evaluation": json.loads((work / "evaluation.json").read_text()),
        "training_logs": logs,
    }
    card_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(card_dir / "model_card.json", json.dumps(card, indent=1))
    atomic_write_text(card_dir / "model_card.md", (work / "evaluation.md").read_text())
    print(json.dumps(seconds, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
