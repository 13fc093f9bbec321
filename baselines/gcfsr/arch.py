"""GCFSR (He et al., CVPR 2022, "GCFSR: a Generative and Controllable Face Super Resolution Method
Without Facial and GAN Priors"), in plain PyTorch on our StyleGAN2 ops.

The official ``GCFSR(out_size, num_style_feat=512, channel_multiplier=2, narrow=1)`` and
``GCFSR_blind`` (hejingwenhejingwen/GCFSR @ ea9a28e, ``basicsr/archs/gcfsr_arch.py``), written
again with the official part names:

- encoder: ``conv_body_first`` (3x3 conv + leaky ReLU at full resolution) and
  ``conv_body_down.{i}`` (3x3 blur + stride-2 convs) down to the "const" grid (16 px at 512:
  five downsamplings); features ``e_r`` [N, C_r, r, r] at every r from ``size`` down to ``const``.
- ``final_conv`` (3x3 on the const grid): the decoder's start ("const 16x16" in the official code).
- ``final_down1``, ``final_down2`` (two more stride-2 convs) and ``final_linear`` (EqualLinear +
  leaky ReLU): the W+ codes, ``num_latent = 2 + 2 * log2(size / const)`` (12 at 512), no mapping
  network.
- conditions at every decoder resolution r (index 0 = full resolution, as the official lists):
  ``condition_shift.{i}`` (3x3 conv with bias, no activation) on ``e_r``, and the scalar
  ``in_size`` (upscale / cond_norm; 8 / 32 = 0.25 for x8) through ``condition_scale1.{i}`` and
  ``condition_scale2.{i}`` (EqualLinear(1 -> C_r), bias 1).
- decoder: ``style_conv1`` (at const) and every second conv of ``style_convs`` are
  :class:`StyleConvNormScaleShift` (official ``StyleConv_norm_scale_shift``):
  ``lrelu(s1 * (modconv(x) + n * noise) + s2 * shift + b)`` with (s1, s2) normalised to unit
  length; the other ``style_convs`` are plain upsampling StyleGAN2 style layers; ``to_rgb1`` and
  ``to_rgbs`` the skip RGB heads.

``GCFSR_blind`` (:class:`GCFSRBlind`) is the same network with ``in_size`` fixed to 1 and a
``final_down2`` of full width (the official ``gcfsr_blind_512.pth``); GCFSR halves it
(``channels['4'] // 2``; the official ``final_linear`` input is hard-coded ``2 * 4 * 512``, which
our ``(C_{const/4} // 2) * (const/4)^2`` equals at the paper's width and lets the small profiles
scale down). The noise inputs are random per call (official ``randomize_noise=True``: its stored
noise buffers have shapes that do not fit a decoder starting at 16 px, so the official code
cannot run them); a list of tensors may be given instead (the equivalence bench).

Images are in [-1, 1] ([N, 3, size, size] in, same out); :meth:`GCFSR.restore` takes and gives
[0, 1] (the host's range). The discriminator is the official ``StyleGAN2Discriminator_no_std``:
StyleGAN2's residual D without the minibatch-stddev channel (:class:`GCFSRDiscriminator`).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ugpnet.models.synthesis.ops import (DEFAULT_BLUR_KERNEL, EqualConv2d, EqualLinear,
                                         ModulatedConv2d, fused_leaky_relu)
from ugpnet.models.synthesis.stylegan2 import Discriminator, StyleLayer, ToRGB

__all__ = ["GCFSR", "GCFSRBlind", "GCFSRDiscriminator", "StyleConvNormScaleShift",
           "gcfsr_channels"]


def gcfsr_channels(size: int, channel_multiplier: float = 2, narrow: float = 1.0,
                   smallest: int = 4) -> dict[int, int]:
    """The official width table (gcfsr_arch.py ``channels``) {resolution: channels}, ``smallest``
    (4) .. size: ``512 * narrow`` up to 32 px, then ``int((2^14 / r) * channel_multiplier *
    narrow)`` (a const grid below 16 px, small profiles only, reads the 4-px width below 4 px)."""
    out, r = {}, smallest
    while r <= size:
        out[r] = int(512 * narrow) if r <= 32 else int((2 ** 14 // r) * channel_multiplier * narrow)
        r *= 2
    return out


def _log2(value: int, what: str, minimum: int) -> int:
    k = int(round(math.log2(value))) if value > 0 else -1
    if value <= 0 or 2 ** k != value or value < minimum:
        raise ValueError(f"{what} must be a power of two >= {minimum}, got {value}")
    return k


class StyleConvNormScaleShift(nn.Module):
    """Official ``StyleConv_norm_scale_shift``: modulated 3x3 conv, noise injection, then the
    condition ``out * s1' + shift * s2'`` with ``(s1', s2') = (s1, s2) / sqrt(s1^2 + s2^2 + 1e-8)``
    (per channel), then bias and leaky ReLU (gain sqrt 2).

    x [N, C_in, H, W], w [N, S], scale1/scale2 [N or 1, C_out], shift [N, C_out, H, W] ->
    [N, C_out, H, W]. Names: ``conv`` (``modulated_conv``), ``noise_strength`` (``weight``),
    ``bias`` (``activate.bias``)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int,
                 blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        self.out_channels = out_channels
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim,
                                    blur_kernel=blur_kernel)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise, scale1: torch.Tensor,
                scale2: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        out = self.conv(x, w)
        if noise is None:
            noise = out.new_empty(out.shape[0], 1, out.shape[2], out.shape[3]).normal_()
        if not isinstance(noise, str):
            out = out + self.noise_strength * noise
        elif noise != "none":
            raise ValueError(f"noise must be a tensor, None (random) or 'none', got {noise!r}")
        c = self.out_channels
        if shift.shape[1:] != out.shape[1:] or scale1.shape[-1] != c or scale2.shape[-1] != c:
            raise ValueError(f"condition shift {tuple(shift.shape)} / scales "
                             f"{tuple(scale1.shape)}, {tuple(scale2.shape)} do not fit the "
                             f"style conv's output {tuple(out.shape)}")
        inv = torch.rsqrt(scale1.square() + scale2.square() + 1e-8)
        s1, s2 = (scale1 * inv).view(-1, c, 1, 1), (scale2 * inv).view(-1, c, 1, 1)
        return fused_leaky_relu(out * s1 + shift * s2, self.bias)


class GCFSR(nn.Module):
    """GCFSR (official ``GCFSR``): see the module doc. ``forward(x, in_size)`` in [-1, 1].

    Args: ``size`` (output = input resolution), ``style_dim`` (official ``num_style_feat``),
    ``channel_multiplier``, ``narrow`` (the official width table) or an explicit ``channels``
    dict {resolution: width}; ``const_size``: the encoder's last resolution, where the decoder
    starts (official: 16; small profiles may go down to 4, the latent head then reads a 1 px
    grid); ``in_size``: the default condition when ``forward``/``restore`` get none (the kind
    sets upscale / cond_norm)."""

    halve_latent_head = True  # official GCFSR: final_down2 -> channels['4'] // 2

    def __init__(self, size: int = 512, style_dim: int = 512, channel_multiplier: float = 2,
                 narrow: float = 1.0, const_size: int = 16, channels: dict[int, int] | None = None,
                 in_size: float | None = None,
                 blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        log_size = _log2(size, "GCFSR size", 8)
        log_const = _log2(const_size, "GCFSR const_size", 4)
        if const_size >= size:
            raise ValueError(f"GCFSR const_size ({const_size}) must be below size ({size})")
        self.size, self.style_dim, self.const_size = size, style_dim, const_size
        self.in_size = in_size
        if channels is None:
            channels = gcfsr_channels(size, channel_multiplier, narrow, min(4, const_size // 4))
        ch = {int(k): int(v) for k, v in channels.items()}
        res = [2 ** k for k in range(log_const - 2, log_size + 1)]
        missing = [r for r in res if r not in ch]
        if missing:
            raise ValueError(f"GCFSR channels lack resolutions {missing}")
        self.channels = ch
        # decoder resolutions, from the const grid up: const, 2 const, ..., size
        self.resolutions = [2 ** k for k in range(log_const, log_size + 1)]
        n_up = len(self.resolutions) - 1
        self.num_latent = 2 + 2 * n_up
        self.num_layers = 1 + 2 * n_up  # style convs (noise inputs)

        # encoder
        self.conv_body_first = EqualConv2d(3, ch[size], 3, blur_kernel=blur_kernel)
        self.conv_body_down = nn.ModuleList()
        for r in reversed(self.resolutions[:-1]):  # size / 2 .. const
            self.conv_body_down.append(EqualConv2d(ch[2 * r], ch[r], 3, downsample=True,
                                                   blur_kernel=blur_kernel))
        c0, q = ch[const_size], const_size // 4
        self.final_conv = EqualConv2d(c0, c0, 3, blur_kernel=blur_kernel)
        self.final_down1 = EqualConv2d(c0, ch[const_size // 2], 3, downsample=True,
                                       blur_kernel=blur_kernel)
        head = ch[q] // 2 if self.halve_latent_head else ch[q]
        self.final_down2 = EqualConv2d(ch[const_size // 2], head, 3, downsample=True,
                                       blur_kernel=blur_kernel)
        self.final_linear = EqualLinear(head * q * q, style_dim * self.num_latent,
                                        activation="lrelu")
        # conditions, index 0 at full resolution (official order)
        self.condition_scale1 = nn.ModuleList()
        self.condition_scale2 = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for r in reversed(self.resolutions):
            self.condition_scale1.append(EqualLinear(1, ch[r], bias_init=1.0))
            self.condition_scale2.append(EqualLinear(1, ch[r], bias_init=1.0))
            self.condition_shift.append(EqualConv2d(ch[r], ch[r], 3, activate=False,
                                                    blur_kernel=blur_kernel))
        # decoder
        self.style_conv1 = StyleConvNormScaleShift(c0, c0, style_dim, blur_kernel)
        self.to_rgb1 = ToRGB(c0, style_dim, blur_kernel=blur_kernel)
        self.style_convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        cin = c0
        for r in self.resolutions[1:]:
            self.style_convs.append(StyleLayer(cin, ch[r], style_dim, upsample=True,
                                               blur_kernel=blur_kernel))
            self.style_convs.append(StyleConvNormScaleShift(ch[r], ch[r], style_dim, blur_kernel))
            self.to_rgbs.append(ToRGB(ch[r], style_dim, blur_kernel=blur_kernel))
            cin = ch[r]

    def _noise_list(self, noise) -> list:
        if isinstance(noise, (list, tuple)):
            if len(noise) != self.num_layers:
                raise ValueError(f"noise list must have {self.num_layers} entries, "
                                 f"got {len(noise)}")
            return list(noise)
        if noise is None or noise == "random":
            return [None] * self.num_layers
        if noise == "none":
            return ["none"] * self.num_layers
        raise ValueError(f"noise must be 'random', 'none' or a list of tensors, got {noise!r}")

    def _condition(self, in_size, x: torch.Tensor) -> torch.Tensor:
        """``in_size`` -> [N or 1, 1] (a float, a [N] or [N, 1] tensor, or None: the default)."""
        if in_size is None:
            in_size = self.in_size
        if in_size is None:
            raise ValueError("GCFSR needs in_size (upscale / cond_norm): pass it or build the "
                             "network with in_size")
        t = torch.as_tensor(in_size, dtype=x.dtype, device=x.device)
        return t.reshape(-1, 1)

    def forward(self, x: torch.Tensor, in_size=None, noise="random",
                return_latents: bool = False):
        """x [N, 3, size, size] in [-1, 1], in_size (upscale / cond_norm) -> image in [-1, 1]
        (and the W+ codes [N, num_latent, style_dim] when ``return_latents``)."""
        if x.ndim != 4 or x.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"GCFSR expects [N, 3, {self.size}, {self.size}] images, "
                             f"got {tuple(x.shape)}")
        cond = self._condition(in_size, x)
        noises = self._noise_list(noise)
        feat = self.conv_body_first(x)
        shifts = [self.condition_shift[0](feat)]
        for i, down in enumerate(self.conv_body_down):
            feat = down(feat)
            shifts.append(self.condition_shift[i + 1](feat))
        scales1 = [lin(cond) for lin in self.condition_scale1]
        scales2 = [lin(cond) for lin in self.condition_scale2]
        shifts, scales1, scales2 = shifts[::-1], scales1[::-1], scales2[::-1]  # const first

        n = x.shape[0]
        latent = self.final_linear(self.final_down2(self.final_down1(feat)).reshape(n, -1))
        latent = latent.view(n, self.num_latent, self.style_dim)
        out = self.style_conv1(self.final_conv(feat), latent[:, 0], noises[0], scales1[0],
                               scales2[0], shifts[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.style_convs[2 * k](out, latent[:, i], noises[2 * k + 1])
            out = self.style_convs[2 * k + 1](out, latent[:, i + 1], noises[2 * k + 2],
                                              scales1[k + 1], scales2[k + 1], shifts[k + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return (skip, latent) if return_latents else skip

    def restore(self, x01: torch.Tensor, in_size=None) -> torch.Tensor:
        """The host's boundary: [0, 1] in, [0, 1] out (not clipped)."""
        return (self(x01 * 2.0 - 1.0, in_size) + 1.0) * 0.5


class GCFSRBlind(GCFSR):
    """Official ``GCFSR_blind`` (``gcfsr_blind_512.pth``): ``in_size`` fixed to 1, a full-width
    ``final_down2`` (``4 * 4 * 512`` inputs to ``final_linear`` at 512)."""

    halve_latent_head = False

    def __init__(self, *args, **kwargs):
        kwargs["in_size"] = 1.0
        super().__init__(*args, **kwargs)

    def forward(self, x, in_size=None, noise="random", return_latents: bool = False):
        if in_size is not None and float(torch.as_tensor(in_size).float().max()) != 1.0:
            raise ValueError("GCFSR_blind has no condition input (official: in_size fixed to 1)")
        return super().forward(x, 1.0, noise, return_latents)


class GCFSRDiscriminator(Discriminator):
    """Official ``StyleGAN2Discriminator_no_std``: StyleGAN2's residual discriminator without the
    minibatch-stddev channel (``final_conv`` reads C_4 channels, not C_4 + 1)."""

    def __init__(self, size: int = 512, channel_multiplier: float = 2, narrow: float = 1.0,
                 channels: dict[int, int] | None = None,
                 blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        if channels is None:
            channels = gcfsr_channels(size, channel_multiplier, narrow)
        super().__init__(size=size, blur_kernel=blur_kernel, stddev_feat=0,
                         channels={r: c for r, c in channels.items() if 4 <= r <= size})

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        return x


def build_gcfsr(arch: dict, size: int, in_size: float | None = None) -> GCFSR:
    """GCFSR from a params entry's ``architecture`` block at resolution ``size``."""
    return GCFSR(size=size, style_dim=arch["style_dim"],
                 channel_multiplier=arch["channel_multiplier"], narrow=arch["narrow"],
                 const_size=arch["const_size"], in_size=in_size)


def build_discriminator(arch: dict, size: int) -> GCFSRDiscriminator:
    return GCFSRDiscriminator(size, arch["channel_multiplier"], arch["narrow"])
