"""Checkpoints -> models ready for inference, kept resident so that repeated runs (the widget's) do not reload.

A loaded model carries what its checkpoint recorded about the training data (pixel spacing, input statistics),
so that prediction can match a scan to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: The architectures load_model knows, with the names reports, layers and DICOM series descriptions show.
ARCH_LABELS = {"unet": "U-Net", "ddpm": "DDPM"}
#: One resident model, keyed by (arch, weights path, modification time, device).
_MODEL_CACHE: dict[tuple[str, str, float, str], tuple[Any, dict]] = {}


def weights_path(arch: str, weights: str | Path | None = None) -> Path:
    """The checkpoint file a run uses: ``weights``, or the shipped weights of ``arch`` when None."""
    from napari_sff.models import default_weights_path

    return Path(weights) if weights else default_weights_path(arch)


def input_normalisation(model: Any) -> str:
    """The ``normalise_t2w`` method ``model`` was trained on (its checkpoint's record; "p99" for a model made in
    code, as tests and training make them)."""
    return getattr(model, "input_normalisation", "p99")


def load_model(arch: str, weights: str | Path | None = None, device: str | torch.device = "cpu"):
    """(model in eval mode on ``device``, checkpoint metadata); shipped weights when ``weights`` is None.

    Cached by file and modification time, so the widget's repeated runs do not reload.
    """
    from napari_sff.models import CheckpointError, load_checkpoint

    if arch not in ARCH_LABELS:
        raise ValueError(f"unknown model {arch!r}; use one of {', '.join(ARCH_LABELS)}")
    path = weights_path(arch, weights)
    if weights is None and not path.exists():
        raise CheckpointError(f"shipped {arch} weights are missing at {path}; reinstall napari-sff or pass --weights")
    key = (arch, str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0, str(device))
    if key not in _MODEL_CACHE:
        model, metadata = load_checkpoint(path, expected_arch=arch, device=str(device))
        model.eval()
        model._napari_sff_owned = True  # predict_slices may keep it in the calibrated memory format
        # Carried by the model, so that predict_volume can match a user's pixel size to the training data's.
        seen = metadata.get("metadata", {}).get("input_spacing_mm")
        model.input_spacing_mm = (float(seen[0]), float(seen[1])) if seen else None
        model.input_statistics = metadata.get("metadata", {}).get("input_statistics")  # see napari_sff.domain
        model.feature_statistics = metadata.get("metadata", {}).get("feature_statistics")  # the U-Net's, ditto
        _MODEL_CACHE.clear()  # keep one model resident: weights can be large on small GPUs
        _MODEL_CACHE[key] = (model, metadata)
    return _MODEL_CACHE[key]
