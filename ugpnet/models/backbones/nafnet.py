"""NAFNet (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022), residual kind.

Parameter names equal the official megvii-research/NAFNet ``NAFNet_arch.py`` so that the released
``params`` state dicts (e.g. ``NAFNet-GoPro-width32.pth``, ``NAFNet-SIDD-width32.pth``) load with
the identity key map. Paper configs: GoPro width 32, enc [1,1,1,28], middle 1, dec [1,1,1,1]
(17.11 M parameters); SIDD width 32, enc [2,2,4,8], middle 12, dec [2,2,2,2] (29.16 M).

TLC (test-time local converter, Chu et al. 2021; official ``NAFNetLocal``): with
``tlc_train_size=(H_t, W_t)`` every global average pool of the simplified channel attention is
replaced by a local box average whose window is ``1.5x`` the feature size the block saw at the
training size (``kernel = (feat_at_train * int(1.5 * H_t)) // H_t``), with replicate padding of
the border, exactly as NAFNetLocal (``fast_imp=False``). Inputs no larger than the window fall back
to the global pool, so training on ``H_t x W_t`` crops is unchanged. UGPNet's official deblur
restoration module uses NAFNetLocal with ``train_size=(1, 3, 256, 256)``; set
``tlc_train_size: [256, 256]`` for that config. TLC changes outputs, not parameters.

``channels_last=True`` (default) runs the network in channels-last memory format (the input is
converted once; the 1x1/depthwise convs and the per-pixel layer norm are much faster so on CPU).
Same math; outputs are channels-last tensors (use ``.reshape``/``.contiguous()``, not ``.view``).
Without grad the residual products/sums are done in place.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .base import Backbone, pad_to_multiple


class LayerNorm2d(nn.Module):
    """Layer norm over the channel dimension of an NCHW map (per pixel), eps 1e-6."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # channels-last: the channels of a pixel are contiguous, so this is a plain layer
            # norm over the last dim of the NHWC view (same math, one fused kernel)
            y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / (var + self.eps).sqrt()
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ChannelPool(nn.Module):
    """Global average pool to 1x1, or TLC's local box average (same spatial size as the input)."""

    def __init__(self, kernel_size: Optional[Tuple[int, int]] = None):
        super().__init__()
        self.kernel_size = tuple(kernel_size) if kernel_size is not None else None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.kernel_size is None or (self.kernel_size[0] >= h and self.kernel_size[1] >= w):
            return F.adaptive_avg_pool2d(x, 1)
        k1, k2 = min(h, self.kernel_size[0]), min(w, self.kernel_size[1])
        # box sums from an integral image (O(HW) for any window size)
        s = F.pad(x.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
        out = (s[..., k1:, k2:] - s[..., :-k1, k2:] - s[..., k1:, :-k2] + s[..., :-k1, :-k2])
        out = out / (k1 * k2)
        oh, ow = out.shape[-2:]
        pad = ((w - ow) // 2, (w - ow + 1) // 2, (h - oh) // 2, (h - oh + 1) // 2)
        return F.pad(out, pad, mode="replicate")


class SimpleGate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """LN -> 1x1 (2c) -> dw3x3 -> gate -> SCA -> 1x1 (c), beta-scaled skip; LN -> FFN, gamma skip."""

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2,
                 pool_kernel: Optional[Tuple[int, int]] = None):
        super().__init__()
        dw = c * dw_expand
        ffn = c * ffn_expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.sca = nn.Sequential(ChannelPool(pool_kernel), nn.Conv2d(dw // 2, dw // 2, 1))
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.gate = SimpleGate()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.gate(self.conv2(self.conv1(self.norm1(inp))))
        if not torch.is_grad_enabled():
            # same sums and products in place on fresh tensors (no autograd to keep inputs for)
            x = self.conv3(x.mul_(self.sca(x)))
            y = x.mul_(self.beta).add_(inp)
            x = self.conv5(self.gate(self.conv4(self.norm2(y))))
            return x.mul_(self.gamma).add_(y)
        x = self.conv3(x * self.sca(x))
        y = inp + x * self.beta
        x = self.conv5(self.gate(self.conv4(self.norm2(y))))
        return y + x * self.gamma


class NAFNet(Backbone):
    kind = "residual"

    def __init__(self, width: int = 32, middle_blk_num: int = 1,
                 enc_blk_nums: Sequence[int] = (1, 1, 1, 28),
                 dec_blk_nums: Sequence[int] = (1, 1, 1, 1), img_channel: int = 3,
                 tlc_train_size: Optional[Sequence[int]] = None, tlc_base_ratio: float = 1.5,
                 channels_last: bool = True):
        super().__init__()
        self.channels_last = channels_last
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(f"NAFNet needs as many decoder as encoder levels, got enc "
                             f"{list(enc_blk_nums)} and dec {list(dec_blk_nums)}")
        levels = len(enc_blk_nums)
        self.size_multiple = 2 ** levels
        self._feature_channels = width
        self.tlc_train_size = tuple(int(v) for v in tlc_train_size) if tlc_train_size else None

        def kernel(level: int) -> Optional[Tuple[int, int]]:
            if self.tlc_train_size is None:
                return None
            out = []
            for t in self.tlc_train_size:
                feat = (t + (-t) % self.size_multiple) >> level  # feature size at the train size
                out.append(feat * int(t * tlc_base_ratio) // t)
            return tuple(out)

        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        c = width
        for lvl, n in enumerate(enc_blk_nums):
            self.encoders.append(nn.Sequential(*[NAFBlock(c, pool_kernel=kernel(lvl))
                                                 for _ in range(n)]))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, 2))
            c *= 2
        self.middle_blks = nn.Sequential(*[NAFBlock(c, pool_kernel=kernel(levels))
                                           for _ in range(middle_blk_num)])
        for i, n in enumerate(dec_blk_nums):
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(c, pool_kernel=kernel(levels - 1 - i))
                                                 for _ in range(n)]))
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)

    def forward_impl(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        inp = pad_to_multiple(x, self.size_multiple)
        if self.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)  # once, at the input
        f = self.intro(inp)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            f = enc(f)
            skips.append(f)
            f = down(f)
        f = self.middle_blks(f)
        for dec, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            f = dec(up(f) + skip)
        image = self.ending(f) + inp
        return image[..., :h, :w].contiguous(), f[..., :h, :w]
