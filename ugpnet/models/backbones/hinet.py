"""HINet (Chen et al., "HINet: Half Instance Normalization Network", CVPRW 2021), residual kind.

Two U-Net stages joined by a supervised attention module (SAM) and cross-stage feature fusion
(CSFF). Parameter names equal megvii-model/HINet ``hinet_arch.py`` (identity key map for the
released ``params``). Configs: GoPro ``HINet(wf=64, hin_position_left=3, hin_position_right=4)``
(88.67 M), SIDD-0.5x ``HINet(wf=32)`` (22.18 M).

``forward`` returns the stage-2 image (the official forward returns ``[stage1, stage2]``);
``return_feature=True`` also returns the stage-2 feature before the final conv ``last`` (``wf``
channels), as the official UGPNet copy's ``return_f=True``.

``stage2_intro``: the original HINet feeds stage 2 with ``conv_02(x)``; the copy of HINet in the
official UGPNet repository uses ``conv_01(x)`` for both stages (``conv_02`` is then unused).
Default ``"conv_02"`` (the original; correct for megvii's released weights); set ``"conv_01"`` to
reproduce the UGPNet copy. Inputs are zero-padded to a multiple of 16 and cropped back (the
official code requires multiples of 16; the result is identical for those sizes).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .base import Backbone, pad_to_multiple


class HINConvBlock(nn.Module):
    """conv3x3 (+half instance norm) -> LReLU -> conv3x3 -> LReLU, + 1x1 identity; optional CSFF
    and a 4x4 stride-2 downsampling conv (returns ``(down, full)`` then)."""

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, relu_slope: float,
                 use_csff: bool = False, use_hin: bool = False):
        super().__init__()
        self.relu_slope = relu_slope
        self.identity = nn.Conv2d(in_ch, out_ch, 1)
        self.conv_1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv_2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.use_csff = bool(downsample and use_csff)
        if self.use_csff:
            self.csff_enc = nn.Conv2d(out_ch, out_ch, 3, padding=1)
            self.csff_dec = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm = nn.InstanceNorm2d(out_ch // 2, affine=True) if use_hin else None
        self.downsample = nn.Conv2d(out_ch, out_ch, 4, 2, 1, bias=False) if downsample else None

    def forward(self, x: torch.Tensor, enc: Optional[torch.Tensor] = None,
                dec: Optional[torch.Tensor] = None):
        out = self.conv_1(x)
        if self.norm is not None:
            a, b = out.chunk(2, dim=1)
            out = torch.cat([self.norm(a), b], dim=1)
        out = F.leaky_relu(out, self.relu_slope)
        out = F.leaky_relu(self.conv_2(out), self.relu_slope)
        out = out + self.identity(x)
        if enc is not None and dec is not None:
            if not self.use_csff:
                raise RuntimeError("cross-stage features given to a block without CSFF convs")
            out = out + self.csff_enc(enc) + self.csff_dec(dec)
        if self.downsample is not None:
            return self.downsample(out), out
        return out


class HINUpBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, relu_slope: float):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv_block = HINConvBlock(in_ch, out_ch, False, relu_slope)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), bridge], dim=1))


class SAM(nn.Module):
    """Supervised attention module: stage-1 image and attention-weighted features."""

    def __init__(self, c: int, img_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, img_channels, 3, padding=1)
        self.conv3 = nn.Conv2d(img_channels, c, 3, padding=1)

    def forward(self, x: torch.Tensor, image: torch.Tensor):
        img = self.conv2(x) + image
        return self.conv1(x) * torch.sigmoid(self.conv3(img)) + x, img


class HINet(Backbone):
    kind = "residual"

    def __init__(self, wf: int = 64, hin_position_left: int = 0, hin_position_right: int = 4,
                 depth: int = 5, relu_slope: float = 0.2, in_chn: int = 3,
                 stage2_intro: str = "conv_02"):
        super().__init__()
        if stage2_intro not in ("conv_01", "conv_02"):
            raise ValueError(f"HINet stage2_intro must be 'conv_01' or 'conv_02', "
                             f"got {stage2_intro!r}")
        self.depth = depth
        self.stage2_intro = stage2_intro
        self.size_multiple = 2 ** (depth - 1)
        self._feature_channels = wf
        self.conv_01 = nn.Conv2d(in_chn, wf, 3, padding=1)
        self.conv_02 = nn.Conv2d(in_chn, wf, 3, padding=1)
        self.down_path_1, self.down_path_2 = nn.ModuleList(), nn.ModuleList()
        prev = wf
        for i in range(depth):
            hin = hin_position_left <= i <= hin_position_right
            down = i + 1 < depth
            self.down_path_1.append(HINConvBlock(prev, wf * 2 ** i, down, relu_slope, use_hin=hin))
            self.down_path_2.append(HINConvBlock(prev, wf * 2 ** i, down, relu_slope,
                                                 use_csff=down, use_hin=hin))
            prev = wf * 2 ** i
        self.up_path_1, self.up_path_2 = nn.ModuleList(), nn.ModuleList()
        self.skip_conv_1, self.skip_conv_2 = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(depth - 1)):
            c = wf * 2 ** i
            self.up_path_1.append(HINUpBlock(prev, c, relu_slope))
            self.up_path_2.append(HINUpBlock(prev, c, relu_slope))
            self.skip_conv_1.append(nn.Conv2d(c, c, 3, padding=1))
            self.skip_conv_2.append(nn.Conv2d(c, c, 3, padding=1))
            prev = c
        self.sam12 = SAM(prev, in_chn)
        self.cat12 = nn.Conv2d(prev * 2, prev, 1)
        self.last = nn.Conv2d(prev, in_chn, 3, padding=1)

    def forward_stages(self, x: torch.Tensor):
        """(stage-1 image, stage-2 image, stage-2 feature), all at the padded size."""
        image = x
        x1 = self.conv_01(image)
        encs, decs = [], []
        for down in self.down_path_1[:-1]:
            x1, full = down(x1)
            encs.append(full)
        x1 = self.down_path_1[-1](x1)
        for i, up in enumerate(self.up_path_1):
            x1 = up(x1, self.skip_conv_1[i](encs[-i - 1]))
            decs.append(x1)
        sam_feature, out_1 = self.sam12(x1, image)

        intro = self.conv_01 if self.stage2_intro == "conv_01" else self.conv_02
        x2 = self.cat12(torch.cat([intro(image), sam_feature], dim=1))
        blocks = []
        for i, down in enumerate(self.down_path_2[:-1]):
            x2, full = down(x2, encs[i], decs[-i - 1])
            blocks.append(full)
        x2 = self.down_path_2[-1](x2)
        for i, up in enumerate(self.up_path_2):
            x2 = up(x2, self.skip_conv_2[i](blocks[-i - 1]))
        return out_1, self.last(x2) + image, x2

    def forward_impl(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        _, out_2, feat = self.forward_stages(pad_to_multiple(x, self.size_multiple))
        return out_2[..., :h, :w], feat[..., :h, :w]
