"""One prepared command for a single H100/H200 lent for a few minutes: data, both models, evaluation, speed.

    python -m training.gpu_job --out DIR [--work DIR] [--domain randomized] [--muscle-prior population]
        [--init shipped | --init widened | --unet-config JSON]
        [--total-s 555]
    python -m training.gpu_job --out DIR --dry-run      # every phase, tiny, on the CPU, in well under a minute

Phases, in order, each in a process of its own (a hung or crashed phase is killed at its budget and the next
one starts; CUDA memory starts clean): ``environment`` (versions, the GPU, a bf16 GEMM for the machine's peak),
``simulate`` (cases from ``napari_sff.simulate.simulate_cases`` on every core until the case count or the
budget is reached), ``cache`` (``training.data.build_slice_cache``), ``unet`` and ``ddpm`` (``training.train``
with bf16 autocast, channels-last, large batches and ``--time-budget-s``; eager: a compile's build would count
against the budget; a run asked to compile falls back to eager if compiling fails), ``evaluate`` (test split, ``training.evaluate``'s functions), ``phantoms``
(the model card's independent phantoms rendered on every core, scored the same way, with ROI means, the error by
tissue and issue #11's targets),
``benchmark`` (ms per 256² slice: U-Net at batch 1 and 64, DDPM at 50 DDIM steps batched, fp16 and bf16,
eager, CUDA graphs, then torch.compile mode="reduce-overhead" while compiles fit, against the targets; a kill
keeps the rows measured) and, with the time left,
``ablation`` (``training.ddpm_ablation`` at a small equal budget per configuration).

``DIR`` receives few files, as the device tool brings back at most eight: ``gpu_job.json`` (every phase's numbers
or its error, rewritten after each phase), ``gpu_job.md``, ``unet.safetensors``, ``ddpm.safetensors`` (float16,
loadable with ``napari_sff.models.load_checkpoint``) and ``ablation.md``. Everything else (cases, cache, runs)
goes to ``--work``. Progress lines carry the wall clock and the seconds since the start. training/GPU.md says
how to launch it through the device tool.

Parts: ``profiles`` (phase order, targets, every budget), ``runner`` (processes, budgets, error capture,
``run_job``), ``phases`` (environment, simulate, cache, unet/ddpm training, evaluate, phantoms, ablation), ``benchmark``
(the speed variants and their timing), ``report`` (progress lines, strict JSON, ``gpu_job.md``) and ``cli`` (the
command line; ``__main__`` runs it).
"""

from __future__ import annotations

from .benchmark import phase_benchmark, time_call
from .cli import main
from .phases import (
    PHASE_FUNCTIONS,
    phase_ablation,
    phase_cache,
    phase_ddpm,
    phase_environment,
    phase_evaluate,
    phase_simulate,
    phase_unet,
)
from .profiles import PHASES, PROFILES, RETURN_LIMITS, TARGETS_MS_PER_SLICE
from .report import finite, log, markdown, save_progress
from .runner import run_job

__all__ = ["PHASES", "PHASE_FUNCTIONS", "PROFILES", "RETURN_LIMITS", "TARGETS_MS_PER_SLICE", "finite", "log",
           "main", "markdown", "phase_ablation", "phase_benchmark", "phase_cache", "phase_ddpm", "phase_environment",
           "phase_evaluate", "phase_simulate", "phase_unet", "run_job", "save_progress", "time_call"]
