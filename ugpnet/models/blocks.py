"""Small shared blocks of UGPNet's restoration and fusion modules.

Layer shapes follow the official UGPNet code (``archs/blocks.py``) so that parameter counts and
checkpoints match; parameter names differ where noted in :mod:`ugpnet.models.keymaps`.

- :class:`ConvBlock`: ``[Conv3x3 (+BatchNorm) + LeakyReLU(0.2)] x 3``, optional 2x average-pool
  downsampling at the end. All convs have a bias. Keys ``conv.{0,1,2}.*`` (+ ``bn.{0,1,2}.*``).
- :class:`ToImage`: ``Conv3x3 (C -> 3) + LeakyReLU(0.2)`` (the official to-image layer ends with
  the LeakyReLU, so its output is not clamped to [0,1]). Key ``conv.*``.
- :class:`ResBlock`: SRNTT residual block ``ReLU(x + Conv(ReLU(Conv(x))))``. Keys ``conv1``/``conv2``.

Activations and residual sums are applied in place on the freshly allocated conv outputs (the
convs' backward does not need their outputs, so this is autograd-safe and saves a full-size
tensor and its page faults per layer); the memory format of the input (channels-last is the
fast path on CPU) is kept.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

LEAKY_SLOPE = 0.2


def init_official(module: nn.Module) -> None:
    """UGPNet's ``initialize_weights``: Kaiming-normal (fan_out, leaky_relu) convs, zero biases,
    unit BatchNorm, N(0, 0.01) linears."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ConvBlock(nn.Module):
    """Three 3x3 conv layers with LeakyReLU(0.2) (optionally BatchNorm before the activation)."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int = 3,
                 batch_norm: bool = False, downscale: int = 1):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.downscale = int(downscale)
        self.conv = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, 1, 1)
            for i in range(num_layers))
        self.bn = (nn.ModuleList(nn.BatchNorm2d(out_channels) for _ in range(num_layers))
                   if batch_norm else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.conv):
            x = conv(x)
            if self.bn is not None:
                x = self.bn[i](x)
            x = F.leaky_relu_(x, LEAKY_SLOPE)  # x is the fresh conv/BN output
        if self.downscale > 1:
            x = F.avg_pool2d(x, self.downscale, self.downscale)
        return x


class ToImage(nn.Module):
    """Feature map -> 3-channel image: Conv3x3 + LeakyReLU(0.2), as the official ``ToImage``."""

    def __init__(self, in_channels: int, out_channels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu_(self.conv(x), LEAKY_SLOPE)


class ResBlock(nn.Module):
    """Residual block without normalisation: ``ReLU(x + Conv3x3(ReLU(Conv3x3(x))))``."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # same sum as x + conv2(...) (addition commutes exactly); in place on conv2's output
        return self.conv2(F.relu_(self.conv1(x))).add_(x).relu_()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
