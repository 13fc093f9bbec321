"""ESRGAN's discriminator: BasicSR's ``VGGStyleDiscriminator`` with the input size a parameter.

BasicSR (XPixelGroup/BasicSR @ 8d56e3a, ``basicsr/archs/discriminator_arch.py:8-86``) builds it for
128 or 256 px only: stages ``k = 0..n-1`` of a 3x3 conv (stride 1) and a 4x4 conv (stride 2),
each followed by BatchNorm (except the very first conv, which has a bias and no BN) and
LeakyReLU(0.2), channels ``num_feat * (1, 2, 4, 8, 8, 8)``; the 4x4 map left after the last stage
goes through ``linear1`` (-> 100) + LeakyReLU and ``linear2`` (-> 1 logit). 128 px has 5 stages
(``conv0_*`` .. ``conv4_*``), 256 px adds ``conv5_*``.

Ours is the same network with ``n = log2(input_size / 4)`` stages, so ``input_size`` may be any
power of two >= 32 (the smoke and tiny profiles train at 64 and 32 px); at 128 and 256 it is the
official module, parameter for parameter and name for name (``conv{k}_0``, ``bn{k}_0``,
``conv{k}_1``, ``bn{k}_1``, ``linear1``, ``linear2``): BasicSR ``net_d`` files load with the
identity map (:mod:`.keymap`).

Layout: ``[N, 3, S, S]`` images in [0, 1] (ESRGAN's range, no normalisation) -> ``[N, 1]`` logits.
"""
from __future__ import annotations

import math

import torch
from torch import nn

SLOPE = 0.2
OFFICIAL_INPUT_SIZES = (128, 256)  # the only sizes BasicSR's VGGStyleDiscriminator accepts


def stage_channels(num_feat: int, n_stages: int) -> list[int]:
    """Output channels of stage ``k``: ``num_feat * min(2**k, 8)`` (the official table)."""
    return [num_feat * min(2 ** k, 8) for k in range(n_stages)]


class VGGStyleDiscriminator(nn.Module):
    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128):
        super().__init__()
        if input_size < 32 or input_size & (input_size - 1):
            raise ValueError(f"VGGStyleDiscriminator input_size must be a power of two >= 32 (the "
                             f"official: 128 or 256), got {input_size}")
        self.input_size = int(input_size)
        self.n_stages = int(math.log2(input_size // 4))
        chans = stage_channels(num_feat, self.n_stages)
        cin = num_in_ch
        for k, c in enumerate(chans):
            first = k == 0
            setattr(self, f"conv{k}_0", nn.Conv2d(cin, c, 3, 1, 1, bias=first))
            if not first:
                setattr(self, f"bn{k}_0", nn.BatchNorm2d(c, affine=True))
            setattr(self, f"conv{k}_1", nn.Conv2d(c, c, 4, 2, 1, bias=False))
            setattr(self, f"bn{k}_1", nn.BatchNorm2d(c, affine=True))
            cin = c
        self.linear1 = nn.Linear(chans[-1] * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"VGGStyleDiscriminator({self.input_size}) expects [N, C, "
                             f"{self.input_size}, {self.input_size}] images, got {tuple(x.shape)}: "
                             f"train on GT crops of that size (train.crop_size)")
        feat = x
        for k in range(self.n_stages):
            feat = getattr(self, f"conv{k}_0")(feat)
            if k:
                feat = getattr(self, f"bn{k}_0")(feat)
            feat = self.lrelu(feat)
            feat = self.lrelu(getattr(self, f"bn{k}_1")(getattr(self, f"conv{k}_1")(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))  # [N, C*4*4]
        return self.linear2(feat)
