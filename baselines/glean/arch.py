"""GLEAN (Chan et al., CVPR 2021) with a StyleGAN2 latent bank: mmagic ``GLEANStyleGANv2``.

Our code on our building blocks; the layout and every name follow
mmagic/models/editors/glean/glean_styleganv2.py (open-mmlab/mmagic 0a560bb), so the official
names of everything but the latent bank are ours too (:mod:`.keymap`). At ``out_size`` S and
``in_size`` s = S/8 (64 at 512), with ``channels`` = the latent bank's width table:

- ``encoder.0``: RRDB feature extractor on the LR (``conv_first``, ``body.N`` RRDBs,
  ``conv_body``, residual; glean_styleganv2.py:293-314) + 3x3 conv to ``channels[s]`` + LReLU;
- ``encoder.1 ..``: for each resolution r = s, s/2, ..., 8 a stride-2 3x3 conv to
  ``channels[r/2]`` + LReLU + 3x3 conv + LReLU; at 4: 3x3 conv + LReLU + Flatten + Linear
  ``16*channels[4] -> num_latents*style_dim`` (the W+ codes; :132-156);
- ``generator``: the frozen StyleGAN2 (our :class:`ugpnet.models.synthesis.Generator`, the named
  prior), run with its stored noise buffers (mmagic's fixed ``injected_noise_i``, :219-222);
  before the up-conv at each resolution r = 4 .. s the bank feature is concatenated with the
  encoder feature at r and fused by ``fusion_out`` (3x3, 2C -> C) (:236-245);
- ``decoder``: from the encoder feature at s, PixelShufflePack x2 (3x3 conv to 4C' + shuffle, no
  activation) up to S, each later step concatenating the bank feature of its resolution
  (2s .. S); at S a 3x3 conv to 64 + LReLU + 3x3 conv to RGB (:172-190, :262-267).

``fusion_skip`` (3x3, C+3 -> 3) and the bank's toRGB layers only build the bank's RGB skip image,
which mmagic computes and never uses (the output is the decoder's; hence
``find_unused_parameters=True`` in configs/_base_/models/base_glean.py). They are kept (same
parameters, same count: 166.92 M at 512, 136.65 M trainable) but the skip image is computed only
with ``forward(..., return_rgb=True)``; the output is identical either way.

Images are in [-1, 1] (mmagic's DataPreprocessor mean = std = 127.5).
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ugpnet.models.backbones.rrdbnet import RRDB
from ugpnet.models.synthesis import Generator

SLOPE = 0.2


def default_init_weights(module: nn.Module, scale: float = 1.0) -> None:
    """mmagic ``default_init_weights`` (models/utils/model_utils.py:22): Kaiming-normal (fan_in,
    relu gain) convs and linears, zero bias, weights times ``scale``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
            m.weight.data.mul_(scale)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class RRDBFeatureExtractor(nn.Module):
    """ESRGAN without upsampling: ``feat = conv_first(x); feat + conv_body(body(feat))``. The
    RRDBs' convs start at 0.1 x Kaiming (mmagic rrdb_net.py:131-139)."""

    def __init__(self, in_channels: int = 3, mid_channels: int = 64, num_blocks: int = 23,
                 growth_channels: int = 32):
        super().__init__()
        self.conv_first = nn.Conv2d(in_channels, mid_channels, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(mid_channels, growth_channels)
                                    for _ in range(num_blocks)])
        for block in self.body:
            for rdb in (block.rdb1, block.rdb2, block.rdb3):
                default_init_weights(rdb, 0.1)
        self.conv_body = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        return feat + self.conv_body(self.body(feat))


class PixelShufflePack(nn.Module):
    """3x3 conv to ``out * 4`` channels + pixel shuffle x2 (mmagic archs/upsample.py)."""

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int = 2,
                 upsample_kernel: int = 3):
        super().__init__()
        self.scale_factor = scale_factor
        self.upsample_conv = nn.Conv2d(in_channels, out_channels * scale_factor ** 2,
                                       upsample_kernel, padding=(upsample_kernel - 1) // 2)
        default_init_weights(self, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.upsample_conv(x), self.scale_factor)


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(negative_slope=SLOPE, inplace=True)


class GLEANStyleGANv2(nn.Module):
    """GLEAN around the StyleGAN2 generator built from ``generator_kwargs`` (the prior's
    architecture, :func:`ugpnet.models.build.generator_kwargs`); output size = the generator's.

    ``in_size``: the LR size (``out_size // 8`` for UGPNet's 8x SR); ``rrdb_channels``,
    ``num_rrdbs``: the RRDB extractor (64, 23 in mmagic's defaults).
    """

    def __init__(self, generator_kwargs: Mapping, in_size: int, img_channels: int = 3,
                 rrdb_channels: int = 64, num_rrdbs: int = 23, growth_channels: int = 32):
        super().__init__()
        self.generator = Generator(**dict(generator_kwargs))
        self.generator.requires_grad_(False)
        out_size, g = self.generator.size, self.generator
        if not (4 <= in_size < out_size) or 2 ** int(math.log2(in_size)) != in_size:
            raise ValueError(f"GLEAN in_size must be a power of two in [4, out_size={out_size}), "
                             f"got {in_size}")
        self.in_size, self.out_size, self.style_dim = in_size, out_size, g.style_dim
        self.num_latents = g.num_latents
        ch = g.channels
        encoder_res = [2 ** i for i in range(int(math.log2(in_size)), 1, -1)]  # s .. 4
        self.encoder = nn.ModuleList([nn.Sequential(
            RRDBFeatureExtractor(img_channels, rrdb_channels, num_rrdbs, growth_channels),
            nn.Conv2d(rrdb_channels, ch[in_size], 3, 1, 1), _lrelu())])
        for res in encoder_res:
            if res > 4:
                c_out = ch[res // 2]
                self.encoder.append(nn.Sequential(
                    nn.Conv2d(ch[res], c_out, 3, 2, 1), _lrelu(),
                    nn.Conv2d(c_out, c_out, 3, 1, 1), _lrelu()))
            else:
                self.encoder.append(nn.Sequential(
                    nn.Conv2d(ch[4], ch[4], 3, 1, 1), _lrelu(), nn.Flatten(),
                    nn.Linear(16 * ch[4], self.num_latents * self.style_dim)))
        self.fusion_out = nn.ModuleList()
        self.fusion_skip = nn.ModuleList()
        for res in encoder_res[::-1]:  # 4 .. s
            self.fusion_out.append(nn.Conv2d(2 * ch[res], ch[res], 3, 1, 1))
            self.fusion_skip.append(nn.Conv2d(ch[res] + 3, 3, 3, 1, 1))
        self.decoder = nn.ModuleList()
        for res in (2 ** i for i in range(int(math.log2(in_size)), int(math.log2(out_size)) + 1)):
            c_in = ch[res] if res == in_size else 2 * ch[res]
            if res < out_size:
                self.decoder.append(PixelShufflePack(c_in, ch[res * 2], 2, upsample_kernel=3))
            else:
                self.decoder.append(nn.Sequential(nn.Conv2d(c_in, 64, 3, 1, 1), _lrelu(),
                                                  nn.Conv2d(64, img_channels, 3, 1, 1)))

    def trainable_parameters(self):
        return (p for n, p in self.named_parameters() if not n.startswith("generator."))

    def encode(self, lq: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``lq`` [N, C, s, s] in [-1, 1] -> (W+ [N, num_latents, style_dim], encoder features
        [f_4, f_8, ..., f_s])."""
        feats, feat = [], lq
        for block in self.encoder:
            feat = block(feat)
            feats.append(feat)
        latent = feats[-1].view(lq.shape[0], self.num_latents, self.style_dim)
        return latent, feats[-2::-1]

    def forward(self, lq: torch.Tensor, return_rgb: bool = False):
        """``lq`` [N, C, in_size, in_size] in [-1, 1] -> HR [N, C, out_size, out_size]
        (``return_rgb``: also the latent bank's RGB skip image, which mmagic computes unused)."""
        if lq.ndim != 4 or lq.shape[-2:] != (self.in_size, self.in_size):
            raise ValueError(f"GLEAN takes the LR image [N, C, {self.in_size}, {self.in_size}] "
                             f"(in_size), got {tuple(lq.shape)}")
        latent, enc = self.encode(lq)
        g = self.generator
        noise = [getattr(g.noises, f"noise_{j}") for j in range(g.num_layers)]
        out = g._fmt(g.const.expand(lq.shape[0], -1, -1, -1))
        out = g.conv1(out, latent[:, 0], noise[0])
        skip = g.to_rgb1(out, latent[:, 1]) if return_rgb else None
        bank, i = [], 1
        for k, to_rgb in enumerate(g.to_rgbs):
            if out.shape[2] <= self.in_size:  # fusion at 4 .. s, before the up-conv
                f = enc[k]
                out = self.fusion_out[k](torch.cat([out, f], dim=1))
                if return_rgb:
                    skip = self.fusion_skip[k](torch.cat([skip, f], dim=1))
            out = g.convs[2 * k](out, latent[:, i], noise[2 * k + 1])
            out = g.convs[2 * k + 1](out, latent[:, i + 1], noise[2 * k + 2])
            if return_rgb:
                skip = to_rgb(out, latent[:, i + 2], skip)
            if out.shape[2] > self.in_size:
                bank.append(out)
            i += 2
        hr = enc[-1]
        for j, block in enumerate(self.decoder):
            if j > 0:
                hr = torch.cat([hr, bank[j - 1]], dim=1)
            hr = block(hr)
        return (hr, skip) if return_rgb else hr


def parameter_breakdown(net: GLEANStyleGANv2) -> dict[str, int]:
    """Parameters by part (the spec's split: RRDB extractor, encoder, fusion, decoder, bank)."""
    def n(mods) -> int:
        return sum(p.numel() for m in mods for p in m.parameters())

    return {"rrdb_extractor": n([net.encoder[0][0]]),
            "encoder (rest)": n(net.encoder) - n([net.encoder[0][0]]),
            "fusion": n([net.fusion_out, net.fusion_skip]),
            "decoder": n([net.decoder]),
            "generator (frozen prior)": n([net.generator])}
