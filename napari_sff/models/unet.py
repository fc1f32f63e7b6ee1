"""Lightweight 2D U-Net that regresses SFF directly from a normalised T2w slice.

Hand-written in plain torch rather than MONAI's ``BasicUNet``: ``BasicUNet`` has a fixed five-level layout
(six feature sizes) with no ``depth`` knob, whereas the paper's model is a "4-level U-Net" whose width and depth
we want as two explicit numbers in a saved config. The network is ~100 lines and has nothing MONAI-specific.

Also home of :func:`pad_to_multiple` / :func:`crop_to`, the one pad/crop pair both models use so that any
slice size goes through networks that halve the resolution several times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SFFUNet", "UNetConfig", "crop_to", "pad_to_multiple"]

_NORMS = ("group", "batch", "instance", "none")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two dims of ``x`` (bottom/right, replicate) up to a multiple of ``multiple``.

    Replicate rather than reflect because reflect fails when the pad exceeds the image size (tiny slices) and
    the edge of an MRI slice is background anyway. Returns the padded tensor and the original (H, W) for
    :func:`crop_to`.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    return x[..., : size[0], : size[1]]


@dataclass
class UNetConfig:
    """Explicit, JSON-serialisable U-Net configuration (saved inside every checkpoint)."""

    in_channels: int = 1
    out_channels: int = 1
    base_channels: int = 16  # width of level 1; doubles per level
    depth: int = 4  # number of resolution levels, i.e. depth - 1 poolings (the paper's "4-level U-Net")
    norm: str = "group"  # GroupNorm: independent of batch size, so batch=1 training/inference behave alike
    dropout: float = 0.0  # Dropout2d after each decoder block and the bottleneck

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"UNetConfig.depth must be >= 1, got {self.depth}")
        if self.base_channels < 1 or self.in_channels < 1 or self.out_channels < 1:
            raise ValueError("UNetConfig channel counts must be positive")
        if self.norm not in _NORMS:
            raise ValueError(f"UNetConfig.norm must be one of {_NORMS}, got {self.norm!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}")


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        # 8 groups where possible (GroupNorm paper default range), else fall back to LayerNorm-like 1 group.
        return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class _DoubleConv(nn.Sequential):
    """(conv3x3 -> norm -> ReLU) x 2, the classic U-Net block; bias is redundant before a norm layer."""

    def __init__(self, cin: int, cout: int, norm: str, dropout: float = 0.0) -> None:
        bias = norm == "none"
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers += [
                nn.Conv2d(c, cout, 3, padding=1, bias=bias),
                _norm_layer(norm, cout),
                nn.ReLU(inplace=True),
            ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class SFFUNet(nn.Module):
    """4-level U-Net: (B, 1, H, W) normalised T2w -> (B, 1, H, W) SFF estimate.

    The output is an unclamped linear map so that the loss sees gradients near 0 and 1; callers clip to [0, 1].
    Any H, W are accepted: the input is padded to a multiple of ``2 ** (depth - 1)`` and the output cropped back.
    """

    arch = "unet"

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        widths = [config.base_channels * 2**i for i in range(config.depth)]
        self.encoders = nn.ModuleList()
        cin = config.in_channels
        for i, w in enumerate(widths):
            bottleneck = i == len(widths) - 1
            self.encoders.append(_DoubleConv(cin, w, config.norm, config.dropout if bottleneck else 0.0))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_hi, w_lo in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.ups.append(nn.ConvTranspose2d(w_hi, w_lo, 2, stride=2))
            self.decoders.append(_DoubleConv(2 * w_lo, w_lo, config.norm, config.dropout))
        self.head = nn.Conv2d(widths[0], config.out_channels, 1)

    @property
    def size_multiple(self) -> int:
        """Spatial sizes the bare network accepts without padding."""
        return 2 ** (self.config.depth - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.size_multiple)
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for up, dec in zip(self.ups, self.decoders, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return crop_to(self.head(x), size)
