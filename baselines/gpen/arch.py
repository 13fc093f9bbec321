"""GPEN (Yang et al., CVPR 2021, "GAN Prior Embedded Network for Blind Face Restoration in the
Wild"), the BFR-512 network, in plain PyTorch on our StyleGAN2 ops.

The official ``FullGenerator(size, style_dim, n_mlp, channel_multiplier, narrow, isconcat=True,
lr_mlp)`` (yangxy/GPEN ``face_model/gpen_model.py``), written again with the paper's parts:

- ``encoder``: ``encoder.0`` is a 1x1 conv + leaky ReLU at full resolution, ``encoder.{i}``
  (i >= 1) a 3x3 blur + stride-2 conv + leaky ReLU, down to 4x4 (official ``ecd0 .. ecd7`` at
  512 px). Feature ``e_r`` [N, C_r, r, r] at every resolution r.
- ``final_linear``: EqualLinear(16 C_4 -> style_dim) + leaky ReLU on the flattened 4x4 feature:
  the latent code z, which the generator's mapping network turns into w (the official forward
  calls the generator with ``input_is_latent=False``).
- ``generator``: the StyleGAN2 generator (the GAN prior) whose noise inputs are **replaced by the
  encoder features, concatenated** channel-wise: every style layer at resolution r outputs
  ``lrelu(cat(modconv(x), s * e_r) + b)`` with 2 C_r channels (s: the former noise strength, one
  scalar; b: 2 C_r biases), which the next layer and the ToRGB read.

Images are in [-1, 1] ([N, 3, size, size] in, same out); :meth:`GPEN.restore` takes and gives
[0, 1] (the host's range). The discriminator is StyleGAN2's with the minibatch-stddev group equal
to the whole batch (GPEN's ``Discriminator``). Widths: the official table
(:func:`gpen_channels`: 512 up to 32 px, then ``2^14 / r * channel_multiplier``, times
``narrow``), or an explicit ``channels`` dict for small profiles.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ugpnet.models.synthesis.ops import (DEFAULT_BLUR_KERNEL, LRELU_GAIN, EqualConv2d,
                                         EqualLinear, ModulatedConv2d)
from ugpnet.models.synthesis.stylegan2 import Discriminator, MappingNetwork, ToRGB

__all__ = ["GPEN", "GPENGenerator", "GPENDiscriminator", "ConcatStyleLayer", "gpen_channels"]


def gpen_channels(size: int, channel_multiplier: float = 2, narrow: float = 1.0) -> dict[int, int]:
    """The official GPEN width table {resolution: channels} for resolutions 4 .. ``size``."""
    out, r = {}, 4
    while r <= size:
        base = 512 if r <= 32 else (2 ** 14 // r) * channel_multiplier
        out[r] = int(base * narrow)
        r *= 2
    return out


def _log2(value: int, what: str) -> int:
    k = int(round(math.log2(value))) if value > 0 else -1
    if value <= 0 or 2 ** k != value or k < 3:
        raise ValueError(f"{what} must be a power of two >= 8, got {value}")
    return k


class ConcatStyleLayer(nn.Module):
    """A GPEN ``StyledConv``: modulated 3x3 conv (``up``: x2), then the encoder feature ``e``
    (times the scalar ``feature_strength``) concatenated, then bias (2 C_out) and leaky ReLU
    (gain sqrt 2). [N, C_in, H, W] + e [N, C_out, H', W'] -> [N, 2 C_out, H', W']."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        self.out_channels = out_channels
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.feature_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(2 * out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        c = self.out_channels
        # sqrt2 * lrelu(y) == lrelu(sqrt2 * y): the gain and the first half of the bias ride
        # along in the conv, the second half with the feature
        out = self.conv(x, w, bias=self.bias[:c] * LRELU_GAIN, gain=LRELU_GAIN)
        if e.shape[1] != c or e.shape[2:] != out.shape[2:]:
            raise ValueError(f"encoder feature {tuple(e.shape)} does not fit the style layer's "
                             f"output {tuple(out.shape)}")
        feat = e * (self.feature_strength * LRELU_GAIN) + (self.bias[c:] * LRELU_GAIN).view(1, c, 1, 1)
        return nn.functional.leaky_relu(torch.cat([out, feat.to(out.dtype)], dim=1), 0.2)


class GPENGenerator(nn.Module):
    """StyleGAN2 generator (skip architecture) with concatenated encoder features as its noise.

    Names: ``mapping.fc{i}``, ``const`` [1, C_4, 4, 4], ``conv1`` and ``to_rgb1`` (4x4),
    ``convs.{2k}`` (upsampling conv to r = 2^(k+3)), ``convs.{2k+1}``, ``to_rgbs.{k}``.
    W+ layout as StyleGAN2: ``num_latents = 2 log2(size) - 2``.
    """

    def __init__(self, size: int, style_dim: int, n_mlp: int, channels: dict[int, int],
                 lr_mlp: float = 0.01, blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        self.log_size = _log2(size, "GPEN size")
        self.size, self.style_dim = size, style_dim
        self.channels = {int(k): int(v) for k, v in channels.items()}
        self.resolutions = [2 ** k for k in range(2, self.log_size + 1)]
        missing = [r for r in self.resolutions if r not in self.channels]
        if missing:
            raise ValueError(f"GPEN channels lack resolutions {missing}")
        self.num_latents = 2 * self.log_size - 2
        self.mapping = MappingNetwork(style_dim, n_mlp, lr_mul=lr_mlp)
        c4 = self.channels[4]
        self.const = nn.Parameter(torch.randn(1, c4, 4, 4))
        self.conv1 = ConcatStyleLayer(c4, c4, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(2 * c4, style_dim, blur_kernel=blur_kernel)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        in_ch = c4
        for r in self.resolutions[1:]:
            out_ch = self.channels[r]
            self.convs.append(ConcatStyleLayer(2 * in_ch, out_ch, style_dim, upsample=True,
                                               blur_kernel=blur_kernel))
            self.convs.append(ConcatStyleLayer(2 * out_ch, out_ch, style_dim,
                                               blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(2 * out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch

    def forward(self, latent: torch.Tensor, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """W+ ``latent`` [N, num_latents, S] and the encoder features ``{r: e_r}`` listed from 4 px
        up (``features[j]`` at 2^(j+2)) -> image [N, 3, size, size]."""
        if latent.ndim != 3 or latent.shape[1:] != (self.num_latents, self.style_dim):
            raise ValueError(f"W+ must be [N, {self.num_latents}, {self.style_dim}], "
                             f"got {tuple(latent.shape)}")
        if len(features) != len(self.resolutions):
            raise ValueError(f"GPEN generator needs {len(self.resolutions)} encoder features "
                             f"(4 .. {self.size} px), got {len(features)}")
        n = latent.shape[0]
        out = self.conv1(self.const.expand(n, -1, -1, -1), latent[:, 0], features[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            e = features[k + 1]
            out = self.convs[2 * k](out, latent[:, i], e)
            out = self.convs[2 * k + 1](out, latent[:, i + 1], e)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


class GPEN(nn.Module):
    """GPEN BFR network (official ``FullGenerator``): encoder -> z -> mapping -> W+, and the
    generator fed with the encoder features. ``forward(x)`` in [-1, 1]; see the module doc."""

    def __init__(self, size: int = 512, style_dim: int = 512, n_mlp: int = 8,
                 channel_multiplier: float = 2, narrow: float = 1.0, lr_mlp: float = 0.01,
                 channels: dict[int, int] | None = None,
                 blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        log_size = _log2(size, "GPEN size")
        self.size = size
        if channels is None:
            channels = gpen_channels(size, channel_multiplier, narrow)
        self.generator = GPENGenerator(size, style_dim, n_mlp, channels, lr_mlp, blur_kernel)
        ch = self.generator.channels
        self.encoder = nn.ModuleList([EqualConv2d(3, ch[size], 1, blur_kernel=blur_kernel)])
        for k in range(log_size, 2, -1):  # r = 2^k -> r / 2
            self.encoder.append(EqualConv2d(ch[2 ** k], ch[2 ** (k - 1)], 3, downsample=True,
                                            blur_kernel=blur_kernel))
        self.final_linear = EqualLinear(ch[4] * 16, style_dim, activation="lrelu")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x [N, 3, size, size] in [-1, 1] -> (z [N, S], features from 4 px up to size)."""
        if x.ndim != 4 or x.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"GPEN expects [N, 3, {self.size}, {self.size}] images, "
                             f"got {tuple(x.shape)}")
        feats = []
        for layer in self.encoder:
            x = layer(x)
            feats.append(x)
        return self.final_linear(x.flatten(1)), feats[::-1]

    def forward(self, x: torch.Tensor, return_latents: bool = False):
        """x in [-1, 1] -> restored image in [-1, 1] (and the W+ it used, for the path-length
        regulariser, when ``return_latents``)."""
        z, feats = self.encode(x)
        w = self.generator.mapping(z)
        latent = w.unsqueeze(1).repeat(1, self.generator.num_latents, 1)
        img = self.generator(latent, feats)
        return (img, latent) if return_latents else img

    def restore(self, x01: torch.Tensor) -> torch.Tensor:
        """The host's boundary: [0, 1] in, [0, 1] out (not clipped)."""
        return (self(x01 * 2.0 - 1.0) + 1.0) * 0.5


class GPENDiscriminator(Discriminator):
    """GPEN's StyleGAN2 discriminator: minibatch stddev over the whole batch (official
    ``group = batch``), one feature; the rest is :class:`ugpnet...stylegan2.Discriminator`."""

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        f = self.stddev_feat
        y = x.view(n, -1, f, c // f, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
        y = y.mean(dim=[2, 3, 4], keepdim=True).squeeze(2)
        return torch.cat([x, y.repeat(n, 1, h, w)], dim=1)


def build_gpen(arch: dict, size: int) -> GPEN:
    """GPEN from a params entry's ``architecture`` block at resolution ``size``."""
    return GPEN(size=size, style_dim=arch["style_dim"], n_mlp=arch["n_mlp"],
                channel_multiplier=arch["channel_multiplier"], narrow=arch["narrow"],
                lr_mlp=arch["lr_mlp"])


def build_discriminator(arch: dict, size: int) -> GPENDiscriminator:
    ch = gpen_channels(size, arch["channel_multiplier"], arch["narrow"])
    return GPENDiscriminator(size=size, channels=ch)
