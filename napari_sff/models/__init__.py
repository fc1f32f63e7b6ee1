"""Models: the U-Net and conditional DDPM, a registry to rebuild them from configs, and safe checkpoints.

Importing this subpackage imports torch and MONAI; ``napari_sff`` itself does not, so keep such imports lazy
outside ``napari_sff.models``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .ddpm import ConditionalDDPM, DDPMConfig, ddim_sample_loop, ddim_timesteps, ddim_transitions
from .unet import SFFUNet, UNetConfig, crop_to, pad_to_multiple

ARCHITECTURES: dict[str, tuple[type[nn.Module], type]] = {
    "unet": (SFFUNet, UNetConfig),
    "ddpm": (ConditionalDDPM, DDPMConfig),
}


def make_config(arch: str, config: dict[str, Any] | Any | None = None) -> Any:
    """The config dataclass for ``arch`` from a dict (e.g. parsed JSON), an instance, or None (defaults)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    config_cls = ARCHITECTURES[arch][1]
    if config is None:
        return config_cls()
    if isinstance(config, config_cls):
        return config
    if not isinstance(config, dict):
        raise TypeError(
            f"config for {arch!r} must be a dict or {config_cls.__name__}, got {type(config).__name__}"
        )
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(
            f"{config_cls.__name__} has no field(s) {', '.join(unknown)} (written by a newer napari-sff?)"
        )
    return config_cls(**config)


def build_model(arch: str, config: dict[str, Any] | Any | None = None) -> nn.Module:
    """Instantiate the registered model for ``arch`` (``"unet"`` or ``"ddpm"``) from its config."""
    cfg = make_config(arch, config)  # raises the helpful error for an unknown arch
    return ARCHITECTURES[arch][0](cfg)


# Imported last: checkpoint uses the registry above.
from .checkpoint import (  # noqa: E402
    FORMAT_VERSION,
    CheckpointError,
    default_weights_path,
    has_default_weights,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)

__all__ = [
    "ARCHITECTURES",
    "FORMAT_VERSION",
    "CheckpointError",
    "ConditionalDDPM",
    "DDPMConfig",
    "SFFUNet",
    "UNetConfig",
    "build_model",
    "crop_to",
    "ddim_sample_loop",
    "ddim_timesteps",
    "ddim_transitions",
    "default_weights_path",
    "has_default_weights",
    "load_checkpoint",
    "make_config",
    "pad_to_multiple",
    "read_metadata",
    "save_checkpoint",
]
