"""StyleGAN2 generator (config-f, skip architecture) and residual discriminator, plain PyTorch.

The math is that of StyleGAN2 as implemented by rosinality/stylegan2-pytorch, BasicSR
``StyleGAN2Generator`` (used by UGPNet's ``StyleGAN2GeneratorF``) and NVIDIA
stylegan2-ada-pytorch; :mod:`ugpnet.models.synthesis.loading` maps their weights onto ours.

Channel widths: ``channels[res] = min(channel_max, 16384 * channel_multiplier // res)``, which
reproduces the official table (4..32 px: 512; 64: 256*cm; 128: 128*cm; 256: 64*cm; 512: 32*cm;
1024: 16*cm) and NVIDIA's ``min(channel_base // res, channel_max)`` with channel_base=16384*cm.
A ``channels`` dict {res: width} overrides it (small profiles).

Latent layout (as BasicSR/rosinality, num_latents = 2*log2(size) - 2): latent 0 -> 4x4 conv,
1 -> 4x4 toRGB and the first 8x8 (upsampling) conv, then for each resolution r = 2^k (k >= 3):
index 2k-5 up-conv, 2k-4 conv, 2k-3 toRGB (shared with the next up-conv).

UGPNet path (:meth:`Generator.synthesize`): UGPNet's ``StyleGAN2GeneratorF`` runs the whole
network but, at the basecode resolution b, *replaces* the output of the upsampling conv by the
basecode F, then applies the second conv at b (latent 2*log2(b)-4) and starts the RGB skip with
that resolution's toRGB (no skip input). Everything before is discarded, so we skip computing
it (identical outputs; only the random-noise draws for the discarded layers are not consumed).
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import torch
from torch import nn

from .ops import (
    DEFAULT_BLUR_KERNEL,
    LRELU_GAIN,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    _grad_free,
    leaky_relu_maybe_inplace,
    make_kernel,
    upsample2d,
)

__all__ = ["Generator", "Discriminator", "default_channels", "StyleLayer", "ToRGB"]

NOISE_MODES = ("random", "const", "none")


def default_channels(channel_multiplier: float = 2, channel_max: int = 512, max_res: int = 1024) -> dict[int, int]:
    """Official StyleGAN2 width table, capped at ``channel_max``."""
    out = {}
    res = 4
    while res <= max_res:
        out[res] = int(min(channel_max, 16384 * channel_multiplier // res))
        res *= 2
    return out


def _log2_exact(value: int, what: str) -> int:
    k = int(round(math.log2(value))) if value > 0 else -1
    if value <= 0 or 2**k != value:
        raise ValueError(f"{what} must be a power of two, got {value}")
    return k


def _check_channels(channels: dict[int, int], res_list: Sequence[int], what: str) -> dict[int, int]:
    channels = {int(k): int(v) for k, v in channels.items()}
    missing = [r for r in res_list if r not in channels]
    if missing:
        raise ValueError(f"{what}: channels dict lacks resolutions {missing} (has {sorted(channels)})")
    return channels


class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2) + 1e-8) over the feature dim (StyleGAN z normalisation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class MappingNetwork(nn.Module):
    """z -> w: PixelNorm + ``n_mlp`` EqualLinear(lr_mul) layers with fused leaky ReLU."""

    def __init__(self, style_dim: int, n_mlp: int, lr_mul: float = 0.01):
        super().__init__()
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.norm = PixelNorm()
        for i in range(n_mlp):
            setattr(self, f"fc{i}", EqualLinear(style_dim, style_dim, lr_mul=lr_mul, activation="lrelu"))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm(z)
        for i in range(self.n_mlp):
            x = getattr(self, f"fc{i}")(x)
        return x


class StyleLayer(nn.Module):
    """Modulated conv + noise injection (``noise_strength`` [1]) + bias + leaky ReLU (gain sqrt 2).

    Computed as ``lrelu(sqrt2 * conv + sqrt2 * strength * noise + sqrt2 * bias)``, which equals
    ``sqrt2 * lrelu(conv + strength * noise + bias)`` (positive homogeneity); the gain and bias
    ride along inside the convolution so only two passes over the output remain.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise_strength = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None | str = None) -> torch.Tensor:
        out = self.conv(x, w, bias=self.bias * LRELU_GAIN, gain=LRELU_GAIN)
        if isinstance(noise, str):
            if noise != "none":
                raise ValueError(f"per-layer noise must be a tensor, None (random) or 'none', got {noise!r}")
        else:
            if noise is None:
                noise = out.new_empty(out.shape[0], 1, out.shape[2], out.shape[3]).normal_()
            noise = noise * (self.noise_strength * LRELU_GAIN)
            out = out.add_(noise) if _grad_free(out, noise) else out + noise
        return leaky_relu_maybe_inplace(out, 0.2)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + bias; adds the FIR-upsampled skip image."""

    def __init__(self, in_channels: int, style_dim: int, blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(3))
        self.register_buffer("blur_kernel", make_kernel(blur_kernel), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w, bias=self.bias)
        if skip is not None:
            out = out + upsample2d(skip, self.blur_kernel)
        return out


class Generator(nn.Module):
    """StyleGAN2 generator.

    Args:
        size: output resolution (power of two, >= 8).
        style_dim: z / w width.
        n_mlp: mapping layers.
        channel_multiplier, channel_max: width table (see module doc); ``channels`` overrides.
        lr_mlp: mapping-network learning-rate multiplier (0.01).
        blur_kernel: FIR kernel for up/downsampling.
        basecode_size: resolution of UGPNet's basecode F (power of two, 8 <= b <= size).
        channels_last: run the synthesis convs in channels-last memory format (about 1.5x faster
            on CPU; same math). Outputs are then channels-last tensors too.

    Submodules / state-dict names: ``mapping.fc{i}``, ``const`` [1, C4, 4, 4], ``conv1`` and
    ``to_rgb1`` (4x4), ``convs.{2k}`` (upsampling conv to 2^(k+3)), ``convs.{2k+1}``,
    ``to_rgbs.{k}``, noise buffers ``noises.noise_{j}`` [1, 1, r, r] (j = 0 at 4x4, then two per
    resolution).
    """

    def __init__(
        self,
        size: int = 512,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: float = 2,
        channel_max: int = 512,
        lr_mlp: float = 0.01,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        basecode_size: int = 16,
        channels: dict[int, int] | None = None,
        channels_last: bool = True,
    ):
        super().__init__()
        self.log_size = _log2_exact(size, "Generator size")
        self.channels_last = channels_last
        if size < 8:
            raise ValueError(f"Generator size must be >= 8, got {size}")
        self.size = size
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        res_list = [2**k for k in range(2, self.log_size + 1)]
        if channels is None:
            channels = default_channels(channel_multiplier, channel_max, max_res=size)
        self.channels = _check_channels(channels, res_list, "Generator")
        self.num_latents = 2 * self.log_size - 2
        self.num_layers = 2 * self.log_size - 3  # style convs (= noise inputs)

        bk = _log2_exact(basecode_size, "basecode_size")
        if not 8 <= basecode_size <= size:
            raise ValueError(f"basecode_size must be in [8, size={size}], got {basecode_size}")
        self.basecode_size = basecode_size
        self._basecode_block = bk - 3  # index into to_rgbs / conv pairs

        self.mapping = MappingNetwork(style_dim, n_mlp, lr_mul=lr_mlp)
        c4 = self.channels[4]
        self.const = nn.Parameter(torch.randn(1, c4, 4, 4))
        self.conv1 = StyleLayer(c4, c4, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(c4, style_dim, blur_kernel=blur_kernel)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for j in range(self.num_layers):
            r = 2 ** ((j + 5) // 2)
            self.noises.register_buffer(f"noise_{j}", torch.randn(1, 1, r, r))
        in_ch = c4
        for k in range(3, self.log_size + 1):
            out_ch = self.channels[2**k]
            self.convs.append(StyleLayer(in_ch, out_ch, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyleLayer(out_ch, out_ch, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch
        if channels_last:
            # conv weights in the activations' layout (mkldnn would reorder them on every call);
            # values and state-dict names are unchanged
            for mod in self.modules():
                if isinstance(mod, ModulatedConv2d):
                    mod.weight.data = mod.weight.data.contiguous(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ helpers
    def _fmt(self, x: torch.Tensor) -> torch.Tensor:
        """Internal memory format: channels-last is ~1.5x faster for these convs on CPU."""
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    @property
    def feature_channels(self) -> int:
        """Channels of f_syn (feature before the last toRGB)."""
        return self.channels[self.size]

    @property
    def basecode_channels(self) -> int:
        return self.channels[self.basecode_size]

    @property
    def first_used_latent(self) -> int:
        """Index of the first W+ entry used by :meth:`synthesize` (4 for basecode 16)."""
        return 2 * self._basecode_block + 2

    def make_noise(self, batch: int = 1, device=None) -> list[torch.Tensor]:
        device = device if device is not None else self.const.device
        return [torch.randn(batch, 1, 2 ** ((j + 5) // 2), 2 ** ((j + 5) // 2), device=device) for j in range(self.num_layers)]

    @torch.no_grad()
    def mean_latent(self, n: int = 4096) -> torch.Tensor:
        """Mean w over ``n`` random z, shape [1, style_dim] (truncation centre)."""
        z = torch.randn(n, self.style_dim, device=self.const.device)
        return self.mapping(z).mean(0, keepdim=True)

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.mapping(z)

    def _noise_list(self, noise, batch: int) -> list:
        if isinstance(noise, (list, tuple)):
            if len(noise) != self.num_layers:
                raise ValueError(f"noise list must have {self.num_layers} entries, got {len(noise)}")
            return list(noise)
        if noise is None or noise == "random":
            return [None] * self.num_layers
        if noise == "const":
            return [getattr(self.noises, f"noise_{j}") for j in range(self.num_layers)]
        if noise == "none":
            return ["none"] * self.num_layers
        raise ValueError(f"noise must be one of {NOISE_MODES}, None or a list of tensors, got {noise!r}")

    def _check_wplus(self, wplus: torch.Tensor) -> None:
        if wplus.ndim != 3 or wplus.shape[1] != self.num_latents or wplus.shape[2] != self.style_dim:
            raise ValueError(
                f"W+ latents must be [N, {self.num_latents}, {self.style_dim}], got {tuple(wplus.shape)}"
            )

    def styles_to_wplus(
        self,
        z: torch.Tensor | Sequence[torch.Tensor] | None = None,
        w: torch.Tensor | Sequence[torch.Tensor] | None = None,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        inject_index: int | None = None,
    ) -> torch.Tensor:
        """z or w (one tensor [N, S], or two for style mixing) -> W+ [N, num_latents, S]."""
        if (z is None) == (w is None):
            raise ValueError("give exactly one of z or w")
        codes = z if z is not None else w
        codes = [codes] if isinstance(codes, torch.Tensor) else list(codes)
        if not 1 <= len(codes) <= 2:
            raise ValueError(f"style mixing takes 1 or 2 codes, got {len(codes)}")
        if z is not None:
            codes = [self.mapping(c) for c in codes]
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (use mean_latent())")
            codes = [truncation_latent + truncation * (c - truncation_latent) for c in codes]
        if len(codes) == 1:
            return codes[0].unsqueeze(1).expand(-1, self.num_latents, -1)
        if inject_index is None:
            inject_index = random.randint(1, self.num_latents - 1)
        a = codes[0].unsqueeze(1).expand(-1, inject_index, -1)
        b = codes[1].unsqueeze(1).expand(-1, self.num_latents - inject_index, -1)
        return torch.cat([a, b], dim=1)

    # ------------------------------------------------------------------ forward paths
    def forward(
        self,
        z: torch.Tensor | Sequence[torch.Tensor] | None = None,
        *,
        w: torch.Tensor | Sequence[torch.Tensor] | None = None,
        wplus: torch.Tensor | None = None,
        noise="random",
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        inject_index: int | None = None,
        return_wplus: bool = False,
    ):
        """Sample an image in [-1, 1] (approximately) [N, 3, size, size] from z, w or W+.

        ``noise``: 'random' (fresh per call), 'const' (stored buffers), 'none', or a list of
        ``num_layers`` tensors. Returns ``img`` or ``(img, wplus)`` if ``return_wplus``.
        """
        if wplus is None:
            wplus = self.styles_to_wplus(z, w, truncation, truncation_latent, inject_index)
        elif z is not None or w is not None:
            raise ValueError("give only one of z, w, wplus")
        self._check_wplus(wplus)
        n = wplus.shape[0]
        noises = self._noise_list(noise, n)
        out = self._fmt(self.const.expand(n, -1, -1, -1))
        out = self.conv1(out, wplus[:, 0], noises[0])
        skip = self.to_rgb1(out, wplus[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, wplus[:, i], noises[2 * k + 1])
            out = self.convs[2 * k + 1](out, wplus[:, i + 1], noises[2 * k + 2])
            skip = to_rgb(out, wplus[:, i + 2], skip)
            i += 2
        return (skip, wplus) if return_wplus else skip

    def synthesize(self, basecode: torch.Tensor, wplus: torch.Tensor, noise="const"):
        """UGPNet path: basecode F [N, C_b, b, b] + W+ [N, num_latents, S] -> (img, f_syn).

        img in [-1, 1] (approximately) [N, 3, size, size]; f_syn [N, C_last, size, size] is the
        feature before the last toRGB. W+ entries below :attr:`first_used_latent` are ignored
        (UGPNet's map2style fills them with copies). ``noise``: 'const' (default; UGPNet's
        ``randomize_noise=False`` uses the stored buffers), 'random' or None (fresh noise),
        'none', or a list of ``num_layers`` tensors.
        """
        b = self.basecode_size
        if basecode.ndim != 4 or basecode.shape[1:] != (self.basecode_channels, b, b):
            raise ValueError(
                f"basecode F must be [N, {self.basecode_channels}, {b}, {b}], got {tuple(basecode.shape)}"
            )
        self._check_wplus(wplus)
        if wplus.shape[0] != basecode.shape[0]:
            raise ValueError(f"batch mismatch: basecode {basecode.shape[0]} vs W+ {wplus.shape[0]}")
        noises = self._noise_list(noise, basecode.shape[0])
        k0 = self._basecode_block
        i = 2 * k0 + 1  # latent index of the (replaced) up-conv at resolution b
        out = self.convs[2 * k0 + 1](self._fmt(basecode), wplus[:, i + 1], noises[2 * k0 + 2])
        skip = self.to_rgbs[k0](out, wplus[:, i + 2], None)
        i += 2
        for k in range(k0 + 1, len(self.to_rgbs)):
            out = self.convs[2 * k](out, wplus[:, i], noises[2 * k + 1])
            out = self.convs[2 * k + 1](out, wplus[:, i + 1], noises[2 * k + 2])
            skip = self.to_rgbs[k](out, wplus[:, i + 2], skip)
            i += 2
        return skip, out

    @torch.no_grad()
    def basecode_from_wplus(self, wplus: torch.Tensor, noise="const") -> torch.Tensor:
        """Run the network up to the basecode resolution (output of the up-conv there), i.e.
        the F that UGPNet's generator would replace (``check_basecode=True`` in the official code)."""
        self._check_wplus(wplus)
        noises = self._noise_list(noise, wplus.shape[0])
        n = wplus.shape[0]
        out = self._fmt(self.const.expand(n, -1, -1, -1))
        out = self.conv1(out, wplus[:, 0], noises[0])
        i = 1
        for k in range(self._basecode_block + 1):
            out = self.convs[2 * k](out, wplus[:, i], noises[2 * k + 1])
            if k == self._basecode_block:
                return out
            out = self.convs[2 * k + 1](out, wplus[:, i + 1], noises[2 * k + 2])
            i += 2
        raise AssertionError("unreachable")


class _DResBlock(nn.Module):
    """Discriminator residual block: conv3x3 -> conv3x3 down, skip 1x1 down (no bias), / sqrt 2."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[int]):
        super().__init__()
        self.conv1 = EqualConv2d(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = EqualConv2d(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = EqualConv2d(
            in_channels, out_channels, 1, downsample=True, bias=False, activate=False, blur_kernel=blur_kernel
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1.0 / math.sqrt(2.0))


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with minibatch-stddev (group 4, 1 feature).

    Names: ``from_rgb`` (1x1 conv + lrelu), ``blocks.{k}`` (resolution size/2^k -> half),
    ``final_conv`` (3x3 on C4 + 1 stddev channel), ``final_fc`` (C4*16 -> C4, lrelu),
    ``final_out`` (C4 -> 1). Input images are expected in [-1, 1] (StyleGAN convention).
    If the batch is not divisible by the stddev group, the largest divisor <= group is used
    (the official code would fail there).
    """

    def __init__(
        self,
        size: int = 512,
        channel_multiplier: float = 2,
        channel_max: int = 512,
        blur_kernel: Sequence[int] = DEFAULT_BLUR_KERNEL,
        stddev_group: int = 4,
        stddev_feat: int = 1,
        channels: dict[int, int] | None = None,
    ):
        super().__init__()
        log_size = _log2_exact(size, "Discriminator size")
        if size < 4:
            raise ValueError(f"Discriminator size must be >= 4, got {size}")
        self.size = size
        res_list = [2**k for k in range(2, log_size + 1)]
        if channels is None:
            channels = default_channels(channel_multiplier, channel_max, max_res=size)
        self.channels = _check_channels(channels, res_list, "Discriminator")
        self.from_rgb = EqualConv2d(3, self.channels[size], 1, blur_kernel=blur_kernel)
        self.blocks = nn.ModuleList()
        in_ch = self.channels[size]
        for k in range(log_size, 2, -1):
            out_ch = self.channels[2 ** (k - 1)]
            self.blocks.append(_DResBlock(in_ch, out_ch, blur_kernel))
            in_ch = out_ch
        self.stddev_group = stddev_group
        self.stddev_feat = stddev_feat
        c4 = self.channels[4]
        self.final_conv = EqualConv2d(in_ch + stddev_feat, c4, 3, blur_kernel=blur_kernel)
        self.final_fc = EqualLinear(c4 * 16, c4, activation="lrelu")
        self.final_out = EqualLinear(c4, 1)

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = min(n, self.stddev_group)
        while n % group:
            group -= 1
        f = self.stddev_feat
        y = x.view(group, -1, f, c // f, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
        y = y.mean(dim=[2, 3, 4], keepdim=True).squeeze(2)  # [n/group, f, 1, 1]
        y = y.repeat(group, 1, h, w)
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"Discriminator expects [N, 3, {self.size}, {self.size}], got {tuple(img.shape)}")
        x = self.from_rgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.minibatch_stddev(x)
        x = self.final_conv(x)
        x = self.final_fc(x.flatten(1))
        return self.final_out(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

