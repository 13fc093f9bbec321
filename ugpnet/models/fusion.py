"""UGPNet's fusion module (paper Eq. 1): ``x_hat = Conv(R_fusion(Conv(f_syn) + f_reg))``.

- ``in_conv``: 3x3 conv ``syn_channels -> channels`` on the synthesis feature ``f_syn``;
- ``body``: ``num_blocks`` residual blocks ``ReLU(x + Conv(ReLU(Conv(x))))`` (R_fusion);
- ``out_conv``: 3x3 conv ``channels -> 3`` (no activation), the fused image.

``f_reg`` must have ``channels`` channels (64 in the paper; ``reg_channels`` is checked against it).
Paper config (64 channels, 8 blocks): 629,507 parameters (0.63 M). Initialised like the official
``FusionNet`` (Kaiming normal, fan_out, leaky_relu; zero biases). Official key names: see
:func:`ugpnet.models.keymaps.official_fusmodule_to_fusion`.

``xreg_skip`` (an option beyond the paper; ``False`` is the official module bit for bit):
``x_hat = x_reg + Conv(R_fusion(Conv(f_syn) + f_reg))`` with ``out_conv`` zero-initialised, so the
module starts at ``x_reg`` exactly and learns only what x_syn adds. Why: from the official random
start the fusion must first learn to reproduce x_reg, which a short run does not achieve (at small
scale x_hat stays 2-5 dB under x_reg; params.yaml's smoke profile). Same parameters and key names.
"""
from __future__ import annotations

import torch
from torch import nn

from .blocks import ResBlock, init_official


class FusionModule(nn.Module):
    def __init__(self, syn_channels: int = 64, reg_channels: int = 64, num_blocks: int = 8,
                 channels: int = 64, out_channels: int = 3, xreg_skip: bool = False):
        super().__init__()
        if reg_channels != channels:
            raise ValueError(f"fusion adds f_reg ({reg_channels} channels) to Conv(f_syn) "
                             f"({channels} channels): reg_channels must equal channels")
        self.syn_channels, self.reg_channels, self.channels = syn_channels, reg_channels, channels
        self.in_conv = nn.Conv2d(syn_channels, channels, 3, 1, 1)
        self.body = nn.Sequential(*[ResBlock(channels) for _ in range(num_blocks)])
        self.out_conv = nn.Conv2d(channels, out_channels, 3, 1, 1)
        init_official(self)
        self.xreg_skip = bool(xreg_skip)
        if self.xreg_skip:  # start at x_reg: the correction is zero
            nn.init.zeros_(self.out_conv.weight)
            nn.init.zeros_(self.out_conv.bias)

    def forward(self, f_syn: torch.Tensor, f_reg: torch.Tensor,
                x_reg: torch.Tensor | None = None) -> torch.Tensor:
        """``x_hat [N, 3, H, W]`` from ``f_syn [N, syn_channels, H, W]`` and ``f_reg [N,
        reg_channels, H, W]``; ``x_reg [N, 3, H, W]`` is needed (only) with ``xreg_skip``."""
        if f_syn.dim() != 4 or f_syn.shape[1] != self.syn_channels:
            raise ValueError(f"fusion expects f_syn [N, {self.syn_channels}, H, W], got "
                             f"{tuple(f_syn.shape)}")
        if f_reg.dim() != 4 or f_reg.shape[1] != self.reg_channels:
            raise ValueError(f"fusion expects f_reg [N, {self.reg_channels}, H, W], got "
                             f"{tuple(f_reg.shape)}")
        if f_syn.shape[0] != f_reg.shape[0] or f_syn.shape[-2:] != f_reg.shape[-2:]:
            raise ValueError(f"f_syn {tuple(f_syn.shape)} and f_reg {tuple(f_reg.shape)} must "
                             f"share batch and spatial size (restoration output resolution must "
                             f"equal the StyleGAN2 size)")
        if self.xreg_skip and (x_reg is None or x_reg.shape[-2:] != f_reg.shape[-2:]
                               or x_reg.shape[:2] != (f_reg.shape[0], self.out_conv.out_channels)):
            raise ValueError(f"fusion with xreg_skip adds x_reg: expected x_reg "
                             f"[{f_reg.shape[0]}, {self.out_conv.out_channels}, "
                             f"{f_reg.shape[-2]}, {f_reg.shape[-1]}], got "
                             f"{None if x_reg is None else tuple(x_reg.shape)}")
        # in place on in_conv's fresh output; channels-last f_syn (the generator's) keeps the
        # whole module channels-last
        out = self.out_conv(self.body(self.in_conv(f_syn).add_(f_reg)))
        # not in place: under bf16 autocast an fp32 x_reg keeps the sum in fp32
        return out + x_reg if self.xreg_skip else out
