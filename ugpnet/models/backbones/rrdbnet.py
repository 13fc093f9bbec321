"""RRDBNet (Wang et al., ESRGAN, ECCVW 2018), direct kind, x8 as in the official UGPNet.

Parameter names follow BasicSR ``rrdbnet_arch.py`` (``conv_first``, ``body.N.rdb{1,2,3}.convK``,
``conv_body``, ``conv_up1..``, ``conv_hr``, ``conv_last``), which is also the layout of the official
UGPNet ``RRDBNetX8`` (three upsampling convs ``conv_up1..3``) and of its ``params_ema`` checkpoint:
identity key map. Original-ESRGAN keys (``RRDB_trunk``, ``trunk_conv``, ``upconvK``, ``HRconv``) are
mapped by :func:`ugpnet.models.keymaps.rrdbnet_keymap`.

Upsampling: ``log2(scale)`` stages of nearest 2x + conv + LeakyReLU(0.2) for scale >= 4; scales 1
and 2 first pixel-unshuffle by ``4 // scale`` and then upsample 4x (BasicSR). The input is the LR
image (64x64 for 512 output at x8). ``return_feature=True`` also returns the 64-channel feature
after ``conv_hr`` + LeakyReLU (the official ``return_f``), at output resolution.
RRDBNet x8 (64 features, 23 blocks, growth 32): 16.74 M parameters.

``bicubic_residual`` (an option beyond the paper; ``False`` is the official network bit for bit):
``True`` adds the LR input upsampled with the degradation's own MATLAB bicubic kernel
(:func:`ugpnet.degradations.bicubic_upsample_matrix`, the image of the ``input`` row of Table 1)
to ``conv_last``'s output, and zero-initialises ``conv_last``, so the untrained network outputs
bicubic exactly and learns only the correction. Why: at small scale (8x8 LR inputs, a 2-block net)
the official direct net stays under bicubic after any affordable training (see params.yaml's
smoke profile). Same parameters and key names either way; the feature (``f_reg``) is unchanged.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .base import Backbone

SLOPE = 0.2


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; residual scaled by 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        for k in range(1, 5):
            setattr(self, f"conv{k}", nn.Conv2d(num_feat + (k - 1) * num_grow_ch, num_grow_ch,
                                                 3, 1, 1))
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for k in range(1, 5):
            feats.append(F.leaky_relu(getattr(self, f"conv{k}")(torch.cat(feats, 1)), SLOPE))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block (three RDBs, residual scaled by 0.2)."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(Backbone):
    kind = "direct"

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32, scale: int = 8,
                 bicubic_residual: bool = False):
        super().__init__()
        if bicubic_residual and num_in_ch != num_out_ch:
            raise ValueError(f"RRDBNet bicubic_residual adds the upsampled input to the output: "
                             f"num_in_ch ({num_in_ch}) must equal num_out_ch ({num_out_ch})")
        self.bicubic_residual = bool(bicubic_residual)
        if scale not in (1, 2) and (scale < 4 or scale & (scale - 1)):
            raise ValueError(f"RRDBNet scale must be 1, 2 or a power of two >= 4, got {scale}")
        self._scale = int(scale)
        self._feature_channels = num_feat
        self.unshuffle = 4 // scale if scale < 4 else 1
        self.size_multiple = self.unshuffle
        self.num_up = 2 if scale < 4 else int(math.log2(scale))
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle ** 2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        for k in range(1, self.num_up + 1):
            setattr(self, f"conv_up{k}", nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        if self.bicubic_residual:
            nn.init.zeros_(self.conv_last.weight)
            nn.init.zeros_(self.conv_last.bias)
        self._bicubic: dict[tuple, torch.Tensor] = {}  # (n, device) -> [n*scale, n] fp32

    def bicubic_up(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, C, h, w]`` upsampled by ``scale`` with the MATLAB bicubic kernel of the SR
        degradation (unrounded, unclipped), always in fp32 (also under bf16 autocast, whose
        rounding would cost the base image about one grey level)."""
        x = x.float()

        def matrix(n: int) -> torch.Tensor:
            key = (n, x.device)
            if key not in self._bicubic:
                from ...degradations.resize import bicubic_upsample_matrix

                m = bicubic_upsample_matrix(n, self.scale)
                self._bicubic[key] = torch.from_numpy(m).to(x.device, torch.float32)
            return self._bicubic[key]

        h, w = x.shape[-2:]
        with torch.autocast(x.device.type, enabled=False):
            return matrix(h) @ x @ matrix(w).T

    def forward_impl(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x0 = x
        if self.unshuffle > 1:
            h, w = x.shape[-2:]
            if h % self.unshuffle or w % self.unshuffle:
                raise ValueError(f"RRDBNet scale {self.scale} needs input sizes divisible by "
                                 f"{self.unshuffle}, got {h}x{w}")
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for k in range(1, self.num_up + 1):
            up = getattr(self, f"conv_up{k}")
            feat = F.leaky_relu(up(F.interpolate(feat, scale_factor=2, mode="nearest")), SLOPE)
        feat = F.leaky_relu(self.conv_hr(feat), SLOPE)
        out = self.conv_last(feat)
        if self.bicubic_residual:
            out = out + self.bicubic_up(x0)
        return out, feat
