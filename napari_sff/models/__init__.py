"""Models: the U-Net and conditional DDPM, a registry to rebuild them from configs, and safe checkpoints.

Importing this subpackage imports torch; ``napari_sff`` itself does not, so keep such imports lazy outside
``napari_sff.models``. MONAI (the DDPM's network and scheduler) is imported only when a DDPM name is first used
(``ConditionalDDPM``, ``DDPMConfig``, ``ddim_*``, ``build_model("ddpm")``, a DDPM checkpoint): it costs seconds of
imports, and the garbage collections they trigger stall the GUI, which a U-Net-only run never needs.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from torch import nn

from .unet import SFFUNet, UNetConfig, crop_to, pad_to_multiple

if TYPE_CHECKING:  # for type checkers only: at run time these come from __getattr__ on first use
    from .ddpm import ConditionalDDPM, DDPMConfig, ddim_sample_loop, ddim_timesteps, ddim_transitions

#: Public names that live in ``.ddpm`` (which imports MONAI) and are imported on first access.
_DDPM_NAMES = ("ConditionalDDPM", "DDPMConfig", "ddim_sample_loop", "ddim_timesteps", "ddim_transitions")

_Entry = tuple[type[nn.Module], type]


def _ddpm_entry() -> _Entry:
    from .ddpm import ConditionalDDPM, DDPMConfig

    return ConditionalDDPM, DDPMConfig


class _Registry(MutableMapping[str, _Entry]):
    """arch -> (model class, config class), like a dict, except that an entry stored as a loader (a function) is
    resolved on first lookup: the architecture names are known without importing what defines them."""

    def __init__(self, entries: dict[str, _Entry | Callable[[], _Entry]]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, arch: str) -> _Entry:
        entry = self._entries[arch]
        if callable(entry):  # a loader (a tuple is not callable)
            entry = self._entries[arch] = entry()
        return entry

    def __setitem__(self, arch: str, entry: _Entry | Callable[[], _Entry]) -> None:
        self._entries[arch] = entry

    def __delitem__(self, arch: str) -> None:
        del self._entries[arch]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, arch: object) -> bool:  # without resolving a loader
        return arch in self._entries

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._entries!r})"


ARCHITECTURES: MutableMapping[str, _Entry] = _Registry({"unet": (SFFUNet, UNetConfig), "ddpm": _ddpm_entry})


def __getattr__(name: str) -> Any:
    """The DDPM's names, imported (with MONAI) on first access and then kept as ordinary module attributes."""
    if name in _DDPM_NAMES:
        value = getattr(importlib.import_module(".ddpm", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_DDPM_NAMES})


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
