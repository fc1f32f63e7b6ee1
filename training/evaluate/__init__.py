"""Evaluate identity, U-Net and DDPM on held-out slices: the paper's table, per-image statistics, paired tests.

    python -m training.evaluate --data runs/unet/cache --unet napari_sff/weights/unet.safetensors \\
        --ddpm napari_sff/weights/ddpm.safetensors --ablation 1,5,10,25,50 --out report.json --markdown report.md

Answers the referee: MAE ± SD is over images; r is pooled over body pixels (and its per-image mean is given);
U-Net vs DDPM (and each vs identity) get a paired Wilcoxon signed-rank test on per-image MAE; ``--ablation``
adds a DDIM-steps sweep for the DDPM. ms/image is wall time of batched inference on the chosen device
divided by the number of images (``--batch-size``, default 1 as a per-image latency). ``--robustness`` scores
every model again on the same images as a scanner or an export could change them (another orientation, more
noise, a stronger bias field, 8-bit storage), none of which the simulator itself produces. ``--rois`` answers
what the ROI widget is for: whole test volumes are predicted and every labelled muscle's mean SFF is compared
with the truth (MAE of ROI means, Pearson r, Bland-Altman bias and limits of agreement); ``--tissues`` breaks
the error of those volumes down by tissue class (:mod:`training.volume_checks`). ``--spacing-check N``
simulates N fresh cases at coarser and finer pixel spacings than trained and scores each model on the input
grid and with ``predict_volume``'s resampling into its training range. The U-Net predicts as ``napari-sff
predict`` does by default, each map the mean of the slice's and its mirror image's (``--no-mirror``: one pass);
with the mirror the same weights are also scored in one pass, paired on the same images.

Parts: ``images`` (the slices of a split that are scored and their cases), ``scoring`` (running a model, timed,
per-image scores, the feature-distance check, the paired test), ``robustness`` (the perturbations and the pixel
spacing check), ``run`` (the evaluation itself, ``evaluate``: every model and check asked for, as the JSON
report), ``report`` (that report as Markdown tables) and ``cli`` (the command line; ``__main__`` runs it).
"""

from __future__ import annotations

# Not this package's own, but long reached through it (tests, callers): kept importable from here.
from napari_sff.inference import resolve_device
from training.volume_checks import identity_prediction, tissue_markdown, volume_checks

from .cli import main
from .images import as_cache, evenly_spaced, load_split, split_cases
from .report import markdown
from .robustness import PERTURBATIONS, SPACING_CHECK_SIZES, perturb, robustness_rows, spacing_rows
from .run import EXAMPLE_IMAGES, evaluate
from .scoring import feature_check, paired_test, run_model, score

__all__ = ["EXAMPLE_IMAGES", "PERTURBATIONS", "SPACING_CHECK_SIZES", "as_cache", "evaluate", "evenly_spaced",
           "feature_check", "identity_prediction", "load_split", "main", "markdown", "paired_test", "perturb",
           "resolve_device", "robustness_rows", "run_model", "score", "spacing_rows", "split_cases", "tissue_markdown",
           "volume_checks"]
