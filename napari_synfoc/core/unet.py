"""The classic 2D U-Net of SynFoC (spec §6.1: ``networks/unet_model.py`` with ``bilinear=False``).

Each level is a DoubleConv (two rounds of 3×3 conv without bias + BatchNorm + ReLU); down-sampling
is a 2×2 max-pool, up-sampling a 2×2 stride-2 transposed conv followed by skip concatenation and a
DoubleConv; the head is a 1×1 conv to K logits.  No dropout, PyTorch's default initialisation.

Inputs whose sides are not divisible by 2**(levels) are zero-padded at the bottom/right inside
``forward`` and the logits are cropped back, so any size works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

PAPER_FEATURES = (64, 128, 256, 512, 1024)


class DoubleConv(nn.Sequential):
    """(3×3 conv, no bias → BatchNorm → ReLU) × 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2×2 max-pool, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """2×2 stride-2 transposed conv (``deep`` → ``skip`` channels), concat the skip, DoubleConv."""

    def __init__(self, deep_channels: int, skip_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(deep_channels, skip_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * skip_channels, skip_channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(deep)], dim=1))


class UNet(nn.Module):
    """2D U-Net: ``B×in_channels×H×W`` → ``B×num_classes×H×W`` logits.

    ``features`` are the channel widths from the top level down; the paper uses
    64-128-256-512-1024 (4 down / 4 up levels, about 31 M parameters).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        features: Sequence[int] = PAPER_FEATURES,
    ) -> None:
        super().__init__()
        features = tuple(int(f) for f in features)
        if len(features) < 2:
            raise ValueError(f"UNet needs at least two feature widths, got {features}")
        if in_channels < 1 or num_classes < 1 or min(features) < 1:
            raise ValueError(
                f"UNet: in_channels ({in_channels}), num_classes ({num_classes}) and "
                f"features {features} must be positive"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.features = features
        self.inc = DoubleConv(in_channels, features[0])
        self.downs = nn.ModuleList(Down(a, b) for a, b in zip(features[:-1], features[1:]))
        self.ups = nn.ModuleList(
            Up(deep, skip) for deep, skip in zip(features[:0:-1], features[-2::-1])
        )
        self.outc = nn.Conv2d(features[0], num_classes, kernel_size=1)

    @property
    def multiple(self) -> int:
        """Input sides are padded up to a multiple of this (2 ** number of down levels)."""
        return 2 ** len(self.downs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet expects a B×{self.in_channels}×H×W tensor, got shape {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        m = self.multiple
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        y = self.outc(y)
        if pad_h or pad_w:
            y = y[..., :h, :w]
        return y


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``module`` (optionally only those requiring grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def build_unet(cfg) -> UNet:
    """The U-Net of a :class:`~napari_synfoc.config.SynFoCConfig` (channels-last if asked)."""
    net = UNet(cfg.in_channels, cfg.num_classes, cfg.unet_features)
    if getattr(cfg, "channels_last", False):
        net = net.to(memory_format=torch.channels_last)
    return net
