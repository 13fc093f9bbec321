"""U-Net (Ronneberger et al., MICCAI 2015) as a residual restoration backbone.

Our own clean configuration (no official checkpoint): ``depth`` 2x max-pool downsamplings; at
level ``l`` two ``3x3 conv + ReLU`` with ``base_channels * 2**l`` channels (same padding instead of
the paper's valid convolutions so that the output keeps the input size), a ``2x2`` transposed conv
up, concatenation with the skip, two ``3x3 conv + ReLU``; the image is ``x + ending(feature)`` with
a ``3x3`` ending conv. ``UNet(base_channels=32, depth=4)`` has 7.76 M parameters. Inputs are
zero-padded to a multiple of ``2**depth`` and cropped back.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .base import Backbone, pad_to_multiple


class DoubleConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True))


class UNet(Backbone):
    kind = "residual"

    def __init__(self, base_channels: int = 32, depth: int = 4, img_channel: int = 3):
        super().__init__()
        if depth < 1:
            raise ValueError(f"UNet depth must be >= 1, got {depth}")
        self.depth = depth
        self.size_multiple = 2 ** depth
        self._feature_channels = base_channels
        chans = [base_channels * 2 ** i for i in range(depth + 1)]
        self.down_blocks = nn.ModuleList()
        in_ch = img_channel
        for c in chans[:-1]:
            self.down_blocks.append(DoubleConv(in_ch, c))
            in_ch = c
        self.bottleneck = DoubleConv(chans[-2], chans[-1])
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2))
            self.up_blocks.append(DoubleConv(2 * chans[i], chans[i]))
        self.ending = nn.Conv2d(base_channels, img_channel, 3, padding=1)

    def forward_impl(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        inp = pad_to_multiple(x, self.size_multiple)
        f = inp
        skips = []
        for block in self.down_blocks:
            f = block(f)
            skips.append(f)
            f = F.max_pool2d(f, 2)
        f = self.bottleneck(f)
        for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips)):
            f = block(torch.cat([up(f), skip], dim=1))
        image = self.ending(f) + inp
        return image[..., :h, :w], f[..., :h, :w]
