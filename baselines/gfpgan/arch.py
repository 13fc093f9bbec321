"""GFP-GAN v1 (Wang et al., CVPR 2021), the variant of UGPNet's Table 2: our own code.

``x`` [N,3,S,S] in [-1, 1] -> ``(image [N,3,S,S] in [-1, 1], pyramid [toRGB of the U-Net at 8..S])``.

- **Degradation remover**: a U-Net at ``unet_narrow`` (0.5) of the decoder's channel table.
  ``conv_body_first`` (1x1 conv + lrelu), ``conv_body_down.{k}`` StyleGAN2 residual blocks down
  to 4x4, ``final_conv`` (3x3), then ``conv_body_up.{k}`` residual *up* blocks (bilinear x2 +
  conv) that add the U-Net skips; ``toRGB.{k}`` 1x1 heads give the pyramid of the pyramid loss.
- ``final_linear``: the 4x4 feature -> ``num_latents`` W+ codes (``different_w``), fed to the
  decoder as latents (``input_is_latent``: its style MLP is kept, counted and unused).
- **SFT**: at every scale 8..S, ``condition_scale.{k}`` / ``condition_shift.{k}`` (conv, lrelu,
  conv) turn the U-Net feature into a scale and a shift applied to the *second half* of the
  channels of the decoder's first (upsampling) style conv of that scale (``sft_half``).
- ``stylegan_decoder``: a **frozen** StyleGAN2 generator, our
  :class:`ugpnet.models.synthesis.stylegan2.Generator` (the named prior, channel multiplier 1 at
  paper scale), run by :func:`sft_synthesis` with the SFT between its two convs of each scale.

Official names and the mapping of their checkpoint onto this module: :mod:`.keymap`.
The math is that of ``GFPGANv1`` (TencentARC/GFPGAN gfpgan/archs/gfpganv1_arch.py) on BasicSR's
StyleGAN2 blocks; ``bench/official_gfpgan.py`` compares the two.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ugpnet.models.synthesis.ops import (DEFAULT_BLUR_KERNEL, LRELU_GAIN, EqualConv2d,
                                         EqualLinear, fused_leaky_relu)
from ugpnet.models.synthesis.stylegan2 import Generator


class ResBlock(nn.Module):
    """StyleGAN2 residual down block: 3x3 conv, 3x3 conv (blur, stride 2), 1x1 skip (blur,
    stride 2, no bias, linear); ``(main + skip) / sqrt 2``. [N,Cin,H,W] -> [N,Cout,H/2,W/2]."""

    def __init__(self, cin: int, cout: int, blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        self.conv1 = EqualConv2d(cin, cin, 3, blur_kernel=blur_kernel)
        self.conv2 = EqualConv2d(cin, cout, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = EqualConv2d(cin, cout, 1, downsample=True, bias=False, activate=False,
                                blur_kernel=blur_kernel)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


class ConvUp(nn.Module):
    """Bilinear x2 upsampling, then an equalised-lr conv; ``activate``: + bias, lrelu x sqrt 2
    (official ``ConvUpLayer``; with ``activate`` its bias lives in the activation)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(cout)) if activate else None
        self.scale = 1 / math.sqrt(cin * kernel_size ** 2)
        self.padding = kernel_size // 2

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(x, self.weight * self.scale, padding=self.padding)
        return fused_leaky_relu(out, self.bias) if self.bias is not None else out


class ResUpBlock(nn.Module):
    """Residual up block: 3x3 conv + lrelu, ConvUp 3x3 + lrelu; skip ConvUp 1x1 (linear, no
    bias); ``/ sqrt 2``. [N,Cin,H,W] -> [N,Cout,2H,2W]."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = EqualConv2d(cin, cin, 3)
        self.conv2 = ConvUp(cin, cout, 3)
        self.skip = ConvUp(cin, cout, 1, activate=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


def _sft_branch(c: int, cout: int, bias_init: float) -> nn.Sequential:
    """conv 3x3 + bias + lrelu (x sqrt 2), conv 3x3 + bias (init ``bias_init``)."""
    last = EqualConv2d(c, cout, 3, activate=False)
    nn.init.constant_(last.bias, bias_init)
    return nn.Sequential(EqualConv2d(c, c, 3), last)


def sft_synthesis(g: Generator, wplus: torch.Tensor, conditions: Sequence[torch.Tensor],
                  noise="random", sft_half: bool = True) -> torch.Tensor:
    """StyleGAN2 synthesis of ``g`` from W+ [N, num_latents, S] with Spatial Feature Transforms:
    after the upsampling conv of scale ``k`` (8 px: k = 0), ``h <- h * conditions[2k] +
    conditions[2k+1]`` on all channels, or on the second half of them (``sft_half``).
    ``noise``: as :meth:`Generator.forward` (``random``, ``const``, ``none`` or a list)."""
    g._check_wplus(wplus)
    n = wplus.shape[0]
    noises = g._noise_list(noise, n)
    out = g._fmt(g.const.expand(n, -1, -1, -1))
    out = g.conv1(out, wplus[:, 0], noises[0])
    skip = g.to_rgb1(out, wplus[:, 1])
    i = 1
    for k, to_rgb in enumerate(g.to_rgbs):
        out = g.convs[2 * k](out, wplus[:, i], noises[2 * k + 1])
        if 2 * k + 1 < len(conditions):
            scale, shift = conditions[2 * k], conditions[2 * k + 1]
            if sft_half:
                same, rest = torch.split(out, out.shape[1] // 2, dim=1)
                out = torch.cat([same, rest * scale + shift], dim=1)
            else:
                out = out * scale + shift
        out = g.convs[2 * k + 1](out, wplus[:, i + 1], noises[2 * k + 2])
        skip = to_rgb(out, wplus[:, i + 2], skip)
        i += 2
    return skip


class GFPGANv1(nn.Module):
    """GFP-GAN v1 around a StyleGAN2 decoder built from ``decoder`` (our Generator's keyword
    arguments: size, style_dim, n_mlp, channel_multiplier, channel_max, basecode_size, ...).

    ``unet_narrow``: U-Net width as a fraction of the decoder's channel table (official 0.5);
    ``sft_half``: SFT on half of the decoder's channels (official True); ``different_w``: one W
    code per latent (official True); ``fix_decoder``: the decoder gets no gradient (official).
    """

    def __init__(self, decoder: Mapping, unet_narrow: float = 0.5, sft_half: bool = True,
                 different_w: bool = True, fix_decoder: bool = True,
                 blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        self.stylegan_decoder = Generator(**dict(decoder), blur_kernel=blur_kernel)
        g = self.stylegan_decoder
        self.size, self.style_dim = g.size, g.style_dim
        self.log_size = g.log_size
        self.sft_half, self.different_w, self.fix_decoder = sft_half, different_w, fix_decoder
        ch = {r: int(c * unet_narrow) for r, c in g.channels.items()}
        self.unet_channels = ch
        S = self.size
        self.conv_body_first = EqualConv2d(3, ch[S], 1)
        self.conv_body_down = nn.ModuleList(
            ResBlock(ch[2 ** k], ch[2 ** (k - 1)], blur_kernel) for k in range(self.log_size, 2, -1))
        self.final_conv = EqualConv2d(ch[4], ch[4], 3)
        res = [2 ** k for k in range(3, self.log_size + 1)]  # 8 .. S
        self.conv_body_up = nn.ModuleList(
            ResUpBlock(ch[r // 2] if r > 8 else ch[4], ch[r]) for r in res)
        self.toRGB = nn.ModuleList(EqualConv2d(ch[r], 3, 1, activate=False) for r in res)
        n_codes = g.num_latents if different_w else 1
        self.final_linear = EqualLinear(ch[4] * 16, n_codes * self.style_dim)
        self.condition_scale, self.condition_shift = nn.ModuleList(), nn.ModuleList()
        for r in res:
            c_dec = g.channels[r]
            sft_out = c_dec // 2 if sft_half else c_dec
            self.condition_scale.append(_sft_branch(ch[r], sft_out, 1.0))
            self.condition_shift.append(_sft_branch(ch[r], sft_out, 0.0))
        if fix_decoder:
            self.stylegan_decoder.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.fix_decoder:
            self.stylegan_decoder.eval()
        return self

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def encode(self, x: torch.Tensor):
        """U-Net: ``(W+ [N, num_latents, S], conditions [scale_8, shift_8, ...], pyramid)``."""
        if x.ndim != 4 or x.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"GFP-GAN expects [N, 3, {self.size}, {self.size}] in [-1, 1], "
                             f"got {tuple(x.shape)}")
        feat = self.conv_body_first(x)
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.insert(0, feat)
        feat = self.final_conv(feat)
        code = self.final_linear(feat.flatten(1))
        g = self.stylegan_decoder
        if self.different_w:
            wplus = code.view(code.shape[0], g.num_latents, self.style_dim)
        else:
            wplus = code.unsqueeze(1).expand(-1, g.num_latents, -1)
        conditions, pyramid = [], []
        for k, up in enumerate(self.conv_body_up):
            feat = up(feat + skips[k])
            conditions += [self.condition_scale[k](feat), self.condition_shift[k](feat)]
            pyramid.append(self.toRGB[k](feat))
        return wplus, conditions, pyramid

    def forward(self, x: torch.Tensor, noise="random", return_rgb: bool = True):
        """``x`` in [-1, 1] -> ``(image in [-1, 1], pyramid list (empty unless return_rgb))``.
        ``noise``: the decoder's noise (``random``: fresh, as the official default;
        ``const``: its stored buffers, the official ``randomize_noise=False``)."""
        wplus, conditions, pyramid = self.encode(x)
        image = sft_synthesis(self.stylegan_decoder, wplus, conditions, noise, self.sft_half)
        return image.contiguous(), (pyramid if return_rgb else [])


def parameter_breakdown(model: GFPGANv1) -> dict[str, int]:
    """Parameters per part: U-Net (+ toRGB heads), final_linear, SFT, frozen decoder."""
    def n(*mods):
        return sum(p.numel() for m in mods for p in m.parameters())

    return {"unet": n(model.conv_body_first, model.conv_body_down, model.final_conv,
                      model.conv_body_up, model.toRGB),
            "final_linear": n(model.final_linear),
            "sft": n(model.condition_scale, model.condition_shift),
            "stylegan_decoder (frozen prior)": n(model.stylegan_decoder)}
